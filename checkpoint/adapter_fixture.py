"""Deterministic random LoRA adapters, written the way voxcpm's fine-tuning script writes them.

`python -m checkpoint.adapter_fixture --base DIR --out DIR [--r 64] [--alpha 32] [--no-lm] [--no-dit] [--proj]
[--strength 0.1] [--ckpt] [--seed 0]`

The names and shapes are voxcpm's own: its `_apply_lora` wraps a weightless build of the base, and
the adapter holds that model's `lora_A` / `lora_B` parameters (what the script saves: the
state_dict entries whose name holds "lora_"), in `OUT/lora_weights.safetensors` (or
`lora_weights.ckpt` as {"state_dict": ...}). A is drawn as voxcpm initialises it (uniform,
bound 1/sqrt(in)); B, zero when training starts, is drawn so that alpha/r · B·A has entries
`strength` times those of a 1/sqrt(in)-scaled weight (the random fixtures' scale): each adapted
layer moves by about `strength` (rel-L2). `OUT/train.yaml` is the training config's part that
matters here: `pretrained_path`, `sample_rate` and the `lora:` section.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

WEIGHTS, CKPT, TRAIN_YAML = "lora_weights.safetensors", "lora_weights.ckpt", "train.yaml"


def random_tensors(base: Path, lora_config, strength: float, seed: int) -> dict:
    """{parameter name: tensor} for every lora_A / lora_B voxcpm gives a model of `base` with `lora_config`."""
    import torch

    from .loading import resolve_source
    from .lora import weightless_model

    model = weightless_model(resolve_source(base), lora_config)
    gen = torch.Generator().manual_seed(seed)
    scale = lora_config.alpha / lora_config.r
    sigma = strength * math.sqrt(3.0) / (scale * math.sqrt(lora_config.r))  # Var(s·B·A) = s² r σ² / (3 in)
    tensors = {}
    for name, param in model.named_parameters():
        if name.endswith(".lora_A"):
            bound = 1.0 / math.sqrt(param.shape[1])
            tensors[name] = (2 * torch.rand(tuple(param.shape), generator=gen) - 1) * bound
        elif name.endswith(".lora_B"):
            tensors[name] = sigma * torch.randn(tuple(param.shape), generator=gen)
    return tensors


def build_adapter(base: Path, out: Path, r: int = 64, alpha: int = 32, lm: bool = True, dit: bool = True,
                  proj: bool = False, strength: float = 0.1, seed: int = 0, ckpt: bool = False) -> Path:
    """Write a random adapter for `base` to `out`; returns the weights file."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from .lora_config import lora_config_class

    lora_config = lora_config_class()(enable_lm=lm, enable_dit=dit, enable_proj=proj, r=r, alpha=alpha)
    tensors = random_tensors(Path(base), lora_config, strength, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ckpt:
        torch.save({"state_dict": tensors}, out / CKPT)
    else:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / WEIGHTS))
    sample_rate = json.loads((Path(base) / "config.json").read_text())["audio_vae_config"]["sample_rate"]
    train = {"pretrained_path": str(Path(base).resolve()), "sample_rate": sample_rate,
             "lora": lora_config.model_dump()}
    (out / TRAIN_YAML).write_text(yaml.safe_dump(train, sort_keys=False), encoding="utf-8")
    return out / (CKPT if ckpt else WEIGHTS)


def _parse(argv) -> argparse.Namespace:
    from contract.cli import OneLineParser

    parser = OneLineParser(prog="python -m checkpoint.adapter_fixture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the base checkpoint directory")
    parser.add_argument("--out", required=True, help="where to write the adapter")
    parser.add_argument("--r", type=int, default=64)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--no-lm", action="store_true", help="do not adapt base_lm and residual_lm")
    parser.add_argument("--no-dit", action="store_true", help="do not adapt the LocDiT")
    parser.add_argument("--proj", action="store_true", help="adapt the three projections too")
    parser.add_argument("--strength", type=float, default=0.1, help="how far each layer moves (rel-L2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt", action="store_true", help="lora_weights.ckpt instead of .safetensors")
    return parser.parse_args(argv)


def _write(args) -> int:
    start = time.time()
    path = build_adapter(Path(args.base), Path(args.out), args.r, args.alpha, not args.no_lm, not args.no_dit,
                         args.proj, args.strength, args.seed, args.ckpt)
    print(f"adapter: {path} ({path.stat().st_size / 2**20:.1f} MiB, r={args.r}, alpha={args.alpha}) and "
          f"{Path(args.out) / TRAIN_YAML} in {time.time() - start:.1f} s")
    return 0


def main(argv=None) -> int:
    from contract.cli import run

    from .loading import CheckpointError

    return run(argv, _parse, _write, expected=(CheckpointError,), cannot_write="choose another --out")


if __name__ == "__main__":
    sys.exit(main())

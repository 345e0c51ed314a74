"""Deterministic random VoxCPM 1.5 checkpoints in the Hugging Face layout.

`python -m checkpoint.fixture --out DIR [--full] [--stop-mode always|never|random] [--use-mup/--no-mup]`

The tiny fixture keeps everything that shapes the conversion — the 44.1 kHz VAE rates,
patch size 4, feat dim 64, grouped-query attention, LongRoPE, MuP — and shrinks widths and
depths so that the whole toolkit runs on it in seconds. `--full` builds the real 1.5 sizes
(~890 M parameters, ~8 GB RSS, 3.2 GB of fp32 weights) to measure scale.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from .tiny_tokenizer import write_tokenizer

AUDIO_START_TOKEN = 101

_VAE_44K = {
    "encoder_dim": 64, "encoder_rates": [2, 3, 6, 7, 7], "latent_dim": 64,
    "decoder_dim": 2048, "decoder_rates": [7, 7, 6, 3, 2], "depthwise": True,
    "sample_rate": 44100, "use_noise_block": False,
}

FULL_CONFIG = {
    "lm_config": {
        "bos_token_id": 1, "eos_token_id": 2, "hidden_size": 1024, "intermediate_size": 4096,
        "max_position_embeddings": 32768, "num_attention_heads": 16, "num_hidden_layers": 24,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "rope_scaling": {"type": "longrope", "long_factor": None, "short_factor": None,
                         "original_max_position_embeddings": 32768},
        "vocab_size": 73448, "use_mup": True, "scale_emb": 12, "dim_model_base": 256,
        "scale_depth": 1.4, "rope_theta": 10000,
    },
    "patch_size": 4, "feat_dim": 64, "residual_lm_num_layers": 8,
    "scalar_quantization_latent_dim": 256, "scalar_quantization_scale": 9,
    "encoder_config": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 8},
    "dit_config": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 8,
                   "cfm_config": {"sigma_min": 1e-6, "solver": "euler", "t_scheduler": "log-norm",
                                  "inference_cfg_rate": 2.0}},
    "audio_vae_config": _VAE_44K,
    "max_length": 8192, "device": "cuda", "dtype": "bfloat16",
}


def _rope_factors(head_dim: int) -> list[float]:
    # Not the released values (unknown here); distinct per frequency so a mix-up would show.
    half = head_dim // 2
    return [round(1.0 + 0.5 * i / max(1, half - 1), 6) for i in range(half)]


def make_config(full: bool, vocab_size: int, use_mup: bool = True) -> dict:
    config = copy.deepcopy(FULL_CONFIG)
    lm = config["lm_config"]
    if not full:
        lm.update(hidden_size=128, intermediate_size=256, num_attention_heads=8, num_key_value_heads=2,
                  num_hidden_layers=3, vocab_size=vocab_size)
        config.update(residual_lm_num_layers=2, scalar_quantization_latent_dim=32, max_length=1024)
        for part in ("encoder_config", "dit_config"):
            config[part].update(hidden_dim=128, ffn_dim=256, num_heads=8, num_layers=2)
        config["audio_vae_config"].update(encoder_dim=4, decoder_dim=64)
    lm["use_mup"] = use_mup
    head_dim = lm["hidden_size"] // lm["num_attention_heads"]
    factors = _rope_factors(head_dim)
    lm["rope_scaling"].update(long_factor=factors, short_factor=factors)
    return config


def _randomise(model, seed: int) -> None:
    """Deterministic weights with healthy scales (default inits leave some layers at zero)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
            elif name.endswith(".alpha"):  # Snake
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
            elif name.endswith(".weight_g"):  # weight-norm gains: keep the VAE's signal level sane
                param.copy_(0.62 + 0.2 * torch.rand(param.shape, generator=gen))
            elif param.ndim == 1:
                param.copy_(0.02 * torch.randn(param.shape, generator=gen))
            else:
                fan_in = param[0].numel() if param.ndim > 1 else param.numel()
                param.copy_(torch.randn(param.shape, generator=gen) / max(1.0, fan_in) ** 0.5)


def _apply_stop_mode(model, mode: str) -> None:
    """`always`: the stop head votes stop at every step; `never`: it never does."""
    import torch

    if mode == "random":
        return
    sign = 1.0 if mode == "always" else -1.0
    with torch.no_grad():
        model.stop_proj.weight.zero_()
        model.stop_proj.bias.fill_(4.0)  # SiLU(4) ≈ 3.93 whatever the hidden
        model.stop_head.weight[0].fill_(-sign)
        model.stop_head.weight[1].fill_(sign)


def build_fixture(out: Path, full: bool = False, seed: int = 0, stop_mode: str = "random",
                  use_mup: bool = True) -> Path:
    import torch
    from safetensors.torch import save_file

    from .compat import import_voxcpm
    from .loading import build_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(out)
    if full:  # the real vocabulary size: byte-fallback ids above the tiny vocabulary stay unused
        vocab_size = FULL_CONFIG["lm_config"]["vocab_size"]
    config = make_config(full, vocab_size, use_mup)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    import_voxcpm()
    torch.manual_seed(seed)
    model = build_model(out)
    _randomise(model, seed)
    _apply_stop_mode(model, stop_mode)
    state = model.state_dict()
    vae = {k[len("audio_vae."):]: v.contiguous() for k, v in state.items() if k.startswith("audio_vae.")}
    main = {k: v.contiguous() for k, v in state.items() if not k.startswith("audio_vae.")}
    save_file(main, str(out / "model.safetensors"))
    torch.save({"state_dict": vae}, out / "audiovae.pth")
    meta = {"kind": "full" if full else "tiny", "seed": seed, "stop_mode": stop_mode, "use_mup": use_mup,
            "parameters": sum(v.numel() for v in state.values())}
    (out / "fixture.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checkpoint.fixture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output directory (default build/fixtures/tiny or full)")
    parser.add_argument("--full", action="store_true", help="real VoxCPM 1.5 sizes (~8 GB RSS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-mode", choices=["random", "always", "never"], default="random",
                        help="always: generation stops right after min_len; never: runs to max_len")
    parser.add_argument("--no-mup", action="store_true", help="write use_mup=false in the config")
    args = parser.parse_args(argv)
    out = Path(args.out or f"build/fixtures/{'full' if args.full else 'tiny'}")
    start = time.time()
    try:
        build_fixture(out, args.full, args.seed, args.stop_mode, not args.no_mup)
    except OSError as exc:
        print(f"error: cannot write the fixture to {out}: {exc.strerror or exc}; choose another --out", file=sys.stderr)
        return 2
    meta = json.loads((out / "fixture.json").read_text())
    print(f"fixture: {out} ({meta['kind']}, {meta['parameters'] / 1e6:.1f} M parameters, "
          f"stop mode {meta['stop_mode']}) in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

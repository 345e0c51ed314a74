"""Load VoxCPM 1.5 in FP32 on the CPU from a Hugging Face id or a local directory, strictly.

voxcpm's own `from_local` loads with `strict=False`, so a renamed or missing tensor silently
keeps its random initial value. Here every tensor of the model must come from the checkpoint
with the right shape, and every tensor of the checkpoint must be used.

A local directory may also be what voxcpm's fine-tuning script writes: a step folder of a full
fine-tune (model.safetensors without the `audio_vae.*` weights, the base's config.json,
audiovae.pth and tokenizer files copied beside it), or the run's save_path, whose `latest` link
names the newest step folder. A folder holding only a LoRA adapter is refused with the way to
pass it (`checkpoint.lora`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

HUB_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "audiovae.pth", "audiovae.safetensors",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
MODEL_FILES = ("model.safetensors", "pytorch_model.bin")
LORA_FILES = ("lora_weights.safetensors", "lora_weights.ckpt")   # what voxcpm's script saves for a LoRA run
LATEST = "latest"                    # the link voxcpm's script points at the newest step folder
MODEL_HINT = "pass a checkpoint directory in the Hugging Face layout, e.g. MODEL=/path/to/VoxCPM1.5"
FINETUNE_HINT = ("copy config.json, audiovae.pth and the tokenizer files from the base model it was fine-tuned from "
                 "(voxcpm's script copies them only when pretrained_path is a local folder)")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the problem and the fix."""


def resolve_source(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local checkpoint directory for `source`: itself if a directory (a training run's save_path: the
    step folder its `latest` link names), else a hub download."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = follow_latest(path)
        if any((path / name).is_file() for name in LORA_FILES) and not any((path / n).is_file() for n in MODEL_FILES):
            raise CheckpointError(f"{path} holds a LoRA adapter, not a model: pass it as LORA={path} (--lora) with "
                                  f"MODEL=<the base model it was trained on>")
        return path
    text = str(source)
    looks_like_repo_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.exists()
    if not looks_like_repo_id:
        raise CheckpointError(f"model directory {text} does not exist: {MODEL_HINT}")
    return _download(text, revision)


def follow_latest(path: Path) -> Path:
    """The step folder a training run's `latest` link names, when `path` is the run's save_path (it holds no
    weights of its own); else `path`.

    voxcpm's script writes the link with `os.symlink(str(save_dir / tag), ...)`: with a relative
    save_path the link's target is relative to the training's working directory, not to the link,
    and dangles; the step folder is then found by name beside the link."""
    own = ("config.json", *MODEL_FILES, *LORA_FILES)
    link = path / LATEST
    if any((path / name).is_file() for name in own) or not (link.exists() or link.is_symlink()):
        return path
    if link.is_dir():
        return link.resolve()
    target = Path(os.readlink(link))
    beside = path / target.name
    if beside.is_dir():
        return beside
    raise CheckpointError(f"{link} points at {target}, which does not exist: pass the step folder itself "
                          f"(MODEL={path}/step_…)")


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=HUB_FILES))
    except Exception as exc:  # offline, unknown repo, bad revision, HTTP errors: one message each way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot download {repo_id}"
                              f"{'@' + revision if revision else ''} from the Hugging Face hub "
                              f"({type(exc).__name__}: {reason[:160]}): {MODEL_HINT}") from None


def _require(directory: Path, *names: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    fine_tuned = any((directory / name).is_file() for name in MODEL_FILES)  # weights alone: a fine-tune step folder
    raise CheckpointError(f"{directory} has no {' or '.join(names)}: {FINETUNE_HINT if fine_tuned else MODEL_HINT}")


def read_config(directory: Path):
    from .compat import import_voxcpm

    voxcpm_module = import_voxcpm()
    text = _require(directory, "config.json").read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory}/config.json is not valid JSON ({exc}): re-download the checkpoint") from None
    architecture = str(raw.get("architecture", "voxcpm")).lower()
    if architecture != "voxcpm":
        raise CheckpointError(f"{directory} holds a {architecture} model; this toolkit converts VoxCPM 1.5: {MODEL_HINT}")
    try:
        config = voxcpm_module.VoxCPMConfig.model_validate(raw)
    except Exception as exc:
        first = str(exc).splitlines()
        raise CheckpointError(f"{directory}/config.json is not a VoxCPM 1.5 config "
                              f"({' '.join(first[:3])[:200]}): {MODEL_HINT}") from None
    config.device, config.dtype = "cpu", "float32"
    _check_consistency(directory, config)
    return config


def config_dict(source: str | os.PathLike, revision: str | None = None) -> dict:
    """The checkpoint's config.json as a plain dict, checked as `read_config` checks it (no weights read)."""
    directory = resolve_source(source, revision)
    read_config(directory)
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


def _check_consistency(directory: Path, config) -> None:
    """Catch configs voxcpm would crash on deep inside a constructor."""
    lm = config.lm_config
    if lm.hidden_size % lm.num_attention_heads or lm.num_attention_heads % lm.num_key_value_heads:
        raise CheckpointError(f"{directory}/config.json: hidden_size {lm.hidden_size}, {lm.num_attention_heads} heads "
                              f"and {lm.num_key_value_heads} KV heads do not divide evenly: {MODEL_HINT}")
    head_dim = lm.kv_channels or lm.hidden_size // lm.num_attention_heads
    factors = len(lm.rope_scaling.short_factor)
    if factors != head_dim // 2:
        raise CheckpointError(f"{directory}/config.json: rope_scaling has {factors} factors but the head dim "
                              f"{head_dim} (hidden_size {lm.hidden_size} / {lm.num_attention_heads} heads) needs "
                              f"{head_dim // 2}; the hidden size or the factors are wrong: {MODEL_HINT}")


# torch.nn.init's random fills: what every layer's reset_parameters draws its initial weights with
RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                "xavier_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def _without_random_init():
    """Layers keep their uninitialised memory instead of drawing random weights: at full size the
    draws took 7.1 of the 16.9 s a load took, for values the checkpoint overwrites (load_weights
    refuses a model it did not fill completely)."""
    from torch.nn import init

    saved = {name: getattr(init, name) for name in RANDOM_INITS if hasattr(init, name)}
    for name in saved:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, draw in saved.items():
            setattr(init, name, draw)


def build_model(directory: Path, lora_config=None, initialise: bool = True):
    """An FP32 CPU `VoxCPMModel` with the checkpoint's architecture and untouched initial weights (with
    `initialise=False`, whatever memory the weights were given: only for a model every weight of which
    is loaded next); with a voxcpm `LoRAConfig`, voxcpm wraps the Linear layers it names in its own
    `LoRALinear`."""
    from transformers import LlamaTokenizerFast

    from .compat import import_voxcpm

    voxcpm_module = import_voxcpm()
    from voxcpm.modules.audiovae import AudioVAE

    directory = Path(directory)
    config = read_config(directory)
    _require(directory, "tokenizer.json")
    try:
        tokenizer = LlamaTokenizerFast.from_pretrained(str(directory))
    except Exception as exc:
        raise CheckpointError(f"cannot read the tokenizer in {directory} ({exc}): re-download the checkpoint") from None
    try:
        init = contextlib.nullcontext() if initialise else _without_random_init()
        with init, contextlib.redirect_stderr(io.StringIO()):  # voxcpm prints device banners
            model = voxcpm_module.VoxCPMModel(config, tokenizer, AudioVAE(config.audio_vae_config),
                                              lora_config=lora_config, device="cpu")
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"voxcpm cannot build the model {directory}/config.json describes "
                              f"({type(exc).__name__}: {str(exc)[:160]}): {MODEL_HINT}") from None
    return model.float().eval()


def _weight_files(directory: Path) -> list[tuple[str, Path]]:
    main = _require(directory, *MODEL_FILES)
    vae = _require(directory, "audiovae.safetensors", "audiovae.pth")
    return [("", main), ("audio_vae.", vae)]


def require_files(directory: Path) -> None:
    """Every file loading will read is there (a CheckpointError names the first missing one): a command can
    check before it writes anything."""
    _weight_files(Path(directory))
    _require(Path(directory), "tokenizer.json")


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _read_safetensors(path: Path):
    """(name, tensor) with plain reads, one tensor at a time.

    safetensors' `safe_open` maps the file: every page it touched stays in the process's RSS until
    the handle closes, so loading the 3.2 GB model peaked at 7.6 GiB; plain reads peak at 4.6 GiB.
    """
    import struct

    import torch

    size = path.stat().st_size
    with open(path, "rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        if header_length > size - 8:
            raise ValueError("header longer than the file")
        header = json.loads(handle.read(header_length))
        base = 8 + header_length
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]])
            buffer = bytearray(end - start)
            handle.seek(base + start)
            if handle.readinto(buffer) != end - start:
                raise ValueError(f"file ends inside tensor {key}")
            tensor = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
            yield key, tensor.reshape(info["shape"])


def iter_tensors(path: Path):
    """(name, tensor) pairs, one tensor in memory at a time for safetensors."""
    import torch

    try:
        if path.suffix == ".safetensors":
            yield from _read_safetensors(path)
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
            if not isinstance(state, dict):
                raise ValueError("no state dict inside")
            yield from state.items()
    except CheckpointError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is corrupt or truncated ({reason[:160]}): re-download it") from None


def _describe(names, limit: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_weights(model, directory: Path) -> None:
    """Copy every checkpoint tensor into `model`; raise on missing, unexpected or mis-shaped keys.
    A LoRA model's `lora_A`/`lora_B` are not the checkpoint's: the adapter fills them (`checkpoint.lora`)."""
    import torch

    params = {name: value for name, value in model.state_dict().items() if not is_lora_parameter(name)}
    seen, unexpected, misshaped = set(), [], []
    with torch.no_grad():
        for prefix, path in _weight_files(directory):
            for key, tensor in iter_tensors(path):
                name = prefix + key
                if name not in params:
                    unexpected.append(name)
                elif tuple(tensor.shape) != tuple(params[name].shape):
                    misshaped.append(f"{name} {list(tensor.shape)} vs config {list(params[name].shape)}")
                else:
                    params[name].copy_(tensor)
                    seen.add(name)
    missing = set(params) - seen - {m.split(" ")[0] for m in misshaped}
    problems = []
    if misshaped:
        problems.append(f"{len(misshaped)} tensors have shapes that config.json does not give ({_describe(misshaped, 2)})")
    if missing:
        problems.append(f"{len(missing)} tensors are missing ({_describe(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors are unexpected ({_describe(unexpected)})")
    if problems:
        raise CheckpointError(f"{directory} does not match the VoxCPM 1.5 architecture: {'; '.join(problems)}; "
                              f"use the config.json that came with these weights, {MODEL_HINT}")


def is_lora_parameter(name: str) -> bool:
    return name.endswith((".lora_A", ".lora_B"))


def load_voxcpm(source: str | os.PathLike, revision: str | None = None, adapter=None):
    """The unpatched voxcpm `VoxCPMModel` in FP32 on the CPU, every weight checked.

    With an adapter (`checkpoint.lora.Adapter`): voxcpm's own LoRA model, the adapter live in its
    `LoRALinear` layers, unmerged (the validation reference; conversion merges it instead)."""
    directory = resolve_source(source, revision)
    # no random draws: load_weights fills every weight or refuses; a LoRA model keeps them (voxcpm
    # zeroes lora_B, and an uninitialised lora_A could hold NaN, which 0 * NaN would let through)
    model = build_model(directory, adapter.lora_config() if adapter is not None else None,
                        initialise=adapter is not None)
    load_weights(model, directory)
    if adapter is not None:
        adapter.load_into(model)
    model.checkpoint_dir = directory
    return model

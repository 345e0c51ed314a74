"""The one declaration of every converted component's Core ML interface.

Pure data and functions, no heavy imports: conversion, the spec tests, validation and the
torch-free generator all read it. Sizes come from the checkpoint's config.json (a plain dict), so
the same declaration describes the real VoxCPM 1.5 and the tiny test fixture.

    from convert.interface import interfaces
    specs = interfaces(json.load(open("config.json")))
    specs["base_lm_step"].inputs[0]  # TensorSpec(name="embed", shape=(1, 1024), dtype="fp16")
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

MAX_CONTEXT = 512
VAE_ENCODER_SECONDS = 5            # the encoder takes a fixed 5 s window (220 500 samples at 44.1 kHz)
DECODER_FRAMES = (4, 2000)         # latent frames the decoder accepts (one patch .. ~80 s)
FLOAT_DTYPES = ("fp16", "fp32")    # fp16: the published interface; fp32: the reference build
CFG_BRANCHES = 2                   # LocDiT runs the conditional and unconditional branch as a batch of 2

COMPONENTS = ("audio_vae_encoder", "audio_vae_decoder", "feat_encoder", "base_lm_step", "residual_lm_step",
              "locdit_step")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. `shape` holds the default size of a flexible axis;
    `flexible` maps axis -> (lo, hi) inclusive, or is None for a fixed shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "fp16"            # "fp16" or "int32" ("fp32" in the reference build)
    flexible: dict[int, tuple[int, int]] | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["flexible"] = {str(k): list(v) for k, v in self.flexible.items()} if self.flexible else None
        return d


@dataclass(frozen=True)
class ComponentInterface:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    stateful: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    def as_dict(self) -> dict:
        return {"name": self.name, "inputs": [t.as_dict() for t in self.inputs],
                "outputs": [t.as_dict() for t in self.outputs], "notes": self.notes}


# ----------------------------------------------------------------------------- sizes from config
@dataclass(frozen=True)
class ModelSizes:
    lm_hidden: int
    lm_layers: int
    residual_layers: int
    kv_heads: int
    head_dim: int
    encoder_hidden: int
    dit_hidden: int
    feat_dim: int
    patch_size: int
    latent_dim: int
    hop: int                       # audio samples per latent frame (product of encoder rates)
    sample_rate: int
    vocab_size: int


def model_sizes(config: dict) -> ModelSizes:
    lm = config["lm_config"]
    vae = config.get("audio_vae_config") or {}
    heads = lm["num_attention_heads"]
    return ModelSizes(
        lm_hidden=lm["hidden_size"], lm_layers=lm["num_hidden_layers"],
        residual_layers=config.get("residual_lm_num_layers", 8),
        kv_heads=lm.get("num_key_value_heads") or heads,
        head_dim=lm.get("kv_channels") or lm["hidden_size"] // heads,
        encoder_hidden=config["encoder_config"]["hidden_dim"], dit_hidden=config["dit_config"]["hidden_dim"],
        feat_dim=config.get("feat_dim", 64), patch_size=config.get("patch_size", 4),
        latent_dim=vae.get("latent_dim", 64), hop=math.prod(vae.get("encoder_rates", [2, 3, 6, 7, 7])),
        sample_rate=vae.get("sample_rate", 44100), vocab_size=lm["vocab_size"])


# ----------------------------------------------------------------------------- the six components
def _cache_specs(prefix: str, layers: int, shape: tuple[int, ...]) -> list[TensorSpec]:
    return [TensorSpec(f"{prefix}{kind}{i}", shape) for kind in ("k", "v") for i in range(layers)]


def _lm_step(name: str, s: ModelSizes, layers: int, max_context: int, hidden_outputs: list[str],
             stop: bool) -> ComponentInterface:
    cache = (1, s.kv_heads, max_context, s.head_dim)
    inputs = [TensorSpec("embed", (1, s.lm_hidden)), TensorSpec("position", (1,), "int32"),
              *_cache_specs("", layers, cache)]
    outputs = [TensorSpec(h, (1, s.lm_hidden)) for h in hidden_outputs]
    if stop:
        outputs.append(TensorSpec("stop_logit", (1, 2)))
    outputs += _cache_specs("out_", layers, cache)
    return ComponentInterface(name, tuple(inputs), tuple(outputs),
                              notes=f"one token at `position` (0..{max_context - 1}); caches in and out",
                              extra={"layers": layers, "max_context": max_context})


def interfaces(config: dict, max_context: int = MAX_CONTEXT, float_dtype: str = "fp16") -> dict[str, ComponentInterface]:
    """Every component's interface for the checkpoint whose config.json is `config`.

    `float_dtype="fp32"` describes the FP32 reference build (`--precision fp32`): every float input
    and output is fp32; names, shapes and ranges are the published (fp16) interface's."""
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"unknown float dtype {float_dtype!r}: use fp16 or fp32")
    s = model_sizes(config)
    window = VAE_ENCODER_SECONDS * s.sample_rate
    lo, hi = DECODER_FRAMES
    frames = window // s.hop
    patch = (CFG_BRANCHES, s.feat_dim, s.patch_size)
    specs = [
        ComponentInterface("audio_vae_encoder", (TensorSpec("audio", (1, 1, window)),),
                           (TensorSpec("latent", (1, s.latent_dim, frames)),),
                           notes=f"fixed {VAE_ENCODER_SECONDS} s window; pad or split longer prompts"),
        ComponentInterface("audio_vae_decoder", (TensorSpec("latent", (1, s.latent_dim, lo), flexible={2: (lo, hi)}),),
                           (TensorSpec("audio", (1, 1, lo * s.hop), flexible={2: (lo * s.hop, hi * s.hop)}),),
                           notes=f"T latent frames ({lo}..{hi}) -> T*{s.hop} samples"),
        ComponentInterface("feat_encoder", (TensorSpec("feat", (1, 1, s.patch_size, s.feat_dim)),),
                           (TensorSpec("embedding", (1, 1, s.encoder_hidden)),)),
        _lm_step("base_lm_step", s, s.lm_layers, max_context, ["lm_hidden", "lm_hidden_fsq"], stop=True),
        _lm_step("residual_lm_step", s, s.residual_layers, max_context, ["res_hidden"], stop=False),
        ComponentInterface("locdit_step",
                           (TensorSpec("x", patch), TensorSpec("mu", (CFG_BRANCHES, s.dit_hidden)),
                            TensorSpec("t", (CFG_BRANCHES,)), TensorSpec("cond", patch),
                            TensorSpec("dt", (CFG_BRANCHES,))),
                           (TensorSpec("velocity", patch),),
                           notes="batch 2 = conditional and unconditional (CFG) branch"),
    ]
    if float_dtype != "fp16":
        specs = [_with_float_dtype(spec, float_dtype) for spec in specs]
    return {spec.name: spec for spec in specs}


def _with_float_dtype(iface: ComponentInterface, dtype: str) -> ComponentInterface:
    retype = lambda specs: tuple(replace(t, dtype=dtype) if t.dtype == "fp16" else t for t in specs)  # noqa: E731
    return replace(iface, inputs=retype(iface.inputs), outputs=retype(iface.outputs))


# ----------------------------------------------------------------------------- generation settings
def generation_config(config: dict, max_context: int = MAX_CONTEXT, tokenizer_files: list[str] | None = None,
                      embed_dtype: str = "float32") -> dict:
    """What a Core ML generator needs besides the models: sizes, rates and sampler settings."""
    s = model_sizes(config)
    lm = config["lm_config"]
    use_mup = bool(lm.get("use_mup", True))  # voxcpm's schema default: MuP on unless the config says no
    lo, hi = DECODER_FRAMES
    return {
        "model": "VoxCPM 1.5",
        "hidden_size": s.lm_hidden, "base_lm_layers": s.lm_layers, "residual_lm_layers": s.residual_layers,
        "num_key_value_heads": s.kv_heads, "head_dim": s.head_dim, "encoder_hidden": s.encoder_hidden,
        "dit_hidden": s.dit_hidden, "vocab_size": s.vocab_size, "feat_dim": s.feat_dim, "latent_dim": s.latent_dim,
        "max_context": max_context, "sample_rate": s.sample_rate, "hop_length": s.hop, "patch_size": s.patch_size,
        "token_rate": s.sample_rate / (s.hop * s.patch_size),
        "cfg_value": 2.0, "inference_timesteps": 10, "sway_sampling_coef": 1.0, "cfg_zero_star": True,
        "cfg_zero_init_fraction": 0.04,
        "audio_start_token": 101, "min_len": 2, "max_length_ratio": 6.0, "max_length_offset": 10,
        "use_mup": use_mup, "scale_emb": lm.get("scale_emb", 1.0),
        "text_embedding_scale": float(lm.get("scale_emb", 1.0)) if use_mup else 1.0,
        "vae_encoder_window": VAE_ENCODER_SECONDS * s.sample_rate, "decoder_frames": [lo, hi],
        "embed_tokens_dtype": embed_dtype,
        "tokenizer_files": list(tokenizer_files or []),
    }

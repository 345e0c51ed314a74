"""The published layout: the six Core ML models of the published VoxCPM 1.5 conversion, declared once.

mlprogram for macOS 14 with FP16 compute and fp16 I/O, an int32 `position`, the LM steps' KV caches
passed in and out as tensors, a 512-position context, a VAE decoder of 4..2000 frames. Components
are listed in conversion order: smallest first, the base LM last, so that each part of the model
is freed as soon as no later component reads it. One optional component, not part of the published
six and built only on request (`python -m convert --stream-decoder`): the streaming VAE decoder with
its contexts in and out (`contract.streaming`), for exact, overlap-free streaming on macOS 14.

    from contract.published import declare
    layout = declare(json.load(open("config.json")))
    layout["base_lm_step"].inputs[0]   # TensorSpec(name="embed", shape=(1, 1024), dtype="fp16", ...)
"""
from __future__ import annotations

from .components import LM_STEP, STATELESS, CacheSpec, ComponentSpec, TensorSpec
from .defaults import CFG_BRANCHES, DECODER_FRAMES, MAX_CONTEXT, VAE_ENCODER_SECONDS
from .layout import Layout
from .sizes import ModelSizes, model_sizes
from .streaming import NAME as STREAM_DECODER
from .streaming import stream_decoder

NAME = "published"
COMPONENTS = ("audio_vae_encoder", "audio_vae_decoder", "feat_encoder", "locdit_step", "residual_lm_step",
              "base_lm_step")
OPTIONAL = (STREAM_DECODER,)


def _vae_encoder(s: ModelSizes) -> ComponentSpec:
    window = VAE_ENCODER_SECONDS * s.sample_rate
    return ComponentSpec(
        "audio_vae_encoder", STATELESS, "VoxCPM 1.5 AudioVAE encoder: a 5 s mono window to latent frames",
        (TensorSpec("audio", (1, 1, window),
                    description=f"mono audio at {s.sample_rate} Hz, exactly {VAE_ENCODER_SECONDS} s; a shorter "
                                f"prompt goes at the start, zero-padded on the right"),),
        (TensorSpec("latent", (1, s.latent_dim, window // s.hop),
                    description=f"latent frames, one per {s.hop} samples (the encoder's mean, no sampling)"),),
        primary_output="latent", torch_module="AudioVAEEncoder", parts=("audio_vae.encoder",),
        reference="vae_encode", cases="vae_encoder_cases",
        notes=f"fixed {VAE_ENCODER_SECONDS} s window; pad or split longer prompts")


def _vae_decoder(s: ModelSizes) -> ComponentSpec:
    lo, hi = DECODER_FRAMES
    return ComponentSpec(
        "audio_vae_decoder", STATELESS, "VoxCPM 1.5 AudioVAE decoder: latent frames to audio (causal)",
        (TensorSpec("latent", (1, s.latent_dim, lo), flexible={2: (lo, hi)},
                    description=f"T latent frames, T in {lo}..{hi} ({s.patch_size} per generated patch)"),),
        (TensorSpec("audio", (1, 1, lo * s.hop), flexible={2: (lo * s.hop, hi * s.hop)},
                    description=f"T x {s.hop} samples of mono audio at {s.sample_rate} Hz in [-1, 1] (tanh applied)"),),
        primary_output="audio", torch_module="AudioVAEDecoder", parts=("audio_vae.decoder",),
        reference="vae_decode", cases="vae_decoder_cases",
        notes=f"T latent frames ({lo}..{hi}) -> T*{s.hop} samples")


def _feat_encoder(s: ModelSizes) -> ComponentSpec:
    return ComponentSpec(
        "feat_encoder", STATELESS, "VoxCPM 1.5 LocEnc: one latent patch to its embedding (then enc_to_lm_proj)",
        (TensorSpec("feat", (1, 1, s.patch_size, s.feat_dim),
                    description=f"one patch: {s.patch_size} latent frames of {s.feat_dim}, frame-major"),),
        (TensorSpec("embedding", (1, 1, s.encoder_hidden),
                    description="the patch's LocEnc CLS output; apply enc_to_lm_proj (constants/) to feed the LM"),),
        primary_output="embedding", torch_module="FeatEncoder", parts=("feat_encoder",),
        reference="feat_encode", cases="feat_encoder_cases")


def _locdit(s: ModelSizes) -> ComponentSpec:
    patch = (CFG_BRANCHES, s.feat_dim, s.patch_size)
    return ComponentSpec(
        "locdit_step", STATELESS, "VoxCPM 1.5 LocDiT: one velocity estimate of the flow-matching sampler (CFG batch)",
        (TensorSpec("x", patch, description="the current sample, the same in both rows [2, feat_dim, patch]"),
         TensorSpec("mu", (CFG_BRANCHES, s.dit_hidden),
                    description="conditioning lm_to_dit_proj(lm) + res_to_dit_proj(res); row 0 as is, row 1 zeros"),
         TensorSpec("t", (CFG_BRANCHES,), description="the flow time of x in [0, 1], the same in both rows"),
         TensorSpec("cond", patch, description="the previous patch (the prompt's last, or zeros), both rows"),
         TensorSpec("dt", (CFG_BRANCHES,), description="zeros, as voxcpm feeds it")),
        (TensorSpec("velocity", patch, description="row 0 conditional, row 1 unconditional velocity; combine with "
                                                   "CFG-Zero* on the host"),),
        primary_output="velocity", torch_module="LocDiTStep", parts=("feat_decoder",),
        # sin/cos(1000 t) lose their phase in fp16: the timestep embedding is computed in fp32 (TRIALS.md)
        fp32_inputs=frozenset({"t", "dt"}), reference="locdit", cases="locdit_cases",
        notes="batch 2 = conditional and unconditional (CFG) branch")


def _lm_step(name: str, s: ModelSizes, layers: int, max_context: int, heads: list[TensorSpec],
             description: str, module: str, parts: tuple[str, ...]) -> ComponentSpec:
    caches = CacheSpec(layers, (1, s.kv_heads, max_context, s.head_dim))
    inputs = [TensorSpec("embed", (1, s.lm_hidden), description="the input embedding of this position"),
              TensorSpec("position", (1,), "int32", description=f"the position written, 0..{max_context - 1}"),
              *caches.tensors("input")]
    return ComponentSpec(name, LM_STEP, description, tuple(inputs), tuple(heads + caches.tensors("output")),
                         primary_output=heads[0].name, torch_module=module, parts=parts, caches=caches,
                         embed_input="embed", position_input="position",
                         notes=f"one token at `position` (0..{max_context - 1}); caches in and out")


def _residual_lm(s: ModelSizes, max_context: int) -> ComponentSpec:
    heads = [TensorSpec("res_hidden", (1, s.lm_hidden), description="the residual LM's hidden state at this position")]
    return _lm_step("residual_lm_step", s, s.residual_layers, max_context, heads,
                    "VoxCPM 1.5 residual LM: one position, KV caches in and out", "ResidualLMStep",
                    ("residual_lm",))


def _base_lm(s: ModelSizes, max_context: int) -> ComponentSpec:
    heads = [TensorSpec("lm_hidden", (1, s.lm_hidden), description="the base LM's hidden state at this position"),
             TensorSpec("lm_hidden_fsq", (1, s.lm_hidden),
                        description="lm_hidden through FSQ (use it at audio positions, lm_hidden at text ones)"),
             TensorSpec("stop_logit", (1, 2), description="stop head on lm_hidden_fsq: argmax 1 = stop after "
                                                          "this patch")]
    return _lm_step("base_lm_step", s, s.lm_layers, max_context, heads,
                    "VoxCPM 1.5 base LM: one position, KV caches in and out; FSQ and stop head", "BaseLMStep",
                    ("base_lm", "fsq_layer", "stop_proj", "stop_head"))


def declare(config: "dict | ModelSizes", max_context: int = MAX_CONTEXT, float_dtype: str = "fp16") -> Layout:
    """The published layout for the checkpoint whose config.json is `config` (or for these sizes).

    `float_dtype="fp32"` describes the FP32 reference build (`--precision fp32`): every float input
    and output is fp32; names, shapes and ranges are the published (fp16) interface's."""
    s = config if isinstance(config, ModelSizes) else model_sizes(config)
    # the streaming decoder right after the whole one: both read the VAE decoder, freed after them
    components = (_vae_encoder(s), _vae_decoder(s), stream_decoder(s, stateful=False), _feat_encoder(s), _locdit(s),
                  _residual_lm(s, max_context), _base_lm(s, max_context))
    assert tuple(c.name for c in components if c.name not in OPTIONAL) == COMPONENTS
    return Layout(NAME, "the published VoxCPM 1.5 Core ML models: six packages, KV caches as model I/O",
                  components, max_context=max_context, optional=OPTIONAL).with_float_dtype(float_dtype)

"""The fast layout: KV caches as Core ML states, two model calls per generated patch, a chunked prefill.

mlprogram for macOS 15 / iOS 18 (states, the fused scaled_dot_product_attention op, multifunction
packages) with FP16 compute and fp16 I/O. Four packages, and an optional fifth:

    lm         one package, two functions sharing its weights and its states (the KV caches of both LMs):
               `prefill` fills the states from a chunk of positions, `step` feeds one generated patch
    diffusion  voxcpm's whole LocDiT sampler (sway-scheduled Euler, CFG-Zero*) in one call
    audio_vae_encoder, audio_vae_decoder   as in the published layout
    audio_vae_stream_decoder   optional (`convert --stream-decoder`): one patch per call, every causal
               convolution's context kept in Core ML states (`contract.streaming`, stateful form)

Per generated patch the host calls `diffusion` (noise, mu, previous patch, cfg -> patch) and
`lm.step` (patch, position -> mu, stop logit): ~8 KB cross the boundary instead of ~17 MB of caches.
The context (default 2048 positions, capped at the model's own limit: voxcpm's `max_length`, within
the LongRoPE tables), the prefill chunk and the diffusion's timesteps are chosen at conversion and
recorded in every package (`contract.layout.option_metadata`).
"""
from __future__ import annotations

from dataclasses import replace

from .components import LM_STATES, STATELESS, CacheSpec, ComponentSpec, TensorSpec
from .defaults import CFG_ZERO_INIT_FRACTION, FAST_CONTEXT, INFERENCE_TIMESTEPS, PREFILL_CHUNK, SWAY_SAMPLING_COEF
from .layout import SPEC_VERSIONS, Layout
from .published import vae_decoder, vae_encoder
from .sizes import ModelSizes, model_sizes
from .streaming import NAME as STREAM_DECODER, stream_decoder

NAME = "fast"
COMPONENTS = ("audio_vae_encoder", "audio_vae_decoder", "diffusion", "lm")
OPTIONAL = (STREAM_DECODER,)         # converted on request (--stream-decoder): its contexts as states
LM_FUNCTIONS = ("step", "prefill")   # the first is the package's default function
TARGET = "macOS15"   # states, the fused scaled_dot_product_attention op, multifunction packages
# The published layout runs these projections on the host in fp32 (OUT/constants), so its int8 never
# quantizes them; the lm package holds them, and its int8 keeps them fp16: the same weights quantized
# as the published int8 (quantizing them too made mu 9 % and the stop logit 25 % further from torch on
# the tiny fixture, TRIALS.md "fast layout int8")
HOST_PROJECTIONS = ("enc_to_lm_proj", "lm_to_dit_proj", "res_to_dit_proj")
LM_PARTS = ("feat_encoder", "enc_to_lm_proj", "base_lm", "fsq_layer", "residual_lm", "lm_to_dit_proj",
            "res_to_dit_proj", "stop_proj", "stop_head")


def _diffusion(s: ModelSizes, timesteps: int) -> ComponentSpec:
    patch = (1, s.feat_dim, s.patch_size)
    return ComponentSpec(
        "diffusion", STATELESS,
        f"VoxCPM 1.5 LocDiT sampler in one call: noise to the next patch ({timesteps} sway-scheduled Euler steps, "
        f"CFG-Zero*)",
        (TensorSpec("noise", patch, description="standard normal noise [1, feat_dim, patch]: the sample at t = 1"),
         TensorSpec("mu", (1, s.dit_hidden), description="the conditioning: the lm package's `mu` output"),
         TensorSpec("cond", patch, description="the previous patch [1, feat_dim, patch] (the prompt's last, or "
                                               "zeros)"),
         TensorSpec("cfg", (1,), description="classifier-free guidance scale (voxcpm's default 2.0)")),
        (TensorSpec("patch", patch, description="the next latent patch [1, feat_dim, patch]"),),
        primary_output="patch", torch_module="FusedDiffusion", parts=("feat_decoder",),
        reference="diffusion", cases="diffusion_cases",
        options={"timesteps": timesteps, "sway_coef": SWAY_SAMPLING_COEF, "zero_fraction": CFG_ZERO_INIT_FRACTION},
        notes=f"{timesteps} timesteps fixed at conversion; the first step's velocity is zero (CFG-Zero*), "
              f"so {timesteps - 1} LocDiT passes at batch 2 (conditional, unconditional)")


def _heads(s: ModelSizes, hidden_shape: tuple[int, ...], rows: str) -> tuple[TensorSpec, ...]:
    return (TensorSpec("mu", (1, s.dit_hidden),
                       description="the next patch's diffusion conditioning: lm_to_dit_proj(lm hidden) + "
                                   "res_to_dit_proj(residual hidden); feed it to `diffusion`"),
            TensorSpec("stop_logit", (1, 2), description="stop head on the LM hidden (FSQ'd at audio positions): "
                                                         "argmax 1 = stop after the patch sampled from `mu`"),
            TensorSpec("lm_hidden", hidden_shape,
                       description=f"the base LM hidden the residual LM read, {rows} (FSQ'd at audio positions): "
                                   f"not needed to generate; validation reads which FSQ codes were taken"))


def _prefill(s: ModelSizes, chunk: int, max_context: int, states) -> ComponentSpec:
    return ComponentSpec(
        "prefill", LM_STATES,
        f"fill the states from {chunk} consecutive positions (text, audio-start, prompt patches)",
        (TensorSpec("text_embeds", (1, chunk, s.lm_hidden),
                    description="row i: the text embedding of position start + i (embed_tokens x "
                                "text_embedding_scale) at text positions, zeros elsewhere"),
         TensorSpec("feats", (1, chunk, s.patch_size, s.feat_dim),
                    description="row i: the prompt patch of position start + i at audio positions, zeros elsewhere"),
         TensorSpec("audio_mask", (1, chunk), description="1 at audio positions (prompt patches), 0 at text and "
                                                          "padding rows"),
         TensorSpec("start", (1,), "int32", description=f"the position of row 0; start + {chunk} <= {max_context}"),
         TensorSpec("last", (1,), "int32", description="the row whose conditioning is returned (the last real "
                                                        "row; rows after it are padding, overwritten later)")),
        _heads(s, (1, chunk, s.lm_hidden), "every row"), primary_output="mu", torch_module="LMPrefill", parts=LM_PARTS,
        state_caches=states,
        position_input="start", options={"max_context": max_context, "chunk": chunk},
        notes=f"{chunk} positions per call; FSQ and the audio embedding at audio positions only, as voxcpm's prefill")


def _step(s: ModelSizes, max_context: int, states) -> ComponentSpec:
    return ComponentSpec(
        "step", LM_STATES,
        "one generated patch: feature encoder, enc_to_lm_proj, base LM, FSQ, residual LM, DiT projections",
        (TensorSpec("feat", (1, 1, s.patch_size, s.feat_dim),
                    description=f"the patch just generated, [1, 1, patch, feat_dim] frame-major (the diffusion "
                                f"output transposed)"),
         TensorSpec("position", (1,), "int32", description=f"the position it takes, 0..{max_context - 1}")),
        _heads(s, (1, s.lm_hidden), "this position"), primary_output="mu", torch_module="LMStep", parts=LM_PARTS,
        state_caches=states,
        embed_input="feat", position_input="position", options={"max_context": max_context},
        notes="one call per generated patch")


def _lm(s: ModelSizes, max_context: int, chunk: int) -> ComponentSpec:
    shape = (1, s.kv_heads, max_context, s.head_dim)
    states = (CacheSpec(s.lm_layers, shape, input_prefix="base_", lm="base_lm"),
              CacheSpec(s.residual_layers, shape, input_prefix="residual_", lm="residual_lm"))
    functions = {"prefill": _prefill(s, chunk, max_context, states), "step": _step(s, max_context, states)}
    return ComponentSpec(
        "lm", LM_STATES, f"VoxCPM 1.5 base and residual LMs, their KV caches as states ({max_context} positions): "
                         f"prefill and step",
        (), (), primary_output="mu", torch_module="", parts=LM_PARTS, state_caches=states,
        functions=tuple(functions[name] for name in LM_FUNCTIONS), int8_fp16_parts=HOST_PROJECTIONS,
        notes=f"functions {', '.join(LM_FUNCTIONS)} share the weights and the {2 * (s.lm_layers + s.residual_layers)} "
              f"states; make one state and pass it to both")


def _for_macos15(spec: ComponentSpec) -> ComponentSpec:
    """Every package of the layout, each function of a multifunction one too, targets macOS 15."""
    return replace(spec, deployment_target=TARGET, functions=tuple(_for_macos15(f) for f in spec.functions))


def declare(config: "dict | ModelSizes", max_context: int | None = None, float_dtype: str = "fp16",
            prefill_chunk: int = PREFILL_CHUNK, timesteps: int = INFERENCE_TIMESTEPS) -> Layout:
    """The fast layout for the checkpoint whose config.json is `config` (or for these sizes).

    `max_context` defaults to FAST_CONTEXT capped at what the model allows (`ModelSizes.max_context`:
    voxcpm's cache length, within the LongRoPE tables); more than that is a ValueError."""
    s = config if isinstance(config, ModelSizes) else model_sizes(config)
    limit = s.max_context
    max_context = min(FAST_CONTEXT, limit) if max_context is None else int(max_context)
    if not 1 <= max_context <= limit:
        raise ValueError(f"a context of {max_context} positions is not what the model allows (1..{limit}: voxcpm's "
                         f"max_length {s.max_length or 'unknown'}, RoPE tables of {s.max_position_embeddings}): "
                         f"choose a context in 1..{limit}")
    if not 1 <= prefill_chunk <= max_context:
        raise ValueError(f"a prefill chunk of {prefill_chunk} positions does not fit the context of {max_context}: "
                         f"choose 1..{max_context}")
    if timesteps < 1:
        raise ValueError(f"{timesteps} diffusion timesteps: need at least 1")
    # the streaming decoder right after the whole one: both read the VAE decoder, freed after them
    components = tuple(_for_macos15(c) for c in (vae_encoder(s), vae_decoder(s), stream_decoder(s, stateful=True),
                                                 _diffusion(s, timesteps), _lm(s, max_context, prefill_chunk)))
    assert tuple(c.name for c in components if c.name not in OPTIONAL) == COMPONENTS
    return Layout(NAME, "VoxCPM 1.5 for Core ML states: an lm package (prefill, step) and a fused diffusion, "
                        "two calls per generated patch", components, max_context=max_context,
                  deployment_target=TARGET, spec_version=SPEC_VERSIONS[TARGET],
                  options={"max_context": max_context, "prefill_chunk": prefill_chunk, "timesteps": timesteps},
                  optional=OPTIONAL).with_float_dtype(float_dtype)


def prefill_calls(total: int, chunk: int, context: int, rows: int | None = None) -> list[tuple[int, int]]:
    """How `prefill` covers positions 0..total-1: (start, real rows) per call, `rows` new positions per call
    (default: the whole chunk). A call always spans start..start+chunk-1, so one that would run past the
    context starts earlier and sends the positions before again (recomputed, written with the same
    values); rows after the real ones are padding."""
    rows = chunk if rows is None else rows
    if not 1 <= rows <= chunk <= context or total > context:
        raise ValueError(f"cannot prefill {total} positions in calls of {rows} new rows (chunk {chunk}, context "
                         f"{context})")
    calls, done = [], 0
    while done < total:
        start = min(done, context - chunk)
        end = min(done + rows, total)
        calls.append((start, end - start))
        done = end
    return calls

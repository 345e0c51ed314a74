"""The streaming VAE decoder, declared once in its two forms: one generated patch per call, every causal
convolution's left context carried to the next call, so that the chunks equal one whole-decoder call.

    explicit (macOS 14): inputs `latent` + `ctx0..ctxN`, outputs `audio` + `out_ctx0..out_ctxN`; the
        app feeds each call the contexts the previous call returned (zeros for an utterance's first);
    stateful (macOS 15 / iOS 18): input `latent`, output `audio`, Core ML states `ctx0..ctxN` (one
        MLState per utterance; a new state is all zeros).

The published layout lists the explicit form as an optional component (`python -m convert
--stream-decoder`); a macOS 15 layout lists `stream_decoder(sizes, stateful=True)`. The contexts
follow voxcpm's CausalDecoder (modules/audiovae/audio_vae.py), in the order it runs its
convolutions: the first 7-tap convolution; per upsampling block, its transposed convolution (one
input frame) and three residual 7-tap convolutions at dilations 1, 3, 9 (6, 18, 54 frames); the last
7-tap convolution. For VoxCPM 1.5 (decoder width 2048, rates 7, 7, 6, 3, 2): 22 contexts, 159 488
values (312 KiB in fp16).
"""
from __future__ import annotations

from .components import STREAM_STEP, CarriedSpec, ComponentSpec, TensorSpec
from .sizes import VAE_KERNEL, VAE_RESIDUAL_DILATIONS, ModelSizes

NAME = "audio_vae_stream_decoder"


def context_name(index: int) -> str:
    """The input (and state, and torch buffer) name of the index-th carried context."""
    return f"ctx{index}"


def decoder_contexts(s: ModelSizes) -> list[tuple[int, int, str]]:
    """(channels, frames, which convolution) of every left context, in the order the decoder runs them."""
    reach = VAE_KERNEL - 1
    contexts = [(s.latent_dim, reach, "the first 7-tap convolution (on the latent)")]
    for i, rate in enumerate(s.decoder_rates):
        width = s.decoder_dim // 2 ** i
        contexts.append((width, 1, f"block {i}'s transposed convolution (x{rate})"))
        contexts += [(width // 2, reach * d, f"block {i}'s residual convolution at dilation {d}")
                     for d in VAE_RESIDUAL_DILATIONS]
    contexts.append((s.decoder_dim // 2 ** len(s.decoder_rates), reach, "the last 7-tap convolution"))
    return contexts


def _contexts(s: ModelSizes, stateful: bool) -> tuple[TensorSpec, ...]:
    kept = "kept in the model between calls" if stateful else "returned by the previous call as out_<name>"
    return tuple(TensorSpec(context_name(i), (1, channels, frames),
                            description=f"left context of {what}: the last {frames} frames of its input before "
                                        f"this patch, {kept}; zeros before an utterance's first patch")
                 for i, (channels, frames, what) in enumerate(decoder_contexts(s)))


def stream_decoder(s: ModelSizes, stateful: bool = False) -> ComponentSpec:
    """The streaming decoder of these sizes: contexts as inputs/outputs (macOS 14) or as states (macOS 15)."""
    contexts = _contexts(s, stateful)
    carried = CarriedSpec(contexts, stateful=stateful)
    latent = TensorSpec("latent", (1, s.latent_dim, s.patch_size),
                        description=f"the {s.patch_size} latent frames of the next patch, in order (a voice prompt's "
                                    f"context patches first, their audio dropped)")
    audio = TensorSpec("audio", (1, 1, s.patch_samples),
                       description=f"this patch's {s.patch_samples} samples at {s.sample_rate} Hz in [-1, 1], "
                                   f"equal to the whole decoder's for the same frames")
    outputs = [audio]
    if not stateful:
        outputs += [TensorSpec(carried.output_for(t.name), t.shape, t.dtype,
                               description=t.description.split(":")[0] + " after this patch: feed it as "
                                                                         f"{t.name} to the next call")
                    for t in contexts]
    form = "Core ML states (macOS 15)" if stateful else "contexts in and out (macOS 14)"
    return ComponentSpec(
        NAME, STREAM_STEP, f"VoxCPM 1.5 AudioVAE decoder, streaming: one patch per call, {form}",
        (latent,) if stateful else (latent, *contexts), tuple(outputs), primary_output="audio",
        torch_module="StreamingAudioVAEDecoder", parts=("audio_vae.decoder",), carried=carried,
        cases="stream_decoder_cases", deployment_target="macOS15" if stateful else "macOS14",
        notes=f"one patch ({s.patch_size} latent frames) -> {s.patch_samples} samples; {len(contexts)} causal "
              f"contexts carried ({carried.elements()} values)")

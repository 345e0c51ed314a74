"""Validate the stream steps (the streaming VAE decoder) call by call, every carried context after every call.

A case is a latent sequence of N >= 50 patches (the speech clip's latents, and random latents of
their scale). The converted package decodes it one patch per call, fed only what it carried itself
(its own context outputs, or its Core ML state), so the first n calls are the stream of an
n-patch utterance, for every n up to N. After every call:
- its audio is compared with voxcpm's whole decoder run once on the whole sequence (the same
  samples: the decoder is causal);
- every context it carries is compared with what voxcpm's own convolutions saw there — the last
  frames of each one's input up to the end of that patch, captured with forward hooks on the
  unpatched whole decoder (so the reference owes nothing to `patches.stream_decoder`): all of
  them together (gated) and the worst single one (reported: a one-frame context is eight to a
  few hundred values, noisy in fp16).
A context that is not carried, or carried wrong, fails at the first call that reads it. Reported
beside the whole decoder: the whole-decoder package on the same latents, and every call's audio
joined against the one whole call.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from runtime.metrics import compare

from .records import Recorder


@torch.no_grad()
def whole_decoder_contexts(model, latent: np.ndarray, frames: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(audio [samples], the input of every causal convolution [channels, length]) of one whole-decoder call
    of the unpatched model on `latent` [1, D, T], in the order the streaming decoder carries them."""
    from patches.stream_decoder import causal_convolutions

    decoder = model.audio_vae.decoder
    convolutions = causal_convolutions(decoder)
    assert len(convolutions) == len(frames), (len(convolutions), len(frames))
    seen: list = [None] * len(convolutions)
    hooks = [conv.register_forward_pre_hook(lambda module, args, i=i: seen.__setitem__(i, args[0][0].numpy().copy()))
             for i, conv in enumerate(convolutions)]
    try:
        audio = decoder(torch.from_numpy(np.ascontiguousarray(latent, np.float32)))[0, 0].numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return audio, seen


def expected_context(seen: np.ndarray, calls_done: int, calls_total: int, frames: int) -> np.ndarray:
    """The last `frames` of one convolution's input up to the end of call `calls_done` - 1 (zeros before it)."""
    per_call = seen.shape[-1] // calls_total
    end = calls_done * per_call
    window = seen[:, max(0, end - frames):end]
    return np.pad(window, ((0, 0), (frames - window.shape[-1], 0)))[None]


class _Package:
    """One stream-step package, decoding call by call and showing what it carries."""

    def __init__(self, spec, model):
        self.spec, self.model, self.carried = spec, model, spec.carried
        self.state = model.new_state() if self.carried.stateful else None
        self.contexts = {} if self.carried.stateful else {t.name: np.zeros(t.shape, np.float32)
                                                          for t in self.carried.tensors}

    def call(self, latent: np.ndarray) -> tuple[np.ndarray, dict]:
        inputs = {self.spec.inputs[0].name: latent, **self.contexts}
        out = self.model.predict(inputs) if self.state is None else self.model.predict(inputs, state=self.state)
        if self.carried.stateful:
            carried = {name: np.asarray(self.state.read(name), np.float32) for name in self.carried.names()}
        else:
            carried = {name: out[self.carried.output_for(name)] for name in self.carried.names()}
            self.contexts = carried
        return out[self.spec.primary_output].reshape(-1), carried


def run_stream_case(spec, label: str, latent: np.ndarray, model, precision: str, whole: tuple, recorder: Recorder,
                    bar=None) -> np.ndarray:
    """Decode `latent` [1, D, N * patch] call by call through `model`; record audio and contexts per call."""
    audio_ref, seen = whole
    patch = spec.inputs[0].shape[-1]
    calls = latent.shape[-1] // patch
    samples = audio_ref.size // calls
    package, pieces = _Package(spec, model), []
    for n in range(calls):
        audio, carried = package.call(latent[..., n * patch:(n + 1) * patch])
        pieces.append(audio)
        detail = f"call {n + 1} of {calls}"
        recorder.add(spec.name, precision, "audio", label, audio, audio_ref[n * samples:(n + 1) * samples],
                     detail=detail)
        expected = [expected_context(seen[i], n + 1, calls, t.shape[-1]) for i, t in enumerate(spec.carried.tensors)]
        actual = [carried[t.name] for t in spec.carried.tensors]
        recorder.add(spec.name, precision, "contexts (all, after every call)", label,
                     np.concatenate([a.ravel() for a in actual]), np.concatenate([e.ravel() for e in expected]),
                     detail=detail)
        # the worst single context: small ones (1 frame of a transposed convolution) are noisy in fp16
        metrics = [compare(a, e) for a, e in zip(actual, expected)]
        worst = int(np.argmax([m["rel_l2"] - m["corr"] for m in metrics]))
        recorder.add(spec.name, precision, "contexts, worst single one (not gated)", label, None, None,
                     gated=False, detail=f"{detail}, {spec.carried.tensors[worst].name}", metrics=metrics[worst])
        if bar is not None:
            bar.update()
    joined = np.concatenate(pieces)
    recorder.add(spec.name, precision, "audio, all calls joined vs one whole call", label, joined, audio_ref)
    return joined


def run_streams(spec, cases, ref_model, models: dict, recorder: Recorder, whole_spec=None, whole_models=None,
                progress: bool = True) -> None:
    """Every case through each precision's package; beside it the whole-decoder package (`whole_spec`,
    `whole_models` by precision) on the same latents."""
    frames = [t.shape[-1] for t in spec.carried.tensors]
    latent_name = spec.inputs[0].name
    calls = sum(c.arrays[latent_name].shape[-1] // spec.inputs[0].shape[-1] for c in cases)
    bar = tqdm(total=calls * len(models), desc=f"{spec.name:<18}", unit="call", disable=not progress, leave=True)
    for case in cases:
        latent = case.arrays[latent_name]
        whole = whole_decoder_contexts(ref_model, latent, frames)
        for precision, model in models.items():
            run_stream_case(spec, case.label, latent, model, precision, whole, recorder, bar)
            if precision in (whole_models or {}):
                out = whole_models[precision].predict({whole_spec.inputs[0].name: latent})
                recorder.add(whole_spec.name, precision, f"audio (one call on {spec.name}'s latents)", case.label,
                             out[whole_spec.primary_output].reshape(-1), whole[0])
    bar.close()

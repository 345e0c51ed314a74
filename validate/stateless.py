"""Validate the stateless components (VAE encoder/decoder, feat_encoder, locdit_step, diffusion) case by case."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .cases import as_declared
from .records import Recorder


def reference_output(ref, spec, arrays: dict) -> np.ndarray:
    """The torch reference's output for the component's inputs: the reference method its declaration names,
    fed the inputs in declaration order (and the declaration's options: the diffusion's timesteps)."""
    return getattr(ref, spec.reference)(*(arrays[t.name] for t in spec.inputs), **spec.options)


def run_cases(spec, cases, ref, models: dict, recorder: Recorder, progress: bool = True) -> None:
    """Every case through torch and through each precision's converted package.

    Torch gets the inputs as the package sees them (fp16-declared inputs rounded), so the gated
    rows measure the conversion; what the fp16 inputs themselves cost (the published interface
    declares every float input fp16) is reported beside them, not gated.
    """
    component, name = spec.name, spec.primary_output
    bar = tqdm(total=len(cases) * len(models), desc=f"{component:<18}", unit="run", disable=not progress,
               leave=True)
    for case in cases:
        expected = reference_output(ref, spec, as_declared(case.arrays, spec))
        exact = reference_output(ref, spec, case.arrays)
        # the same for every precision: listed once, under the first
        recorder.add(component, next(iter(models)), f"{name} (torch: fp16 inputs vs exact, not gated)", case.label,
                     expected, exact, gated=False)
        for precision, model in models.items():
            actual = model.predict(case.arrays)[name]
            record = recorder.add(component, precision, name, case.label, actual.reshape(expected.shape), expected)
            recorder.witness(component, precision, case.arrays, [record])
            bar.update()
    bar.close()


def vae_round_trip(speech_window: np.ndarray, ref, encoders: dict, decoders: dict, recorder: Recorder) -> dict:
    """Speech -> encoder -> decoder, converted end to end vs torch end to end (reported, not gated).

    Returns the waveforms for the plots: {"original", "torch", precision: audio}.
    """
    torch_audio = ref.vae_decode(ref.vae_encode(speech_window))
    waves = {"original": speech_window.ravel(), "torch": torch_audio.ravel()}
    for precision in sorted(set(encoders) & set(decoders)):
        latent = encoders[precision].predict({"audio": speech_window})["latent"]
        audio = decoders[precision].predict({"latent": latent.astype(np.float32)})["audio"].reshape(torch_audio.shape)
        recorder.add("audio_vae_decoder", precision, "audio (round trip, not gated)", "speech encode+decode",
                     audio, torch_audio, gated=False)
        waves[precision] = audio.ravel()
    return waves


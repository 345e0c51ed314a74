"""Validate the stateless components (VAE encoder/decoder, feat_encoder, locdit_step, diffusion) case by case."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .cases import Case, as_declared
from .records import Recorder


def reference_output(ref, spec, arrays: dict) -> np.ndarray:
    """The torch reference's output for the component's inputs: the reference method its declaration names,
    fed the inputs in declaration order (and the declaration's options: the diffusion's timesteps)."""
    return getattr(ref, spec.reference)(*(arrays[t.name] for t in spec.inputs), **spec.options)


@dataclass
class Referenced:
    """A case with torch's outputs: on the inputs as the package sees them, and on the exact inputs."""

    case: Case
    expected: np.ndarray
    exact: np.ndarray


def reference_cases(spec, cases, ref) -> list[Referenced]:
    """Every case through torch, before any package runs (the reference model is freed before they do).

    Torch gets the inputs as the package sees them (fp16-declared inputs rounded), so the gated
    rows measure the conversion; what the fp16 inputs themselves cost (the published interface
    declares every float input fp16) is reported beside them, not gated.
    """
    return [Referenced(case, reference_output(ref, spec, as_declared(case.arrays, spec)),
                       reference_output(ref, spec, case.arrays)) for case in cases]


def run_cases(spec, referenced: list[Referenced], models: dict, recorder: Recorder, progress: bool = True) -> None:
    """Every referenced case through each precision's converted package, compared with torch's outputs."""
    component, name = spec.name, spec.primary_output
    bar = tqdm(total=len(referenced) * len(models), desc=f"{component:<18}", unit="run", disable=not progress,
               leave=True)
    for item in referenced:
        # the same for every precision: listed once, under the first
        recorder.add(component, next(iter(models)), f"{name} (torch: fp16 inputs vs exact, not gated)",
                     item.case.label, item.expected, item.exact, gated=False)
        for precision, model in models.items():
            actual = model.predict(item.case.arrays)[name]
            record = recorder.add(component, precision, name, item.case.label, actual.reshape(item.expected.shape),
                                  item.expected)
            recorder.witness(component, precision, item.case.arrays, [record])
            bar.update()
    bar.close()


def round_trip_reference(speech_window: np.ndarray, ref) -> np.ndarray:
    """Speech -> torch encoder -> torch decoder."""
    return ref.vae_decode(ref.vae_encode(speech_window))


def vae_round_trip(speech_window: np.ndarray, torch_audio: np.ndarray, encoders: dict, decoders: dict,
                   recorder: Recorder) -> dict:
    """Speech -> encoder -> decoder, converted end to end vs torch end to end (reported, not gated).

    Returns the waveforms for the plots: {"original", "torch", precision: audio}.
    """
    waves = {"original": speech_window.ravel(), "torch": torch_audio.ravel()}
    for precision in sorted(set(encoders) & set(decoders)):
        latent = encoders[precision].predict({"audio": speech_window})["latent"]
        audio = decoders[precision].predict({"latent": latent.astype(np.float32)})["audio"].reshape(torch_audio.shape)
        recorder.add("audio_vae_decoder", precision, "audio (round trip, not gated)", "speech encode+decode",
                     audio, torch_audio, gated=False)
        waves[precision] = audio.ravel()
    return waves

"""The inputs every component is validated on: real speech, silence, noise, real and random latents.

Everything is deterministic (fixed seeds) so two runs compare the same things. Latents and
patches that stand for "real" data come from the *torch* VAE encoder on the speech clip, so a
component's inputs never depend on another converted component. A stateless component's
declaration names its builder here (`ComponentSpec.cases`); every builder takes the shared
`CaseContext` and the component's declaration.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.defaults import AUDIO_START_TOKEN, VAE_ENCODER_SECONDS

ROOT = Path(__file__).resolve().parents[1]
SPEECH_CLIP = Path(__file__).resolve().parent / "data" / "speech_en_44k.wav"   # validate/data/README.md
SPEECH_CLIP_TEXT = "Hello, this is a test of the voice cloning system."
FALLBACK_CLIP = ROOT / "build" / "validate" / "speech_en_44k.wav"
SPEECH_SENTENCE = "Speech synthesis turns written text into natural sounding audio."
SHORT_TEXT = SPEECH_CLIP_TEXT
LONG_TEXT = " ".join([
    "The quick brown fox jumps over the lazy dog.",
    "We convert the model to Core ML and prove that the result is right.",
    "Numbers like one two three four five six seven eight nine ten.",
    "Speech synthesis turns written text into natural sounding audio.",
] * 12)
LOCDIT_TIMES = (1.0, 0.956, 0.707, 0.351, 0.188)  # points of the sway schedule (10 steps, coef 1)
DECODER_LENGTHS = (4, 37, 125, 500)
STREAM_PATCHES = 64               # calls per streaming-decoder case: every stream length 1..64 is checked
SEED = 1234


@dataclass
class Case:
    """One named input for one component: arrays by input name (numpy, float32/int32)."""

    label: str
    arrays: dict


# ----------------------------------------------------------------------------- speech
def _espeak(path: Path, sample_rate: int) -> bool:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return False
    import soundfile as sf

    from contract.audio import resample_poly

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(wav), SPEECH_SENTENCE],
                              capture_output=True, timeout=60)
        if done.returncode != 0 or not wav.is_file():
            return False
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = resample_poly(audio.mean(axis=1), sr, sample_rate)
    audio = 0.7 * audio / max(1e-6, float(np.abs(audio).max()))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")
    return True


def _speech_like(sample_rate: int, seconds: float = 3.0) -> np.ndarray:
    """Voiced syllables: a gliding harmonic source under moving formant-like envelopes."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k * (1 + np.cos(2 * np.pi * (0.9 + 0.3 * k) * t)) for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    audio = voice * syllables
    return (0.6 * audio / np.abs(audio).max()).astype(np.float32)


def speech_clip(sample_rate: int) -> tuple[np.ndarray, str]:
    """(mono float32 audio at `sample_rate`, where it came from)."""
    from contract.audio import read_audio, resample_poly

    for path in (SPEECH_CLIP, FALLBACK_CLIP):
        if path.is_file():
            audio, sr = read_audio(path)
            return resample_poly(audio.mean(axis=0), sr, sample_rate), str(path.relative_to(ROOT))
    if _espeak(FALLBACK_CLIP, sample_rate):
        audio, sr = read_audio(FALLBACK_CLIP)
        return resample_poly(audio.mean(axis=0), sr, sample_rate), f"{FALLBACK_CLIP.relative_to(ROOT)} (espeak-ng, temporary)"
    return _speech_like(sample_rate), "synthetic speech-like signal (no clip, no espeak-ng)"


def in_window(audio: np.ndarray, window: int) -> np.ndarray:
    """[1, 1, window]: the clip at the end of the window, zero-padded on the left (cut on the left)."""
    audio = np.asarray(audio, np.float32)[-window:]
    out = np.zeros((1, 1, window), np.float32)
    out[0, 0, window - audio.size:] = audio
    return out


# ----------------------------------------------------------------------------- per component
@dataclass
class CaseContext:
    """What the builders share: the speech clip and what the torch reference made of it."""

    ref: object                    # validate.references.TorchReference
    speech: np.ndarray             # the clip, mono at the model rate
    prompt: np.ndarray             # its latent patches [n, patch, feat_dim] (torch VAE encoder)
    prompt_embeds: np.ndarray      # their LM-space embeddings [n, H]
    decoder_lengths: tuple[int, ...]
    stream_patches: int = STREAM_PATCHES   # calls per streaming-decoder case


def vae_encoder_cases(ctx: CaseContext, spec) -> list[Case]:
    window = spec.inputs[0].shape[-1]
    name = spec.inputs[0].name
    rng = np.random.default_rng(SEED)
    return [Case("speech", {name: in_window(ctx.speech, window)}),
            Case("silence", {name: np.zeros((1, 1, window), np.float32)}),
            Case("noise", {name: (0.1 * rng.standard_normal((1, 1, window))).astype(np.float32)})]


def vae_decoder_cases(ctx: CaseContext, spec) -> list[Case]:
    """Speech latents (the last L frames, where the speech is) and random ones of the same scale."""
    latent = spec.inputs[0]
    window = VAE_ENCODER_SECONDS * ctx.ref.sample_rate   # the latents of the clip as the encoder sees it
    speech_latent = ctx.ref.vae_encode(in_window(ctx.speech, window))
    rng = np.random.default_rng(SEED + 1)
    lo, hi = latent.flexible[2]
    scale = float(speech_latent.std()) or 1.0
    cases = []
    for length in ctx.decoder_lengths:
        if not lo <= length <= hi:
            continue
        if length <= speech_latent.shape[-1]:
            cases.append(Case(f"speech latent T={length}", {latent.name: speech_latent[..., -length:].copy()}))
        random = (scale * rng.standard_normal((1, speech_latent.shape[1], length))).astype(np.float32)
        cases.append(Case(f"random latent T={length}", {latent.name: random}))
    return cases


def stream_decoder_cases(ctx: CaseContext, spec) -> list[Case]:
    """Latent sequences of `ctx.stream_patches` patches for a streaming decoder, decoded one patch per call:
    the speech clip's patches back and forth, and random latents of their scale."""
    name, count = spec.inputs[0].name, ctx.stream_patches
    cycle = np.concatenate([ctx.prompt, ctx.prompt[::-1]])                   # [2n, patch, feat_dim]
    speech = np.resize(cycle, (count, *ctx.prompt.shape[1:]))
    rng = np.random.default_rng(SEED + 4)
    scale = float(ctx.prompt.std()) or 1.0
    random = scale * rng.standard_normal(speech.shape)
    as_latent = lambda patches: np.ascontiguousarray(  # noqa: E731  [n, P, D] -> [1, D, n * P]
        patches.transpose(2, 0, 1).reshape(1, patches.shape[2], -1), dtype=np.float32)
    return [Case(f"speech latents, {count} patches", {name: as_latent(speech)}),
            Case(f"random latents, {count} patches", {name: as_latent(random)})]


def pick(patches: np.ndarray, count: int) -> np.ndarray:
    """`count` patches spread over [n, P, D] (all of them if fewer)."""
    index = np.unique(np.linspace(0, len(patches) - 1, min(count, len(patches))).round().astype(int))
    return patches[index]


def feat_encoder_cases(ctx: CaseContext, spec) -> list[Case]:
    patches, name = ctx.prompt, spec.inputs[0].name
    rng = np.random.default_rng(SEED + 2)
    cases = [Case(f"speech patch {i}", {name: p[None, None].astype(np.float32)})
             for i, p in zip(range(4), pick(patches, 4))]
    scale = float(patches.std()) or 1.0
    for i in range(2):
        cases.append(Case(f"random patch {i}",
                          {name: (scale * rng.standard_normal((1, 1, *patches.shape[1:]))).astype(np.float32)}))
    return cases


def _cfg_batch(x, mu, t, cond) -> dict:
    """The generator's CFG layout: row 0 conditional, row 1 mu = 0; same x, t, cond; dt = 0."""
    return {"x": np.concatenate([x, x]).astype(np.float32),
            "mu": np.concatenate([mu, np.zeros_like(mu)]).astype(np.float32),
            "t": np.full(2, t, np.float32), "cond": np.concatenate([cond, cond]).astype(np.float32),
            "dt": np.zeros(2, np.float32)}


def prefill(ctx: CaseContext) -> tuple[np.ndarray, np.ndarray]:
    """A real prefill: the short text, the audio-start token, the prompt patches (embeddings, is_audio)."""
    tokens = ctx.ref.tokens(SHORT_TEXT) + [AUDIO_START_TOKEN]
    embeds = np.concatenate([ctx.ref.embed_tokens(tokens), ctx.prompt_embeds])
    return embeds, np.arange(len(embeds)) >= len(tokens)


def prefill_mu(ctx: CaseContext) -> np.ndarray:
    """LocDiT's mu after the real prefill."""
    return ctx.ref.prefill_mu(*prefill(ctx))


def locdit_cases(ctx: CaseContext, spec) -> list[Case]:
    """Real: cond = a speech patch, x on the noise-to-patch path at t, mu from a real prefill.
    Random: every input drawn at the scale of the real ones."""
    real_mu = prefill_mu(ctx)
    rng = np.random.default_rng(SEED + 3)
    two = pick(ctx.prompt, 2)
    cond, target = two[0].T[None], two[-1].T[None]            # [1, D, P]
    scale = float(ctx.prompt.std()) or 1.0
    cases = []
    for t in LOCDIT_TIMES:
        noise = rng.standard_normal(cond.shape).astype(np.float32)
        x = t * noise + (1 - t) * target
        cases.append(Case(f"speech t={t}", _cfg_batch(x, real_mu, t, cond)))
        random_mu = (float(real_mu.std()) or 1.0) * rng.standard_normal(real_mu.shape)
        cases.append(Case(f"random t={t}", _cfg_batch(rng.standard_normal(cond.shape),
                                                      random_mu, t, scale * rng.standard_normal(cond.shape))))
    return cases


def random_cases(ctx: CaseContext, spec, count: int = 3) -> list[Case]:
    """What a component gets until it names a builder of real data: inputs drawn at the declared
    shapes (flexible axes at their default), floats at unit scale, integers at 0."""
    rng = np.random.default_rng(SEED + 4)
    draw = lambda t: (np.zeros(t.shape, np.int32) if t.dtype == "int32"  # noqa: E731
                      else rng.standard_normal(t.shape).astype(np.float32))
    return [Case(f"random {i}", {t.name: draw(t) for t in spec.inputs}) for i in range(count)]


DIFFUSION_CFG = (2.0, 3.0, 1.0)   # voxcpm's default, stronger, none (the unconditional branch still runs)


def diffusion_cases(ctx: CaseContext, spec) -> list[Case]:
    """Real: mu from a real prefill, the previous patch a speech patch, at several cfg values. Random:
    mu and the previous patch at the scale of the real ones. Noise is standard normal, as voxcpm draws it."""
    real_mu = prefill_mu(ctx)
    rng = np.random.default_rng(SEED + 4)
    cond = pick(ctx.prompt, 1)[0].T[None]                     # [1, D, P]
    scale = float(ctx.prompt.std()) or 1.0

    def case(label, mu, previous, cfg):
        return Case(label, {"noise": rng.standard_normal(cond.shape).astype(np.float32), "mu": mu.astype(np.float32),
                            "cond": previous.astype(np.float32), "cfg": np.array([cfg], np.float32)})

    cases = [case(f"speech cfg={cfg}", real_mu, cond, cfg) for cfg in DIFFUSION_CFG]
    random_mu = (float(real_mu.std()) or 1.0) * rng.standard_normal(real_mu.shape)
    cases.append(case("random cfg=2.0", random_mu, scale * rng.standard_normal(cond.shape), 2.0))
    return cases


def cases_for(spec, ctx: CaseContext) -> list[Case]:
    """The cases of a stateless component: the builder its declaration names, else random ones."""
    builder = globals().get(spec.cases or "random_cases")
    if builder is None:
        raise KeyError(f"component {spec.name} names case builder {spec.cases!r}, which validate/cases.py lacks")
    return builder(ctx, spec)


def as_declared(arrays: dict, iface) -> dict:
    """The inputs as the package receives them: fp16-declared floats rounded through fp16,
    int32-declared ones as int32."""
    kinds = {spec.name: spec.dtype for spec in iface.inputs}
    cast = {"fp16": lambda v: v.astype(np.float16).astype(np.float32), "int32": lambda v: v.astype(np.int32)}
    return {k: cast[kinds[k]](np.asarray(v)) if kinds.get(k) in cast else v for k, v in arrays.items()}

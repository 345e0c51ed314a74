"""End to end: synthesize a few sentences with the converted packages and with the FP32 PyTorch
reference, transcribe both with Whisper (validate.asr), and judge the Core ML speech.

Rows (report.json `e2e.rows`): {text, language, prompt, precision, backend, transcript, wer_or_cer,
reference_transcript, reference_wer_or_cer, metric, gated, passed, ...}. English is judged by an
absolute WER bound, Chinese by its CER relative to the reference model's on the same sentence, the
same voice prompt and the same noise. On fixture checkpoints (random weights: the speech is noise)
the rows are reported but not gated, unless --e2e-gate says otherwise.
"""
from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.defaults import DEFAULT_LAYOUT, E2E_CER_MARGIN as DEFAULT_CER_MARGIN, E2E_MAX_WER as DEFAULT_MAX_WER

from .cases import SPEECH_CLIP as PROMPT_WAV, SPEECH_CLIP_TEXT as PROMPT_TEXT

ROOT = Path(__file__).resolve().parents[1]
SEED = 1234


@dataclass(frozen=True)
class Sentence:
    text: str
    language: str
    prompt: bool


#: small on purpose (each is generated twice and transcribed twice); no digits (scoring does not verbalise them)
SENTENCES = (
    Sentence("The quick brown fox jumps over the lazy dog.", "en", False),
    Sentence("Speech synthesis turns written text into natural sounding audio.", "en", True),
    Sentence("今天天气很好，我们一起去公园散步吧。", "zh", False),
    Sentence("欢迎使用中文语音合成模型。", "zh", True),
)


# ----------------------------------------------------------------------------- gating (pure)
def judge(metric: str, value: float, reference_value: float | None, max_wer: float = DEFAULT_MAX_WER,
          cer_margin: float = DEFAULT_CER_MARGIN) -> bool:
    """A row's verdict. WER (English): value <= max_wer. CER (Chinese): value <= the reference model's
    CER on the same sentence + cer_margin (Whisper base's Chinese CER is high even on good speech)."""
    if value is None or not np.isfinite(value):
        return False
    if metric == "wer":
        return value <= max_wer + 1e-9
    if reference_value is None or not np.isfinite(reference_value):
        reference_value = 1.0  # the reference could not be scored: judge against "all wrong"
    return value <= reference_value + cer_margin + 1e-9


def summarize(rows: list[dict], gated: bool) -> dict:
    """passed (True when not gated), the failing rows' description."""
    failed = [r for r in rows if not r["passed"]]
    passed = (not failed) if gated else True
    failure = "; ".join(f"e2e {r['precision']} {r['language']}{' +prompt' if r['prompt'] else ''} "
                        f"{r['metric'].upper()} {_rate(r['wer_or_cer'])} (reference {_rate(r['reference_wer_or_cer'])}): "
                        f"{r['text']!r} -> {r['transcript']!r}" for r in failed) if gated else ""
    return {"passed": passed, "failure": failure}


def is_fixture(checkpoint_dir) -> bool:
    return checkpoint_dir is not None and (Path(checkpoint_dir) / "fixture.json").is_file()


def e2e_precisions(precisions) -> tuple[str, ...]:
    """int8 alone when both were asked for (the shipped one; generation on the interpreter is slow)."""
    precisions = tuple(precisions)
    return ("int8",) if len(precisions) > 1 and "int8" in precisions else precisions


# ----------------------------------------------------------------------------- markdown / text
def markdown(e2e: dict) -> str:
    lines = [f"ASR `{e2e['asr_model']}`, language forced, 16 kHz; seed {e2e['seed']}, the same noise for "
             f"both pipelines; " + (f"gated: English WER ≤ {e2e['max_wer']}, Chinese CER ≤ reference CER + "
                                    f"{e2e['cer_margin']}" if e2e["gated"] else
                                    f"not gated ({e2e['gate_reason']})")
             + (f"; at most {e2e['max_len']} patches per sentence" if e2e.get("max_len") else ""), "",
             "| precision | lang | prompt | text | transcript | WER/CER | reference transcript | reference | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in e2e["rows"]:
        mark = ("✅" if r["passed"] else "❌") if r["gated"] else "(info)"
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines.append(f"| {r['precision']} | {r['language']} | {'yes' if r['prompt'] else 'no'} | {cell(r['text'])} "
                     f"| {cell(r['transcript'])} | {r['metric'].upper()} {_rate(r['wer_or_cer'])} "
                     f"| {cell(r['reference_transcript'])} | {_rate(r['reference_wer_or_cer'])} | {mark} |")
    return "\n".join(lines)


def summary_lines(e2e: dict) -> list[str]:
    if not e2e or not e2e.get("rows"):
        return []
    lines = [f"{'e2e':<5} {'precision':<9} {'lang':<4} {'prompt':<6} {'metric':>6} {'value':>6} {'ref':>6}  pass  "
             f"transcript", "-" * 98]
    for r in e2e["rows"]:
        mark = ("ok" if r["passed"] else "FAIL") if r["gated"] else "info"
        lines.append(f"{'':<5} {r['precision']:<9} {r['language']:<4} {'yes' if r['prompt'] else 'no':<6} "
                     f"{r['metric'].upper():>6} {_rate(r['wer_or_cer']):>6} {_rate(r['reference_wer_or_cer']):>6}  "
                     f"{mark:<4}  {r['transcript'][:40]}")
    if not e2e["gated"]:
        lines.append(f"e2e not gated: {e2e['gate_reason']}")
    return lines


# ----------------------------------------------------------------------------- running
@functools.lru_cache(maxsize=2)
def asr_model(name: str | None):
    """One Whisper load per process and name (None: $ASR_MODEL, else base)."""
    from .asr import load_whisper

    return load_whisper(name)


def _score(whisper, audio, rate: int, text: str, language: str) -> dict:
    """validate.asr.score, or an unscoreable row (non-finite samples) with wer_or_cer None."""
    from .asr import score
    from .asr.scoring import metric_for

    audio = np.asarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(audio)):
        return {"text": text, "language": language, "transcript": "(audio has NaN or infinite samples)",
                "metric": metric_for(language), "wer_or_cer": None}
    return score(whisper, audio, rate, text, language)


def _rate(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _round(value):
    return None if value is None else round(float(value), 4)


def check_asr(name: str | None) -> None:
    """Load (and keep) the ASR model now, or raise ValidateError naming the fix."""
    from .asr import AsrModelError
    from .errors import ValidateError

    try:
        asr_model(name)
    except AsrModelError as exc:
        raise ValidateError(f"{str(exc).splitlines()[0]} (or skip the ASR check with --no-e2e)") from None


def noise_source(seed: int, feat_dim: int, patch_size: int):
    """A fresh numpy draw sequence; the same seed gives the same patches of noise."""
    rng = np.random.default_rng(seed)
    return lambda: rng.standard_normal((1, feat_dim, patch_size)).astype(np.float32)


def run_e2e(*args, **kwargs) -> dict:
    """`generate_and_score`, with an expected failure (text too long, bad prompt) reported as a
    failed e2e section rather than a traceback after the component run."""
    from generate.errors import GenerationError

    try:
        return generate_and_score(*args, **kwargs)
    except GenerationError as exc:  # the Core ML generator and the reference share one
        message = f"e2e: {str(exc).splitlines()[0]}"
        return {"status": "error", "error": message, "passed": False, "failure": message, "rows": []}


def generate_and_score(model: str, out, precisions, backend: str = "auto", *, revision: str | None = None,
            asr: str | None = None, max_len: int | None = None, gate: bool | None = None,
            max_wer: float = DEFAULT_MAX_WER, cer_margin: float = DEFAULT_CER_MARGIN,
            sentences=SENTENCES, progress: bool = True, seed: int = SEED, layout: str = DEFAULT_LAYOUT,
            adapter=None) -> dict:
    """Generate, transcribe and judge every sentence; returns the report's `e2e` section (`adapter`: a LoRA
    adapter, live in the reference)."""
    from tqdm import tqdm

    from generate import Synthesizer
    from checkpoint.loading import load_voxcpm
    from runtime import run_allocator
    from reference.generator import ReferencePipeline

    from .references import TRIM_SECONDS

    from contract import artifacts

    start = time.time()
    precisions = e2e_precisions(precisions)
    whisper = asr_model(asr)
    voxcpm = load_voxcpm(model, revision, adapter=adapter)
    fixture = is_fixture(getattr(voxcpm, "checkpoint_dir", None))
    gated = (not fixture) if gate is None else bool(gate)
    reason = ("--e2e-gate" if gate else "--no-e2e-gate") if gate is not None else \
        ("fixture checkpoint (random weights: the speech is noise)" if fixture else "real checkpoint")
    reference = ReferencePipeline(voxcpm, artifacts.max_context(artifacts.read_generation_config(out)))
    limits = {"max_len": max_len} if max_len else {}
    total = len(sentences) * (1 + len(precisions))
    bar = tqdm(total=total, desc="e2e", unit="utt", file=sys.stderr, disable=not progress, leave=False)
    rows, references = [], {}
    for i, s in enumerate(sentences):  # the reference once per sentence, shared by every precision
        prompt = dict(prompt_wav=PROMPT_WAV, prompt_text=PROMPT_TEXT) if s.prompt else {}
        draw = noise_source(seed + i, reference.feat_dim, reference.patch_size)
        with run_allocator(trim_every=TRIM_SECONDS):   # torch's blocks from the heap, trimmed as it goes
            result = reference.generate(s.text, **prompt, noise=draw, **limits)
        references[i] = {**_score(whisper, result.audio, result.sample_rate, s.text, s.language),
                         "audio_seconds": round(result.audio.size / result.sample_rate, 2),
                         "patches": int(result.latents.shape[0])}
        bar.update()
    del reference, voxcpm
    for precision in precisions:
        synth = Synthesizer(out, precision, backend, layout=layout)
        for i, s in enumerate(sentences):
            prompt = dict(prompt_wav=PROMPT_WAV, prompt_text=PROMPT_TEXT) if s.prompt else {}
            audio, rate, stats = synth.synthesize(s.text, **prompt, noise=noise_source(seed + i, synth.feat_dim,
                                                                                      synth.patch_size),
                                                  retry_badcase=False, **limits)
            scored = _score(whisper, audio, rate, s.text, s.language)
            ref = references[i]
            rows.append({"text": s.text, "language": s.language, "prompt": s.prompt, "precision": precision,
                         "backend": synth.backend, "transcript": scored["transcript"], "metric": scored["metric"],
                         "wer_or_cer": _round(scored["wer_or_cer"]),
                         "reference_transcript": ref["transcript"],
                         "reference_wer_or_cer": _round(ref["wer_or_cer"]),
                         "audio_seconds": round(audio.size / rate, 2), "reference_audio_seconds": ref["audio_seconds"],
                         "patches": int(stats.get("patches", 0)),
                         "reference_patches": ref["patches"], "gated": gated,
                         "passed": judge(scored["metric"], scored["wer_or_cer"], ref["wer_or_cer"], max_wer,
                                         cer_margin)})
            bar.update()
        del synth
    bar.close()
    e2e = {"status": "run", "asr_model": asr or _default_asr_name(), "gated": gated, "gate_reason": reason,
           "max_wer": max_wer, "cer_margin": cer_margin, "seed": seed, "max_len": max_len,
           "prompt": {"wav": str(PROMPT_WAV.relative_to(ROOT)), "text": PROMPT_TEXT}, "rows": rows,
           "seconds": round(time.time() - start, 1)}
    e2e.update(summarize(rows, gated))
    e2e["markdown"] = markdown(e2e)
    return e2e


def _default_asr_name() -> str:
    import os

    return os.environ.get("ASR_MODEL") or "base"

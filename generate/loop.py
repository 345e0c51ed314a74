"""The one generation loop of the toolkit: text (and a voice prompt) to speech, against `ModelSteps`.

It follows voxcpm 2.0.3's VoxCPM 1.5 path (`VoxCPM.generate` -> `_generate_with_prompt_cache` ->
`_inference`) one step at a time, as a Core ML app must: prepare the text, encode the prompt,
prefill, then per patch sample, check the stop head, and feed the patch back; retry a bad case;
decode with the prompt's last patches as context. `stream` runs the same loop and decodes chunk by
chunk as the patches come (`generate.streaming`). The Core ML generator (`generate.Synthesizer`)
and the FP32 reference (`reference.ReferencePipeline`) are this loop over two `ModelSteps`.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from contract import artifacts
from contract.defaults import RETRY_MAX, STREAM_CONTEXT_PATCHES

from .audio import check_prompt, load_prompt
from .errors import GenerationError
from .stats import Timer, build_stats
from .steps import ModelSteps
from .streaming import DECODERS, AudioStream, ChunkClock
from .text import prepare_text


@dataclass
class Result:
    audio: np.ndarray              # [samples] float32 at `sample_rate`
    sample_rate: int
    latents: np.ndarray            # [n_generated, patch, feat_dim]
    retries: int = 0
    prefill_length: int = 0
    stats: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)   # with record=True: per generated patch, mu, noise, patch, stop


@dataclass
class Request:
    """One synthesis request, checked and prepared before any model runs."""

    tokens: list[int]              # the (prompt text +) text tokens, the audio-start token last
    prompt_audio: np.ndarray | None  # [1, samples] at the model rate
    target_length: int             # tokens of the text alone (the length rules read it)
    min_len: int
    max_len: int
    timesteps: int
    cfg: float
    ratio: float
    retry_badcase: bool
    retry_max: int
    noise: Callable[[], np.ndarray]
    seed: int | None


class Generator:
    """Speech from text (optionally continuing a voice prompt) with any `ModelSteps`.

    `tokenizer(text) -> ids` is the checkpoint's tokenizer as voxcpm applies it (no BOS)."""

    retry_badcase_default = True   # voxcpm's VoxCPM.generate retries; its model-level generate does not

    def __init__(self, steps: ModelSteps, tokenizer: Callable[[str], list[int]]):
        self.steps, self.tokenizer = steps, tokenizer
        self.config = config = steps.config
        self.max_context = config["max_context"]
        self.patch_size, self.feat_dim = config["patch_size"], config["feat_dim"]
        self.sample_rate, self.hop = config["sample_rate"], config["hop_length"]
        self.patch_samples = self.patch_size * self.hop

    # ---------------------------------------------------------------- inputs
    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text))

    def load_prompt_audio(self, path) -> np.ndarray:
        return load_prompt(path, self.sample_rate)

    def prompt_patches(self, audio: np.ndarray) -> int:
        """Patches the prompt will take, known before encoding (it is left-padded to whole patches)."""
        return -(-audio.shape[-1] // self.patch_samples)

    def encode_prompt(self, audio: np.ndarray) -> np.ndarray:
        """[1, samples] at the model rate -> prompt patches [n, patch, feat_dim], left-padded with zeros to
        whole patches as voxcpm pads."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        pad = (-audio.shape[-1]) % self.patch_samples
        return self.steps.encode_prompt(np.concatenate([np.zeros(pad, np.float32), audio]))

    def fit_context(self, prefill: int, min_len: int, max_len: int) -> int:
        """max_len bounded by the cache: every generated patch but the last takes a position.

        Text and prompt that leave no room for min_len + 2 patches (the shortest run the stop rule
        allows) are an error that says by how much to shorten them — before any model runs."""
        shortest = prefill + min_len + 1
        if shortest > self.max_context:
            raise GenerationError(f"text and prompt take {prefill} positions and the shortest generation "
                                  f"{min_len + 1} more, but the context holds {self.max_context}: shorten the "
                                  f"text or prompt by {shortest - self.max_context} positions")
        return min(max_len, self.max_context - prefill + 1)

    def default_noise(self, seed: int | None) -> Callable[[], np.ndarray]:
        """Standard normal noise per patch from numpy's PCG64 (voxcpm draws torch.randn: same law, other numbers)."""
        rng = np.random.default_rng(seed)
        return lambda: rng.standard_normal((1, self.feat_dim, self.patch_size), dtype=np.float32)

    # ---------------------------------------------------------------- the loop
    def _patches(self, req: "Request", prompt: np.ndarray, timer: Timer, progress: bool, calls: Counter,
                 record: list | None):
        """Yield the generated patches [patch, feat_dim] one by one (each before its stop check, as
        voxcpm's streaming does): prefill, then sample, stop check, feed back. Model time goes to the
        timer's phases, not the caller's time between patches."""
        with timer("prefill"):
            cond = self.steps.prefill(req.tokens, prompt)
        position = len(req.tokens) + prompt.shape[0]
        previous = prompt[-1].T[None] if prompt.shape[0] else np.zeros((1, self.feat_dim, self.patch_size),
                                                                        np.float32)
        before = Counter(self.steps.calls)
        try:
            with _progress(req.max_len, progress) as bar:
                for i in range(req.max_len):
                    with timer("generate"):
                        z = _checked_noise(req.noise(), self.feat_dim, self.patch_size)
                        patch = self.steps.sample(cond, previous, z, req.timesteps, req.cfg)  # [1, feat_dim, patch]
                    if record is not None:
                        record.append({"mu": cond.mu.copy(), "noise": z.copy(), "patch": patch.copy(),
                                       "stop_logit": cond.stop_logit.copy(), "position": position})
                    bar.update()
                    yield patch[0].T
                    previous = patch
                    if i > req.min_len and int(np.argmax(cond.stop_logit[0])) == 1 or i == req.max_len - 1:
                        break  # (voxcpm also runs the LM on the last patch; nothing reads the result)
                    with timer("generate"):
                        cond = self.steps.advance(patch[0].T, position)
                    position += 1
        finally:
            calls.update(self.steps.calls - before)  # the calls of the generation loop, not the prefill

    def _inference(self, req, prompt, timer, progress, calls, record):
        steps = [] if record else None
        patches = list(self._patches(req, prompt, timer, progress, calls, steps))
        return np.stack(patches), steps or []

    def _request(self, text, prompt_wav, prompt_text, prompt_audio, *, min_len, max_len, timesteps, cfg,
                 retry_badcase, retry_max, ratio, noise, seed) -> "Request":
        """Everything checked and prepared before any model runs (a bad input fails here, in a second)."""
        c = self.config
        min_len = c["min_len"] if min_len is None else min_len
        timesteps = c["inference_timesteps"] if timesteps is None else timesteps
        cfg = c["cfg_value"] if cfg is None else cfg
        ratio = c["max_length_ratio"] if ratio is None else ratio
        retry_badcase = self.retry_badcase_default if retry_badcase is None else retry_badcase
        _check_settings(min_len, max_len, timesteps, cfg, retry_max)
        text, prompt_audio, prompt_text = self._check_inputs(text, prompt_wav, prompt_text, prompt_audio)
        n_prompt = self.prompt_patches(prompt_audio) if prompt_audio is not None else 0
        prefix = prepare_text(prompt_text) if prompt_audio is not None else ""
        tokens = self.tokenize(prefix + text) + [c["audio_start_token"]]
        target_length = len(self.tokenize(text))
        max_len = min(int(target_length * ratio + c["max_length_offset"]), max_len)
        max_len = self.fit_context(len(tokens) + n_prompt, min_len, max_len)
        return Request(tokens, prompt_audio, target_length, min_len, max_len, timesteps, cfg, ratio, retry_badcase,
                       retry_max, noise or self.default_noise(seed), seed)

    def _prompt(self, req: "Request", timer: Timer) -> tuple[np.ndarray, np.ndarray]:
        """(prompt patches [n, patch, feat_dim], the last of them that the decoder gets as context)."""
        with timer("encode_prompt"):
            prompt = (self.encode_prompt(req.prompt_audio) if req.prompt_audio is not None
                      else np.zeros((0, self.patch_size, self.feat_dim), np.float32))
        keep = min(artifacts.prompt_context_patches(self.config), prompt.shape[0])
        return prompt, prompt[prompt.shape[0] - keep:]

    def generate(self, text: str, prompt_wav=None, prompt_text: str | None = None, *, min_len: int | None = None,
                 max_len: int = 4096, timesteps: int | None = None, cfg: float | None = None,
                 retry_badcase: bool | None = None, retry_max: int = RETRY_MAX, ratio: float | None = None,
                 noise: Callable[[], np.ndarray] | None = None, seed: int | None = None,
                 prompt_audio: np.ndarray | None = None, progress: bool = False, record: bool = False) -> Result:
        """Speech for `text`, optionally continuing a voice prompt (wav path or audio, and its text).

        `noise() -> [1, feat_dim, patch]` per generated patch (numpy or anything np.asarray takes);
        by default drawn from `seed`. Unset settings come from the generation config."""
        timer, calls_at_start = Timer(), Counter(self.steps.calls)
        seconds_at_start = Counter(self.steps.seconds)
        with timer("read_prompt"):
            req = self._request(text, prompt_wav, prompt_text, prompt_audio, min_len=min_len, max_len=max_len,
                                timesteps=timesteps, cfg=cfg, retry_badcase=retry_badcase, retry_max=retry_max,
                                ratio=ratio, noise=noise, seed=seed)
        with timer("load"):
            self.steps.preload(req.prompt_audio is not None)
        prompt, context = self._prompt(req, timer)
        generated, calls = 0, Counter()
        for attempt in range(req.retry_max):
            latents, steps = self._inference(req, prompt, timer, progress, calls, record)
            generated += latents.shape[0]
            if not (req.retry_badcase and latents.shape[0] + context.shape[0] >= req.target_length * req.ratio):
                break
        with timer("decode"):
            audio = self.steps.decode(np.concatenate([context, latents]))[context.shape[0] * self.patch_samples:]
        stats = self._stats(req, timer, calls_at_start, seconds_at_start, calls, prompt, generated, attempt,
                            audio.shape[0], latents.shape[0])
        return Result(audio=audio, sample_rate=self.sample_rate, latents=latents, retries=attempt,
                      prefill_length=len(req.tokens) + prompt.shape[0], stats=stats, steps=steps)

    def _stats(self, req, timer, calls_at_start, seconds_at_start, calls, prompt, generated, attempt, samples,
               patches) -> dict:
        settings = {**self.steps.describe(), "seed": req.seed, "cfg": req.cfg, "timesteps": req.timesteps,
                    "text_tokens": req.target_length, "max_len": req.max_len, "prompt_patches": int(prompt.shape[0]),
                    "patches": int(patches), "retries": attempt}
        return build_stats(timer=timer, run_calls=self.steps.calls - calls_at_start,
                           run_seconds=self.steps.seconds - seconds_at_start, generation_calls=calls,
                           prefill_positions=(len(req.tokens) + prompt.shape[0]) * (attempt + 1),
                           generated=generated, audio_seconds=samples / self.sample_rate, settings=settings)

    # ---------------------------------------------------------------- streaming
    def stream(self, text: str, prompt_wav=None, prompt_text: str | None = None, *, chunk_patches: int = 1,
               context_patches: int = STREAM_CONTEXT_PATCHES, decoder: str = "auto", min_len: int | None = None,
               max_len: int = 4096, timesteps: int | None = None, cfg: float | None = None,
               ratio: float | None = None, noise: Callable[[], np.ndarray] | None = None, seed: int | None = None,
               prompt_audio: np.ndarray | None = None, progress: bool = False) -> AudioStream:
        """Speech for `text` as an `AudioStream` of chunks of `chunk_patches` patches (7056 samples each),
        yielded as they are generated; the same settings as `generate`, the same patches for the same noise.

        `decoder`: "stream" (the streaming decoder package: equal to one whole decode), "windowed"
        (the whole decoder re-run on the last `context_patches` patches with each chunk: voxcpm's
        generate_streaming at 2) or "auto" (the streaming decoder where OUT has it). The bad-case
        retry is off, as in voxcpm's streaming: audio already played cannot be taken back. Bad input
        raises here, before the first chunk; the models run as the stream is read."""
        started = time.perf_counter()
        if chunk_patches < 1:
            raise GenerationError(f"chunk_patches {chunk_patches}: need at least 1")
        if decoder not in DECODERS:
            raise GenerationError(f"unknown stream decoder {decoder!r}: use {', '.join(DECODERS)}")
        timer, calls_at_start = Timer(), Counter(self.steps.calls)
        seconds_at_start = Counter(self.steps.seconds)
        with timer("read_prompt"):
            req = self._request(text, prompt_wav, prompt_text, prompt_audio, min_len=min_len, max_len=max_len,
                                timesteps=timesteps, cfg=cfg, retry_badcase=False, retry_max=1, ratio=ratio,
                                noise=noise, seed=seed)
        patch_decoder = self.steps.open_stream(decoder, context_patches)
        with timer("load"):
            self.steps.preload(req.prompt_audio is not None)
        stream = AudioStream(self.sample_rate)
        clock = ChunkClock(started, timer.seconds["load"])
        stream._chunks = self._chunks(stream, req, patch_decoder, chunk_patches, timer, clock, progress,
                                      (calls_at_start, seconds_at_start))
        return stream

    def _chunks(self, stream, req, patch_decoder, chunk_patches, timer, clock, progress, at_start):
        """The generator behind `stream`: patches from the one loop, decoded chunk by chunk."""
        prompt = np.zeros((0, self.patch_size, self.feat_dim), np.float32)
        calls, pending, done, chunks, samples, ended = Counter(), [], 0, 0, 0, "stopped by the caller"
        try:
            prompt, context = self._prompt(req, timer)
            with timer("decode"):
                patch_decoder.prime(context)
            for patch in self._patches(req, prompt, timer, progress, calls, None):
                pending.append(patch)
                if len(pending) < chunk_patches:
                    continue
                with timer("decode"):
                    audio = patch_decoder.push(np.stack(pending))
                done, chunks, samples, pending = done + len(pending), chunks + 1, samples + audio.size, []
                clock.ready()
                yield audio
                clock.resumed()
            if pending:  # the stop head ended a chunk early: play what there is
                with timer("decode"):
                    audio = patch_decoder.push(np.stack(pending))
                done, chunks, samples = done + len(pending), chunks + 1, samples + audio.size
                clock.ready()
                yield audio
            ended = "length limit" if done >= req.max_len else "stop head"
        finally:
            stream.stats = self._stats(req, timer, *at_start, calls, prompt, done, 0, samples, done)
            stream.stats["stream"] = {**patch_decoder.describe(), "chunk_patches": chunk_patches, "chunks": chunks,
                                      "first_audio_patches": min(chunk_patches, done), **clock.summary(),
                                      "decoder_calls_per_patch": round(patch_decoder.calls / done, 3) if done else None,
                                      "decoder_bytes_per_patch": round(patch_decoder.bytes / done) if done else None,
                                      "ended": ended}

    def _check_inputs(self, text, prompt_wav, prompt_text, prompt_audio):
        """(prepared text, prompt audio [1, samples] at the model rate or None, prompt text) — or the error."""
        text = prepare_text(text)
        if not text.strip():
            raise GenerationError("the text is empty: give something to say")
        has_prompt = prompt_wav is not None or prompt_audio is not None
        if has_prompt != (prompt_text is not None):
            raise GenerationError("prompt audio and prompt text go together: give both or neither")
        if prompt_wav is not None:
            prompt_audio = self.load_prompt_audio(prompt_wav)
        elif prompt_audio is not None:  # given as an array: already mono at the model rate
            prompt_audio = np.asarray(prompt_audio, dtype=np.float32).reshape(1, -1)
            check_prompt(prompt_audio, "(array)")
        return text, prompt_audio, prompt_text

    def synthesize(self, text: str, prompt_wav=None, prompt_text: str | None = None, seed: int | None = None,
                   noise: Callable[[], np.ndarray] | None = None, **settings) -> tuple[np.ndarray, int, dict]:
        """(audio float32 [samples], sample rate, stats). `settings`: those of `generate`."""
        result = self.generate(text, prompt_wav, prompt_text, seed=seed, noise=noise, **settings)
        return result.audio, result.sample_rate, result.stats

    def decode(self, patches: np.ndarray) -> np.ndarray:
        """[n, patch, feat_dim] -> audio samples."""
        return self.steps.decode(np.asarray(patches, np.float32))


# -------------------------------------------------------------------- helpers
def _check_settings(min_len, max_len, timesteps, cfg, retry_max) -> None:
    if min_len < 0 or max_len < 1:
        raise GenerationError(f"min_len {min_len} / max_len {max_len}: need min_len >= 0 and max_len >= 1")
    if timesteps < 1:
        raise GenerationError(f"timesteps {timesteps}: need at least 1")
    if not np.isfinite(cfg):
        raise GenerationError(f"cfg {cfg}: need a finite number (2.0 is voxcpm's default)")
    if retry_max < 1:
        raise GenerationError(f"retry_max {retry_max}: need at least 1")


def _checked_noise(z, feat_dim: int, patch_size: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    if z.shape != (1, feat_dim, patch_size):
        raise GenerationError(f"noise() returned shape {z.shape}: it must return [1, {feat_dim}, {patch_size}]")
    return z


def _progress(total: int, enabled: bool):
    """A progress bar on stderr, shown only if the run lasts more than a second."""
    from tqdm import tqdm

    return tqdm(total=total, desc="generating", unit="patch", file=sys.stderr, disable=not enabled, delay=1.0,
                leave=False)

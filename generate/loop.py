"""The one generation loop of the toolkit: text (and a voice prompt) to speech, against `ModelSteps`.

It follows voxcpm 2.0.3's VoxCPM 1.5 path (`VoxCPM.generate` -> `_generate_with_prompt_cache` ->
`_inference`) one step at a time, as a Core ML app must: prepare the text, encode the prompt,
prefill, then per patch sample, check the stop head, and feed the patch back; retry a bad case;
decode with the prompt's last patches as context. The Core ML generator (`generate.Synthesizer`)
and the FP32 reference (`reference.ReferencePipeline`) are this loop over two `ModelSteps`.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from contract import artifacts
from contract.defaults import RETRY_MAX

from .audio import check_prompt, load_prompt
from .errors import GenerationError
from .stats import Timer, build_stats
from .steps import ModelSteps
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
    def _inference(self, tokens, prompt, min_len, max_len, timesteps, cfg, noise, timer, progress, calls, record):
        with timer("prefill"):
            cond = self.steps.prefill(tokens, prompt)
        position = len(tokens) + prompt.shape[0]
        previous = prompt[-1].T[None] if prompt.shape[0] else np.zeros((1, self.feat_dim, self.patch_size),
                                                                        np.float32)
        patches, steps, before = [], [], Counter(self.steps.calls)
        with timer("generate"), _progress(max_len, progress) as bar:
            for i in range(max_len):
                z = _checked_noise(noise(), self.feat_dim, self.patch_size)
                patch = self.steps.sample(cond, previous, z, timesteps, cfg)  # [1, feat_dim, patch]
                patches.append(patch[0].T)
                if record:
                    steps.append({"mu": cond.mu.copy(), "noise": z.copy(), "patch": patch.copy(),
                                  "stop_logit": cond.stop_logit.copy(), "position": position})
                bar.update()
                previous = patch
                if i > min_len and int(np.argmax(cond.stop_logit[0])) == 1 or i == max_len - 1:
                    break  # (voxcpm also runs the LM on the last patch; nothing reads the result)
                cond = self.steps.advance(patch[0].T, position)
                position += 1
        calls.update(self.steps.calls - before)  # the calls of the generation loop alone, not the prefill
        return np.stack(patches), steps

    def generate(self, text: str, prompt_wav=None, prompt_text: str | None = None, *, min_len: int | None = None,
                 max_len: int = 4096, timesteps: int | None = None, cfg: float | None = None,
                 retry_badcase: bool | None = None, retry_max: int = RETRY_MAX, ratio: float | None = None,
                 noise: Callable[[], np.ndarray] | None = None, seed: int | None = None,
                 prompt_audio: np.ndarray | None = None, progress: bool = False, record: bool = False) -> Result:
        """Speech for `text`, optionally continuing a voice prompt (wav path or audio, and its text).

        `noise() -> [1, feat_dim, patch]` per generated patch (numpy or anything np.asarray takes);
        by default drawn from `seed`. Unset settings come from the generation config."""
        c = self.config
        min_len = c["min_len"] if min_len is None else min_len
        timesteps = c["inference_timesteps"] if timesteps is None else timesteps
        cfg = c["cfg_value"] if cfg is None else cfg
        ratio = c["max_length_ratio"] if ratio is None else ratio
        retry_badcase = self.retry_badcase_default if retry_badcase is None else retry_badcase
        _check_settings(min_len, max_len, timesteps, cfg, retry_max)
        timer, calls_at_start = Timer(), Counter(self.steps.calls)
        seconds_at_start = Counter(self.steps.seconds)
        with timer("read_prompt"):
            text, prompt_audio, prompt_text = self._check_inputs(text, prompt_wav, prompt_text, prompt_audio)
        has_prompt = prompt_audio is not None
        n_prompt = self.prompt_patches(prompt_audio) if has_prompt else 0
        tokens = self.tokenize((prepare_text(prompt_text) if has_prompt else "") + text) + [c["audio_start_token"]]
        target_length = len(self.tokenize(text))
        max_len = min(int(target_length * ratio + c["max_length_offset"]), max_len)
        max_len = self.fit_context(len(tokens) + n_prompt, min_len, max_len)  # before any model work
        with timer("load"):
            self.steps.preload(has_prompt)
        with timer("encode_prompt"):
            prompt = (self.encode_prompt(prompt_audio) if has_prompt
                      else np.zeros((0, self.patch_size, self.feat_dim), np.float32))
        noise = noise or self.default_noise(seed)
        keep = min(artifacts.prompt_context_patches(c), prompt.shape[0])
        context = prompt[prompt.shape[0] - keep:]
        generated, calls = 0, Counter()
        for attempt in range(retry_max):
            latents, steps = self._inference(tokens, prompt, min_len, max_len, timesteps, cfg, noise, timer,
                                             progress, calls, record)
            generated += latents.shape[0]
            if not (retry_badcase and latents.shape[0] + context.shape[0] >= target_length * ratio):
                break
        with timer("decode"):
            audio = self.steps.decode(np.concatenate([context, latents]))[context.shape[0] * self.patch_samples:]
        settings = {**self.steps.describe(), "seed": seed, "cfg": cfg, "timesteps": timesteps,
                    "text_tokens": target_length, "max_len": max_len, "prompt_patches": int(prompt.shape[0]),
                    "patches": int(latents.shape[0]), "retries": attempt}
        stats = build_stats(timer=timer, run_calls=self.steps.calls - calls_at_start,
                            run_seconds=self.steps.seconds - seconds_at_start, generation_calls=calls,
                            prefill_positions=(len(tokens) + prompt.shape[0]) * (attempt + 1),
                            generated=generated, audio_seconds=audio.shape[0] / self.sample_rate,
                            settings=settings)
        return Result(audio=audio, sample_rate=self.sample_rate, latents=latents, retries=attempt,
                      prefill_length=len(tokens) + prompt.shape[0], stats=stats, steps=steps)

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

"""The Core ML text-to-speech pipeline: `Synthesizer(OUT).synthesize(text, …)`.

Step for step the structure of `patches.reference.ReferencePipeline` (same method names where
the job is the same), with every model call going to a converted package through `runtime` and
the small projections done in numpy from OUT/constants. No torch.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import artifacts
from .audio import check_prompt, load_prompt
from .errors import GenerationError
from .sampler import sample_patch
from .stats import Timer, build_stats
from .text import TextTokenizer, prepare_text
from .vae import decode_latent, decoder_context_frames, encode_audio, encoder_context_frames

PROMPT_CONTEXT_PATCHES = 2  # voxcpm decodes the last prompt patches before the generated ones
INTERPRETER_PRECISIONS = ("fp16", "fp32")


@dataclass
class Result:
    audio: np.ndarray              # [samples] float32 at `sample_rate`
    sample_rate: int
    latents: np.ndarray            # [n_generated, patch, feat_dim]
    retries: int = 0
    prefill_length: int = 0
    stats: dict = field(default_factory=dict)


@dataclass
class Caches:
    """The functional KV caches of both LMs, name -> array, replaced by each step's outputs."""
    base: dict
    residual: dict


class Synthesizer:
    """Speech from text (optionally continuing a voice prompt) with the converted packages.

    `interpreter_precision` only matters on the interpreter backend ("mil"): "fp16" rounds like
    Core ML's fp16 programs, "fp32" keeps fp32 values (used to compare with the FP32 reference).
    """

    def __init__(self, artifacts_dir, precision: str = "int8", backend: str = "auto",
                 interpreter_precision: str = "fp16"):
        if interpreter_precision not in INTERPRETER_PRECISIONS:
            raise GenerationError(f"unknown interpreter precision {interpreter_precision!r}: use fp16 or fp32")
        out = artifacts.open_artifacts(artifacts_dir)
        self.backend = artifacts.resolve_backend(backend)
        self.precision, self.interpreter_precision = precision, interpreter_precision
        self.config = config = artifacts.read_config(out)
        paths = artifacts.package_paths(out, precision, self.backend)
        self.constants = artifacts.load_constants(out, config)
        self.tokenizer = TextTokenizer(artifacts.tokenizer_path(out))
        self.models = artifacts.Models(paths, self.backend, interpreter_precision)
        encoder_rates, decoder_rates = artifacts.vae_rates(out, config)
        self.encoder_context = encoder_context_frames(encoder_rates)
        self.decoder_context = decoder_context_frames(decoder_rates)
        self.max_context = config["max_context"]
        self.patch_size, self.feat_dim = config["patch_size"], config["feat_dim"]
        self.sample_rate, self.hop = config["sample_rate"], config["hop_length"]
        self.patch_samples = self.patch_size * self.hop
        self.text_scale = np.float32(config["text_embedding_scale"])

    # ---------------------------------------------------------------- inputs
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text)

    def load_prompt_audio(self, path) -> np.ndarray:
        return load_prompt(path, self.sample_rate)

    def prompt_patches(self, audio: np.ndarray) -> int:
        """Patches the prompt will take, known before encoding (it is left-padded to whole patches)."""
        return -(-audio.shape[-1] // self.patch_samples)

    def encode_prompt(self, audio: np.ndarray) -> np.ndarray:
        """[1, samples] at the model rate -> prompt patches [n, patch, feat_dim] (left-padded)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        pad = (-audio.shape[-1]) % self.patch_samples
        audio = np.concatenate([np.zeros(pad, np.float32), audio])
        window = self.config["vae_encoder_window"] // self.hop
        latent = encode_audio(lambda a: self.models("audio_vae_encoder", audio=a)["latent"], audio, self.hop,
                              window, self.encoder_context)
        return latent.reshape(self.feat_dim, -1, self.patch_size).transpose(1, 2, 0).copy()

    def embed_patch(self, patch: np.ndarray) -> np.ndarray:
        """[patch, feat_dim] -> LM-space embedding [1, H] (feat_encoder, then enc_to_lm_proj in numpy)."""
        feat = patch.reshape(1, 1, self.patch_size, self.feat_dim)
        encoded = self.models("feat_encoder", feat=feat)["embedding"][:, 0]
        return self._linear("enc_to_lm_proj", encoded)

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        """torch.nn.Linear with the weights in OUT/constants ([out, in] layout)."""
        return (x @ self.constants[f"{name}_w"].T + self.constants[f"{name}_b"]).astype(np.float32)

    # ---------------------------------------------------------------- sampler
    def sample_patch(self, mu, cond, noise, timesteps: int, cfg: float) -> np.ndarray:
        def locdit(x, mu2, t, cond2, dt):
            return self.models("locdit_step", x=x, mu=mu2, t=t, cond=cond2, dt=dt)["velocity"]

        return sample_patch(locdit, mu, cond, noise, timesteps, cfg, self.config["cfg_zero_init_fraction"],
                            self.config["sway_sampling_coef"])

    # ---------------------------------------------------------------- LM
    def _lm_step(self, embed, position: int, caches: Caches, is_audio: bool):
        pos = np.array([position], np.int32)
        base = self.models("base_lm_step", embed=embed, position=pos, **caches.base)
        caches.base = {name: base[f"out_{name}"] for name in caches.base}
        lm_hidden = base["lm_hidden_fsq"] if is_audio else base["lm_hidden"]
        residual_in = lm_hidden + embed if is_audio else lm_hidden
        res = self.models("residual_lm_step", embed=residual_in, position=pos, **caches.residual)
        caches.residual = {name: res[f"out_{name}"] for name in caches.residual}
        return lm_hidden, res["res_hidden"], base["stop_logit"]

    def _new_caches(self) -> Caches:
        c = self.config
        shape = (1, c["num_key_value_heads"], self.max_context, c["head_dim"])

        def names(layers):
            return {f"{kind}{i}": np.zeros(shape, np.float32) for kind in ("k", "v") for i in range(layers)}

        return Caches(names(c["base_lm_layers"]), names(c["residual_lm_layers"]))

    def _prefill(self, tokens: list[int], prompt: np.ndarray, caches: Caches):
        text_embeds = np.asarray(self.constants["embed_tokens"][tokens], dtype=np.float32) * self.text_scale
        lm_hidden = res_hidden = stop_logit = None
        for position in range(len(tokens)):
            lm_hidden, res_hidden, stop_logit = self._lm_step(text_embeds[position:position + 1], position, caches,
                                                              False)
        for j in range(prompt.shape[0]):
            lm_hidden, res_hidden, stop_logit = self._lm_step(self.embed_patch(prompt[j]), len(tokens) + j, caches,
                                                              True)
        return lm_hidden, res_hidden, stop_logit

    def _inference(self, tokens, prompt, min_len, max_len, timesteps, cfg, noise, timer, progress, calls):
        caches = self._new_caches()
        with timer("prefill"):
            lm_hidden, res_hidden, stop_logit = self._prefill(tokens, prompt, caches)
        position = len(tokens) + prompt.shape[0]
        cond = prompt[-1].T[None] if prompt.shape[0] else np.zeros((1, self.feat_dim, self.patch_size), np.float32)
        patches, before = [], Counter(self.models.calls)
        with timer("generate"), _progress(max_len, progress) as bar:
            for i in range(max_len):
                mu = self._linear("lm_to_dit_proj", lm_hidden) + self._linear("res_to_dit_proj", res_hidden)
                patch = self.sample_patch(mu, cond, _checked_noise(noise(), self.feat_dim, self.patch_size),
                                          timesteps, cfg)  # [1, feat_dim, patch]
                patches.append(patch[0].T)
                bar.update()
                cond = patch
                if i > min_len and int(np.argmax(stop_logit[0])) == 1 or i == max_len - 1:
                    break  # (voxcpm also runs the LM on the last patch; nothing reads the result)
                lm_hidden, res_hidden, stop_logit = self._lm_step(self.embed_patch(patch[0].T), position, caches,
                                                                  True)
                position += 1
        calls.update(self.models.calls - before)  # the calls of the generation loop alone, not the prefill
        return np.stack(patches)

    # ---------------------------------------------------------------- public
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

    def generate(self, text: str, prompt_wav=None, prompt_text: str | None = None, *, min_len: int = 2,
                 max_len: int = 4096, timesteps: int | None = None, cfg: float | None = None,
                 retry_badcase: bool = True, retry_max: int = 3, ratio: float | None = None,
                 noise: Callable[[], np.ndarray] | None = None, seed: int | None = None,
                 prompt_audio: np.ndarray | None = None, progress: bool = False) -> Result:
        """Speech for `text`, optionally continuing a voice prompt (wav path or audio, and its text)."""
        c = self.config
        timesteps = c["inference_timesteps"] if timesteps is None else timesteps
        cfg = c["cfg_value"] if cfg is None else cfg
        ratio = c["max_length_ratio"] if ratio is None else ratio
        _check_settings(min_len, max_len, timesteps, cfg, retry_max)
        timer, calls_at_start, seconds_at_start = Timer(), Counter(self.models.calls), Counter(self.models.seconds)
        with timer("read_prompt"):
            text, prompt_audio, prompt_text = self._check_inputs(text, prompt_wav, prompt_text, prompt_audio)
        has_prompt = prompt_audio is not None
        n_prompt = self.prompt_patches(prompt_audio) if has_prompt else 0
        tokens = self.tokenize((prepare_text(prompt_text) if has_prompt else "") + text) + [c["audio_start_token"]]
        target_length = len(self.tokenize(text))
        max_len = min(int(target_length * ratio + c["max_length_offset"]), max_len)
        max_len = self.fit_context(len(tokens) + n_prompt, min_len, max_len)  # before any model work
        self._preload(has_prompt, timer)
        with timer("encode_prompt"):
            prompt = (self.encode_prompt(prompt_audio) if has_prompt
                      else np.zeros((0, self.patch_size, self.feat_dim), np.float32))
        noise = noise or _default_noise(seed, self.feat_dim, self.patch_size)
        context = prompt[-min(PROMPT_CONTEXT_PATCHES, prompt.shape[0]):] if prompt.shape[0] else prompt
        generated, calls = 0, Counter()
        for attempt in range(retry_max):
            latents = self._inference(tokens, prompt, min_len, max_len, timesteps, cfg, noise, timer, progress, calls)
            generated += latents.shape[0]
            if not (retry_badcase and latents.shape[0] + context.shape[0] >= target_length * ratio):
                break
        with timer("decode"):
            audio = self.decode(np.concatenate([context, latents]))[context.shape[0] * self.patch_samples:]
        settings = {"precision": self.precision, "backend": self.backend, "seed": seed, "cfg": cfg,
                    "timesteps": timesteps, "text_tokens": target_length, "max_len": max_len,
                    "prompt_patches": int(prompt.shape[0]), "patches": int(latents.shape[0]), "retries": attempt}
        if self.backend == "mil":
            settings["interpreter_precision"] = self.interpreter_precision
        stats = build_stats(timer=timer, run_calls=self.models.calls - calls_at_start,
                            run_seconds=self.models.seconds - seconds_at_start, generation_calls=calls,
                            prefill_positions=(len(tokens) + prompt.shape[0]) * (attempt + 1),
                            generated=generated, audio_seconds=audio.shape[0] / self.sample_rate,
                            settings=settings)
        return Result(audio=audio, sample_rate=self.sample_rate, latents=latents, retries=attempt,
                      prefill_length=len(tokens) + prompt.shape[0], stats=stats)

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
        """[n, patch, feat_dim] -> audio samples (chunked beyond the decoder's frame limit)."""
        latent = patches.transpose(2, 0, 1).reshape(self.feat_dim, -1)
        return decode_latent(lambda z: self.models("audio_vae_decoder", latent=z)["audio"], latent, self.hop,
                             self.config["decoder_frames"][1], self.decoder_context)

    def _preload(self, has_prompt: bool, timer: Timer) -> None:
        """Load the packages this run needs up front, so that phase times measure running, not loading."""
        needed = [n for n in artifacts.COMPONENTS if has_prompt or n != "audio_vae_encoder"]
        with timer("load"):
            for name in needed:
                self.models.load(name)


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


def _default_noise(seed, feat_dim: int, patch_size: int):
    """Standard normal noise per patch from numpy's PCG64 (voxcpm draws torch.randn: same law, other numbers)."""
    rng = np.random.default_rng(seed)
    return lambda: rng.standard_normal((1, feat_dim, patch_size), dtype=np.float32)


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


"""The FP32 reference pipeline reproduces voxcpm 2.0.3's own generation, seed for seed."""
import numpy as np
import pytest
import torch

from checkpoint.loading import load_voxcpm
from generate.sampler import sway_timesteps
from reference.generator import GenerationError, ReferencePipeline
from tests.helpers import max_rel_error, write_stereo_prompt

ENGLISH = "Hello, this is a test."
CHINESE = "你好，这是一个语音克隆系统的测试。"
PROMPT_TEXT = "This is the prompt transcript."


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory):
    """3.3 s of stereo 48 kHz 'speech-like' audio: not a multiple of a patch, not the model rate."""
    return write_stereo_prompt(tmp_path_factory.mktemp("prompt") / "prompt.wav", 3.3)


@pytest.fixture(scope="module")
def models(tiny_never_stop_dir):
    return load_voxcpm(tiny_never_stop_dir), ReferencePipeline(load_voxcpm(tiny_never_stop_dir))


def _voxcpm(original, text, prompt_wav=None, **kwargs):
    cache = original.build_prompt_cache(PROMPT_TEXT, str(prompt_wav)) if prompt_wav else None
    audio, _, latents = original.generate_with_prompt_cache(text, cache, **kwargs)
    return audio[0].numpy(), latents.numpy()


@pytest.mark.parametrize("text", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_same_patches_as_voxcpm(models, text):
    original, reference = models
    torch.manual_seed(7)
    audio, latents = _voxcpm(original, text)
    torch.manual_seed(7)
    ours = reference.generate(text)
    assert ours.latents.shape == latents.shape
    assert np.abs(ours.latents - latents).max() <= 1e-5
    assert max_rel_error(ours.audio, audio) <= 1e-4


def test_same_as_voxcpm_with_voice_prompt(models, prompt_wav):
    original, reference = models
    torch.manual_seed(3)
    audio, latents = _voxcpm(original, ENGLISH, prompt_wav)
    torch.manual_seed(3)
    ours = reference.generate(ENGLISH, prompt_wav=prompt_wav, prompt_text=PROMPT_TEXT)
    context = latents.shape[0] - ours.latents.shape[0]
    assert context == 2  # voxcpm returns its 2 prompt context patches before the generated ones
    assert np.abs(ours.latents - latents[context:]).max() <= 1e-5
    assert max_rel_error(ours.audio, audio) <= 1e-4
    # VoxCPMModel.generate decodes the same latents but keeps the context audio at the front
    torch.manual_seed(3)
    full = original.generate(ENGLISH, prompt_text=PROMPT_TEXT, prompt_wav_path=str(prompt_wav))[0].numpy()
    assert max_rel_error(ours.audio, full[2 * 7056:]) <= 1e-4


def test_retry_badcase_matches_voxcpm(models):
    """The never-stopping fixture always hits the length limit, so every try is a bad case."""
    original, reference = models
    torch.manual_seed(11)
    _, latents = _voxcpm(original, "Hi.", retry_badcase=True)
    torch.manual_seed(11)
    ours = reference.generate("Hi.", retry_badcase=True)
    assert ours.retries == 2 and np.abs(ours.latents - latents).max() <= 1e-5


def test_stop_head_ends_generation(tiny_dir):
    from checkpoint.fixture import build_fixture

    reference = ReferencePipeline(load_voxcpm(build_fixture(tiny_dir.parent / "always", stop_mode="always")))
    for min_len in (2, 5):
        assert reference.generate(ENGLISH, min_len=min_len).latents.shape[0] == min_len + 2


def test_length_rule(models):
    _, reference = models
    tokens = len(reference.tokenize(ENGLISH))
    assert reference.generate(ENGLISH).latents.shape[0] == tokens * 6 + 10
    assert reference.generate(ENGLISH, max_len=7).latents.shape[0] == 7


def test_sway_schedule_and_cfg_zero_star_calls(models):
    _, reference = models
    expected = [1, .956, .909, .854, .788, .707, .609, .491, .351, .188, 0]
    assert np.allclose(sway_timesteps(10), expected, atol=1e-3)
    calls = []
    locdit = reference.locdit
    reference.locdit = lambda *args: calls.append(args) or locdit(*args)
    try:
        reference.generate(ENGLISH, max_len=3)
    finally:
        reference.locdit = locdit
    assert len(calls) == 3 * 9  # CFG-Zero*: the first of 10 steps skips the estimator
    x, mu, t, cond, dt = calls[0]
    assert torch.equal(x[0], x[1]) and torch.count_nonzero(mu[1]) == 0 and torch.count_nonzero(dt) == 0
    assert torch.allclose(t, torch.full((2,), 0.956), atol=1e-3)


def test_injected_noise_is_used(models):
    _, reference = models
    zeros = reference.generate(ENGLISH, max_len=4, noise=lambda: torch.zeros(1, 64, 4), record=True)
    assert all(np.count_nonzero(step["noise"]) == 0 for step in zeros.steps)
    again = reference.generate(ENGLISH, max_len=4, noise=lambda: torch.zeros(1, 64, 4))
    assert np.array_equal(zeros.latents, again.latents)


def test_bad_inputs(models, prompt_wav):
    _, reference = models
    with pytest.raises(GenerationError, match="empty"):
        reference.generate("  \n ")
    with pytest.raises(GenerationError, match="give both or neither"):
        reference.generate(ENGLISH, prompt_text=PROMPT_TEXT)
    with pytest.raises(GenerationError, match=r"shorten the text or prompt by \d+ positions"):
        reference.generate("word " * 600)


def test_long_text_is_bounded_by_the_context(tiny_never_stop_dir):
    """A text that fits but whose length rule would overrun the cache stops at the last slot."""
    reference = ReferencePipeline(load_voxcpm(tiny_never_stop_dir), max_context=32)
    prefill = len(reference.tokenize(ENGLISH)) + 1
    assert (prefill - 1) * 6 + 10 > reference.max_context - prefill + 1
    assert reference.generate(ENGLISH).latents.shape[0] == reference.max_context - prefill + 1

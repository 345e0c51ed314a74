"""The FP32 reference streams as voxcpm does: the windowed decode is voxcpm's `generate_streaming`, chunk for
chunk with the same seed; the streaming decoder (and a window of 6 patches or more) is the whole decode."""
import numpy as np
import pytest
import torch

from checkpoint.loading import load_voxcpm
from reference.generator import ReferencePipeline
from tests.helpers import max_rel_error, write_stereo_prompt

TEXT = "Hello, this is a test."
PROMPT_TEXT = "This is the prompt transcript."
EXACT = 1e-5


@pytest.fixture(scope="module")
def models(tiny_never_stop_dir):
    return load_voxcpm(tiny_never_stop_dir), ReferencePipeline(load_voxcpm(tiny_never_stop_dir))


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory):
    return write_stereo_prompt(tmp_path_factory.mktemp("prompt") / "prompt.wav", 3.3)


def _rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def _upstream_chunks(original, prompt_wav=None, max_len=10):
    """voxcpm's own streaming: generate_streaming (no prompt) or generate_with_prompt_cache_streaming."""
    if prompt_wav is None:
        return [c[0].numpy() for c in original.generate_streaming(TEXT, max_len=max_len)]
    cache = original.build_prompt_cache(PROMPT_TEXT, str(prompt_wav))
    return [c[0][0].numpy() for c in original.generate_with_prompt_cache_streaming(TEXT, cache, max_len=max_len)]


@pytest.mark.parametrize("with_prompt", [False, True], ids=["text", "voice_prompt"])
def test_windowed_stream_is_voxcpms_generate_streaming(models, prompt_wav, with_prompt):
    original, reference = models
    prompt = prompt_wav if with_prompt else None
    torch.manual_seed(5)
    upstream = _upstream_chunks(original, prompt)
    torch.manual_seed(5)
    ours = list(reference.stream(TEXT, prompt_wav=prompt, prompt_text=PROMPT_TEXT if with_prompt else None,
                                 max_len=10, decoder="windowed", context_patches=2))
    assert len(ours) == len(upstream) == 10
    assert max(max_rel_error(a, b) for a, b in zip(ours, upstream)) <= 1e-4


@pytest.mark.parametrize("with_prompt", [False, True], ids=["text", "voice_prompt"])
def test_streaming_decoder_equals_the_whole_decode(models, prompt_wav, with_prompt):
    """Same noise: the streamed chunks joined = generate()'s audio (prompt context decoded first, then cut)."""
    _, reference = models
    kwargs = dict(prompt_wav=prompt_wav, prompt_text=PROMPT_TEXT) if with_prompt else {}
    torch.manual_seed(9)
    whole = reference.generate(TEXT, max_len=10, **kwargs)
    for chunk in (1, 3):
        torch.manual_seed(9)
        stream = reference.stream(TEXT, max_len=10, decoder="stream", chunk_patches=chunk, **kwargs)
        joined = np.concatenate(list(stream))
        assert joined.shape == whole.audio.shape and _rel_l2(joined, whole.audio) <= EXACT, chunk
        assert stream.stats["stream"]["chunks"] == -(-10 // chunk)
    torch.manual_seed(9)
    windowed = np.concatenate(list(reference.stream(TEXT, max_len=10, decoder="windowed", context_patches=2,
                                                    **kwargs)))
    torch.manual_seed(9)
    wide = np.concatenate(list(reference.stream(TEXT, max_len=10, decoder="windowed", context_patches=6, **kwargs)))
    # 2 context patches (voxcpm's) miss part of the decoder's 21-frame reach; 6 patches (24 frames) cover it
    print(f"windowed vs whole: context 2 {_rel_l2(windowed, whole.audio):.2e}, context 6 "
          f"{_rel_l2(wide, whole.audio):.2e}")
    assert _rel_l2(wide, whole.audio) <= EXACT < _rel_l2(windowed, whole.audio)

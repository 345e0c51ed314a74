"""The two layouts give the same speech: same text, prompt and noise -> the same number of patches and latents.

fp32 reference builds of both layouts (the interpreter in fp32 mode) agree within COREML_TOLERANCE
(1e-3) — the fast layout's states are fp16 even in its fp32 build (Core ML's only state type), which
is what separates them; the fp16 builds, both held to the reference within the published layout's own
fp16 tolerance; the stop head ends both layouts' runs at the same patch. The fast run makes two model
calls per generated patch and prefills by chunks. `Synthesizer.stream` on the fast layout decodes with
its optional stateful streaming decoder, equal to the whole-utterance decode.
"""
import shutil

import numpy as np
import pytest

from generate import Synthesizer
from tests.conftest import TEST_PREFILL_CHUNK, convert_checkpoint

from .conftest import PROMPT_TEXT, rel_l2, shared_noise
from .test_parity import COREML_TOLERANCE, FP16_WEIGHTS_TOLERANCE

CASES = {
    "english": dict(text="Hello, this is a test.", max_len=8),
    "chinese": dict(text="你好，这是一个语音克隆系统的测试。今天天气很好", max_len=8),
    "clone_7s_stereo_48k": dict(text="Hello there.", prompt=True, max_len=6),
}


def _run(out, layout, precision, request, case):
    kwargs = dict(case)
    prompt = request.getfixturevalue("prompt7_wav") if kwargs.pop("prompt", False) else None
    synth = Synthesizer(out, precision=precision, backend="mil", compute="fp32", layout=layout)
    _, numpy_noise = shared_noise(1)
    return synth.generate(noise=numpy_noise, retry_badcase=False, prompt_wav=prompt,
                          prompt_text=PROMPT_TEXT if prompt else None, **kwargs)


@pytest.mark.parametrize("name", CASES)
def test_fast_matches_published_fp32_builds(name, request, never_both_fp32):
    published = _run(never_both_fp32, "published", "fp32", request, CASES[name])
    fast = _run(never_both_fp32, "fast", "fp32", request, CASES[name])
    error = rel_l2(fast.latents, published.latents)
    print(f"\n{name}: {fast.latents.shape[0]} patches, fast vs published latents rel-L2 {error:.2e}")
    assert fast.latents.shape == published.latents.shape and fast.audio.shape == published.audio.shape
    assert fast.prefill_length == published.prefill_length
    assert error <= COREML_TOLERANCE
    calls = fast.stats["calls_per_generated_patch"]
    # the last patch is not fed back: lm.step runs (n - 1) / n times per patch
    assert set(calls) == {"diffusion", "lm.step"} and calls["diffusion"] == 1 and 0 < calls["lm.step"] <= 1, calls


def test_fast_fp16_build_within_the_published_fp16_tolerance(request, never_both_fp32, ref_never):
    case = CASES["english"]
    torch_noise, _ = shared_noise(1)
    want = ref_never.generate(noise=torch_noise, **case)
    for layout in ("published", "fast"):
        got = _run(never_both_fp32, layout, "fp16", request, case)
        assert got.latents.shape == want.latents.shape
        assert rel_l2(got.latents, want.latents) <= FP16_WEIGHTS_TOLERANCE, layout


def test_the_stop_head_ends_both_layouts_at_the_same_patch(request, tiny_both_coreml):
    case = dict(text="Hello, this is a test.")
    published = _run(tiny_both_coreml, "published", "fp16", request, case)
    fast = _run(tiny_both_coreml, "fast", "fp16", request, case)
    assert fast.latents.shape == published.latents.shape
    assert fast.latents.shape[0] < fast.stats["max_len"]          # the stop head, not the length limit
    assert rel_l2(fast.latents, published.latents) <= FP16_WEIGHTS_TOLERANCE


@pytest.fixture(scope="module")
def fast_stream_out(never_both_fp32, tiny_never_stop_dir, tmp_path_factory):
    """A copy of `never_both_fp32` with the fast layout's optional streaming decoder (`--stream-decoder`: its
    contexts as Core ML states) added in fp32."""
    out = tmp_path_factory.mktemp("fast_stream") / "out"
    shutil.copytree(never_both_fp32, out)
    return convert_checkpoint(tiny_never_stop_dir, out, "fp32", "--layout", "fast", "--prefill-chunk",
                              str(TEST_PREFILL_CHUNK), "--stream-decoder")


def test_stream_on_the_fast_layout_equals_its_whole_utterance_decode(fast_stream_out):
    """The fp32 build in the interpreter's fp32 mode, the same noise: the stream's chunks joined are
    generate()'s audio (the whole decoder windowed) within 1e-5, one stateful decoder call per patch."""
    synth = Synthesizer(fast_stream_out, precision="fp32", backend="mil", compute="fp32", layout="fast")
    case = CASES["english"]
    whole = synth.generate(noise=shared_noise(1)[1], retry_badcase=False, **case)
    stream = synth.stream(noise=shared_noise(1)[1], chunk_patches=2, **case)
    chunks = list(stream)
    error = rel_l2(np.concatenate(chunks), whole.audio)
    print(f"\nfast layout, stateful streaming decoder: streamed vs whole {error:.2e}")
    assert error <= 1e-5 and stream.stats["patches"] == whole.latents.shape[0] == case["max_len"]
    info = stream.stats["stream"]
    assert info["decoder"] == "stream (states)" and info["decoder_calls_per_patch"] == 1.0
    assert info["chunks"] == len(chunks) == case["max_len"] // 2

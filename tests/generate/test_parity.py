"""The Core ML generator reproduces patches.reference.ReferencePipeline, with identical noise.

Two comparisons per case:
- logic: the generator's own code driving the FP32 torch components (tests/generate/torch_models.py)
  must give the reference's patches to float32 rounding — this isolates the pipeline (tokens,
  prompt windows, prefill, sampler, stop and length rules, decoding context) from conversion error;
- Core ML: the same code driving the converted fp16 packages in the interpreter's fp32 mode.
  fp32 mode keeps computed values in fp32 but the packages store fp16 weights; on the tiny random
  fixture those weights alone move the latents by ~1.2e-2 rel-L2 (rounding the torch weights to
  fp16 gives the same figure), so the tolerance is COREML_TOLERANCE, not the 1e-3 first asked for.
"""
import numpy as np
import pytest

from generate import Synthesizer

from .conftest import PROMPT_TEXT, rel_l2, shared_noise
from .torch_models import TorchModels

LOGIC_TOLERANCE = 1e-5
COREML_TOLERANCE = 3e-2   # see the module docstring and TRIALS.md: the fp16 weights dominate
CASES = {
    "english": dict(text="Hello, this is a test.", max_len=8),
    "chinese": dict(text="你好，这是一个语音克隆系统的测试。今天天气很好", max_len=8),
    "clone_7s_stereo_48k": dict(text="Hello there.", prompt=True, max_len=6),
    "stop_head": dict(text="Hello, this is a test.", stop=True),
}
RESULTS = {}  # the reference run of each case, shared by both comparisons


def _case(name, request):
    case = dict(CASES[name])
    stop = case.pop("stop", False)
    prompt = request.getfixturevalue("prompt7_wav") if case.pop("prompt", False) else None
    reference = request.getfixturevalue("ref_stop" if stop else "ref_never")
    checkpoint = request.getfixturevalue("tiny_dir" if stop else "tiny_never_stop_dir")
    out = request.getfixturevalue("stop_out" if stop else "never_out")
    kwargs = dict(case, prompt_wav=prompt, prompt_text=PROMPT_TEXT if prompt else None)
    if name not in RESULTS:
        torch_noise, _ = shared_noise(1)
        RESULTS[name] = reference.generate(noise=torch_noise, **kwargs)
    return RESULTS[name], checkpoint, out, kwargs


def _generate(synth, kwargs):
    _, numpy_noise = shared_noise(1)
    # the reference's defaults: no bad-case retry (retries draw new noise; tested separately)
    return synth.generate(noise=numpy_noise, retry_badcase=False, **kwargs)


@pytest.mark.parametrize("name", CASES)
def test_logic_parity_with_torch_components(name, request):
    want, checkpoint, out, kwargs = _case(name, request)
    synth = Synthesizer(out, precision="fp16", backend="mil", interpreter_precision="fp32")
    synth.models = TorchModels(checkpoint)
    got = _generate(synth, kwargs)
    assert got.latents.shape == want.latents.shape
    assert got.prefill_length == want.prefill_length
    assert rel_l2(got.latents, want.latents) <= LOGIC_TOLERANCE
    assert rel_l2(got.audio, want.audio) <= LOGIC_TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_coreml_parity_fp32_interpreter(name, request):
    want, _, out, kwargs = _case(name, request)
    synth = Synthesizer(out, precision="fp16", backend="mil", interpreter_precision="fp32")
    got = _generate(synth, kwargs)
    latent_error, audio_error = rel_l2(got.latents, want.latents), rel_l2(got.audio, want.audio)
    print(f"\n{name}: {got.latents.shape[0]} patches (reference {want.latents.shape[0]}), "
          f"latents rel-L2 {latent_error:.2e}, audio rel-L2 {audio_error:.2e}")
    assert got.latents.shape == want.latents.shape
    assert got.audio.shape == want.audio.shape
    assert latent_error <= COREML_TOLERANCE
    if name == "stop_head":  # the stop head, not the length limit, ended both runs
        assert want.latents.shape[0] < got.stats["max_len"]
    if "prompt_wav" in kwargs and kwargs["prompt_wav"]:
        assert got.stats["model_calls"]["audio_vae_encoder"] == 2  # 7 s: two 5 s windows


def test_fp16_interpreter_gives_finite_audio_of_the_right_length(never_out):
    synth = Synthesizer(never_out, precision="fp16", backend="mil", interpreter_precision="fp16")
    audio, rate, stats = synth.synthesize("Hello, this is a test.", seed=0, max_len=5)
    assert rate == 44100 and audio.dtype == np.float32
    assert audio.shape == (5 * 4 * 1764,) and np.isfinite(audio).all() and np.abs(audio).max() <= 1
    assert stats["generated_patches"] == 5 and stats["calls_per_generated_patch"]["locdit_step"] == 9


def test_bad_case_retry_matches_reference(ref_never, tiny_never_stop_dir, never_out):
    """The never-stopping fixture always reaches the length limit: every try is a bad case, 3 tries,
    each drawing fresh noise from the same sequence, counting the prompt context as voxcpm does."""
    torch_noise, numpy_noise = shared_noise(2, count=200)
    want = ref_never.generate("Hi.", retry_badcase=True, noise=torch_noise)
    synth = Synthesizer(never_out, precision="fp16", backend="mil", interpreter_precision="fp32")
    synth.models = TorchModels(tiny_never_stop_dir)
    got = synth.generate("Hi.", retry_badcase=True, noise=numpy_noise)
    assert got.retries == want.retries == 2 and got.stats["generated_patches"] == 3 * got.latents.shape[0]
    assert got.latents.shape == want.latents.shape and rel_l2(got.latents, want.latents) <= LOGIC_TOLERANCE

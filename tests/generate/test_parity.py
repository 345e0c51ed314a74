"""The Core ML generator reproduces reference.generator.ReferencePipeline, with identical noise.

Two comparisons per case:
- logic: the Core ML steps' own code driving the FP32 torch components (tests/generate/torch_models.py)
  must give the reference's patches to float32 rounding — this isolates the pipeline (tokens,
  prompt windows, prefill, sampler, stop and length rules, decoding context) from conversion error;
- Core ML: the same code driving the FP32 reference build (`python -m convert --precision fp32`:
  the same traces and graph, FLOAT32 compute, fp32 weights and I/O) in the interpreter's fp32 mode,
  held to COREML_TOLERANCE = 1e-3: this isolates the generator and the converted graph from fp16.
- fp16 effects: one case on the published fp16 packages, still in the fp32 interpreter mode. fp32
  mode keeps computed values in fp32 but those packages store fp16 weights; on the tiny random
  fixture the weights alone move the latents by ~1.2e-2 rel-L2 (rounding the torch weights to fp16
  gives the same figure), hence FP16_WEIGHTS_TOLERANCE. `validate` measures fp16 effects per component.
"""
import numpy as np
import pytest

from generate import Synthesizer

from .conftest import PROMPT_TEXT, rel_l2, shared_noise
from .torch_models import TorchModels

LOGIC_TOLERANCE = 1e-5
COREML_TOLERANCE = 1e-3         # fp32 packages in the fp32 interpreter
FP16_WEIGHTS_TOLERANCE = 3e-2   # fp16 packages: see the module docstring and TRIALS.md, the fp16 weights dominate
CASES = {
    "english": dict(text="Hello, this is a test.", max_len=8),
    "chinese": dict(text="你好，这是一个语音克隆系统的测试。今天天气很好", max_len=8),
    "clone_7s_stereo_48k": dict(text="Hello there.", prompt=True, max_len=6),
    "stop_head": dict(text="Hello, this is a test.", stop=True),
}
RESULTS = {}  # the reference run of each case, shared by every comparison


@pytest.fixture(scope="module")
def stop_out_fp32(tiny_dir, tmp_path_factory):
    """The FP32 reference build of `tiny_dir` in its own OUT (the shared `tiny_coreml` OUT is fp16 + int8,
    and the convert and validate tests check exactly that)."""
    from convert.cli import main

    out = tmp_path_factory.mktemp("stop_fp32") / "out"
    assert main(["--model", str(tiny_dir), "--precision", "fp32", "--out", str(out)]) == 0
    return out


def _case(name, request, precision="fp32"):
    case = dict(CASES[name])
    stop = case.pop("stop", False)
    prompt = request.getfixturevalue("prompt7_wav") if case.pop("prompt", False) else None
    reference = request.getfixturevalue("ref_stop" if stop else "ref_never")
    checkpoint = request.getfixturevalue("tiny_dir" if stop else "tiny_never_stop_dir")
    if precision == "fp32":
        out = request.getfixturevalue("stop_out_fp32" if stop else "tiny_never_stop_fp32")
    else:
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
    synth = Synthesizer(out, precision="fp32", backend="mil", compute="fp32")
    synth.steps.packages = TorchModels(checkpoint, synth.steps.layout)
    got = _generate(synth, kwargs)
    assert got.latents.shape == want.latents.shape
    assert got.prefill_length == want.prefill_length
    assert rel_l2(got.latents, want.latents) <= LOGIC_TOLERANCE
    assert rel_l2(got.audio, want.audio) <= LOGIC_TOLERANCE


def _coreml_run(name, request, precision):
    want, _, out, kwargs = _case(name, request, precision)
    synth = Synthesizer(out, precision=precision, backend="mil", compute="fp32")
    got = _generate(synth, kwargs)
    latent_error, audio_error = rel_l2(got.latents, want.latents), rel_l2(got.audio, want.audio)
    print(f"\n{name} ({precision} packages): {got.latents.shape[0]} patches (reference {want.latents.shape[0]}), "
          f"latents rel-L2 {latent_error:.2e}, audio rel-L2 {audio_error:.2e}")
    assert got.latents.shape == want.latents.shape
    assert got.audio.shape == want.audio.shape
    return want, got, kwargs, latent_error


def test_fp16_packages_parity_fp32_interpreter(request):
    """The published fp16 packages: the fp16-stored weights move the latents ~1e-2 (fp16 effects)."""
    *_, latent_error = _coreml_run("english", request, "fp16")
    assert latent_error <= FP16_WEIGHTS_TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_coreml_parity_fp32_interpreter(name, request):
    want, got, kwargs, latent_error = _coreml_run(name, request, "fp32")
    assert latent_error <= COREML_TOLERANCE
    if name == "stop_head":  # the stop head, not the length limit, ended both runs
        assert want.latents.shape[0] < got.stats["max_len"]
    if "prompt_wav" in kwargs and kwargs["prompt_wav"]:
        assert got.stats["model_calls"]["audio_vae_encoder"] == 2  # 7 s: two 5 s windows


def test_fp16_interpreter_gives_finite_audio_of_the_right_length(never_out):
    synth = Synthesizer(never_out, precision="fp16", backend="mil", compute="fp16")
    audio, rate, stats = synth.synthesize("Hello, this is a test.", seed=0, max_len=5)
    assert rate == 44100 and audio.dtype == np.float32
    assert audio.shape == (5 * 4 * 1764,) and np.isfinite(audio).all() and np.abs(audio).max() <= 1
    assert stats["generated_patches"] == 5 and stats["calls_per_generated_patch"]["locdit_step"] == 9


def test_bad_case_retry_matches_reference(ref_never, tiny_never_stop_dir, never_out):
    """The never-stopping fixture always reaches the length limit: every try is a bad case, 3 tries,
    each drawing fresh noise from the same sequence, counting the prompt context as voxcpm does."""
    torch_noise, numpy_noise = shared_noise(2, count=200)
    want = ref_never.generate("Hi.", retry_badcase=True, noise=torch_noise)
    synth = Synthesizer(never_out, precision="fp16", backend="mil", compute="fp32")
    synth.steps.packages = TorchModels(tiny_never_stop_dir, synth.steps.layout)
    got = synth.generate("Hi.", retry_badcase=True, noise=numpy_noise)
    assert got.retries == want.retries == 2 and got.stats["generated_patches"] == 3 * got.latents.shape[0]
    assert got.latents.shape == want.latents.shape and rel_l2(got.latents, want.latents) <= LOGIC_TOLERANCE

"""Generator parity with an adapter: the Core ML generator on base + adapter (the FP32 reference build, in the
interpreter's fp32 mode) gives the latents of voxcpm's own LoRA-enabled generate() — the adapter live in its
LoRALinear layers — with the same noise; the base's packages on that noise do not (the adapter mattered)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from generate import Synthesizer
from tests.generate.conftest import rel_l2
from tests.helpers import write_stereo_prompt

COREML_TOLERANCE = 1e-3        # fp32 packages in the fp32 interpreter, as tests/generate/test_parity.py
PROMPT_TEXT = "This is the prompt transcript."
CASES = {"english": dict(text="Hello, this is a test.", max_len=8),
         "voice_prompt": dict(text="Hello there.", prompt=True, max_len=6)}
SEED = 7


def _lora_model(checkpoint, adapter_dir):
    """voxcpm's own VoxCPMModel built with the adapter's LoRAConfig, the adapter loaded by its load_lora_weights."""
    from checkpoint.loading import load_voxcpm
    from checkpoint.lora import open_adapter

    adapter = open_adapter(adapter_dir, adapter_dir / "train.yaml", Path(checkpoint), 44100)
    return load_voxcpm(checkpoint, adapter=adapter)


@pytest.fixture(scope="module")
def voxcpm_lora(tiny_never_stop_dir, never_stop_adapter):
    return _lora_model(tiny_never_stop_dir, never_stop_adapter)


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory):
    return write_stereo_prompt(tmp_path_factory.mktemp("prompt") / "prompt.wav", 3.3)


def _voxcpm(model, case, prompt_wav) -> np.ndarray:
    """voxcpm's latents of the generated patches (without the prompt context it returns first)."""
    torch.manual_seed(SEED)
    cache = model.build_prompt_cache(PROMPT_TEXT, str(prompt_wav)) if case.get("prompt") else None
    _, _, latents = model.generate_with_prompt_cache(case["text"], cache, max_len=case["max_len"])
    return latents.numpy()[2:] if cache else latents.numpy()


def _coreml(out, case, prompt_wav):
    """The Core ML generator fed voxcpm's noise: torch.randn per patch from the same seed."""
    torch.manual_seed(SEED)
    prompt = dict(prompt_wav=prompt_wav, prompt_text=PROMPT_TEXT) if case.get("prompt") else {}
    synth = Synthesizer(out, precision="fp32", backend="mil", compute="fp32")
    return synth.generate(case["text"], **prompt, max_len=case["max_len"], retry_badcase=False,
                          noise=lambda: torch.randn(1, synth.feat_dim, synth.patch_size).numpy())


@pytest.mark.parametrize("name", CASES)
def test_coreml_generator_matches_voxcpm_lora_generate(name, voxcpm_lora, lora_out, tiny_never_stop_fp32,
                                                       prompt_wav):
    case = CASES[name]
    want = _voxcpm(voxcpm_lora, case, prompt_wav)
    got = _coreml(lora_out, case, prompt_wav)
    base = _coreml(tiny_never_stop_fp32, case, prompt_wav)
    print(f"\n{name}: {want.shape[0]} patches; latents rel-L2 {rel_l2(got.latents, want):.2e} (base packages: "
          f"{rel_l2(base.latents, want):.2e})")
    assert got.latents.shape == want.shape == (case["max_len"], 4, 64)
    assert rel_l2(got.latents, want) <= COREML_TOLERANCE
    assert rel_l2(base.latents, want) > 100 * COREML_TOLERANCE


def test_e2e_reference_runs_the_adapter_live(voxcpm_lora, tiny_never_stop_dir, never_stop_adapter, prompt_wav):
    """validate's end-to-end reference (the one loop over the patched torch modules) on voxcpm's LoRA model,
    LoRALinear layers live, gives voxcpm's own latents."""
    from reference.generator import ReferencePipeline

    reference = ReferencePipeline(_lora_model(tiny_never_stop_dir, never_stop_adapter))
    for case in CASES.values():
        want = _voxcpm(voxcpm_lora, case, prompt_wav)
        torch.manual_seed(SEED)
        prompt = dict(prompt_wav=prompt_wav, prompt_text=PROMPT_TEXT) if case.get("prompt") else {}
        got = reference.generate(case["text"], **prompt, max_len=case["max_len"])
        assert np.abs(got.latents - want).max() <= 1e-5

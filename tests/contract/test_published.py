"""The published layout's declaration: torch-free, and at real sizes exactly the published interface."""
import subprocess
import sys

from checkpoint.fixture import make_config
from contract.generation import generation_config
from contract.published import COMPONENTS, OPTIONAL, declare as interfaces
from contract.sizes import model_sizes
from contract.streaming import NAME as STREAM_DECODER, stream_decoder

from tests.conftest import ROOT

FULL = make_config(full=True, vocab_size=73448)

CACHE = (1, 2, 512, 64)
PUBLISHED = {
    "audio_vae_encoder": ([("audio", (1, 1, 220500))], [("latent", (1, 64, 125))]),
    "audio_vae_decoder": ([("latent", (1, 64, 4))], [("audio", (1, 1, 4 * 1764))]),
    "feat_encoder": ([("feat", (1, 1, 4, 64))], [("embedding", (1, 1, 1024))]),
    "base_lm_step": ([("embed", (1, 1024)), ("position", (1,))]
                     + [(f"k{i}", CACHE) for i in range(24)] + [(f"v{i}", CACHE) for i in range(24)],
                     [("lm_hidden", (1, 1024)), ("lm_hidden_fsq", (1, 1024)), ("stop_logit", (1, 2))]
                     + [(f"out_k{i}", CACHE) for i in range(24)] + [(f"out_v{i}", CACHE) for i in range(24)]),
    "residual_lm_step": ([("embed", (1, 1024)), ("position", (1,))]
                         + [(f"k{i}", CACHE) for i in range(8)] + [(f"v{i}", CACHE) for i in range(8)],
                         [("res_hidden", (1, 1024))]
                         + [(f"out_k{i}", CACHE) for i in range(8)] + [(f"out_v{i}", CACHE) for i in range(8)]),
    "locdit_step": ([("x", (2, 64, 4)), ("mu", (2, 1024)), ("t", (2,)), ("cond", (2, 64, 4)), ("dt", (2,))],
                    [("velocity", (2, 64, 4))]),
}


def test_full_size_declaration_is_the_published_interface():
    declared = interfaces(FULL)
    assert declared.required == COMPONENTS and declared.optional == OPTIONAL == (STREAM_DECODER,)
    for name, (inputs, outputs) in PUBLISHED.items():
        assert [(t.name, t.shape) for t in declared[name].inputs] == inputs, name
        assert [(t.name, t.shape) for t in declared[name].outputs] == outputs, name
    dtypes = {t.name: t.dtype for c in declared for t in c.inputs + c.outputs}
    assert dtypes.pop("position") == "int32"
    assert set(dtypes.values()) == {"fp16"}
    assert declared["audio_vae_decoder"].inputs[0].flexible == {2: (4, 2000)}
    assert declared["audio_vae_decoder"].outputs[0].flexible == {2: (4 * 1764, 2000 * 1764)}
    flexible = [t.name for c in declared for t in c.inputs + c.outputs if t.flexible]
    assert flexible == ["latent", "audio"]


# VoxCPM 1.5's decoder (width 2048, rates 7, 7, 6, 3, 2): per block the transposed convolution's input
# frame and the residual convolutions' 6, 18, 54 frames at half the width
STREAM_CONTEXTS = [(64, 6)] + [shape for i in range(5) for shape in
                               [(2048 >> i, 1), (1024 >> i, 6), (1024 >> i, 18), (1024 >> i, 54)]] + [(64, 6)]


def test_streaming_decoder_declaration_at_full_size():
    explicit = interfaces(FULL)[STREAM_DECODER]
    contexts = [(f"ctx{i}", (1, c, f)) for i, (c, f) in enumerate(STREAM_CONTEXTS)]
    assert [(t.name, t.shape) for t in explicit.inputs] == [("latent", (1, 64, 4))] + contexts
    assert [(t.name, t.shape) for t in explicit.outputs] == [("audio", (1, 1, 7056))] + [
        (f"out_{n}", shape) for n, shape in contexts]
    assert explicit.carried.elements() == 159488 and not explicit.states
    assert explicit.deployment_target == "macOS14" and explicit.kind == "stream_step"
    stateful = stream_decoder(model_sizes(FULL), stateful=True)
    assert [t.name for t in stateful.inputs] == ["latent"] and [t.name for t in stateful.outputs] == ["audio"]
    assert [(t.name, t.shape) for t in stateful.states] == contexts and stateful.deployment_target == "macOS15"
    # the FP32 reference build: fp32 I/O, but Core ML states are fp16 only
    fp32 = stateful.with_float_dtype("fp32")
    assert {t.dtype for t in fp32.inputs + fp32.outputs} == {"fp32"} and {t.dtype for t in fp32.states} == {"fp16"}
    assert {t.dtype for t in explicit.with_float_dtype("fp32").inputs} == {"fp32"}
    assert all(t.description for t in explicit.inputs + explicit.outputs + stateful.states)


def test_generation_config_values():
    config = generation_config(FULL, tokenizer_files=["tokenizer.json"])
    assert config["token_rate"] == 6.25 and config["hop_length"] == 1764 and config["sample_rate"] == 44100
    assert (config["cfg_value"], config["inference_timesteps"], config["sway_sampling_coef"]) == (2.0, 10, 1.0)
    assert config["cfg_zero_star"] and config["audio_start_token"] == 101 and config["min_len"] == 2
    assert (config["max_length_ratio"], config["max_length_offset"]) == (6.0, 10)
    assert config["max_context"] == 512 and config["vae_encoder_window"] == 220500
    assert config["decoder_frames"] == [4, 2000] and config["text_embedding_scale"] == 12.0


def test_contract_imports_no_torch():
    code = ("import sys, convert, contract.published, contract.layout, contract.artifacts, contract.atomic, "
            "contract.generation, contract.defaults, contract.cli; "
            "heavy = [m for m in ('torch', 'coremltools', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

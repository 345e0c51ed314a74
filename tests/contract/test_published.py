"""The published layout's declaration: torch-free, and at real sizes exactly the published interface."""
import subprocess
import sys

from checkpoint.fixture import make_config
from contract.generation import generation_config
from contract.published import COMPONENTS, declare as interfaces

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
    assert declared.names == COMPONENTS
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


def test_generation_config_values():
    config = generation_config(FULL, tokenizer_files=["tokenizer.json"])
    assert config["token_rate"] == 6.25 and config["hop_length"] == 1764 and config["sample_rate"] == 44100
    assert (config["cfg_value"], config["inference_timesteps"], config["sway_sampling_coef"]) == (2.0, 10, 1.0)
    assert config["cfg_zero_star"] and config["audio_start_token"] == 101 and config["min_len"] == 2
    assert (config["max_length_ratio"], config["max_length_offset"]) == (6.0, 10)
    assert config["max_context"] == 512 and config["vae_encoder_window"] == 220500
    assert config["decoder_frames"] == [4, 2000] and config["text_embedding_scale"] == 12.0


def test_contract_imports_no_torch():
    code = ("import sys, convert, contract.published, contract.fast, contract.layout, contract.artifacts, contract.atomic, "
            "contract.generation, contract.defaults, contract.cli; "
            "heavy = [m for m in ('torch', 'coremltools', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

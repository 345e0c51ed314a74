"""`convert --layout fast` on the tiny fixture: the declared interface (functions, states, macOS 15),
weights shared between the lm package's functions, int8, described tensors, the published layout untouched."""
import json

import coremltools as ct
import pytest

from contract.fast import COMPONENTS, LM_FUNCTIONS, LM_PARTS
from contract.layout import MACOS15_SPEC_VERSION, options_from_metadata
from convert.check_specs import check_out
from tests.conftest import TEST_PREFILL_CHUNK


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())["artifacts"]


def test_check_specs_passes_every_fast_package(tiny_both_coreml):
    rows = check_out(tiny_both_coreml, layout_name="fast")
    assert {(r["component"], r["precision"]) for r in rows} == {(c, p) for c in COMPONENTS for p in ("fp16", "int8")}
    assert all(not r["problems"] for r in rows), rows


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_lm_is_one_package_with_two_functions_and_the_caches_as_states(tiny_both_coreml, precision):
    spec = ct.models.MLModel(str(tiny_both_coreml / f"{precision}-fast" / "lm.mlpackage"),
                             skip_model_load=True).get_spec()
    assert spec.specificationVersion == MACOS15_SPEC_VERSION
    functions = {f.name: f for f in spec.description.functions}
    assert list(functions) == list(LM_FUNCTIONS) and spec.description.defaultFunctionName == LM_FUNCTIONS[0]
    states = {name: [s.name for s in functions[name].state] for name in functions}
    assert states["step"] == states["prefill"] and len(states["step"]) == 2 * (3 + 2)   # tiny: 3 + 2 layers
    assert states["step"][0] == "base_k0" and states["step"][-1] == "residual_v1"


def test_the_lm_functions_share_one_copy_of_the_weights(tiny_both_coreml, tiny_dir):
    """Two functions over the same parts would be ~2x the parts' fp16 bytes if the merge kept two copies."""
    from checkpoint.loading import load_voxcpm

    model = load_voxcpm(tiny_dir)
    parameters = sum(p.numel() for part in LM_PARTS if hasattr(model, part)
                     for p in getattr(model, part).parameters())
    weight_bin = next((tiny_both_coreml / "fp16-fast" / "lm.mlpackage").rglob("weight.bin")).stat().st_size
    assert 2 * parameters * 0.9 <= weight_bin <= 2 * parameters * 1.25, (weight_bin, 2 * parameters)


def test_options_are_recorded_and_int8_is_quantized(tiny_both_coreml):
    from runtime.package_info import read

    manifest = _manifest(tiny_both_coreml)
    for precision in ("fp16", "int8"):
        for name in COMPONENTS:
            entry = manifest[f"{precision}-fast/{name}"] if f"{precision}-fast/{name}" in manifest else None
            assert entry is not None, sorted(manifest)
            assert entry["peak_rss_mib"] > 0 and entry["options"]["max_context"] == 1024   # tiny: max_length 1024
            if precision == "int8":
                assert entry["weights"]["int8_weights"] > 0
    meta = read(tiny_both_coreml / "fp16-fast" / "lm.mlpackage").metadata
    assert options_from_metadata(meta) == {"max_context": 1024, "prefill_chunk": TEST_PREFILL_CHUNK, "timesteps": 10}


def test_every_function_tensor_is_described(tiny_both_coreml, tiny_dir):
    from contract.layout import declare
    from runtime.package_info import read

    layout = declare(json.loads((tiny_dir / "config.json").read_text()), "fast", prefill_chunk=TEST_PREFILL_CHUNK)
    for function in layout["lm"].functions:
        package = read(tiny_both_coreml / "fp16-fast" / "lm.mlpackage", function.name)
        for tensor in function.inputs + function.outputs:
            assert package.descriptions.get(tensor.name) == tensor.description, (function.name, tensor.name)


def test_the_published_layout_is_untouched(tiny_coreml, tiny_both_coreml):
    before, after = _manifest(tiny_coreml), _manifest(tiny_both_coreml)
    published = {k: v["sha256"] for k, v in before.items() if k != "constants"}
    assert published and {k: after[k]["sha256"] for k in published} == published


def test_int8_keeps_the_host_projections_fp16_as_the_published_int8_does(tiny_both_coreml):
    """The published layout runs enc_to_lm_proj, lm_to_dit_proj and res_to_dit_proj on the host in fp32: the
    fast int8 quantizes the same weights as the published one, every other linear weight of the lm int8."""
    from contract.fast import HOST_PROJECTIONS
    from convert.quantize import ops_reading
    from runtime.mil.loader import read_program

    report = _manifest(tiny_both_coreml)["int8-fast/lm"]["weights"]
    fp16 = {c["name"] for c in report["fp16_large_consts"]}
    assert {f"p_{part}_weight_to_fp16" for part in HOST_PROJECTIONS} <= fp16
    assert not any("_layers_" in name for name in fp16)   # the LMs' and encoder's own weights are int8
    program = read_program(tiny_both_coreml / "fp16-fast" / "lm.mlpackage")
    assert len(ops_reading(program, HOST_PROJECTIONS)) == 2 * len(HOST_PROJECTIONS)   # in both functions
    with pytest.raises(ValueError, match="p_no_such_part_weight"):
        ops_reading(program, ("no_such_part",))

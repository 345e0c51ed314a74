"""Every converted tiny package declares exactly the interface its contract declaration gives."""
import coremltools as ct
import pytest

from convert.check_specs import MACOS14_SPEC_VERSION, check_out, compare, spec_interface
from contract.published import COMPONENTS

FP16, INT32 = 65552, 131104


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("name", COMPONENTS)
def test_spec_matches_declaration(tiny_out, tiny_interfaces, name, precision):
    package = tiny_out / precision / f"{name}.mlpackage"
    assert compare(spec_interface(package), tiny_interfaces[name]) == []
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion == MACOS14_SPEC_VERSION
    for feature in list(spec.description.input) + list(spec.description.output):
        want = INT32 if feature.name == "position" else FP16
        assert feature.type.multiArrayType.dataType == want, feature.name


def test_decoder_length_is_a_range(tiny_out):
    for precision in ("fp16", "int8"):
        spec = ct.models.MLModel(str(tiny_out / precision / "audio_vae_decoder.mlpackage"),
                                 skip_model_load=True).get_spec()
        ranges = spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges
        assert [(r.lowerBound, r.upperBound) for r in ranges] == [(1, 1), (64, 64), (4, 2000)]


def test_check_specs_reports_all_twelve(tiny_out):
    rows = check_out(tiny_out)
    assert len(rows) == 12 and all(not row["problems"] for row in rows)


def test_compare_catches_a_wrong_shape(tiny_out, tiny_interfaces):
    actual = spec_interface(tiny_out / "fp16" / "feat_encoder.mlpackage")
    actual["inputs"][0]["shape"] = [1, 1, 5, 64]
    assert compare(actual, tiny_interfaces["feat_encoder"])


def test_manifest_records_every_artifact(tiny_out):
    import json

    manifest = json.loads((tiny_out / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"constants"} | {f"{p}/{c}" for p in ("fp16", "int8") for c in COMPONENTS}
    assert set(manifest["source"]["weights_sha256"]) >= {"model.safetensors", "audiovae.pth", "config.json"}
    assert {"coremltools", "torch", "numpy", "git_commit", "version"} <= set(manifest["toolkit"])
    for key, entry in manifest["artifacts"].items():
        if key != "constants":
            assert entry["sha256"] and entry["size_bytes"] > 0 and entry["interface"]["inputs"]
            assert entry["compiled"].endswith(".mlmodelc") or entry["compiled"] == "compile skipped: needs macOS"
        if key.startswith("int8/"):
            assert entry["weights"]["int8_weights"] > 0


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("name", COMPONENTS)
def test_every_tensor_and_package_is_described(tiny_out, tiny_interfaces, name, precision):
    """What a developer sees in Xcode: each input and output's description, the package's author,
    version, license and short description, all from the declaration."""
    from runtime.package_info import read

    package = read(tiny_out / precision / f"{name}.mlpackage")
    declared = tiny_interfaces[name]
    for tensor in declared.inputs + declared.outputs:
        assert tensor.description and package.descriptions.get(tensor.name) == tensor.description, tensor.name
    meta = package.metadata
    assert meta["short_description"] == f"{declared.description} ({precision} weights)"
    assert meta["author"].startswith("voxcpm-coreml") and meta["license"] and meta["version"]
    assert (meta["voxcpm.component"], meta["voxcpm.precision"], meta["voxcpm.layout"]) == (name, precision, "published")

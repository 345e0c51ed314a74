"""`--precision fp32`: the reference build for parity checks (same traces, FLOAT32 compute, fp32 I/O)."""
import json

import coremltools as ct
import numpy as np
import pytest

from convert.hashing import tree_sha256
from convert.check_specs import check_out, compare, spec_interface
from convert.cli import build_parser, parse_settings
from contract.published import COMPONENTS, declare as interfaces
from runtime.mil.loader import read_program as load_program

FP32, INT32 = 65568, 131104


@pytest.fixture(scope="module")
def fp32_out(tiny_never_stop_fp32):
    return tiny_never_stop_fp32


@pytest.fixture(scope="module")
def never_config(tiny_never_stop_dir):
    return json.loads((tiny_never_stop_dir / "config.json").read_text())


def test_interface_float_dtype(never_config):
    published, reference = interfaces(never_config), interfaces(never_config, float_dtype="fp32")
    assert published == interfaces(never_config, float_dtype="fp16")
    for name in COMPONENTS:
        for kind in ("inputs", "outputs"):
            for p, r in zip(getattr(published[name], kind), getattr(reference[name], kind)):
                assert (p.name, p.shape, p.flexible) == (r.name, r.shape, r.flexible)
                assert p.dtype in ("fp16", "int32") and r.dtype == ("int32" if p.dtype == "int32" else "fp32")


@pytest.mark.parametrize("name", COMPONENTS)
def test_fp32_specs_have_fp32_float_io(fp32_out, never_config, name):
    package = fp32_out / "fp32" / f"{name}.mlpackage"
    assert compare(spec_interface(package), interfaces(never_config, float_dtype="fp32")[name]) == []
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    for feature in list(spec.description.input) + list(spec.description.output):
        assert feature.type.multiArrayType.dataType == (INT32 if feature.name == "position" else FP32), feature.name
    # FLOAT32 compute: no fp16 anywhere in the program (weights included)
    program = load_program(package)
    fp16 = [op.name for f in program.functions.values() for op in f.operations
            if any(getattr(o, "dtype", None) is not None and "fp16" in str(o.dtype) for o in op.outputs)
            or (op.op_type == "const" and isinstance(op.outputs[0].val, np.ndarray)
                and op.outputs[0].val.dtype == np.float16)]
    assert fp16 == []


def test_fp32_beside_untouched_fp16(fp32_out):
    manifest = json.loads((fp32_out / "manifest.json").read_text())
    assert {f"fp32/{c}" for c in COMPONENTS} | {f"fp16/{c}" for c in COMPONENTS} <= set(manifest["artifacts"])
    for c in COMPONENTS:  # the fp16 packages are still the ones the manifest recorded
        assert tree_sha256(fp32_out / "fp16" / f"{c}.mlpackage") == manifest["artifacts"][f"fp16/{c}"]["sha256"]
    rows = check_out(fp32_out)
    assert sorted({r["precision"] for r in rows}) == ["fp16", "fp32"] and len(rows) == 12
    assert all(not r["problems"] for r in rows)


def test_all_does_not_build_fp32(tiny_out):
    assert parse_settings(["--precision", "all"]).precisions == ("fp16", "int8")
    assert parse_settings(["--precision", "fp32"]).precisions == ("fp32",)
    assert not (tiny_out / "fp32").exists()  # tiny_out was converted with --precision all
    assert not any(k.startswith("fp32/") for k in json.loads((tiny_out / "manifest.json").read_text())["artifacts"])
    assert "fp32: a reference build for parity checks (not for apps)" in " ".join(build_parser().format_help().split())

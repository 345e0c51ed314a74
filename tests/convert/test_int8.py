"""INT8 packages: linear/conv weights are int8; RoPE tables and norm weights stay fp16."""
import numpy as np
import pytest

from contract.published import COMPONENTS
from convert.quantize import DEQUANTIZE_OPS, QUANTIZED_OP_TYPES, WEIGHT_THRESHOLD
from runtime.mil.loader import read_program as load_program

WEIGHTED_OPS = set(QUANTIZED_OP_TYPES)


def _ops(program):
    return [op for f in program.functions.values() for op in f.operations]


def _quantizable_weights(program) -> int:
    """fp16 consts that are the weight of a linear/conv op and big enough to quantize."""
    count = 0
    for op in _ops(program):
        if op.op_type in WEIGHTED_OPS:
            weight = op.inputs["weight"]
            if weight.op is not None and weight.op.op_type == "const" and weight.val.size >= WEIGHT_THRESHOLD:
                count += 1
    return count


@pytest.mark.parametrize("name", COMPONENTS)
def test_linear_and_conv_weights_are_int8(tiny_out, name):
    fp16, int8 = load_program(tiny_out / "fp16" / f"{name}.mlpackage"), load_program(tiny_out / "int8" / f"{name}.mlpackage")
    dequantize = [op for op in _ops(int8) if op.op_type in DEQUANTIZE_OPS]
    assert dequantize, "no quantized weights"
    for op in dequantize:
        assert op.op_type == "constexpr_affine_dequantize"  # the macOS14 form
        assert op.inputs["quantized_data"].val.dtype == np.int8
        consumers = {child.op_type for child in op.outputs[0].child_ops}
        assert consumers and consumers <= WEIGHTED_OPS, (op.name, consumers)
    assert len(dequantize) == _quantizable_weights(fp16) > 0
    size = lambda sub: sum(f.stat().st_size for f in (tiny_out / sub / f"{name}.mlpackage").rglob("*") if f.is_file())
    assert size("int8") < size("fp16")


@pytest.mark.parametrize("name", ["base_lm_step", "residual_lm_step"])
def test_rope_tables_and_norms_stay_fp16(tiny_out, tiny_config, name):
    program = load_program(tiny_out / "int8" / f"{name}.mlpackage")
    consts = {op.name: op.outputs[0].val for op in _ops(program) if op.op_type == "const"}
    rope = {k: v for k, v in consts.items() if "rope" in k}
    assert rope and all(v.dtype == np.float16 and v.shape[0] == 512 for v in rope.values()), list(rope)
    # RMSNorm weights: [hidden] fp16 consts multiplied in, never dequantized
    hidden = tiny_config["lm_config"]["hidden_size"]
    norms = [k for k, v in consts.items() if "norm" in k and isinstance(v, np.ndarray) and v.shape == (hidden,)]
    assert norms and all(consts[k].dtype == np.float16 for k in norms)


def test_manifest_weight_report(tiny_out):
    import json

    manifest = json.loads((tiny_out / "manifest.json").read_text())
    report = manifest["artifacts"]["int8/base_lm_step"]["weights"]
    assert report["quantized_non_linear_consts"] == 0
    assert {c["name"] for c in report["fp16_large_consts"]} >= {"rope_cos_to_fp16", "rope_sin_to_fp16"}

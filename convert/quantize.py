"""INT8 weights for linear / conv / conv_transpose only, and what a package holds after it.

A global OptimizationConfig quantizes every large const, RoPE tables included (TRIALS.md);
`op_type_configs` limits it to the weights of the ops that dominate the size. Embeddings, norms
and the RoPE tables stay fp16.
"""
from __future__ import annotations

import numpy as np

QUANTIZED_OP_TYPES = ("linear", "conv", "conv_transpose")
WEIGHT_THRESHOLD = 2048           # elements; smaller weights are not worth a scale vector
LARGE_CONST_ELEMENTS = 4096       # report fp16 consts at least this big that stayed fp16
DEQUANTIZE_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def int8_config():
    import coremltools.optimize.coreml as cto

    op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                            weight_threshold=WEIGHT_THRESHOLD)
    return cto.OptimizationConfig(op_type_configs={op: op_config for op in QUANTIZED_OP_TYPES})


def quantize_int8(fp16_package):
    """An int8-weight MLModel from a saved fp16 package (its program is re-read from disk)."""
    import coremltools as ct

    return quantize_model(ct.models.MLModel(str(fp16_package), skip_model_load=True))


def quantize_model(mlmodel):
    """An int8-weight MLModel from an fp16 one (one function: coremltools refuses multifunction models)."""
    import coremltools.optimize.coreml as cto

    return cto.linear_quantize_weights(mlmodel, int8_config())


def _const_array(op):
    value = op.outputs[0].val
    return value if isinstance(value, np.ndarray) else None


def weight_report(program) -> dict:
    """How many weights are int8 (dequantized into linear/conv ops) and which large consts are fp16."""
    int8_weights, int8_elements, fp16_large, fp16_large_elements, other_quantized = 0, 0, [], 0, 0
    for function in program.functions.values():
        for op in function.operations:
            if op.op_type in DEQUANTIZE_OPS:
                consumers = {child.op_type for child in op.outputs[0].child_ops}
                if consumers & set(QUANTIZED_OP_TYPES):
                    int8_weights += 1
                    int8_elements += int(np.prod(op.outputs[0].shape))
                else:
                    other_quantized += 1
            elif op.op_type == "const":
                value = _const_array(op)
                if value is not None and value.dtype == np.float16 and value.size >= LARGE_CONST_ELEMENTS:
                    fp16_large.append({"name": op.name, "shape": list(value.shape)})
                    fp16_large_elements += int(value.size)
    return {"int8_weights": int8_weights, "int8_weight_elements": int8_elements,
            "quantized_non_linear_consts": other_quantized,
            "fp16_large_consts": fp16_large, "fp16_large_const_elements": fp16_large_elements,
            "large_const_threshold_elements": LARGE_CONST_ELEMENTS}

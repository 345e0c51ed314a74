"""INT8 weights for linear / conv / conv_transpose only, and what a package holds after it.

A global OptimizationConfig quantizes every large const, RoPE tables included (TRIALS.md);
`op_type_configs` limits it to the weights of the ops that dominate the size. Embeddings, norms
and the RoPE tables stay fp16, and so do the weights of the parts a declaration lists in
`int8_fp16_parts` (the fast layout's host-side projections).
"""
from __future__ import annotations

import numpy as np

QUANTIZED_OP_TYPES = ("linear", "conv", "conv_transpose")
WEIGHT_THRESHOLD = 2048           # elements; smaller weights are not worth a scale vector
LARGE_CONST_ELEMENTS = 4096       # report fp16 consts at least this big that stayed fp16
DEQUANTIZE_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def int8_config(fp16_ops=()):
    """Per-channel int8 for every linear/conv weight, except the ops named in `fp16_ops`."""
    import coremltools.optimize.coreml as cto

    op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                            weight_threshold=WEIGHT_THRESHOLD)
    return cto.OptimizationConfig(op_type_configs={op: op_config for op in QUANTIZED_OP_TYPES},
                                  op_name_configs={name: None for name in fp16_ops})


def quantize_int8(fp16_package, fp16_parts: tuple[str, ...] = ()):
    """An int8-weight MLModel from a saved fp16 package (its program is re-read from disk)."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    from runtime.mil.loader import read_program

    fp16_ops = ops_reading(read_program(fp16_package), fp16_parts) if fp16_parts else ()
    return cto.linear_quantize_weights(ct.models.MLModel(str(fp16_package), skip_model_load=True),
                                       int8_config(fp16_ops))


def quantize_model(mlmodel, fp16_parts: tuple[str, ...] = ()):
    """An int8-weight MLModel from an fp16 one just converted (one function: coremltools refuses
    multifunction models); the linear weights of the model parts `fp16_parts` stay fp16."""
    import coremltools.optimize.coreml as cto

    fp16_ops = ops_reading(mlmodel._mil_program, fp16_parts) if fp16_parts else ()
    return cto.linear_quantize_weights(mlmodel, int8_config(fp16_ops))


def ops_reading(program, parts: tuple[str, ...]) -> list[str]:
    """The linear/conv ops whose weight is a parameter of one of `parts`: torch.export names the weight of
    part `a.b` `p_a_b_weight`. A part no op reads is a ValueError: a capture that named weights otherwise
    would quietly quantize them."""
    ops = [op for function in program.functions.values() for op in function.operations
           if op.op_type in QUANTIZED_OP_TYPES and op.inputs["weight"].op is not None]
    names, unread = [], []
    for part in parts:
        prefix = f"p_{part.replace('.', '_')}_weight"
        found = [op.name for op in ops if op.inputs["weight"].op.name.startswith(prefix)]
        names += found
        unread += [] if found else [prefix]
    if unread:
        raise ValueError(f"no linear/conv op reads a weight named {', '.join(unread)}...: the parts whose weights "
                         f"int8 keeps fp16 cannot be found")
    return names


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

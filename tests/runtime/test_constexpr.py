"""Compressed weights: every constexpr op of iOS16/iOS18, decoded natively (runtime/mil/materialise.py).

References: coremltools.optimize.coreml writes the packages and its decompress_weights() turns
them back into dense ones (coremltools' own decoder); the op definitions' docstring examples
give expected values for the layouts (bit packing, grouped and vector LUTs, sparse outputs).
"""
import numpy as np
import pytest
import coremltools as ct
import coremltools.optimize.coreml as cto
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.mil import MilModel
from runtime.mil import materialise as mt
from runtime.mil.loader import read_program

from .helpers import op_types

RNG = np.random.default_rng(0)
W = RNG.standard_normal((16, 32)).astype(np.float32)
X = RNG.standard_normal((2, 32)).astype(np.float32)


def _linear_model(target, precision=ct.precision.FLOAT32):
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 32))], opset_version=target)
    def prog(x):
        return mb.linear(x=x, weight=W)

    return ct.convert(prog, minimum_deployment_target=target, compute_precision=precision, skip_model_load=True)


def _pal(**kw):
    return cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="uniform", weight_threshold=0, **kw))


def _quant(**kw):
    return cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(weight_threshold=0, **kw))


_PRUNE = cto.OptimizationConfig(global_config=cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0))

# name -> (deployment target, compress(model) -> model, constexpr ops the package must hold)
COMPRESSIONS = {
    "palettize iOS16 4-bit": (ct.target.iOS16, lambda m: cto.palettize_weights(m, _pal(nbits=4)),
                              {"constexpr_lut_to_dense"}),
    "palettize iOS16 6-bit (indices across bytes)": (ct.target.iOS16, lambda m: cto.palettize_weights(m, _pal(nbits=6)),
                                                     {"constexpr_lut_to_dense"}),
    "palettize iOS18 per grouped channel": (ct.target.iOS18, lambda m: cto.palettize_weights(
        m, _pal(nbits=3, granularity="per_grouped_channel", group_size=4)), {"constexpr_lut_to_dense"}),
    "palettize iOS18 with per-channel scale": (ct.target.iOS18, lambda m: cto.palettize_weights(
        m, _pal(nbits=4, enable_per_channel_scale=True)), {"constexpr_lut_to_dense", "constexpr_blockwise_shift_scale"}),
    "palettize iOS18 then int8 LUT": (ct.target.iOS18, lambda m: cto.linear_quantize_weights(
        cto.palettize_weights(m, _pal(nbits=4)), _quant(mode="linear_symmetric", dtype="int8", granularity="per_tensor"),
        joint_compression=True),
        {"constexpr_lut_to_dense", "constexpr_blockwise_shift_scale"}),
    "prune iOS16": (ct.target.iOS16, lambda m: cto.prune_weights(m, _PRUNE), {"constexpr_sparse_to_dense"}),
    "prune iOS18": (ct.target.iOS18, lambda m: cto.prune_weights(m, _PRUNE), {"constexpr_sparse_to_dense"}),
    "int8 per channel iOS17": (ct.target.iOS17, lambda m: cto.linear_quantize_weights(m, _quant(mode="linear")),
                               {"constexpr_affine_dequantize"}),
    "int4 per block iOS18": (ct.target.iOS18, lambda m: cto.linear_quantize_weights(
        m, _quant(mode="linear", dtype="int4", granularity="per_block", block_size=8)),
        {"constexpr_blockwise_shift_scale"}),
    "uint4 per block fp16 iOS18": (ct.target.iOS18, lambda m: cto.linear_quantize_weights(
        m, _quant(mode="linear", dtype="uint4", granularity="per_block", block_size=16)),
        {"constexpr_blockwise_shift_scale"}),
    "prune + palettize iOS18": (ct.target.iOS18, lambda m: cto.palettize_weights(
        cto.prune_weights(m, _PRUNE), _pal(nbits=2), joint_compression=True),
        {"constexpr_lut_to_sparse", "constexpr_sparse_to_dense"}),
    "prune + int8 iOS18": (ct.target.iOS18, lambda m: cto.linear_quantize_weights(
        cto.prune_weights(m, _PRUNE), _quant(mode="linear_symmetric"), joint_compression=True),
        {"constexpr_sparse_blockwise_shift_scale", "constexpr_sparse_to_dense"}),
}


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_compressed_package_runs_as_its_decompressed_twin(name, tmp_path):
    target, compress, expected_ops = COMPRESSIONS[name]
    precision = ct.precision.FLOAT16 if "fp16" in name else ct.precision.FLOAT32
    small = compress(_linear_model(target, precision))
    small.save(str(tmp_path / "small.mlpackage"))
    assert expected_ops <= op_types(tmp_path / "small.mlpackage")
    cto.decompress_weights(small).save(str(tmp_path / "dense.mlpackage"))
    assert not any(t.startswith("constexpr") for t in op_types(tmp_path / "dense.mlpackage"))
    runs = []
    for pkg in ("small", "dense"):
        m = MilModel.from_path(tmp_path / f"{pkg}.mlpackage", compute="fp32")
        runs.append(next(iter(m.predict({m.inputs[0].name: X}).values())))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - X @ W.T).max() > 1e-4  # a compressed weight, not the original


def test_vector_palettized_package_runs_as_its_decompressed_twin(tmp_path):
    """Vector palettization written by optimize.coreml: its k-means mode needs scikit-learn (absent), so
    "unique" mode, on a weight of two values (at most 4 distinct pairs: a 2-bit LUT of 2-vectors)."""
    w = RNG.choice(np.float32([-0.5, 1.25]), (16, 32))

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 32))], opset_version=ct.target.iOS18)
    def prog(x):
        return mb.linear(x=x, weight=w)

    dense = ct.convert(prog, minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT32,
                       skip_model_load=True)
    config = cto.OpPalettizerConfig(mode="unique", cluster_dim=2, weight_threshold=0)
    small = cto.palettize_weights(dense, cto.OptimizationConfig(global_config=config))
    small.save(str(tmp_path / "small.mlpackage"))
    lut_op = next(op for op in read_program(tmp_path / "small.mlpackage").functions["main"].operations
                  if op.op_type == "constexpr_lut_to_dense")
    assert lut_op.lut.shape[-1] == 2 and lut_op.indices.shape == (8, 32)  # 2-vectors: half the indices
    cto.decompress_weights(small).save(str(tmp_path / "dense.mlpackage"))
    runs = []
    for pkg in ("small", "dense"):
        m = MilModel.from_path(tmp_path / f"{pkg}.mlpackage", compute="fp32")
        runs.append(next(iter(m.predict({m.inputs[0].name: X}).values())))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0], X @ w.T, rtol=1e-6, atol=1e-5)  # unique mode is lossless


# ---- layouts, from the definitions' docstring examples ------------------------------------

def test_ios16_lut_indices_packed_lsb_first():
    # n_bits = 2, shape (5,): byte 0 = i3 i2 i1 i0 (MSB..LSB) = 01 10 11 00, byte 1 = xx xx xx 11
    got = mt.lut_to_dense_ios16(np.array([0b01101100, 0b00000011], np.uint8), np.array([10, 20, 30, 40.]), [5])
    np.testing.assert_array_equal(got, [10, 40, 30, 20, 40])
    # a 6-bit index split across two bytes
    assert mt.unpack_bits(np.array([0b11000000, 0b00001111], np.uint8), 6, 2).tolist() == [0, 0b111111]


def test_ios16_sparse_mask_packed_lsb_first():
    # shape (5,): mask byte = x x x 0 1 1 0 0 -> elements 2 and 3 are nonzero
    got = mt.sparse_to_dense_ios16(np.array([7.0, 8.0]), np.array([0b00001100], np.uint8), [5])
    np.testing.assert_array_equal(got, [0, 0, 7, 8, 0])


def test_ios18_lut_per_group():
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1.0, 5.0, 9.0, 13.0, 2.0, 10.0, 18.0, 26.0], np.float16).reshape(2, 1, 4, 1)
    want = [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]]
    np.testing.assert_array_equal(mt.lut_to_dense(indices, lut), want)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_ios18_vector_lut(axis):
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    lut = np.array([a, b]).reshape(1, 1, 1, 2, 3)
    if axis == 1:
        want = [[[1, 1], [2, 2], [3, 3], [4, 1], [5, 2], [6, 3]],
                [[4, 4], [5, 5], [6, 6], [1, 1], [2, 2], [3, 3]]]
    else:
        want = [[a + a, b + a], [b + b, a + a]]
    np.testing.assert_array_equal(mt.lut_to_dense(indices, lut, axis), want)


def _docstring_mask():
    return np.array([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1], [0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]], np.uint8)


def test_lut_to_sparse_scalar_and_vector():
    nonzero = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1], np.uint8)
    mask, vals = mt.lut_to_sparse(_docstring_mask(), nonzero, np.array([2.0, 3.0]).reshape(1, 1, 2, 1))
    np.testing.assert_array_equal(mask, _docstring_mask())
    np.testing.assert_array_equal(vals, [2, 3, 3, 2, 3, 3, 2, 2, 3])
    mask, vals = mt.lut_to_sparse(_docstring_mask(), nonzero, np.array([[2.0, 2.0], [3.0, 3.0]]).reshape(1, 1, 2, 2), 0)
    np.testing.assert_array_equal(mask, np.repeat(_docstring_mask(), 2, axis=0))
    dense = mt.sparse_to_dense(vals, mask)
    np.testing.assert_array_equal(dense[:2, :2], [[2, 3], [2, 3]])
    np.testing.assert_array_equal(dense[2:4, [0, 1, 5]], [[3, 2, 3], [3, 2, 3]])


def test_sparse_blockwise_shift_scale_example():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]], np.uint8)
    nonzero = np.array([10, 11, 3, 4, 5, 6, 7, 8, 9], np.int8)
    scale = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    offset = np.array([[1, 2, 3, 4]], np.int8)
    out_mask, vals = mt.sparse_blockwise_shift_scale(mask, nonzero, scale, offset)
    np.testing.assert_array_equal(out_mask, mask)
    np.testing.assert_allclose(vals, [0.9, 1.8, 0.2, 0.4, 0.6, 0.9, 1.2, 0.7, 1.4], rtol=1e-6)


# ---- in programs: constexpr_cast, vector LUTs, fp16 outputs --------------------------------

def _run(prog, x):
    m = MilModel.from_program(prog, compute="fp32")
    return next(iter(m.predict({m.inputs[0].name: x}).values()))


@pytest.mark.parametrize("target", [ct.target.iOS16, ct.target.iOS18])
def test_constexpr_cast(target):
    w16 = (W * 3).astype(np.float16)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 32))], opset_version=target)
    def prog(x):
        return mb.linear(x=x, weight=mb.constexpr_cast(source_val=w16, output_dtype="fp32"))

    np.testing.assert_allclose(_run(prog, X), X @ w16.astype(np.float32).T, rtol=1e-5, atol=1e-5)


def test_vector_lut_in_a_program():
    """Vector palettization along axis 1 with random indices, built directly (the package test above
    has only the LUT layout optimize.coreml writes)."""
    lut = RNG.standard_normal((1, 1, 4, 2)).astype(np.float32)
    indices = RNG.integers(0, 4, (16, 16)).astype(np.uint8)  # uint2 indices, vector of 2 along axis 1

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 32))], opset_version=ct.target.iOS18)
    def prog(x):
        w = mb.constexpr_lut_to_dense(indices=indices.astype(types.np_uint2_dtype), lut=lut, vector_axis=1)
        return mb.linear(x=x, weight=w)

    w = lut[0, 0][indices].reshape(16, 32)  # each index -> 2 consecutive values along axis 1
    np.testing.assert_allclose(_run(prog, X), X @ w.T, rtol=1e-5, atol=1e-5)


def test_fp16_shift_scale_output_is_rounded_to_fp16():
    data = RNG.integers(-8, 8, (4, 8)).astype(np.int8)
    scale = np.array([[0.1], [0.3], [0.7], [1.1]], np.float16)

    @mb.program(input_specs=[mb.TensorSpec(shape=(8, 3), dtype=types.fp16)], opset_version=ct.target.iOS18)
    def prog(x):
        return mb.matmul(x=mb.constexpr_blockwise_shift_scale(data=data.astype(types.np_int4_dtype), scale=scale), y=x)

    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_blockwise_shift_scale as op

    want = op.decompress(data, scale, None)  # coremltools' decoder casts to the scale's dtype
    assert want.dtype == np.float16
    eye = np.zeros((8, 3), np.float16)
    eye[:3, :3] = np.eye(3)
    got = _run(prog, eye)
    np.testing.assert_array_equal(got, want.astype(np.float32)[:, :3])
    assert not np.array_equal(got, (data.astype(np.float32) * scale.astype(np.float32))[:, :3])  # fp32 product differs

"""Per-op kernels vs coremltools' value_inference, torch or numpy references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import check_op, run_program, value_inference

RNG = np.random.default_rng(0)


def rand(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


UNARY = ["abs", "ceil", "cos", "cosh", "erf", "exp", "exp2", "floor", "round", "sign", "sin", "sinh",
         "square", "tan", "tanh", "relu", "relu6", "sigmoid", "softplus", "softsign", "atan"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_vs_value_inference(name):
    x = rand(3, 7)
    x[0, :3] = [0.5, -0.5, 2.5]  # round: half to even, as value_inference and torch
    check_op(lambda v: getattr(mb, name)(x=v), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,lo,hi", [("sqrt", 0.1, 4), ("acos", -0.9, 0.9), ("asin", -0.9, 0.9), ("atanh", -0.9, 0.9)])
def test_unary_domain(name, lo, hi):
    check_op(lambda v: getattr(mb, name)(x=v), rand(4, 5, lo=lo, hi=hi), atol=1e-5)


def test_rsqrt_epsilon_is_used():
    x = rand(10, lo=0.0, hi=0.01)
    got = check_op(lambda v: mb.rsqrt(x=v, epsilon=0.5), x, rtol=1e-5)[0]
    np.testing.assert_allclose(got, 1 / np.sqrt(x + 0.5), rtol=1e-6)


def test_log_inverse_epsilon():
    x = rand(10, lo=0.1, hi=3)
    check_op(lambda v: mb.log(x=v, epsilon=0.25), x, rtol=1e-5)
    check_op(lambda v: mb.inverse(x=v, epsilon=0.25), x, rtol=1e-5)


BINARY = ["add", "sub", "mul", "real_div", "maximum", "minimum", "pow", "floor_div", "mod",
          "equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]


@pytest.mark.parametrize("name", BINARY)
def test_binary_vs_value_inference(name):
    x, y = rand(2, 3, 4, lo=0.5, hi=3), rand(3, 1, lo=0.5, hi=3)
    check_op(lambda a, b: getattr(mb, name)(x=a, y=b), x, y, rtol=1e-5, atol=1e-6)


def test_int_floor_div_mod_follow_python():
    x, y = np.array([-7, 7, -8, 9], np.int32), np.array([2, -2, 3, 4], np.int32)
    got = check_op(lambda a, b: [mb.floor_div(x=a, y=b), mb.mod(x=a, y=b)], x, y)
    np.testing.assert_array_equal(got[0], x // y)
    np.testing.assert_array_equal(got[1], x % y)


@pytest.mark.parametrize("name", ["logical_and", "logical_or", "logical_xor"])
def test_logical(name):
    x, y = RNG.random(8) > 0.5, RNG.random(8) > 0.5
    check_op(lambda a, b: getattr(mb, name)(x=a, y=b), x, y)
    check_op(lambda a: mb.logical_not(x=a), x)


@pytest.mark.parametrize("mode,fn", [
    ("EXACT", lambda t: F.gelu(t)),
    ("TANH_APPROXIMATION", lambda t: F.gelu(t, approximate="tanh")),
    ("SIGMOID_APPROXIMATION", lambda t: t * torch.sigmoid(1.702 * t)),
])
def test_gelu_modes_vs_torch(mode, fn):
    x = rand(5, 9, lo=-4, hi=4)
    got = check_op(lambda v: mb.gelu(x=v, mode=mode), x, atol=1e-5)[0]
    np.testing.assert_allclose(got, fn(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_silu_and_params_activations_vs_torch():
    x = rand(1, 3, 2, 6, lo=-4, hi=4)
    t = torch.from_numpy(x)
    (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.silu(x=v), {"x": x})
    np.testing.assert_allclose(got, F.silu(t).numpy(), atol=1e-6)
    check_op(lambda v: mb.elu(x=v, alpha=0.7), x, atol=1e-6)
    check_op(lambda v: mb.leaky_relu(x=v, alpha=0.1), x)
    check_op(lambda v: mb.clip(x=v, alpha=-1.0, beta=1.5), x)
    check_op(lambda v: mb.clamped_relu(x=v, alpha=0.1, beta=2.0), x)
    check_op(lambda v: mb.sigmoid_hard(x=v, alpha=0.3, beta=0.4), x)
    check_op(lambda v: mb.scaled_tanh(x=v, alpha=1.5, beta=0.5), x)
    check_op(lambda v: mb.thresholded_relu(x=v, alpha=0.5), x)
    check_op(lambda v: mb.softplus_parametric(x=v, alpha=np.array([1, 2, 3], np.float32),
                                              beta=np.array([0.5, 1, 2], np.float32)), x, atol=1e-5)
    check_op(lambda v: mb.prelu(x=v, alpha=np.array([0.1, 0.2, 0.3], np.float32)), x)


def test_linear_matmul_einsum():
    x, w, b = rand(2, 3, 8), rand(5, 8), rand(5)
    check_op(lambda a: mb.linear(x=a, weight=w, bias=b), x, rtol=1e-5, atol=1e-5)
    y = rand(2, 5, 8)
    check_op(lambda a, c: mb.matmul(x=a, y=c, transpose_y=True), x, y, rtol=1e-5, atol=1e-5)
    check_op(lambda a, c: mb.matmul(x=a, y=c, transpose_x=True), rand(2, 8, 3), rand(2, 8, 4), rtol=1e-5, atol=1e-5)
    check_op(lambda a, c: mb.einsum(values=(a, c), equation="nchw,nwhu->nchu"), rand(1, 2, 3, 4), rand(1, 4, 3, 5),
             rtol=1e-5, atol=1e-5)


# ---- conv -------------------------------------------------------------------

def _torch_conv_same(x, w, stride, dil, groups, lower=False):
    k, size = w.shape[-1], x.shape[-1]
    eff = (k - 1) * dil + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    before = total - total // 2 if lower else total // 2
    xp = F.pad(torch.from_numpy(x), (before, total - before))
    return F.conv1d(xp, torch.from_numpy(w), None, stride, 0, dil, groups).numpy()


@pytest.mark.parametrize("pad_type", ["valid", "same", "same_lower", "custom"])
@pytest.mark.parametrize("stride,dil,groups", [(1, 1, 1), (2, 1, 2), (1, 3, 4), (3, 2, 1)])
def test_conv1d_pad_types_vs_torch(pad_type, stride, dil, groups):
    x, w, b = rand(1, 8, 17), rand(6 if groups != 4 else 8, 8 // groups, 4), None
    kw = dict(strides=[stride], dilations=[dil], groups=groups, pad_type=pad_type)
    if pad_type == "custom":
        kw["pad"] = [2, 1]
    (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.conv(x=v, weight=w, **kw), {"x": x})
    if pad_type == "valid":
        ref = F.conv1d(torch.from_numpy(x), torch.from_numpy(w), None, stride, 0, dil, groups).numpy()
    elif pad_type == "custom":
        ref = F.conv1d(F.pad(torch.from_numpy(x), (2, 1)), torch.from_numpy(w), None, stride, 0, dil, groups).numpy()
    else:
        ref = _torch_conv_same(x, w, stride, dil, groups, lower=pad_type == "same_lower")
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    del b


def test_conv2d_vs_torch():
    x, w, b = rand(1, 4, 9, 7), rand(6, 2, 3, 3), rand(6)
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.conv(x=v, weight=w, bias=b, pad_type="custom", pad=[1, 1, 0, 2], groups=2),
                         {"x": x})
    ref = F.conv2d(F.pad(torch.from_numpy(x), (0, 2, 1, 1)), torch.from_numpy(w), torch.from_numpy(b), groups=2).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,k,pad,groups", [(4, 8, 2, 1), (2, 3, 1, 2), (1, 5, 0, 1)])
def test_conv_transpose_crop_vs_torch(stride, k, pad, groups):
    x, w, b = rand(1, 4, 11), rand(4, 6 // groups, k), rand(6)
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.conv_transpose(x=v, weight=w, bias=b, strides=[stride], pad_type="custom",
                                                     pad=[pad, pad], groups=groups), {"x": x})
    ref = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, pad, groups=groups).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_conv_transpose_output_shape_vs_torch():
    # output_padding=1 in torch: one more sample at the end than the crop gives
    x, w = rand(1, 4, 10), rand(4, 3, 4)
    ref = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), None, 2, 1, output_padding=1).numpy()
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.conv_transpose(x=v, weight=w, strides=[2], pad_type="custom", pad=[1, 1],
                                                     output_shape=list(ref.shape)), {"x": x})
    assert got.shape == ref.shape
    np.testing.assert_allclose(got[..., :-1], ref[..., :-1], rtol=1e-5, atol=1e-5)


def test_conv_transpose_same_and_valid_shapes():
    x, w = rand(1, 4, 10), rand(4, 3, 4)
    (same,) = run_program([("x", x.shape, types.fp32)],
                          lambda v: mb.conv_transpose(x=v, weight=w, strides=[2], pad_type="same"), {"x": x})
    (valid,) = run_program([("x", x.shape, types.fp32)],
                           lambda v: mb.conv_transpose(x=v, weight=w, strides=[2], pad_type="valid"), {"x": x})
    full = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), None, 2).numpy()
    assert same.shape[-1] == 20 and valid.shape == full.shape
    np.testing.assert_allclose(valid, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(same, full[..., 1:21], rtol=1e-5, atol=1e-5)


# ---- norms, softmax, attention, reductions ----------------------------------

def test_norms_softmax_vs_value_inference():
    x = rand(2, 3, 4, 5)
    g, b = rand(4, 5), rand(4, 5)
    check_op(lambda v: mb.layer_norm(x=v, axes=[-2, -1], gamma=g, beta=b, epsilon=1e-5), x, rtol=1e-4, atol=1e-5)
    check_op(lambda v: mb.softmax(x=v, axis=1), x, rtol=1e-5, atol=1e-6)
    check_op(lambda v: mb.l2_norm(x=v, epsilon=1e-6), x, rtol=1e-5, atol=1e-6)


def test_batch_instance_norm_vs_torch():
    x, m, var, g, b = rand(2, 3, 6), rand(3), rand(3, lo=0.5, hi=2), rand(3), rand(3)
    (bn,) = run_program([("x", x.shape, types.fp32)],
                        lambda v: mb.batch_norm(x=v, mean=m, variance=var, gamma=g, beta=b, epsilon=1e-3), {"x": x})
    ref = F.batch_norm(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(var), torch.from_numpy(g),
                       torch.from_numpy(b), eps=1e-3).numpy()
    np.testing.assert_allclose(bn, ref, rtol=1e-5, atol=1e-5)
    (inn,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.instance_norm(x=v, gamma=g, beta=b, epsilon=1e-5), {"x": x})
    ref = F.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(g), bias=torch.from_numpy(b), eps=1e-5).numpy()
    np.testing.assert_allclose(inn, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mask", ["none", "bool", "float"])
def test_sdpa_vs_value_inference_and_torch(mask):
    q, k, v = rand(1, 2, 3, 8), rand(1, 2, 5, 8), rand(1, 2, 5, 8)
    m = {"none": None, "bool": RNG.random((3, 5)) > 0.3, "float": rand(3, 5)}[mask]
    if mask == "bool":
        m[:, 0] = True
    arrays = (q, k, v) if m is None else (q, k, v, m)
    body = (lambda a, b, c, d=None: mb.scaled_dot_product_attention(query=a, key=b, value=c, attn_mask=d))
    got = check_op(body, *arrays, opset=ct.target.iOS18, rtol=1e-5, atol=1e-5)[0]
    tm = None if m is None else torch.from_numpy(m)
    ref = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), attn_mask=tm)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)


REDUCE = ["reduce_sum", "reduce_mean", "reduce_prod", "reduce_max", "reduce_min", "reduce_l1_norm",
          "reduce_l2_norm", "reduce_sum_square", "reduce_log_sum_exp", "reduce_argmax", "reduce_argmin"]


@pytest.mark.parametrize("name", REDUCE)
def test_reductions_vs_value_inference(name):
    x = rand(3, 4, 5, lo=0.5, hi=1.5)
    if name in ("reduce_argmax", "reduce_argmin"):
        check_op(lambda v: getattr(mb, name)(x=v, axis=1, keep_dims=True), x)
    else:
        check_op(lambda v: getattr(mb, name)(x=v, axes=[0, 2], keep_dims=False), x, rtol=1e-5, atol=1e-6)
        check_op(lambda v: getattr(mb, name)(x=v, keep_dims=True), x, rtol=1e-5, atol=1e-6)


# ---- gather / scatter -------------------------------------------------------

def test_gather_family_vs_value_inference():
    x = rand(4, 6, 3)
    idx = np.array([[0, 5], [2, 2]], np.int32)
    check_op(lambda v, i: mb.gather(x=v, indices=i, axis=1), x, idx)
    check_op(lambda v, i: mb.gather_along_axis(x=v, indices=i, axis=1), x, RNG.integers(0, 6, (4, 2, 3)).astype(np.int32))
    nd = np.array([[0, 1], [3, 5]], np.int32)
    got = run_program([("x", x.shape, types.fp32), ("i", nd.shape, types.int32)],
                      lambda v, i: mb.gather_nd(x=v, indices=i), {"x": x, "i": nd})[0]
    np.testing.assert_array_equal(got, x[nd[:, 0], nd[:, 1]])


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int8"])
def test_gather_with_narrow_index_types(dtype):
    """The converter narrows gather indices; the values must not change."""
    table = rand(300, 4)
    idx = np.array([[1, 257], [299, 0]], np.int32)
    got = run_program([("t", table.shape, types.fp32), ("i", idx.shape, types.int32)],
                      lambda t, i: mb.gather(x=t, indices=mb.cast(x=i, dtype=dtype), axis=0),
                      {"t": table, "i": idx if dtype != "int8" else idx % 100}, opset=ct.target.iOS17)[0]
    want = table[idx if dtype != "int8" else idx % 100]
    np.testing.assert_array_equal(got, want)


def test_gather_negative_indices():
    x = rand(5, 3)
    idx = np.array([-1, 0, -5], np.int32)
    # iOS15/16 semantics, and iOS17 without validate_indices: wrap like numpy
    got = check_op(lambda v, i: mb.gather(x=v, indices=i, axis=0), x, idx, opset=ct.target.iOS16)[0]
    np.testing.assert_array_equal(got, x[idx])
    (got17,) = run_program([("x", x.shape, types.fp32), ("i", idx.shape, types.int32)],
                           lambda v, i: mb.gather(x=v, indices=i, axis=0), {"x": x, "i": idx})
    np.testing.assert_array_equal(got17, x[idx])
    with pytest.raises(RuntimeError, match="out of bounds"):
        run_program([("x", x.shape, types.fp32), ("i", idx.shape, types.int32)],
                    lambda v, i: mb.gather(x=v, indices=i, axis=0, validate_indices=True), {"x": x, "i": idx})
    with pytest.raises(RuntimeError, match="out of bounds"):
        run_program([("x", x.shape, types.fp32), ("i", (1,), types.int32)],
                    lambda v, i: mb.gather(x=v, indices=i, axis=0), {"x": x, "i": np.array([5], np.int32)})


MODES = ["update", "add", "sub", "mul", "div", "max", "min"]


def _numpy_scatter(data, index, upd, mode):
    out = data.copy()
    fn = {"add": np.add.at, "sub": np.subtract.at, "mul": np.multiply.at, "div": np.divide.at,
          "max": np.maximum.at, "min": np.minimum.at}.get(mode)
    if fn is None:
        out[index] = upd
    else:
        fn(out, index, upd)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_scatter_modes(mode):
    data, upd = rand(5, 3, lo=0.5, hi=2), rand(2, 3, lo=0.5, hi=2)
    idx = np.array([1, 3], np.int32)
    (got,) = run_program([("d", data.shape, types.fp32), ("i", idx.shape, types.int32), ("u", upd.shape, types.fp32)],
                         lambda d, i, u: mb.scatter(data=d, indices=i, updates=u, axis=0, mode=mode),
                         {"d": data, "i": idx, "u": upd})
    np.testing.assert_allclose(got, _numpy_scatter(data, idx, upd, mode), rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_scatter_along_axis_modes(mode):
    data, upd = rand(3, 6, lo=0.5, hi=2), rand(3, 2, lo=0.5, hi=2)
    idx = np.array([[0, 5], [2, 3], [4, 1]], np.int32)
    body = lambda d, i, u: mb.scatter_along_axis(data=d, indices=i, updates=u, axis=1, mode=mode)  # noqa: E731
    if mode == "update":
        # value_inference ignores ``mode`` (np.put_along_axis): only valid for update
        check_op(body, data, idx, upd, rtol=1e-6)
    (got,) = run_program([("d", data.shape, types.fp32), ("i", idx.shape, types.int32), ("u", upd.shape, types.fp32)],
                         body, {"d": data, "i": idx, "u": upd})
    rows = np.arange(3)[:, None]
    np.testing.assert_allclose(got, _numpy_scatter(data, (rows, idx), upd, mode), rtol=1e-6)


def test_scatter_default_mode_is_add():
    data, upd = np.ones((3, 2), np.float32), np.full((3, 1), 5.0, np.float32)
    idx = np.zeros((3, 1), np.int32)
    (got,) = run_program([("d", data.shape, types.fp32), ("u", upd.shape, types.fp32)],
                         lambda d, u: mb.scatter_along_axis(data=d, indices=idx, updates=u, axis=1), {"d": data, "u": upd})
    np.testing.assert_array_equal(got[:, 0], 6.0)


@pytest.mark.parametrize("mode", MODES)
def test_scatter_nd_modes(mode):
    data, upd = rand(4, 5, lo=0.5, hi=2), rand(3, lo=0.5, hi=2)
    idx = np.array([[0, 1], [2, 4], [0, 1]], np.int32)  # duplicate index: accumulates for add
    (got,) = run_program([("d", data.shape, types.fp32), ("i", idx.shape, types.int32), ("u", upd.shape, types.fp32)],
                         lambda d, i, u: mb.scatter_nd(data=d, indices=i, updates=u, mode=mode),
                         {"d": data, "i": idx, "u": upd})
    np.testing.assert_allclose(got, _numpy_scatter(data, (idx[:, 0], idx[:, 1]), upd, mode), rtol=1e-6)


def test_scatter_nd_default_mode_is_add():
    data, upd = np.ones((3, 2), np.float32), np.full((1, 2), 5.0, np.float32)
    idx = np.array([[1]], np.int32)
    (got,) = run_program([("d", data.shape, types.fp32), ("i", idx.shape, types.int32), ("u", upd.shape, types.fp32)],
                         lambda d, i, u: mb.scatter_nd(data=d, indices=i, updates=u), {"d": data, "i": idx, "u": upd})
    np.testing.assert_array_equal(got[1], [6.0, 6.0])
    np.testing.assert_array_equal(got[[0, 2]], 1.0)


def test_scatter_negative_index_is_out_of_bounds_on_ios17():
    data, upd = rand(4, 2), rand(1, 2)
    specs = [("d", data.shape, types.fp32), ("i", (1,), types.int32), ("u", upd.shape, types.fp32)]
    feed = {"d": data, "i": np.array([-1], np.int32), "u": upd}
    body = lambda d, i, u: mb.scatter(data=d, indices=i, updates=u, axis=0, mode="update")  # noqa: E731
    with pytest.raises(RuntimeError, match="negative"):
        run_program(specs, body, feed, opset=ct.target.iOS17)
    (got,) = run_program(specs, body, feed, opset=ct.target.iOS16)
    np.testing.assert_array_equal(got[-1], upd[0])


def test_scatter_does_not_modify_a_live_input():
    data, upd = rand(4, 2), rand(1, 2)
    (out, same) = run_program([("d", data.shape, types.fp32), ("u", upd.shape, types.fp32)],
                              lambda d, u: [mb.scatter(data=d, indices=np.array([0], np.int32), updates=u,
                                                       mode="update"),
                                            mb.identity(x=d)], {"d": data, "u": upd})
    np.testing.assert_array_equal(same, data)
    np.testing.assert_array_equal(out[0], upd[0])


# ---- layout -----------------------------------------------------------------

def test_reshape_zero_aligns_from_the_right_on_ios17():
    """iOS17+: each 0 copies the x dim aligned from the right, 1 where none lines up (the definition's
    example (2, 50) + [1, 0, -1, 0] -> (1, 1, 2, 50)); iOS15/16 copy the same position."""
    x = rand(2, 3, 4)
    (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.reshape(x=v, shape=[0, -1]), {"x": x})
    assert got.shape == (3, 8)  # the 0 lines up with x's 3, not its leading 2
    np.testing.assert_array_equal(got, x.reshape(3, 8))
    check_op(lambda v: mb.reshape(x=v, shape=[0, -1]), x)
    y = rand(2, 50)
    (got,) = run_program([("y", y.shape, types.fp32)], lambda v: mb.reshape(x=v, shape=[1, 0, -1, 0]), {"y": y})
    assert got.shape == (1, 1, 2, 50)
    check_op(lambda v: mb.reshape(x=v, shape=[1, 0, -1, 0]), y)
    for opset in (ct.target.iOS16, ct.target.iOS17):
        (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.reshape(x=v, shape=[0, -1, 2]), {"x": x}, opset)
        assert got.shape == (2, 6, 2)  # same length as rank: the same position on every opset
        check_op(lambda v: mb.reshape(x=v, shape=[0, -1, 0]), x, opset=opset)


def test_thresholded_relu_keeps_x_at_alpha():
    x = np.array([0.5, 0.49999997, 1.0, -2.0], np.float32)
    got = check_op(lambda v: mb.thresholded_relu(x=v, alpha=0.5), x)[0]
    np.testing.assert_array_equal(got, [0.5, 0, 1.0, 0])  # x >= alpha: the boundary value passes


def test_squeeze_keeps_listed_axes_that_are_not_one():
    x = rand(2, 1, 3, 1)
    (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.squeeze(x=v, axes=[0, 1, -1]), {"x": x})
    assert got.shape == (2, 3)  # axis 0 (size 2) stays; numpy (and value_inference) would raise
    np.testing.assert_array_equal(got, torch.from_numpy(x).squeeze((0, 1, -1)).numpy())


def test_instance_norm_gamma_beta_vs_coremltools_example_and_torch():
    x = np.array([[[[-16.0, 13.0], [11.0, 16.0]], [[13.0, 15.0], [13.0, 9.0]], [[-9.0, 4.0], [-6.0, 3.0]]],
                  [[[-5.0, 1.0], [12.0, 3.0]], [[0.0, 9.0], [2.0, -8.0]], [[2.0, 5.0], [10.0, 0.0]]]], np.float32)
    g, b = np.array([-9.0, 3.2, 1.3], np.float32), np.array([-0.8, 3.4, 1.2], np.float32)
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.instance_norm(x=v, gamma=g, beta=b, epsilon=np.float32(1e-2)), {"x": x})
    np.testing.assert_allclose(got[0, 0], [[14.63721807, -5.71184211], [-4.30845865, -7.8169173]], rtol=1e-5)
    ref = F.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(g), bias=torch.from_numpy(b), eps=1e-2).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_slicing_vs_value_inference():
    x = rand(4, 6, 5)
    check_op(lambda v: mb.slice_by_index(x=v, begin=[1, 0, 4], end=[3, 5, 0], stride=[1, 2, -2],
                                         begin_mask=[False, True, False], end_mask=[False, False, True],
                                         squeeze_mask=[False, False, False]), x)
    check_op(lambda v: mb.slice_by_index(x=v, begin=[2, -3, 0], end=[3, -1, 5], squeeze_mask=[True, False, False]), x)
    check_op(lambda v: mb.slice_by_size(x=v, begin=[1, 2, 0], size=[2, -1, 3]), x)
    u = rand(2, 3, 5)
    check_op(lambda v, w: mb.slice_update(x=v, update=w, begin=[1, 0, 0], end=[3, 6, 5], stride=[1, 2, 1]), x, u,
             opset=ct.target.iOS18)


def test_layout_ops_vs_value_inference():
    x, y = rand(2, 3, 4), rand(2, 2, 4)
    check_op(lambda a, b: mb.concat(values=(a, b), axis=1), x, y)
    check_op(lambda a: mb.split(x=a, split_sizes=[1, 2], axis=1), x)
    check_op(lambda a: mb.split(x=a, num_splits=2, axis=2), x)
    check_op(lambda a: mb.stack(values=(a, a), axis=2), x)
    check_op(lambda a: mb.tile(x=a, reps=[1, 2, 3]), x)
    check_op(lambda a: mb.transpose(x=a, perm=[2, 0, 1]), x)
    check_op(lambda a: mb.expand_dims(x=a, axes=[0, -1]), x)
    check_op(lambda a: mb.squeeze(x=a, axes=[1]), rand(2, 1, 3))
    check_op(lambda a: mb.reverse(x=a, axes=[1]), x)
    check_op(lambda a: mb.flatten2d(x=a, axis=2), x)
    check_op(lambda a: mb.band_part(x=a, lower=1, upper=0), rand(2, 5, 5))
    check_op(lambda a: mb.select(cond=mb.greater(x=a, y=0.0), a=a, b=mb.mul(x=a, y=2.0)), x)
    check_op(lambda a: mb.topk(x=a, k=2, axis=-1), x)
    check_op(lambda a: mb.argsort(x=a, axis=1, ascending=True), x)
    check_op(lambda a: mb.shape(x=a), x)
    check_op(lambda a: mb.fill_like(ref_tensor=a, value=3.0), x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_modes_vs_value_inference(mode):
    check_op(lambda a: mb.pad(x=a, pad=[1, 2, 2, 1], mode=mode, constant_val=0.5), rand(2, 4, 5))


@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumsum(exclusive, reverse):
    x = rand(3, 5)
    body = lambda a: mb.cumsum(x=a, axis=1, exclusive=exclusive, reverse=reverse)  # noqa: E731
    if not exclusive:  # value_inference crashes for exclusive=True (np.zeros misuse)
        check_op(body, x, rtol=1e-5, atol=1e-6)
    (got,) = run_program([("x", x.shape, types.fp32)], body, {"x": x})
    y = np.flip(x, 1) if reverse else x
    ref = np.cumsum(y, 1) - (y if exclusive else 0)
    np.testing.assert_allclose(got, np.flip(ref, 1) if reverse else ref, rtol=1e-5, atol=1e-6)


def test_range_fill_cast():
    (r,) = run_program([("e", (1,), types.int32)],
                       lambda e: mb.range_1d(start=2, end=mb.squeeze(x=e), step=3), {"e": np.array([11], np.int32)})
    np.testing.assert_array_equal(r, [2, 5, 8])
    (f,) = run_program([("s", (2,), types.int32)], lambda s: mb.fill(shape=s, value=1.5), {"s": np.array([2, 3], np.int32)})
    np.testing.assert_array_equal(f, np.full((2, 3), 1.5))
    x = np.array([1.7, -1.7, 2.5], np.float32)
    (c,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.cast(x=v, dtype="int32"), {"x": x})
    np.testing.assert_array_equal(c, value_inference(lambda v: mb.cast(x=v, dtype="int32"), x))


def test_non_zero_and_one_hot():
    x = np.array([[0, 1.5], [2, 0]], np.float32)
    check_op(lambda v: mb.non_zero(x=v), x)
    (oh,) = run_program([("i", (3,), types.int32)], lambda i: mb.one_hot(indices=i, one_hot_vector_size=4),
                        {"i": np.array([0, 3, 1], np.int32)})
    np.testing.assert_array_equal(oh, np.eye(4)[[0, 3, 1]])


# ---- constexpr --------------------------------------------------------------

def test_constexpr_dequantize_vs_value_inference():
    from runtime.mil.materialise import affine_dequantize, blockwise_shift_scale

    q = RNG.integers(-127, 127, (6, 8)).astype(np.int8)
    scale, zp = rand(6, lo=0.01, hi=0.1), np.zeros(6, np.int8)
    ref = value_inference(lambda: mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zp, scale=scale, axis=0),
                          opset=ct.target.iOS16) if False else None
    np.testing.assert_allclose(affine_dequantize(q, zp, scale, 0), q.astype(np.float32) * scale[:, None], rtol=1e-6)
    bscale = rand(6, 2, lo=0.01, hi=0.1)
    want = q.astype(np.float32) * np.repeat(bscale, 4, axis=1)
    np.testing.assert_allclose(blockwise_shift_scale(q, bscale), want, rtol=1e-6)
    assert ref is None


# ---- fp16 per-op rounding ---------------------------------------------------

def _chain(v):
    # (x * 1.001) + 1000 - 1000: in fp16 the small part is rounded away at the add
    return mb.sub(x=mb.add(x=mb.mul(x=v, y=np.float16(1.001)), y=np.float16(1000.0)), y=np.float16(1000.0))


def test_fp16_mode_rounds_every_op_output():
    x = np.array([0.1234, 0.5678, 3.14159], np.float16)
    spec = [("x", x.shape, types.fp16)]
    (r16,) = run_program(spec, _chain, {"x": x}, compute="fp16")
    (r32,) = run_program(spec, _chain, {"x": x}, compute="fp32")
    # reference: numpy in float16, op by op
    h = x.astype(np.float16)
    step = ((h * np.float16(1.001)).astype(np.float16) + np.float16(1000.0)).astype(np.float16) - np.float16(1000.0)
    assert r16.dtype == np.float16 and r32.dtype == np.float32
    np.testing.assert_array_equal(r16, step.astype(np.float16))
    assert not np.array_equal(r16.astype(np.float32), r32)  # rounding matters here ...
    np.testing.assert_allclose(r32, x.astype(np.float32) * np.float32(np.float16(1.001)), rtol=1e-4)  # ... not in fp32


def test_fp16_rounding_is_exact_for_large_arrays():
    """The torch fast path of the rounding must equal numpy's float16 cast."""
    from runtime.mil.executor import round_fp16

    x = (RNG.standard_normal(10000) * 1e3).astype(np.float32)
    x[:4] = [1e-8, 70000.0, -65520.0, 6e-5]
    np.testing.assert_array_equal(round_fp16(x), x.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("passthrough", ["identity", "reshape"])
def test_in_place_scatter_never_changes_a_passthrough_output(passthrough):
    """A cache output that passes its input through (a dropped write) must keep the old values
    even when a scatter on the same input runs in place after it."""
    data, upd = rand(4, 3), rand(1, 3)
    idx = np.array([2], np.int32)

    def body(d, i, u):
        same = mb.identity(x=d) if passthrough == "identity" else mb.reshape(x=d, shape=[4, 3])
        return same, mb.scatter(data=d, indices=i, updates=u, axis=0, mode="update")

    same, scattered = run_program([("d", data.shape, types.fp32), ("i", idx.shape, types.int32),
                                   ("u", upd.shape, types.fp32)], body, {"d": data, "i": idx, "u": upd})
    np.testing.assert_array_equal(same, data)
    np.testing.assert_array_equal(scattered[2], upd[0])


def _lrn_reference(x, size, alpha, beta, k):
    """Channel by channel over axis -3; the window c - size//2 .. c + (size-1)//2 (torch's)."""
    out, sq, c_n = np.empty_like(x), x.astype(np.float64) ** 2, x.shape[-3]
    for c in range(c_n):
        lo, hi = max(0, c - size // 2), min(c_n, c + (size - 1) // 2 + 1)
        out[..., c, :, :] = x[..., c, :, :] / (k + alpha / size * sq[..., lo:hi, :, :].sum(axis=-3)) ** beta
    return out


@pytest.mark.parametrize("shape", [(5, 4, 3), (2, 6, 3, 4), (2, 3, 5, 3, 2)])
@pytest.mark.parametrize("size", [2, 3, 5])
def test_local_response_norm_over_axis_minus_3(shape, size):
    x = rand(*shape)
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.local_response_norm(x=v, size=size, alpha=0.01, beta=0.75, k=2.0), {"x": x})
    np.testing.assert_allclose(got, _lrn_reference(x, size, 0.01, 0.75, 2.0), rtol=1e-5, atol=1e-6)
    if x.ndim == 4:  # where axis -3 is axis 1: torch's LocalResponseNorm
        want = F.local_response_norm(torch.from_numpy(x), size, alpha=0.01, beta=0.75, k=2.0).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_local_response_norm_coremltools_example():
    """coremltools' rank-3 example (1, 3, 2): axis -3 has size 1, so each value is normalised by itself;
    torch's axis 1 (3 channels) gives other values."""
    x = np.array([[[1.0, -7.0], [5.0, -6.0], [-3.0, -5.0]]], np.float32)
    (got,) = run_program([("x", x.shape, types.fp32)], lambda v: mb.local_response_norm(x=v, size=2), {"x": x})
    np.testing.assert_allclose(got, [[[0.99996257, -6.98716545], [4.99531746, -5.99191284],
                                      [-2.99898791, -4.99531746]]], rtol=1e-6)
    assert not np.allclose(got, F.local_response_norm(torch.from_numpy(x), 2).numpy(), rtol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "lut"])
def test_conv_quantized_vs_conv_with_the_decoded_weight(kind):
    x = rand(1, 4, 9)
    wq = RNG.integers(0, 16 if kind == "lut" else 256, (6, 4, 3)).astype(np.uint8)
    if kind == "linear":
        scale, bias = rand(6, lo=0.01, hi=0.05), rand(6, lo=-1, hi=1)
        w = wq.astype(np.float32) * scale[:, None, None] + bias[:, None, None]
    else:
        scale, bias = rand(16), np.zeros(1, np.float32)
        w = scale[wq]
    (got,) = run_program([("x", x.shape, types.fp32)],
                         lambda v: mb.conv_quantized(x=v, weight=wq, quantization_type=kind, nbits=8 if kind == "linear" else 4,
                                                     quant_scale=scale, quant_bias=bias), {"x": x}, ct.target.iOS15)
    np.testing.assert_allclose(got, F.conv1d(torch.from_numpy(x), torch.from_numpy(w)).numpy(), rtol=1e-5, atol=1e-4)


def test_linear_activation_threshold_reduce_log_sum_reshape_like():
    x = rand(2, 3, 4, lo=0.1, hi=2.0)
    check_op(lambda v: mb.linear_activation(x=v, alpha=1.5, beta=-0.25), x)
    check_op(lambda v: mb.threshold(x=v, alpha=0.7), x)
    check_op(lambda v: mb.reduce_log_sum(x=v, axes=[1], keep_dims=True), x, rtol=1e-5)
    ref = rand(4, 6)
    (got,) = run_program([("x", x.shape, types.fp32), ("r", ref.shape, types.fp32)],
                         lambda v, r: mb.reshape_like(x=v, ref_tensors=(r,), begins=[0], ends=[2], end_masks=[True]),
                         {"x": x, "r": ref}, ct.target.iOS16)
    np.testing.assert_array_equal(got, x.reshape(4, 6))


def test_const_symbolic_is_a_constant():
    (got,) = run_program([("x", (2, 6), types.fp32)],
                         lambda v: mb.reshape(x=v, shape=mb._const_symbolic(val=np.array([3, 4], np.int32))),
                         {"x": np.arange(12, dtype=np.float32).reshape(2, 6)})
    np.testing.assert_array_equal(got, np.arange(12).reshape(3, 4))


@pytest.mark.parametrize("transpose", [False, True])
def test_fp16_conv_accumulates_in_fp32_and_rounds_once(transpose):
    """fp16 x and weights: the output is exact arithmetic on those fp16 values rounded once to fp16
    (Core ML's CPU computes in fp32; fp16 accumulation is the GPU's opt-in), in all but a few elements
    where the fp32 sum sits on a rounding boundary (1 ulp). An fp16 accumulator is far off."""
    x = rand(1, 8, 11, 11).astype(np.float16)
    w = (rand(8, 6, 3, 3) * 0.3).astype(np.float16) if transpose else (rand(6, 8, 3, 3) * 0.3).astype(np.float16)
    f = mb.conv_transpose if transpose else mb.conv
    (got,) = run_program([("x", x.shape, types.fp16)], lambda v: f(x=v, weight=w, pad_type="custom", pad=[1] * 4),
                         {"x": x}, compute="fp16")
    tf = F.conv_transpose2d if transpose else F.conv2d
    exact = tf(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), None, 1, 1).numpy()
    once = exact.astype(np.float16)
    assert got.dtype == np.float16
    ulp = np.spacing(np.maximum(np.abs(once), np.float16(2 ** -10)))
    assert np.all(np.abs(got.astype(np.float64) - once) <= ulp)
    assert np.mean(got != once) < 0.005
    if not transpose:  # negative control: rounding every partial sum to fp16
        cols = F.unfold(F.pad(torch.from_numpy(x.astype(np.float64)), (1, 1, 1, 1)), 3).numpy()[0]
        acc = np.zeros((6, cols.shape[1]), np.float16)
        for k, wk in enumerate(w.reshape(6, -1).T.astype(np.float64)):
            acc = (acc.astype(np.float64) + (wk[:, None] * cols[k][None]).astype(np.float16)).astype(np.float16)
        assert np.mean(acc.reshape(once.shape) != once) > 0.3

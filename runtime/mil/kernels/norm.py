"""Normalisations, softmax and scaled_dot_product_attention."""
import numpy as np

from ..registry import kernel
from ._util import F32, axes_of, axis_of, f32


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@kernel("softmax")
def softmax(a, op):
    x = f32(a["x"])
    return _softmax(x, axis_of(a, "axis", x.ndim, -1))


@kernel("layer_norm")
def layer_norm(a, op):
    x = f32(a["x"])
    axes = axes_of(a, "axes", x.ndim)
    axes = tuple(range(x.ndim)) if axes is None else axes
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + F32(a.get("epsilon", 1e-5)))
    # gamma/beta have the shape of the normalised dims (trailing, in order)
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if a.get("gamma") is not None:
        y = y * np.reshape(a["gamma"], shape)
    if a.get("beta") is not None:
        y = y + np.reshape(a["beta"], shape)
    return y


def _channel(v, x):
    return np.reshape(v, (1, -1) + (1,) * (x.ndim - 2))


def _scale_shift(y, a, x):
    """The optional per-channel gamma and beta that batch_norm and instance_norm share."""
    if a.get("gamma") is not None:
        y = y * _channel(a["gamma"], x)
    if a.get("beta") is not None:
        y = y + _channel(a["beta"], x)
    return y


@kernel("batch_norm")
def batch_norm(a, op):
    x = f32(a["x"])
    y = (x - _channel(a["mean"], x)) / np.sqrt(_channel(a["variance"], x) + F32(a.get("epsilon", 1e-5)))
    return _scale_shift(y, a, x)


@kernel("instance_norm")
def instance_norm(a, op):
    x = f32(a["x"])
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + F32(a.get("epsilon", 1e-5)))
    return _scale_shift(y, a, x)


@kernel("l2_norm")
def l2_norm(a, op):
    # normalises over the last three dims, per batch element (value_inference)
    x = f32(a["x"])
    eps = F32(a.get("epsilon", 1e-6))
    flat = x.reshape(int(np.prod(x.shape[:-3], dtype=np.int64)), -1) if x.ndim > 3 else x.reshape(1, -1)
    ss = np.sum(flat * flat, axis=1, keepdims=True)
    return (flat / np.sqrt(ss + eps)).reshape(x.shape)


@kernel("scaled_dot_product_attention")
def sdpa(a, op):
    q, k, v = f32(a["query"]), f32(a["key"]), f32(a["value"])
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * F32(1.0 / np.sqrt(q.shape[-1]))
    mask = a.get("attn_mask")
    if mask is not None:
        mask = np.asarray(mask)
        s = np.where(mask, s, F32(-np.inf)) if mask.dtype == bool else s + f32(mask)
    return np.matmul(_softmax(s, -1), v)


@kernel("local_response_norm")
def local_response_norm(a, op):
    """x / (k + alpha/size * sum of x^2 over ``size`` channels)^beta, the window running from
    c - size//2 to c + (size-1)//2 (torch's). The channel axis is -3, the neural-network LRN
    layer's: coremltools' own rank-3 example ((1, 3, 2), fp32 tolerance) normalises each element by
    itself alone, i.e. over an axis of size 1; at rank 4 this is axis 1, as the definition says."""
    import torch
    import torch.nn.functional as F

    x = f32(a["x"])
    lead, c = int(np.prod(x.shape[:-3], dtype=np.int64)), x.shape[-3]
    flat = np.ascontiguousarray(x.reshape(lead, c, -1))
    with torch.no_grad():
        y = F.local_response_norm(torch.from_numpy(flat), int(a["size"]), float(a.get("alpha", 1e-4)),
                                  float(a.get("beta", 0.75)), float(a.get("k", 1.0)))
    return y.numpy().reshape(x.shape)

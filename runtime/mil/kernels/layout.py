"""Block rearrangements and windows: depth/space/batch moves, pixel (un)shuffle, sliding windows,
reverse_sequence. Pure data movement, so every kernel is exact.

Channel orders (NCHW, block b, C' output channels):
- depth_to_space / space_to_depth are TensorFlow's DCR order (coremltools maps tf.nn.depth_to_space
  onto them): channel (i*b + j)*C' + c holds pixel (h*b + i, w*b + j) of channel c;
- pixel_shuffle / pixel_unshuffle are torch's CRD order: channel c*b*b + i*b + j;
- space_to_batch / batch_to_space are tf.space_to_batch_nd's: batch (i*b1 + j)*N + n holds
  pixel (h*b0 + i, w*b1 + j) of image n, after padding (resp. before cropping).
"""
import numpy as np

from ..registry import kernel
from ._util import axis_of, ints, wrap_indices


def _depth_to_space(x, b, dcr):
    """(n, c, h, w) -> (n, c/b², h*b, w*b); channel order (i, j, c') if dcr else torch's (c', i, j)."""
    n, c, h, w = x.shape
    c2 = c // (b * b)
    if dcr:
        y = x.reshape(n, b, b, c2, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c2, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c2, h * b, w * b)


def _space_to_depth(x, b, dcr):
    """The inverse of _depth_to_space."""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)  # (c, h', i, w', j)
    y = y.transpose((0, 3, 5, 1, 2, 4) if dcr else (0, 1, 3, 5, 2, 4))
    return y.reshape(n, c * b * b, h // b, w // b)


@kernel("depth_to_space", exact=True)
def depth_to_space(a, op):
    return _depth_to_space(np.asarray(a["x"]), int(a["block_size"]), dcr=True)


@kernel("space_to_depth", exact=True)
def space_to_depth(a, op):
    return _space_to_depth(np.asarray(a["x"]), int(a["block_size"]), dcr=True)


@kernel("pixel_shuffle", exact=True)
def pixel_shuffle(a, op):
    return _depth_to_space(np.asarray(a["x"]), int(a["upscale_factor"]), dcr=False)


@kernel("pixel_unshuffle", exact=True)
def pixel_unshuffle(a, op):
    return _space_to_depth(np.asarray(a["x"]), int(a["downscale_factor"]), dcr=False)


@kernel("space_to_batch", exact=True, fresh=True)
def space_to_batch(a, op):
    x = np.asarray(a["x"])
    b0, b1 = ints(a["block_shape"])
    p = np.asarray(a["paddings"]).reshape(2, 2)
    x = np.pad(x, [(0, 0), (0, 0), tuple(p[0]), tuple(p[1])])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b0, b0, w // b1, b1)  # (n, c, h', i, w', j)
    return y.transpose(3, 5, 0, 1, 2, 4).reshape(b0 * b1 * n, c, h // b0, w // b1)


@kernel("batch_to_space", exact=True)
def batch_to_space(a, op):
    x = np.asarray(a["x"])
    b0, b1 = ints(a["block_shape"])
    crops = np.asarray(a["crops"]).reshape(2, 2)
    nb, c, h, w = x.shape
    n = nb // (b0 * b1)
    y = x.reshape(b0, b1, n, c, h, w).transpose(2, 3, 4, 0, 5, 1).reshape(n, c, h * b0, w * b1)
    return y[:, :, crops[0, 0]:h * b0 - crops[0, 1], crops[1, 0]:w * b1 - crops[1, 1]]


@kernel("sliding_windows", exact=True)
def sliding_windows(a, op):
    """[..., d, ...] -> [..., (d - size) // stride + 1, size, ...]: window k holds x[k*stride + j]."""
    x = np.asarray(a["x"])
    ax = axis_of(a, "axis", x.ndim)
    size, stride = int(a["size"]), int(a.get("stride", 1))
    count = (x.shape[ax] - size) // stride + 1
    idx = np.arange(count)[:, None] * stride + np.arange(size)[None, :]
    return np.take(x, idx, axis=ax)


@kernel("reverse_sequence", exact=True, fresh=True)
def reverse_sequence(a, op):
    """Per slice along batch_axis, the first lengths[i] elements along seq_axis reversed."""
    x = np.asarray(a["x"])
    seq_ax, batch_ax = axis_of(a, "seq_axis", x.ndim), axis_of(a, "batch_axis", x.ndim)
    lengths = wrap_indices(np.asarray(a["lengths"]), x.shape[seq_ax] + 1, op, allow_negative=False)
    out = np.array(x)
    for i, n in enumerate(lengths.reshape(-1)):
        if n == 0:
            continue
        src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        src[batch_ax] = dst[batch_ax] = i
        src[seq_ax], dst[seq_ax] = slice(n - 1, None, -1), slice(0, n)
        out[tuple(dst)] = x[tuple(src)]
    return out

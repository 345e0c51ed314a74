"""runtime.fp16: the fast casts give numpy's results bit for bit, whatever the array's layout."""
import numpy as np
import pytest

from runtime import fp16, native

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e9, 6.1e-5, 5.96e-8, 2.98e-8,
                     2.99e-8, 1e-10, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, -1.0 - 2.0 ** -11], np.float32)


def _arrays(size):
    rng = np.random.default_rng(size)
    base = np.concatenate([SPECIALS, (rng.standard_normal(size) * 10.0 ** rng.uniform(-9, 6, size)).astype(np.float32)])
    square = base[: (base.size // 64) * 64].reshape(-1, 64)
    read_only = base.copy()
    read_only.flags.writeable = False
    return {"contiguous": base, "transposed": square.T, "reversed": base[::-1], "strided": base[::3], "read_only": read_only}


def _same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint16 if a.dtype == np.float16 else np.uint32),
                                  b.view(np.uint16 if b.dtype == np.float16 else np.uint32))


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("size", [10, 100_000])  # below and above the size where torch / C take over
@pytest.mark.parametrize("path", ["c kernel", "torch", "numpy"])
def test_casts_match_numpy_bit_for_bit(size, path, monkeypatch):
    if path == "c kernel" and not fp16._native_round():
        pytest.skip(f"no C kernel here: {native.why_not()}")
    if path != "c kernel":
        monkeypatch.setattr(fp16, "_native", [False])
    if path == "numpy":
        monkeypatch.setattr(fp16, "_torch", None)
    for layout, x in _arrays(size).items():
        half = fp16.cast(x, np.float16)
        _same_bits(half, x.astype(np.float16))
        _same_bits(fp16.cast(half, np.float32), half.astype(np.float32))
        _same_bits(fp16.round_to_fp16(x), x.astype(np.float16).astype(np.float32))


def test_cast_to_the_same_dtype_is_free_and_rounding_is_a_new_array():
    x = np.ones(5000, np.float32)
    assert fp16.cast(x, np.float32) is x
    rounded = fp16.round_to_fp16(x)
    assert not np.shares_memory(rounded, x)
    np.testing.assert_array_equal(fp16.cast(np.arange(5000, dtype=np.int64), np.int32), np.arange(5000, dtype=np.int32))


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("size", [10, 100_000, 1_200_000])  # numpy; torch, one chunk; several chunks
def test_rounding_in_place_is_bit_for_bit_and_writes_into_the_array(size):
    for layout, x in _arrays(size).items():
        want = x.astype(np.float16).astype(np.float32)
        owned = np.array(x, order="F" if layout == "transposed" else "C")
        rounded = fp16.round_to_fp16(owned, in_place=True)
        _same_bits(rounded, want)
        if size >= fp16._TORCH_MIN_SIZE:
            assert rounded is owned, f"{layout}: a new array instead of rounding in place"


def test_rounding_in_place_leaves_arrays_it_cannot_own_alone():
    x = np.linspace(0, 1, 30_000, dtype=np.float32)
    before = x.copy()
    for view in (x[::3], x.reshape(3, -1)[:, 1:], np.broadcast_to(x, (2, x.size))):
        rounded = fp16.round_to_fp16(view, in_place=True)
        assert not np.shares_memory(rounded, x)
        _same_bits(rounded, np.asarray(view).astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(x, before)

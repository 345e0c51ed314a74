"""List ops (kernels/lists.py): zeros before a write, growth past the end, scatter/gather, while_loop."""
import numpy as np
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program


def test_list_read_write_scatter_gather():
    def body(a, b):
        ls = mb.make_list(init_length=2, elem_shape=(2,))
        first = mb.list_read(ls=ls, index=0)  # never written: zeros
        ls = mb.list_write(ls=ls, index=0, value=a)
        ls2 = mb.list_write(ls=ls, index=4, value=b)  # past the end: grows to 5
        ls3 = mb.list_scatter(ls=ls2, indices=[2, 1], value=np.array([[-1, -2], [-4, -5]], np.float32))
        return first, mb.list_read(ls=ls, index=0), mb.list_gather(ls=ls3, indices=[4, 2, 3, 1]), \
            mb.list_length(ls=ls3), mb.list_length(ls=ls)

    a, b = np.array([1, 3], np.float32), np.array([2, 4], np.float32)
    got = run_program([("a", (2,), types.fp32), ("b", (2,), types.fp32)], body, {"a": a, "b": b}, ct.target.iOS17)
    np.testing.assert_array_equal(got[0], [0, 0])
    np.testing.assert_array_equal(got[1], a)
    np.testing.assert_array_equal(got[2], [[2, 4], [-1, -2], [0, 0], [-4, -5]])
    assert int(got[3]) == 5 and int(got[4]) == 2  # an earlier list is not changed by later writes


def test_list_in_a_while_loop():
    def body(n, update):
        def cond(i, num, ls, upd):
            return mb.less(x=mb.cast(x=i, dtype="fp32"), y=num)

        def step(i, num, ls, upd):
            return mb.add(x=i, y=1), num, mb.list_write(ls=ls, index=i, value=mb.mul(x=upd, y=mb.cast(x=i, dtype="fp32"))), upd

        ls = mb.make_list(init_length=1, elem_shape=(2,))
        _, _, final, _ = mb.while_loop(_cond=cond, _body=step, loop_vars=(0, n, ls, update))
        return mb.list_gather(ls=final, indices=mb.range_1d(start=0, end=mb.list_length(ls=final), step=1))

    (got,) = run_program([("n", (1,), types.fp32), ("u", (2,), types.fp32)], body,
                         {"n": np.array([3], np.float32), "u": np.array([1, 2], np.float32)}, ct.target.iOS17)
    np.testing.assert_array_equal(got, [[0, 0], [1, 2], [2, 4]])

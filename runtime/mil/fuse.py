"""Peephole fusions the executor applies to a block before running it.

coremltools lowers ``torch.repeat_interleave`` (the grouped-query attention
head expansion) to four ops,

    tile(x, reps r on axis a) -> reshape (split a into r, n) -> transpose (swap them) -> reshape (merge)

which numpy runs as two full copies of the expanded KV cache per layer
(the tile, and the reshape of a transposed view). Two fusions replace them:

- ``repeat_interleave``: the four ops become one ``np.repeat`` (one copy);
- ``grouped matmul``: when the expanded cache only feeds a matmul (through
  an optional transpose), the matmul reads the unexpanded cache directly,
  with the query heads of one KV head stacked as rows: no copy at all, and
  one GEMM per KV head instead of one GEMV per query head. The products
  summed are the same; only BLAS's summation order may differ (fp32
  rounding, far below the fp16 rounding of the output).

A third fusion, ``elementwise chain``, runs consecutive elementwise ops (the VAE's Snake
activation is mul, sin, pow, mul, add on [1, C, T] arrays of up to 56 MB) chunk by chunk: each op
and its fp16 rounding run on a slice small enough to stay in the CPU cache, instead of five
passes over memory, five 56 MB allocations and five rounding passes. Each op still runs its own
kernel and rounding on every element, so the values are the same bit for bit; the executor
builds the runner (``ChunkedChain``) from the ops' own steps. The slices are independent, so they
run on as many threads as torch is set to (numpy's ufuncs and torch's casts release the GIL): on
2 idle cores a full-size audio_vae_decoder call spends 1.69 s in its 36 Snake chains on one
thread, 1.10 s on two (TRIALS "runtime · every component on an idle machine").

A chain is fused only when every intermediate has a single consumer and
stays inside the block, so no value anybody else reads disappears.
``return_intermediates`` runs the unfused ops.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from coremltools.converters.mil.mil import types

from .graph import input_vars, nested_reads

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch is optional for the runtime
    _torch = None


@dataclass
class Fusion:
    """Ops replaced by one kernel that runs at the position of ``at``."""

    label: str
    ops: list  # every op replaced, in program order
    at: object  # the op whose position the fused kernel takes
    inputs: dict  # kernel argument name -> Var
    output: object  # the Var the fused kernel computes
    kernel: object  # fn(args) -> array
    exact: bool  # the output only moves (already rounded) values: no fp16 rounding needed


def find(ops, block_outputs):
    """The fusions that apply to ``ops`` (one block's operations)."""
    consumers = _consumers(ops)
    # values that leave the block, or are read inside a nested block, must stay materialised
    pinned = {v.name for v in block_outputs}.union(*(nested_reads(op) for op in ops))
    found = []
    for op in ops:
        if op.op_type == "tile":
            chain = _repeat_interleave_chain(op, consumers, pinned)
            if chain is not None:
                found.append(_grouped_matmul(chain, consumers, pinned) or _repeat_interleave(chain))
    taken = {id(op) for f in found for op in f.ops}
    found += [f for f in _elementwise_chains(ops, consumers, pinned) if not any(id(op) in taken for op in f.ops)]
    return found


# --- repeat_interleave -------------------------------------------------------------------------

@dataclass
class _Chain:
    ops: list  # tile, reshape, transpose, reshape
    x: object
    axis: int
    repeats: int


def _repeat_interleave_chain(tile, consumers, pinned):
    x, reps = tile.inputs["x"], tile.inputs["reps"].val
    if reps is None or not _static(x.shape):
        return None
    tiled_axes = [i for i, r in enumerate(reps) if r != 1]
    if len(tiled_axes) != 1:
        return None
    a = tiled_axes[0]
    r, n = int(reps[a]), int(x.shape[a])
    before, after = tuple(x.shape[:a]), tuple(x.shape[a + 1:])
    split = _sole_consumer(tile, consumers, pinned, "reshape")
    if split is None or tuple(split.outputs[0].shape) != before + (r, n) + after:
        return None
    swap = _sole_consumer(split, consumers, pinned, "transpose")
    perm = list(range(len(x.shape) + 1))
    perm[a], perm[a + 1] = a + 1, a
    if swap is None or [int(p) for p in swap.inputs["perm"].val] != perm:
        return None
    merge = _sole_consumer(swap, consumers, pinned, "reshape")
    if merge is None or tuple(merge.outputs[0].shape) != before + (n * r,) + after:
        return None
    return _Chain([tile, split, swap, merge], x, a, r)


def _repeat_interleave(chain):
    axis, repeats = chain.axis, chain.repeats
    return Fusion("repeat_interleave", chain.ops, chain.ops[0], {"x": chain.x}, chain.ops[-1].outputs[0],
                  lambda a: np.repeat(a["x"], repeats, axis=axis), exact=True)


# --- grouped matmul ----------------------------------------------------------------------------

def _grouped_matmul(chain, consumers, pinned):
    """repeat_interleave chain -> [transpose] -> matmul as its ``y``."""
    rank = len(chain.x.shape)
    ops, perm = list(chain.ops), list(range(rank))
    nxt = _sole_consumer(ops[-1], consumers, pinned, "transpose")
    if nxt is not None:
        perm = [int(p) for p in nxt.inputs["perm"].val]
        ops.append(nxt)
    matmul = _sole_consumer(ops[-1], consumers, pinned, "matmul")
    if matmul is None or matmul.inputs["y"] is not ops[-1].outputs[0] or matmul.inputs["x"] is ops[-1].outputs[0]:
        return None
    head = perm.index(chain.axis)
    if head >= rank - 2:  # the repeated axis must be a batch axis of the matmul
        return None
    params = {"perm": perm, "head": head, "repeats": chain.repeats,
              "transpose_x": _const_flag(matmul, "transpose_x"), "transpose_y": _const_flag(matmul, "transpose_y")}
    if params["transpose_x"] is None or params["transpose_y"] is None:
        return None
    return Fusion("grouped matmul", ops + [matmul], matmul, {"q": matmul.inputs["x"], "kv": chain.x},
                  matmul.outputs[0], lambda a: grouped_matmul(a["q"], a["kv"], **params), exact=False)


def grouped_matmul(q, kv, perm, head, repeats, transpose_x, transpose_y):
    """matmul(q, transpose(repeat_interleave(kv, repeats, perm[head]), perm)) without the repeat.

    Query heads g*repeats ... g*repeats + repeats - 1 all read KV head g, so they are
    stacked as the rows of one matrix product with that head.
    """
    k = np.transpose(kv, perm)
    if transpose_y:
        k = np.swapaxes(k, -1, -2)
    if transpose_x:
        q = np.swapaxes(q, -1, -2)
    groups = k.shape[head]
    batch = k.shape[:head] + (groups * repeats,) + k.shape[head + 1:-2]
    if q.shape[:-2] != batch or q.shape[-1] != k.shape[-2]:
        # shapes that broadcast instead: compute it the plain way
        return np.matmul(q, np.repeat(k, repeats, axis=head))
    m = q.shape[-2]
    # [.., G*r, rest.., m, d] -> [.., G, rest.., r*m, d]
    qg = q.reshape(q.shape[:head] + (groups, repeats) + q.shape[head + 1:])
    qg = np.moveaxis(qg, head + 1, -3)
    qg = qg.reshape(qg.shape[:-3] + (repeats * m, qg.shape[-1]))
    out = np.matmul(qg, k)  # [.., G, rest.., r*m, n]
    out = out.reshape(out.shape[:-2] + (repeats, m, out.shape[-1]))
    out = np.moveaxis(out, -3, head + 1)
    return out.reshape(batch + (m, out.shape[-1]))


# --- elementwise chains ------------------------------------------------------------------------

# ops whose every output element depends only on the same element of each (broadcast) input
ELEMENTWISE = {"add", "sub", "mul", "real_div", "pow", "maximum", "minimum", "sin", "cos", "tan", "exp", "exp2",
               "log", "sqrt", "rsqrt", "inverse", "square", "abs", "tanh", "sigmoid", "silu", "relu", "erf",
               "gelu", "clip", "elu", "leaky_relu", "softplus", "softsign"}


def _elementwise_chains(ops, consumers, pinned):
    """Runs of consecutive float elementwise ops, each reading the one before, all of one shape.

    Consecutive (no other op in between): nothing can write into or release a value the chain
    reads while it is pending, since the fused kernel runs at the position of its last op.
    """
    chains, run = [], []
    for op in ops:
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            continue
        if run and _extends(run[-1], op, consumers, pinned):
            run.append(op)
            continue
        if len(run) >= 2:
            chains.append(_chain_fusion(run))
        run = [op] if _elementwise(op) else []
    if len(run) >= 2:
        chains.append(_chain_fusion(run))
    return chains


def _elementwise(op):
    if op.op_type not in ELEMENTWISE or len(op.outputs) != 1 or op.blocks:
        return False
    out = op.outputs[0]
    return out.dtype is not None and out.dtype in (types.fp16, types.fp32) and out.shape is not None


def _extends(prev, op, consumers, pinned):
    out = prev.outputs[0]
    return (_elementwise(op) and out.name not in pinned and consumers.get(out.name) == [op]
            and tuple(op.outputs[0].shape) == tuple(out.shape))


def _chain_fusion(run):
    """The chain as one fused step; its kernel (None here) is a ChunkedChain the executor builds."""
    produced = {op.outputs[0].name for op in run}
    inputs = {v.name: v for op in run for v in input_vars(op) if v.name not in produced}
    return Fusion("elementwise chain", list(run), run[-1], inputs, run[-1].outputs[0], None, exact=True)


class ChunkedChain:
    """Runs the steps of an elementwise chain slice by slice along one axis.

    ``steps`` are the executor's steps of the chain's ops (kernel, args, finalizer), so each op
    computes and rounds exactly as it would unfused. Arrays up to ``chunk`` elements run whole.
    On one thread, slices of ``chunk`` elements (64k: L2-sized) measured best; on two, slices of
    ``threaded_chunk`` (1M; full-size decoder's Snake chains 1.69 s on one thread, 1.87 s on two
    threads in 64k slices, 1.10 s in 1M slices, 1.06 s in 2M).
    """

    def __init__(self, steps, env_kind, const_kind, chunk=1 << 16, threaded_chunk=1 << 20):
        self.steps, self.env, self.const = steps, env_kind, const_kind
        self.chunk, self.threaded_chunk = chunk, threaded_chunk

    def __call__(self, a):
        shape = np.broadcast_shapes(*(np.shape(v) for v in self._operands(a)))
        size = int(np.prod(shape, dtype=np.int64))
        # big chains on torch's threads, in slices large enough that numpy's calls outweigh the GIL
        workers = _threads() if size >= 2 * self.threaded_chunk else 1
        chunk = self.threaded_chunk if workers > 1 else self.chunk
        if size <= chunk:
            return self._run(a, lambda v: v)
        axis = int(np.argmax(shape))
        step = max(1, chunk * shape[axis] // size)
        out = np.empty(shape, np.float32)

        def run_slices(starts):
            for start in starts:
                cut = slice(start, start + step)
                index = (slice(None),) * axis + (cut,)
                out[index] = self._run(a, lambda v, cut=cut: _slice(v, axis, len(shape), cut))

        starts = range(0, shape[axis], step)
        workers = min(workers, len(starts))
        if workers <= 1:
            run_slices(starts)
        else:  # every n-th slice on each of n threads; each writes its own part of `out`
            list(_pool(workers).map(run_slices, [starts[i::workers] for i in range(workers)]))
        return out

    def _operands(self, a):
        for step in self.steps:
            for _, kind, ref in step.args:
                if kind == self.const and isinstance(ref, np.ndarray):
                    yield ref
        yield from (v for v in a.values() if isinstance(v, np.ndarray))

    def _run(self, a, cut):
        last, value = None, None  # each op's output is read by the next op only
        for step in self.steps:
            args = {}
            for p, kind, ref in step.args:
                if kind == self.env:
                    args[p] = value if ref == last else cut(a[ref])
                else:
                    args[p] = cut(ref) if isinstance(ref, np.ndarray) else ref
            last, fin = step.outs[0]
            value = fin(step.kernel(args, step.info), args)
        return value


_pools: dict = {}
_pools_lock = threading.Lock()


def _threads() -> int:
    """The threads torch is set to (OMP_NUM_THREADS), the interpreter's one thread setting; 1 without torch."""
    return _torch.get_num_threads() if _torch is not None else 1


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mil-chain")
        return _pools[workers]


def _slice(v, axis, rank, cut):
    """``v``'s part for the slice ``cut`` of the output's ``axis`` (v broadcasts against the output)."""
    own = axis - (rank - v.ndim)
    if own < 0 or v.shape[own] == 1:
        return v
    return v[(slice(None),) * own + (cut,)]


# --- graph helpers -----------------------------------------------------------------------------

def _const_flag(op, name):
    v = op.inputs.get(name)
    if v is None:
        return False
    return None if v.val is None else bool(v.val)


def _sole_consumer(op, consumers, pinned, op_type):
    out = op.outputs[0]
    users = consumers.get(out.name, [])
    if out.name in pinned or len(users) != 1 or users[0].op_type != op_type:
        return None
    return users[0]


def _consumers(ops):
    found = {}
    for op in ops:
        for x in input_vars(op):
            found.setdefault(x.name, []).append(op)
    return found


def _static(shape):
    return all(isinstance(s, (int, np.integer)) for s in shape)

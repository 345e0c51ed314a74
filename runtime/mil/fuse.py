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

A chain is fused only when every intermediate has a single consumer and
stays inside the block, so no value anybody else reads disappears.
``return_intermediates`` runs the unfused ops.
"""
from dataclasses import dataclass

import numpy as np

from .graph import input_vars, nested_reads


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

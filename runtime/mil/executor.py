"""Compile a PyMIL block into a flat dispatch list, and run it.

Compilation happens once per model: constants are materialised, each op
is bound to its kernel, its inputs are resolved to either a constant value
or an environment key, and every output gets a "finalize" function that
casts/rounds it to its declared dtype. Running is then a tight loop.
"""
import bisect

import numpy as np
from coremltools.converters.mil.mil import types

from .. import errors
from ..fp16 import cast, round_to_fp16 as round_fp16
from . import fuse, kernels, materialise  # noqa: F401  (kernels registers everything)
from .graph import input_vars, nested_reads
from .registry import get as get_kernel

CONST, ENV, LIST, SCOPE = 0, 1, 2, 3


class OpInfo:
    """What a kernel may know about the op it runs."""

    __slots__ = ("name", "op_type", "opset", "out_dtypes", "in_place", "blocks", "position", "run_block")

    def __init__(self, op, position, opset):
        self.name, self.op_type, self.position, self.opset = op.name, op.op_type, position, opset
        self.out_dtypes = [_np_dtype(v) for v in op.outputs]
        self.in_place, self.blocks, self.run_block = False, [], None


class Step:
    __slots__ = ("kernel", "info", "args", "outs")

    def __init__(self, kernel, info, args, outs):
        self.kernel, self.info, self.args, self.outs = kernel, info, args, outs


def _np_dtype(var):
    t = var.sym_type
    if types.is_tensor(t) or types.is_state(t):
        t = t.get_primitive() if types.is_tensor(t) else t.wrapped_type().get_primitive()
    if t is types.str or types.is_list(t) or types.is_dict(t):  # lists (make_list...), classify's dict
        return None
    return np.dtype(types.nptype_from_builtin(t))


def _kernel_says(op, prop):
    """A property the op's kernel registered (runtime/mil/registry.py), or None without a kernel."""
    kern = get_kernel(op.op_type)
    return getattr(kern, prop) if kern is not None else None


def _finalizer(dtype, fp16, exact=False):
    """``fin(value, args)``: an op output cast to its declared type (rounded to fp16 in fp16 mode).

    Rounding happens in place when the kernel's output is an array that none of its arguments
    share (a new array): a full-size locdit_step made 160 new ~80k-element arrays a call for it.
    """
    if dtype is None:
        return lambda v, a: v
    if dtype == np.float16:
        if fp16 and not exact:
            return lambda v, a: round_fp16(v, in_place=_owned(v, a))
        return lambda v, a: np.asarray(v, dtype=np.float32)
    return lambda v, a: cast(v, dtype)


def _owned(value, args):
    """True if ``value`` is a writeable array sharing no memory with the op's arguments.

    A kernel may return an input or a view of one (cast, a constant passed through); control flow
    (an ``__env__`` argument) may return any value of the enclosing scope: neither is ever written.
    """
    if not isinstance(value, np.ndarray) or not value.flags.writeable:
        return False
    for x in args.values():
        if isinstance(x, np.ndarray):
            if np.may_share_memory(value, x):
                return False
        elif isinstance(x, (list, dict)):
            items = x if isinstance(x, list) else ()
            if isinstance(x, dict) or any(isinstance(y, np.ndarray) and np.may_share_memory(value, y) for y in items):
                return False
    return True


class Plan:
    """A compiled block: steps, constants, block inputs and outputs."""

    def __init__(self, block, opset, fp16, function_name, constants_cache=None, outer_consts=None):
        self.fp16, self.opset, self.function_name = fp16, opset, function_name
        self.consts = dict(outer_consts or {})
        self.steps = []  # what run() executes: fused where fuse.py found a pattern
        self._unfused_steps = []  # one step per op, for traces
        self.input_names = [v.name for v in block.inputs.values()] if isinstance(block.inputs, dict) else [v.name for v in block.inputs]
        self.output_names = [v.name for v in block.outputs]
        self._compile(block, constants_cache if constants_cache is not None else {})
        self._traced_steps = None

    def _compile(self, block, cache):
        ops = list(block.operations)
        # A fused kernel reads its inputs at the position of its last op. They stay live (and
        # unwritten) until then because the ops it replaces only move values, and a value lives
        # as long as anything moved out of it does (see _last_uses).
        fusions = fuse.find(ops, block.outputs)
        fused_at = {id(f.at): f for f in fusions}
        folded = {id(op) for f in fusions for op in f.ops}
        last_use = self._last_uses(ops)
        # constants are materialised in program order, just before their readers are compiled, so
        # that one a kernel prepares (a weight packed in fp16) is released before the next is made
        self._unprepared, kept = self._const_readers(ops, block)
        step_of = {}
        for i, op in enumerate(ops):
            if materialise.is_constant_op(op):
                if not any(v.name in self._unprepared or v.name in kept for v in op.outputs):
                    continue  # read by constexpr ops only, which materialise from the program (int8 data: 0.34 GB)
                vals = cache.get(id(op))
                if vals is None:
                    vals = cache[id(op)] = materialise.materialise(op)
                for var, val in zip(op.outputs, vals):
                    self.consts[var.name] = val
                continue
            step = step_of[id(op)] = self._step(op, i, last_use, cache)
            self._unfused_steps.append(step)
            if id(op) in fused_at:
                self.steps.append(self._fused_step(fused_at[id(op)], i, step_of))
            elif id(op) not in folded:
                self.steps.append(step)
        self._release_dead_values(ops, last_use)

    def _release_dead_values(self, ops, last_use):
        """For each step, the values it is the last reader of (dropped after it runs).

        Without this every intermediate lives until predict returns: a VAE decoder at 125
        frames held ~10 GB of activations. Only values this block computes are dropped
        (its inputs and the enclosing scope belong to the caller), never its outputs.
        """
        self._drops = self._drop_lists(self.steps, ops, last_use)
        self._traced_drops = self._drop_lists(self._unfused_steps, ops, last_use)

    def _drop_lists(self, steps, ops, last_use):
        keep = set(self.output_names)
        positions = [s.info.position for s in steps]  # ascending
        by_step = [[] for _ in steps]
        for i, op in enumerate(ops):
            if materialise.is_constant_op(op):
                continue
            for v in op.outputs:
                if v.name in keep:
                    continue
                # the first step at or after the last reader (a folded op has no step of its own)
                k = bisect.bisect_left(positions, max(last_use.get(v.name, i), i))
                if k < len(positions):
                    by_step[k].append(v.name)
        return [tuple(names) for names in by_step]

    def _step(self, op, i, last_use, cache):
        kern = get_kernel(op.op_type)
        if kern is None:
            raise errors.UnsupportedOpError(op.op_type, op.outputs[0].name if op.outputs else op.name, i, self.function_name)
        info = OpInfo(op, i, self.opset)
        args = [(p, *self._ref(v)) for p, v in op.inputs.items()]
        if op.blocks:  # control flow reads the enclosing scope
            args.append(("__env__", SCOPE, None))
        exact = kern.is_exact(op)
        outs = [(v.name, _finalizer(dt, self.fp16, exact)) for v, dt in zip(op.outputs, info.out_dtypes)]
        info.in_place = self._may_write_in_place(op, i, last_use)
        if op.blocks:
            info.blocks = [Plan(b, self.opset, self.fp16, self.function_name, cache, self.consts) for b in op.blocks]
        if kern.prepare is not None:
            args = self._prepared(kern, op, args, cache)
        return Step(kern.fn, info, args, outs)

    def _prepared(self, kern, op, args, cache):
        """The op's arguments with its constants as its kernel prepared them (registry ``prepare``);
        a constant no other reader needs in its plain form is released."""
        consts = {p: ref for p, kind, ref in args if kind == CONST}
        if not consts:
            return args
        ready = kern.prepare(consts, op, self.fp16)
        for p, value in consts.items():
            if ready[p] is not value:
                self._release_if_unread(op.inputs[p], cache)
        return [(p, kind, ready[p] if kind == CONST else ref) for p, kind, ref in args]

    def _const_readers(self, ops, block):
        """(constant name -> how many op inputs of this block read it, names never released: the
        constants a nested block reads or the block returns)."""
        keep = {v.name for v in block.outputs}.union(*(nested_reads(op) for op in ops))
        counts = {}
        for op in ops:
            if materialise.is_constant_op(op):
                continue
            for v in input_vars(op):
                if v.op is not None and materialise.is_constant_op(v.op) and v.name not in keep:
                    counts[v.name] = counts.get(v.name, 0) + 1
        return counts, keep

    def _release_if_unread(self, var, cache):
        left = self._unprepared.get(var.name)
        if left is None:
            return
        self._unprepared[var.name] = left - 1
        if left == 1 and var.name in self.consts:
            del self.consts[var.name]
            if len(var.op.outputs) == 1:
                cache.pop(id(var.op), None)

    def _fused_step(self, fusion, i, step_of):
        info = OpInfo(fusion.at, i, self.opset)
        info.op_type = f"{fusion.label} ({'+'.join(op.op_type for op in fusion.ops)})"
        outs = [(fusion.output.name, _finalizer(info.out_dtypes[0], self.fp16, fusion.exact))]
        args = [(p, *self._ref(v)) for p, v in fusion.inputs.items()]
        # a fusion without a kernel of its own runs its ops' steps (kernels and roundings) in chunks
        kernel = fusion.kernel or fuse.ChunkedChain([step_of[id(op)] for op in fusion.ops], ENV, CONST)
        return Step(lambda a, _: kernel(a), info, args, outs)

    def _ref(self, v):
        if isinstance(v, (list, tuple)):
            return LIST, [self._ref(x) for x in v]
        if v.name in self.consts:
            return CONST, self.consts[v.name]
        return ENV, v.name

    def _last_uses(self, ops):
        last = {}
        for i, op in enumerate(ops):
            # values captured by nested blocks, at any depth, stay live until the op that holds them
            for name in {x.name for x in input_vars(op)} | nested_reads(op):
                last[name] = i
        for name in self.output_names:
            last[name] = len(ops)
        # numpy views: an op that only moves values (identity, reshape, transpose, slices...) may
        # return its input's memory, so a value stays live as long as any alias of it does. Without
        # this, a scatter written in place could change a passthrough output (a dropped cache write
        # would then look correct).
        for op in reversed(ops):
            if _kernel_says(op, "exact"):
                alias_end = max((last.get(v.name, -1) for v in op.outputs), default=-1)
                for x in input_vars(op):
                    last[x.name] = max(last.get(x.name, -1), alias_end)
        return last

    def _may_write_in_place(self, op, i, last_use):
        key = _kernel_says(op, "in_place")
        if key is None or key not in op.inputs:
            return False
        var = op.inputs[key]
        owned = var.name in self.input_names or (var.op is not None and bool(_kernel_says(var.op, "fresh")))
        used_once = sum(1 for v in op.inputs.values() if not isinstance(v, (list, tuple)) and v is var) == 1
        return owned and used_once and last_use.get(var.name) == i

    def run(self, env, trace=None, traced_names=None):
        """Run the steps in ``env`` (name -> value), updated in place.

        When ``trace`` is a dict, op outputs are also recorded there (in op
        order; all of them, or those in ``traced_names``), the ops run
        unfused and no value is overwritten in place.
        """
        if trace is None:
            steps, drops = self.steps, self._drops
        else:
            steps, drops = self._steps_without_in_place(), self._traced_drops
        for step, drop in zip(steps, drops):
            a = {}
            for p, kind, ref in step.args:
                if kind == ENV:
                    a[p] = env[ref]
                elif kind == CONST:
                    a[p] = ref
                elif kind == LIST:
                    a[p] = [env[r] if k == ENV else r for k, r in ref]
                else:
                    a[p] = env
            try:
                out = step.kernel(a, step.info)
            except errors.UnsupportedOpError:
                raise
            except Exception as exc:
                info = step.info
                raise RuntimeError(f"MIL op {info.op_type} {info.name!r} (op #{info.position}) failed: {exc}") from exc
            if len(step.outs) == 1:
                name, fin = step.outs[0]
                env[name] = fin(out, a)
            else:
                for (name, fin), v in zip(step.outs, out):
                    env[name] = fin(v, a)
            if trace is not None:
                for name, _ in step.outs:
                    if traced_names is None or name in traced_names:
                        trace[name] = env[name]
            for name in drop:
                env.pop(name, None)
        return [env[n] if n in env else self.consts[n] for n in self.output_names]

    def _steps_without_in_place(self):
        if self._traced_steps is None:
            self._traced_steps = []
            for s in self._unfused_steps:
                if s.info.in_place:
                    info = OpInfo.__new__(OpInfo)
                    for k in OpInfo.__slots__:
                        setattr(info, k, getattr(s.info, k))
                    info.in_place = False
                    s = Step(s.kernel, info, s.args, s.outs)
                self._traced_steps.append(s)
        return self._traced_steps

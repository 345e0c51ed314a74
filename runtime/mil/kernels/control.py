"""Nested blocks: cond and while_loop.

Each block is a compiled Plan (OpInfo.blocks). Values of the enclosing
scope are visible inside (the env is copied so block-locals do not leak).
"""
import numpy as np

from ..registry import kernel


def _run(plan, env, inputs):
    scope = dict(env)
    scope.update(zip(plan.input_names, inputs))
    return plan.run(scope)


@kernel("cond")
def cond(a, op):
    pred = bool(np.asarray(a["pred"]).item())
    env = a["__env__"]
    outs = _run(op.blocks[0] if pred else op.blocks[1], env, [])
    return outs[0] if len(outs) == 1 else tuple(outs)


@kernel("while_loop")
def while_loop(a, op):
    env = a["__env__"]
    cond_plan, body_plan = op.blocks
    values = list(a["loop_vars"])
    while bool(np.asarray(_run(cond_plan, env, values)[0]).item()):
        values = _run(body_plan, env, values)
    return values[0] if len(values) == 1 else tuple(values)

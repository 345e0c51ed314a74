"""Shared helpers for runtime tests: MIL programs, conversions, rollouts."""
import numpy as np
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.metrics import compare, passes
from runtime.mil import MilModel

TINY = dict(layers=2, hidden=64, ffn=128, q_heads=4, kv_heads=2, head_dim=16, max_pos=32)
GATE = dict(min_corr=0.9999, max_rel_l2=5e-3)
ROLLOUT_POSITIONS = [0, 1, 2, 3, 4, 5, 6, 7, 12, 20, 31]  # >= 8 steps, sequential then jumps


def run_program(specs, body, feed, opset=ct.target.iOS17, compute="fp32"):
    """Build ``body`` as a one-function MIL program and run it in the interpreter.

    specs: list of (name, shape, builtin dtype); returns the list of outputs.
    """
    tensor_specs = [mb.TensorSpec(shape=s, dtype=d) for _, s, d in specs]

    prog = mb.program(input_specs=tensor_specs, opset_version=opset)(_fixed_arity(len(specs), body))

    func = prog.functions["main"]
    rename = dict(zip(func.inputs, [n for n, _, _ in specs]))
    model = MilModel.from_program(prog, compute=compute)
    out = model.predict({k: feed[rename[k]] for k in func.inputs})
    return list(out.values())


def _fixed_arity(n, body):
    """mb.program reads parameter names from the signature: no *args allowed."""
    params = ", ".join(f"a{i}" for i in range(n))
    scope = {"body": body}
    exec(f"def prog({params}):\n    return body({params})\n", scope)
    return scope["prog"]


def value_inference(body, *arrays, opset=ct.target.iOS17):
    """coremltools' own value_inference of ``body`` applied to constant inputs."""
    result = {}

    @mb.program(input_specs=[mb.TensorSpec(shape=(1,))], opset_version=opset)
    def prog(dummy):
        out = body(*[mb.const(val=a) for a in arrays])
        result["val"] = [o.val for o in out] if isinstance(out, (list, tuple)) else out.val
        return dummy

    return result["val"]


def check_op(body, *arrays, opset=ct.target.iOS17, rtol=1e-5, atol=1e-6, compute="fp32"):
    """Interpreter output == value_inference for an op with tensor inputs."""
    specs = [(f"in{i}", a.shape, types.numpy_type_to_builtin_type(a.dtype)) for i, a in enumerate(arrays)]
    got = run_program(specs, body, {f"in{i}": a for i, a in enumerate(arrays)}, opset, compute)
    want = value_inference(body, *arrays, opset=opset)
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert w is not None, "value_inference gave no value"
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=rtol, atol=atol)
    return got


def functional_feed(cfg, x, position, caches):
    feed = {"x": x, "position": np.array([position], np.int32)}
    feed.update({f"cache_{i}": c for i, c in enumerate(caches)})
    return feed


def rollout_functional(torch_model, runner, cfg, positions=ROLLOUT_POSITIONS, seed=0):
    """Run torch and ``runner`` side by side, each carrying its own caches.

    Returns a list of per-step dicts name -> compare() metrics, for the
    hidden output and every cache.
    """
    import torch

    rng = np.random.default_rng(seed)
    shape = (1, cfg["kv_heads"], cfg["max_pos"], cfg["head_dim"])
    t_caches = [np.zeros(shape, np.float32) for _ in range(2 * cfg["layers"])]
    m_caches = [c.copy() for c in t_caches]
    steps = []
    for pos in positions:
        x = rng.standard_normal((1, 1, cfg["hidden"])).astype(np.float32)
        with torch.no_grad():
            ref = torch_model(torch.from_numpy(x), torch.tensor([pos], dtype=torch.int32),
                              *[torch.from_numpy(c) for c in t_caches])
        ref = [r.numpy() for r in ref]
        out = list(runner(functional_feed(cfg, x, pos, m_caches)).values())
        step = {"hidden": compare(out[0], ref[0])}
        step.update({f"cache_{i}": compare(o, r) for i, (o, r) in enumerate(zip(out[1:], ref[1:]))})
        steps.append(step)
        t_caches, m_caches = ref[1:], [np.asarray(o, np.float32) for o in out[1:]]
    return steps


def rollout_stateful(torch_model, model, cfg, positions=ROLLOUT_POSITIONS, seed=0):
    """Rollout of a stateful model; compares the output and every state per step."""
    import torch

    rng = np.random.default_rng(seed)
    state = model.new_state()
    for name, buf in torch_model.named_buffers():
        if "cache" in name:
            buf.zero_()
    steps = []
    for pos in positions:
        x = rng.standard_normal((1, 1, cfg["hidden"])).astype(np.float32)
        with torch.no_grad():
            ref = torch_model(torch.from_numpy(x), torch.tensor([pos], dtype=torch.int32)).numpy()
        out = list(model.predict({"x": x, "position": np.array([pos], np.int32)}, state=state).values())
        step = {"hidden": compare(out[0], ref)}
        for name, buf in torch_model.named_buffers():
            if "cache" in name:
                step[name] = compare(state.read(name), buf.numpy())
        steps.append(step)
    return steps


def all_pass(steps, **gate):
    gate = gate or GATE
    return all(passes(m, **gate) for step in steps for m in step.values())


def worst(steps):
    ms = [m for step in steps for m in step.values()]
    return {"min_corr": min(m["corr"] for m in ms), "max_rel_l2": max(m["rel_l2"] for m in ms)}


def op_types(path):
    """Set of op types in every function of a saved package."""
    from runtime.mil import loader

    model, spec = loader.load_spec(path)
    prog = loader.load_program(model, spec)
    found = set()

    def walk(block):
        for op in block.operations:
            found.add(op.op_type)
            for b in op.blocks:
                walk(b)

    for f in prog.functions.values():
        walk(f)
    return found


__all__ = ["compare", "passes"]

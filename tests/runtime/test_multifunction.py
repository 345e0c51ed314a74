"""runtime.load(path, function=...): one function of a multifunction package, states shared between functions.

Two small stateful programs with the same state (`cache`), merged as coremltools merges packages:
`write` puts x at a position of the state, `read_add` adds the state's row at a position to y and
writes y back. One state made by one function's model serves the other, as an MLState does for a
multifunction Core ML model (the fast layout's prefill and step share their KV caches this way).
"""
import numpy as np
import pytest

import runtime

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

SHAPE = (1, 2, 8, 4)


class _Write(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(SHAPE))

    def forward(self, x, position):
        p = position.reshape(()).item()
        torch._check(p >= 0)
        torch._check(p < SHAPE[2])
        self.cache.copy_(torch.slice_scatter(self.cache, x, dim=2, start=p, end=p + 1))
        return self.cache.sum(dim=2) * 1.0


class _ReadAdd(_Write):
    def forward(self, x, position):
        p = position.reshape(()).item()
        torch._check(p >= 0)
        torch._check(p < SHAPE[2])
        row = self.cache.narrow(2, p, 1).clone()
        self.cache.copy_(torch.slice_scatter(self.cache, row + x, dim=2, start=p, end=p + 1))
        return row * 2.0


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("multifunction")
    desc = ct.utils.MultiFunctionDescriptor()
    for name, module in (("write", _Write()), ("read_add", _ReadAdd())):
        example = (torch.randn(1, 2, 1, 4), torch.tensor([2], dtype=torch.int32))
        program = torch.export.export(module.eval(), example, strict=False).run_decompositions({})
        model = ct.convert(program, inputs=[ct.TensorType("x", shape=(1, 2, 1, 4), dtype=np.float16),
                                            ct.TensorType("position", shape=(1,), dtype=np.int32)],
                           states=[ct.StateType(ct.TensorType(shape=SHAPE, dtype=np.float16), name="cache")],
                           minimum_deployment_target=ct.target.macOS15, compute_precision=ct.precision.FLOAT32,
                           skip_model_load=True)
        model.save(str(root / f"{name}.mlpackage"))
        desc.add_function(str(root / f"{name}.mlpackage"), src_function_name="main", target_function_name=name)
    desc.default_function_name = "write"
    ct.utils.save_multifunction(desc, str(root / "both.mlpackage"))
    return root / "both.mlpackage"


def test_function_selects_and_one_state_serves_both(package):
    write = runtime.load(package, backend="mil", function="write", compute="fp32")
    read_add = runtime.load(package, backend="mil", function="read_add", compute="fp32")
    assert write.function_name == "write" and read_add.function_name == "read_add"
    assert [s.name for s in write.states] == [s.name for s in read_add.states] == ["cache"]
    state = write.new_state()
    x, y = np.arange(8, dtype=np.float32).reshape(1, 2, 1, 4), np.ones((1, 2, 1, 4), np.float32)
    write.predict({"x": x, "position": np.array([5], np.int32)}, state=state)
    out = read_add.predict({"x": y, "position": np.array([5], np.int32)}, state=state)
    assert np.array_equal(list(out.values())[0], 2 * x)                  # read what the other function wrote
    assert np.array_equal(state.read("cache")[:, :, 5:6], x + y)       # and wrote back into the same state
    assert np.abs(np.delete(state.read("cache"), 5, axis=2)).max() == 0


def test_default_function_and_old_name(package):
    assert runtime.load(package, backend="mil").function_name == "write"
    assert runtime.load(package, backend="mil", function_name="read_add").function_name == "read_add"
    with pytest.raises(ValueError, match="disagree"):
        runtime.load(package, backend="mil", function="write", function_name="read_add")
    with pytest.raises(ValueError, match="read_add"):
        runtime.load(package, backend="mil", function="nope")

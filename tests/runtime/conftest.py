"""Session fixtures: small PyTorch models converted to .mlpackage once per run."""
import logging

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from bench.torch_models import BakedPositionStep, ConvNet, DecoderStep, StatefulDecoderStep  # noqa: E402

from .helpers import TINY  # noqa: E402

logging.getLogger("coremltools").setLevel(logging.ERROR)


def _functional_inputs(cfg, position=3):
    x = torch.randn(1, 1, cfg["hidden"])
    pos = torch.tensor([position], dtype=torch.int32)
    shape = (1, cfg["kv_heads"], cfg["max_pos"], cfg["head_dim"])
    caches = [torch.randn(shape) for _ in range(2 * cfg["layers"])]
    return (x, pos, *caches)


def _tensor_types(cfg):
    shape = (1, cfg["kv_heads"], cfg["max_pos"], cfg["head_dim"])
    return [ct.TensorType("x", shape=(1, 1, cfg["hidden"])), ct.TensorType("position", shape=(1,), dtype=np.int32)] + [
        ct.TensorType(f"cache_{i}", shape=shape) for i in range(2 * cfg["layers"])
    ]


def _convert(program, path, target, inputs=None, outputs=None, states=None):
    kwargs = dict(convert_to="mlprogram", minimum_deployment_target=target, skip_model_load=True,
                  compute_precision=ct.precision.FLOAT16)
    if inputs is not None:
        kwargs["inputs"] = inputs
    if outputs is not None:
        kwargs["outputs"] = outputs
    if states is not None:
        kwargs["states"] = states
    model = ct.convert(program, **kwargs)
    model.save(str(path))
    return model


def _int8(model, path):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op_config = OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel", weight_threshold=0)
    config = OptimizationConfig(op_type_configs={"linear": op_config, "conv": op_config, "conv_transpose": op_config})
    q = linear_quantize_weights(model, config=config)
    q.save(str(path))
    return path


def _output_names(cfg):
    return [ct.TensorType("hidden")] + [ct.TensorType(f"new_cache_{i}") for i in range(2 * cfg["layers"])]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Lazily converted models, keyed by name: (torch module, package path)."""
    root = tmp_path_factory.mktemp("models")
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = BUILDERS[name](root)
        return cache[name]

    return get


def _decoder_trace(root):
    m = DecoderStep(TINY, write="scatter", mask="bool").eval()
    traced = torch.jit.trace(m, _functional_inputs(TINY))
    model = _convert(traced, root / "dec_trace.mlpackage", ct.target.macOS14, _tensor_types(TINY), _output_names(TINY))
    _int8(model, root / "dec_trace_int8.mlpackage")
    return m, root / "dec_trace.mlpackage"



def _decoder_export(root):
    m = DecoderStep(TINY, write="index_put", mask="float").eval()
    ep = torch.export.export(m, _functional_inputs(TINY)).run_decompositions({})
    model = _convert(ep, root / "dec_export.mlpackage", ct.target.macOS15, _tensor_types(TINY), _output_names(TINY))
    _int8(model, root / "dec_export_int8.mlpackage")  # iOS18: constexpr_blockwise_shift_scale
    return m, root / "dec_export.mlpackage"


def _stateful(root):
    m = StatefulDecoderStep(TINY).eval()
    ex = (torch.randn(1, 1, TINY["hidden"]), torch.tensor([3], dtype=torch.int32))
    ep = torch.export.export(m, ex).run_decompositions({})
    shape = (1, TINY["kv_heads"], TINY["max_pos"], TINY["head_dim"])
    states = [ct.StateType(wrapped_type=ct.TensorType(shape=shape, dtype=np.float16), name=n)
              for n, _ in m.named_buffers() if "cache" in n]
    inputs = [ct.TensorType("x", shape=(1, 1, TINY["hidden"])), ct.TensorType("position", shape=(1,), dtype=np.int32)]
    _convert(ep, root / "stateful.mlpackage", ct.target.macOS15, inputs, [ct.TensorType("hidden")], states)
    for buf_name, buf in m.named_buffers():
        if "cache" in buf_name:
            buf.zero_()
    return m, root / "stateful.mlpackage"


def _baked(root):
    m = BakedPositionStep(TINY, write="scatter").eval()
    traced = torch.jit.trace(m, _functional_inputs(TINY, position=3))
    _convert(traced, root / "baked.mlpackage", ct.target.macOS14, _tensor_types(TINY), _output_names(TINY))
    good = DecoderStep(TINY, write="scatter").eval()
    good.load_state_dict(m.state_dict())
    return good, root / "baked.mlpackage"


def _convnet(root):
    m = ConvNet().eval()
    x = torch.randn(1, 4, 20)
    traced = torch.jit.trace(m, x)
    inputs = [ct.TensorType("audio_feat", shape=(1, 4, ct.RangeDim(8, 64, default=20)))]
    model = _convert(traced, root / "conv.mlpackage", ct.target.macOS14, inputs, [ct.TensorType("wave")])
    _int8(model, root / "conv_int8.mlpackage")
    return m, root / "conv.mlpackage"


def _convnet_export(root):
    m = ConvNet().eval()
    ep = torch.export.export(m, (torch.randn(1, 4, 24),)).run_decompositions({})
    _convert(ep, root / "conv_export.mlpackage", ct.target.macOS15, [ct.TensorType("audio_feat", shape=(1, 4, 24))],
             [ct.TensorType("wave")])
    return m, root / "conv_export.mlpackage"


BUILDERS = {
    "decoder_trace": _decoder_trace,
    "decoder_export": _decoder_export,
    "stateful": _stateful,
    "baked": _baked,
    "convnet": _convnet,
    "convnet_export": _convnet_export,
}

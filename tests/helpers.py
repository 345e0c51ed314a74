"""Small comparison helpers for tests, and a probe layout for the stateful streaming decoder."""
import contextlib
import sys
import types

import numpy as np


def as_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def max_rel_error(actual, expected) -> float:
    """max |a - e| / max |e| (scale-aware, robust to zeros)."""
    a, e = as_numpy(actual).astype(np.float64), as_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    return float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-12))


def write_stereo_prompt(path, seconds: float, rate: int = 48000):
    """A stereo 'speech-like' prompt (modulated tones + a little noise) at a rate not the model's."""
    import soundfile as sf

    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), rate)
    return path


def program_and_weights(package) -> tuple[str, str]:
    """(a saved package's ML program without its metadata, serialized; weight.bin's sha256): what two
    conversions of the same weights share whatever their provenance."""
    import hashlib
    from pathlib import Path

    import coremltools as ct

    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    spec.description.ClearField("metadata")
    weights = next(Path(package).rglob("weight.bin"))
    return spec.mlProgram.SerializeToString(deterministic=True).hex(), hashlib.sha256(weights.read_bytes()).hexdigest()


PROBE_LAYOUT = "streamprobe"


def _probe_module():
    """A layout module (contract/layout.py's protocol) whose one component is the stateful streaming decoder."""
    from contract.defaults import MAX_CONTEXT
    from contract.layout import SPEC_VERSIONS, Layout
    from contract.sizes import ModelSizes, model_sizes
    from contract.streaming import NAME, stream_decoder

    def declare(config, max_context=MAX_CONTEXT, float_dtype="fp16"):
        sizes = config if isinstance(config, ModelSizes) else model_sizes(config)
        return Layout(PROBE_LAYOUT, "the stateful streaming decoder alone, as a macOS 15 layout lists it",
                      (stream_decoder(sizes, stateful=True),), max_context=max_context, deployment_target="macOS15",
                      spec_version=SPEC_VERSIONS["macOS15"]).with_float_dtype(float_dtype)

    module = types.ModuleType(f"contract.{PROBE_LAYOUT}")
    module.NAME, module.COMPONENTS, module.declare = PROBE_LAYOUT, (NAME,), declare
    return module


@contextlib.contextmanager
def probe_layout():
    """Register the probe layout with the contract (LAYOUTS, and the module contract.layout imports)."""
    import contract.cli
    import contract.layout

    saved = contract.layout.LAYOUTS, contract.cli.LAYOUTS
    sys.modules[f"contract.{PROBE_LAYOUT}"] = _probe_module()
    contract.layout.LAYOUTS = contract.cli.LAYOUTS = saved[0] + (PROBE_LAYOUT,)
    try:
        yield PROBE_LAYOUT
    finally:
        contract.layout.LAYOUTS, contract.cli.LAYOUTS = saved
        sys.modules.pop(f"contract.{PROBE_LAYOUT}", None)

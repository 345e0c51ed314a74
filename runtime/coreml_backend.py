"""Core ML backend: coremltools MLModel / CompiledMLModel (macOS only)."""
import logging
import sys
from pathlib import Path

import numpy as np

from . import describe as _describe
from .errors import BackendUnavailableError

log = logging.getLogger(__name__)


def _compute_units(name):
    import coremltools as ct

    try:
        return getattr(ct.ComputeUnit, name)
    except AttributeError:
        raise ValueError(f"compute_units must be one of {[u.name for u in ct.ComputeUnit]}, got {name!r}") from None


class CoreMLState:
    """MLState wrapper with the MilState API (read/write by name)."""

    def __init__(self, mlstate, descs):
        self.mlstate, self._names = mlstate, [d.name for d in descs]

    @property
    def names(self):
        return list(self._names)

    def read(self, name):
        return np.array(self.mlstate.read_state(name))

    def write(self, name, value):
        self.mlstate.write_state(name, np.asarray(value))

    __getitem__ = read
    __setitem__ = write


class CoreMLModel:
    backend = "coreml"

    def __init__(self, path, function_name=None, compute_units="ALL", strict_inputs=False):
        if sys.platform != "darwin":
            raise BackendUnavailableError(
                f"backend='coreml' needs macOS (Core ML prediction is unavailable on {sys.platform}); "
                "use backend='mil' for the numpy interpreter"
            )
        import coremltools as ct

        self.strict_inputs = strict_inputs
        path = Path(path)
        units = _compute_units(compute_units)
        if path.suffix == ".mlmodelc":
            self._model = ct.models.CompiledMLModel(str(path), compute_units=units, function_name=function_name)
            spec = None
        else:
            self._model = ct.models.MLModel(str(path), compute_units=units, function_name=function_name)
            spec = self._model.get_spec()
        self.function_name = function_name or (_describe.default_function(spec) if spec is not None else None)
        if spec is not None:
            self.inputs, self.outputs, self.states = _describe.describe(spec, function_name)
        else:  # a compiled model carries no spec: skip pre-checks
            self.inputs = self.outputs = self.states = None

    def new_state(self):
        return CoreMLState(self._model.make_state(), self.states or [])

    def predict(self, inputs, state=None):
        if self.inputs is not None:
            inputs = _describe.check_inputs(inputs, self.inputs, strict=self.strict_inputs)
        kwargs = {"state": state.mlstate} if state is not None else {}
        out = self._model.predict(inputs, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

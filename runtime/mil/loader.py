"""Read a saved .mlpackage/.mlmodel back into a PyMIL program."""
import logging
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def load_spec(path):
    """(MLModel with skip_model_load, spec) for a package; works on any OS."""
    import coremltools as ct

    path = Path(path)
    if path.suffix == ".mlmodelc":
        raise ValueError(
            f"{path}: a compiled .mlmodelc has no MIL text to interpret; "
            "give the .mlpackage to backend='mil' (or use backend='coreml' on macOS)"
        )
    if not path.exists():
        raise FileNotFoundError(path)
    model = ct.models.MLModel(str(path), skip_model_load=True)
    return model, model.get_spec()


def load_program(model, spec):
    """The PyMIL Program of an ML Program spec (weights read from the package)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"not an ML Program (model type {spec.WhichOneof('Type')!r}); only mlprogram is interpreted")
    with _variadic_dims(), _mixed_dtype_domains():
        return load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir or "")


@contextmanager
def _variadic_dims():
    """Read a variadic-rank dimension (fill/reshape/random ops given a shape of unknown length) as
    a variadic symbol, as the PyMIL builder types it, instead of coremltools 9.0's
    NotImplementedError("Variadic dimensions not yet implemented"). The interpreter never reads
    declared shapes, only dtypes, so the exact rank does not matter."""
    from coremltools.converters.mil.frontend.milproto import helper
    from coremltools.converters.mil.mil import get_new_variadic_symbol

    original = helper.get_proto_dim

    def get_proto_dim(dim):
        if dim.WhichOneof("dimension") != "constant" and dim.unknown.variadic:
            return get_new_variadic_symbol()
        return original(dim)

    helper.get_proto_dim = get_proto_dim
    try:
        yield
    finally:
        helper.get_proto_dim = original


def pick_function(program, name=None):
    """(name, Function): the requested one, else 'main', else the only one."""
    funcs = program.functions
    if name is None:
        name = "main" if "main" in funcs else next(iter(funcs))
    if name not in funcs:
        raise ValueError(f"function {name!r} not in program; it has {sorted(funcs)}")
    return name, funcs[name]


def read_program(path):
    """The PyMIL Program of the .mlpackage at `path` (every function, weights read): the one way
    the toolkit reads a saved program back."""
    return load_program(*load_spec(path))


@contextmanager
def _mixed_dtype_domains():
    """Accept an op whose inputs of one type domain differ in dtype, as coremltools itself writes them:
    a batch_norm with fp16 mean/variance gets its default epsilon as fp32 (the builder accepts it,
    coremltools 9.0's reader then refuses its own package). Every other input check still runs."""
    from coremltools.converters.mil.mil.input_type import InputSpec

    original = InputSpec.validate_inputs

    def validate_inputs(self, op_name, op_type, candidate_kvs):
        try:
            return original(self, op_name, op_type, candidate_kvs)
        except ValueError as exc:
            if "must have the same data type" not in str(exc):
                raise
            log.debug("loader: %s %s has mixed dtypes in one type domain (%s)", op_type, op_name, exc)
        for name, var in candidate_kvs.items():  # the const and type-domain checks, one input at a time
            original(self, op_name, op_type, {name: var})

    InputSpec.validate_inputs = validate_inputs
    try:
        yield
    finally:
        InputSpec.validate_inputs = original

"""Exceptions raised by the runtime."""


class InputError(ValueError):
    """An input given to ``predict`` does not match the model description."""


class UnsupportedOpError(NotImplementedError):
    """The MIL interpreter met an op type it has no kernel for."""

    def __init__(self, op_type, output_name, position, function_name=None):
        self.op_type, self.output_name, self.position = op_type, output_name, position
        where = f" in function {function_name!r}" if function_name else ""
        super().__init__(
            f"MIL op type {op_type!r} (output {output_name!r}, op #{position}{where}) "
            "has no kernel in runtime.mil; add one to runtime/mil/kernels/"
        )


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine (Core ML off macOS)."""

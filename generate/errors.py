"""The one exception of the generator: input that cannot be synthesized from."""


class GenerationError(ValueError):
    """One line naming the problem and what to do about it (the CLI prints it as `error: …`)."""

"""The one exception of validation: a run that cannot start (bad OUT, missing ASR model, ...)."""


class ValidateError(Exception):
    """An expected failure before validation starts; one line `<problem>: <fix>`."""

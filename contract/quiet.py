"""Third-party console noise that is known to be harmless: hidden where it is emitted, folded into one line each.

A full-size conversion printed eight `Failed to load _ML…Proxy` lines, coremltools' untested-torch
warning and dozens of `Saving value type of int64 into a builtin type of int32` lines between the
progress bars. Each kind is listed here with the reason it is harmless; the records are dropped
from coremltools' logger (where all of them come from) and counted, and at exit one line per kind
says how many were hidden and why. `-v` on any command shows them all. Anything not listed here
still reaches the user.
"""
from __future__ import annotations

import atexit
import functools
import logging
import re
import sys
from collections import Counter

# (pattern, what it is, why it is harmless); matched against the message with re.search
HARMLESS = (
    (r"^Failed to load _ML\w*Proxy: No module named 'coremltools\.libcoremlpython'",
     "'Failed to load _ML…Proxy'",
     "Core ML's runtime library exists only on macOS; conversion and the interpreter do not use it"),
    (r"^Torch version \S+ has not been tested with coremltools",
     "untested-torch warning",
     "torch 2.13 is pinned on purpose (TRIALS.md); the test suite checks every conversion"),
    (r"^Saving value type of int64 into a builtin type of int32",
     "'int64 into int32' warnings",
     "the traced graphs' int64 constants are shapes, axes and indices, all far below 2**31"),
    (r"^Tuple detected at graph output\. This will be flattened",
     "'Tuple detected at graph output' warnings",
     "the LM steps and the streaming decoder return several tensors by design; each is named in the declaration"),
)
_COREMLTOOLS_LOGGER = "coremltools"
_hidden: Counter = Counter()
_installed = False


class _HarmlessFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for index, (pattern, _, _) in enumerate(HARMLESS):
            if re.search(pattern, message):
                _hidden[index] += 1
                return False
        return True


def install(verbose: bool = False) -> None:
    """Hide the known-harmless messages (before coremltools is imported: some come at import).
    With `verbose` nothing is hidden."""
    global _installed
    if verbose or _installed:
        return
    _installed = True
    logging.getLogger(_COREMLTOOLS_LOGGER).addFilter(_HarmlessFilter())
    atexit.register(report)


def summary_lines() -> list[str]:
    return [f"note: hid {count} {HARMLESS[index][1]} (harmless: {HARMLESS[index][2]}; -v shows them)"
            for index, count in sorted(_hidden.items())]


def report(stream=None) -> None:
    """One line per kind of hidden message, then forget them."""
    for line in summary_lines():
        print(line, file=stream or sys.stderr)
    _hidden.clear()


def quiet_conversion_bars() -> None:
    """Silence coremltools' own per-pass progress bars during conversion: our per-component bar says what runs."""
    from tqdm import tqdm

    import coremltools.converters.mil.frontend.torch.ops as torch_ops
    import coremltools.converters.mil.mil.passes.pass_pipeline as pass_pipeline
    import coremltools.optimize.coreml._post_training_quantization as ptq
    import coremltools.optimize.coreml._quantization_passes as qpasses

    silent = functools.partial(tqdm, disable=True)
    torch_ops._tqdm = silent
    pass_pipeline.tqdm = silent
    ptq.tqdm = silent
    qpasses.tqdm = silent

"""Known-harmless third-party noise is folded into one line per kind; -v shows it; anything else still shows."""
import logging
import subprocess
import sys

import pytest

from contract import quiet
from tests.conftest import ROOT

PROXY = "Failed to load _MLModelProxy: No module named 'coremltools.libcoremlpython'"


def test_filter_hides_only_the_listed_messages(caplog):
    logger = logging.getLogger("coremltools")
    quiet_filter = quiet._HarmlessFilter()
    logger.addFilter(quiet_filter)
    try:
        with caplog.at_level(logging.WARNING, logger="coremltools"):
            logger.warning(PROXY)
            logger.warning("Saving value type of int64 into a builtin type of int32, might lose precision!")
            logger.warning("something nobody has looked at")
        assert [r.getMessage() for r in caplog.records] == ["something nobody has looked at"]
        lines = quiet.summary_lines()
        assert any(line.startswith("note: hid 1 'Failed to load _ML…Proxy' (harmless: ") for line in lines)
        assert any("'int64 into int32'" in line for line in lines) and all("-v shows them" in x for x in lines)
    finally:
        logger.removeFilter(quiet_filter)
        quiet._hidden.clear()


def _check_specs(out, *extra):
    return subprocess.run([sys.executable, "-m", "convert.check_specs", str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(sys.platform == "darwin", reason="the proxy messages come only where Core ML is missing")
def test_a_command_folds_the_noise_and_v_shows_it(tiny_coreml):
    quiet_run = _check_specs(tiny_coreml)
    assert quiet_run.returncode == 0, quiet_run.stderr
    lines = quiet_run.stderr.splitlines()
    assert not [line for line in lines if line.startswith("Failed to load") or "has not been tested" in line]
    assert "note: hid 8 'Failed to load _ML…Proxy'" in quiet_run.stderr  # eight lines folded into one
    verbose_run = _check_specs(tiny_coreml, "-v")
    assert verbose_run.stderr.count("Failed to load _ML") == 8 and "note: hid" not in verbose_run.stderr

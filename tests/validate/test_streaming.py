"""`make validate` covers the streaming decoder: call by call, every context after every call, beside the whole
decoder; its stateful form through a probe layout; and a decoder that does not carry its contexts fails."""
import pytest

from contract.streaming import NAME
from tests.helpers import PROBE_LAYOUT, probe_layout
from tests.validate import controls
from tests.validate.conftest import TINY_GATES, run_validate

STREAM_PATCHES = 50


def _rows(report, name=NAME):
    return {(r["precision"], r["output"]): r for r in report["components"] if r["name"] == name}


def _checks(report, precision):
    return {c["check"]: c for c in report["structural"] if c["component"] == NAME and c["precision"] == precision}


@pytest.fixture(scope="module")
def stream_report(tiny_never_stop_dir, tiny_stream_out):
    status, report = run_validate(tiny_never_stop_dir, tiny_stream_out, "--precision", "all", "--components",
                                  f"audio_vae_decoder,{NAME}", "--stream-patches", STREAM_PATCHES,
                                  "--gates", TINY_GATES)
    return status, report


def test_streaming_decoder_validated_call_by_call_beside_the_whole(stream_report):
    status, report = stream_report
    assert status == 0, report["failure"]
    rows = _rows(report)
    for precision in ("fp16", "int8"):
        audio, contexts = rows[(precision, "audio")], rows[(precision, "contexts (all, after every call)")]
        # two cases (speech, random latents) of 50 calls: every stream length 1..50, every context after every call
        assert audio["cases"] == contexts["cases"] == 2 * STREAM_PATCHES and audio["passed"] and contexts["passed"]
        assert rows[(precision, "audio, all calls joined vs one whole call")]["passed"]
        beside = _rows(report, "audio_vae_decoder")[(precision, f"audio (one call on {NAME}'s latents)")]
        assert beside["passed"] and beside["cases"] == 2
        assert all(c["passed"] for c in _checks(report, precision).values()) and len(_checks(report, precision)) >= 4
    names = [r["name"] for r in report["components"]]
    assert names.index(NAME) > names.index("audio_vae_decoder")   # reported right after the whole decoder
    assert report["settings"]["stream_patches"] == STREAM_PATCHES


def test_stateful_form_validated_through_a_layout_that_lists_it(tiny_never_stop_dir, stateful_probe_out):
    with probe_layout():
        status, report = run_validate(tiny_never_stop_dir, stateful_probe_out, "--precision", "all", "--layout",
                                      PROBE_LAYOUT, "--stream-patches", 12, "--gates", TINY_GATES)
    assert status == 0, report["failure"]
    rows = _rows(report)
    assert {p for p, _ in rows} == {"fp16", "int8"}
    assert all(r["passed"] for r in rows.values()) and rows[("fp16", "audio")]["cases"] == 24
    checks = _checks(report, "fp16")
    assert checks["every context is handed on (state update) and depends on the latent"]["passed"]


def test_contexts_not_carried_fail(tiny_never_stop_dir, tiny_stream_out, tmp_path, capsys):
    """Negative control: a streaming decoder that ignores the contexts it is handed."""
    out = controls.out_dir_with(tmp_path, tiny_stream_out, "fp16", NAME,
                                controls.contexts_not_carried(tiny_never_stop_dir, NAME))
    status, report = run_validate(tiny_never_stop_dir, out, "--precision", "fp16", "--components", NAME,
                                  "--stream-patches", 8)
    assert status == 1 and NAME in capsys.readouterr().err
    rows = _rows(report)
    assert not rows[("fp16", "audio")]["passed"] and not rows[("fp16", "contexts (all, after every call)")]["passed"]
    assert rows[("fp16", "audio")]["worst"]["detail"] != "call 1 of 8"    # the first call has nothing to carry yet
    assert not _checks(report, "fp16")["audio depends on every carried context"]["passed"]

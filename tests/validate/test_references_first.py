"""validate computes every torch reference first and frees the model before the packages run.

A full-size model is 3.6 GB in FP32; held beside the packages it more than doubled the peak of a
full-size validation. These tests pin the order (the LMs gone before the VAE's long torch calls,
the whole model gone before any stateless or LM step package runs), that recording a rollout ahead
of its followers loses nothing, and that the report still lists sections in their usual order.
"""
import json

import numpy as np
import pytest

from validate.gating import Gates
from validate.records import Recorder

from .conftest import run_validate


def test_records_and_checks_are_listed_in_section_order_whatever_order_they_ran_in():
    recorder = Recorder(Gates(), order=("first", "second"))
    with recorder.section("second"):
        recorder.add("b", "fp16", "y", "case", np.ones(3), np.ones(3))
        recorder.check("b", "fp16", "later check", True)
    with recorder.section("first"):
        recorder.add("a", "fp16", "x", "case", np.ones(3), np.ones(3))
        recorder.check("a", "fp16", "earlier check", True)
    with recorder.section("unlisted"):
        recorder.add("c", "fp16", "z", "case", np.ones(3), np.ones(3))
    assert [r["component"] for r in recorder.records] == ["a", "b", "c"]
    assert [c["check"] for c in recorder.checks] == ["earlier check", "later check"]
    assert recorder.current == "main"   # the section ends with its block


def test_the_model_is_freed_before_any_package_runs(tiny_dir, tiny_coreml, tmp_path, monkeypatch):
    from validate import run as validate_run

    seen = {}
    references_stateless = validate_run.Run.reference_stateless

    def reference_stateless(self, cases):
        seen["LMs at the VAE references"] = (self.model.base_lm, self.model.residual_lm)
        return references_stateless(self, cases)

    def package_phase(name):
        original = getattr(validate_run.Run, name)

        def phase(self):
            seen[name] = (self.model, self.ref, self.context)
            return original(self)
        return phase

    monkeypatch.setattr(validate_run.Run, "reference_stateless", reference_stateless)
    for name in ("stateless", "rollouts"):
        monkeypatch.setattr(validate_run.Run, name, package_phase(name))
    status, _ = run_validate(tiny_dir, tiny_coreml, "--precision", "fp16", "--report-dir", tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert status == 0 and report["passed"]
    assert seen["LMs at the VAE references"] == (None, None)
    assert seen["stateless"] == (None, None, None) and seen["rollouts"] == (None, None, None)
    assert list(report["phase_seconds"])[:3] == ["prepare", "references", "stateless"]
    # the usual order in the report: stateless components, then the LM steps, then their checks
    names = [r["name"] for r in report["components"]]
    assert names.index("audio_vae_encoder") < names.index("locdit_step") < names.index("base_lm_step")


def test_the_vae_references_run_last_alone_under_the_run_allocator(tiny_dir, tiny_coreml, tmp_path, monkeypatch):
    """The VAE's torch calls come after every other stateless reference, with only the VAE left of the
    model and glibc serving them from its heap (as the interpreter's runs); nothing else runs so."""
    import contextlib

    from validate import run as validate_run
    from validate import stateless

    inside = []
    seen = []

    @contextlib.contextmanager
    def recording(trim_every=None):
        assert trim_every, "the VAE references trim the heap as they go"
        inside.append(True)
        try:
            yield
        finally:
            inside.pop()

    reference_cases = stateless.reference_cases

    def watched(spec, cases, ref):
        children = sorted(name for name, _ in ref.model.named_children())
        seen.append((spec.name, bool(inside), children))
        return reference_cases(spec, cases, ref)

    monkeypatch.setattr(validate_run, "run_allocator", recording)
    monkeypatch.setattr(stateless, "reference_cases", watched)
    status, _ = run_validate(tiny_dir, tiny_coreml, "--precision", "fp16", "--report-dir", tmp_path)
    assert status == 0
    order = [name for name, _, _ in seen]
    assert sorted(order[-2:]) == ["audio_vae_decoder", "audio_vae_encoder"], order
    for name, allocator, children in seen:
        if name.startswith("audio_vae"):
            assert allocator and children == ["audio_vae"], (name, children)
        else:
            assert not allocator and "feat_encoder" in children and "feat_decoder" in children, (name, children)


@pytest.mark.parametrize("start", [0, 5])
def test_the_final_caches_hold_every_earlier_positions_caches(tiny_dir, start):
    """record_rollouts keeps only the caches after the last position: slots 0..p of those must be
    the caches at position p, for a rollout from position 0 and one after a prefill."""
    from checkpoint.loading import config_dict, load_voxcpm
    from contract.components import LM_STEP
    from contract.layout import declare
    from validate.references import TorchReference
    from validate.rollout import Rollout, record_rollouts

    ref = TorchReference(load_voxcpm(str(tiny_dir)))
    hidden = ref.model.config.lm_config.hidden_size
    rng = np.random.default_rng(3)
    steps = 6
    rollout = Rollout("r", (0.1 * rng.standard_normal((start + steps, hidden))).astype(np.float32),
                      np.arange(start + steps) >= 2, start, steps)
    specs = declare(config_dict(str(tiny_dir)), "published", max_context=32).of_kind(LM_STEP)
    [recorded] = record_rollouts(ref, [rollout], specs, 32, progress=False)

    lm_steps = ref.lm_steps(32)   # the same rollout again, the caches read after every position
    if start:
        lm_steps.prefill(rollout.embeds[:start], rollout.is_audio[:start])
    for position in range(start, start + steps):
        lm_steps.step(rollout.embeds[position], position, bool(rollout.is_audio[position]))
        for spec in specs:
            for now, final in zip(lm_steps.caches(spec), recorded.final[spec.name]):
                assert np.array_equal(now[:, :, :position + 1].numpy(), final[:, :, :position + 1])
    finals = [final for spec in specs for final in recorded.final[spec.name]]
    assert all(np.abs(final[:, :, start + steps:]).max() == 0 for final in finals)
    assert {final.shape[2] for final in finals} == {32}   # cut to the package's context, not voxcpm's own

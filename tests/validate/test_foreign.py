"""A conversion this toolkit did not make: packages only (no manifest, no constants), the LM steps' cache
inputs and outputs in another order (k0, v0, k1, v1, … as the published scripts order them).

`check_specs` and `validate` must read the interface from the checkpoint's config, compare features by
name (the order is reported, never judged), say what they cannot know without a manifest, and pass."""
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

from .conftest import FAST, TINY_GATES


class Interleaved(torch.nn.Module):
    """The LM step with caches in and out as k0, v0, k1, v1, … (the module takes k0..kN, v0..vN)."""

    def __init__(self, inner, layers: int, heads: int):
        super().__init__()
        self.inner, self.layers, self.heads = inner, layers, heads

    def forward(self, embed, position, *caches):
        ks, vs = caches[0::2], caches[1::2]
        out = self.inner(embed, position, *ks, *vs)
        head, k_out, v_out = out[:self.heads], out[self.heads:self.heads + self.layers], out[self.heads + self.layers:]
        return (*head, *[t for pair in zip(k_out, v_out) for t in pair])


def _interleave(specs, layers: int):
    """Tensor specs with the caches reordered k0, v0, k1, v1, … after the others."""
    head, ks, vs = specs[:len(specs) - 2 * layers], specs[-2 * layers:-layers], specs[-layers:]
    return tuple(head) + tuple(t for pair in zip(ks, vs) for t in pair)


def _convert_interleaved(spec, model, path: Path) -> None:
    from convert.converters import examples, to_coreml, trace
    from patches.modules import build

    layers = spec.caches.layers
    reordered = dataclasses.replace(spec, inputs=_interleave(spec.inputs, layers),
                                    outputs=_interleave(spec.outputs, layers))
    module = Interleaved(build(spec, model), layers, len(spec.head_outputs()))
    to_coreml(trace(module, examples(reordered)), reordered).save(str(path))


@pytest.fixture(scope="module")
def foreign_out(tiny_dir, tiny_coreml, tmp_path_factory) -> Path:
    from checkpoint.loading import load_voxcpm
    from contract.published import declare
    from contract.quiet import quiet_conversion_bars
    from patches.apply import patch_model

    out = tmp_path_factory.mktemp("foreign") / "theirs"
    (out / "fp16").mkdir(parents=True)
    layout = declare(json.loads((tiny_dir / "config.json").read_text()))
    quiet_conversion_bars()
    model = patch_model(load_voxcpm(tiny_dir))
    for spec in layout:
        if spec.name in layout.optional:  # the published scripts make no streaming decoder
            continue
        if spec.caches is None:
            shutil.copytree(tiny_coreml / "fp16" / f"{spec.name}.mlpackage", out / "fp16" / f"{spec.name}.mlpackage")
        else:
            _convert_interleaved(spec, model, out / "fp16" / f"{spec.name}.mlpackage")
    return out


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def test_check_specs_compares_by_name_and_says_what_it_cannot_know(foreign_out, tiny_dir):
    assert not (foreign_out / "manifest.json").exists() and not (foreign_out / "constants").exists()
    result = _run("convert.check_specs", foreign_out, "--model", tiny_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 packages checked, 0 differ from the declared interface" in result.stdout
    assert result.stdout.count("inputs in another order than declared") == 2  # the two LM steps
    assert result.stdout.count("outputs in another order than declared") == 2
    assert "note: no manifest.json: provenance" in result.stdout
    assert "context 512 from the LM step packages' cache shapes" in result.stdout


def test_check_specs_without_manifest_or_model_is_one_line(foreign_out):
    result = _run("convert.check_specs", foreign_out)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-1].startswith("error: ") and "--model" in lines[-1]


def test_a_real_difference_is_still_caught(foreign_out, tiny_dir, tmp_path):
    """Negative control: the same folder with one cache input renamed fails the check."""
    from convert.check_specs import check_out

    rows = check_out(foreign_out, str(tiny_dir))
    assert all(not row["problems"] for row in rows)
    broken = tmp_path / "broken"
    shutil.copytree(foreign_out, broken)
    shutil.rmtree(broken / "fp16" / "feat_encoder.mlpackage")
    shutil.copytree(foreign_out / "fp16" / "audio_vae_encoder.mlpackage", broken / "fp16" / "feat_encoder.mlpackage")
    problems = {row["component"]: row["problems"] for row in check_out(broken, str(tiny_dir))}
    assert problems["feat_encoder"] and "feat missing" in problems["feat_encoder"][0]


def test_validate_passes_and_reports_what_it_cannot_know(foreign_out, tiny_dir):
    from validate.cli import main

    status = main(["--model", str(tiny_dir), "--out", str(foreign_out), "--precision", "fp16", "--backend", "mil",
                   "--gates", str(TINY_GATES), *FAST])
    report = json.loads((foreign_out / "validation" / "report.json").read_text())
    assert status == 0, report["failure"]
    rollout_rows = [r for r in report["components"] if r["name"] == "base_lm_step" and r["output"] == "caches"]
    assert rollout_rows and rollout_rows[0]["passed"]  # caches matched by name, whatever their order
    notes = " ".join(report["declaration"]["unknown"])
    assert "provenance" in notes and "config.json" in report["declaration"]["source"]


def test_e2e_is_skipped_with_a_reason_without_constants(foreign_out, tiny_dir):
    from validate.run import Settings, _end_to_end
    from validate.target import find_target

    settings = Settings(model=str(tiny_dir), out=foreign_out, precisions=("fp16",),
                        components=("base_lm_step",))
    target = find_target(foreign_out, str(tiny_dir), None, "published", ("fp16",), ("base_lm_step",), False)
    e2e = _end_to_end(settings, target)
    assert e2e["status"] == "skipped" and e2e["passed"] and "no constants/" in e2e["note"]

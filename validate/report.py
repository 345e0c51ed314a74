"""OUT/validation/: report.json (machine-readable), report.md (the card's table), plots.

`write_report(out_dir, results, e2e=None)` writes all three; `add_e2e(out_dir, e2e)` fills the
end-to-end section later (the ASR check) without rerunning anything.
"""
from __future__ import annotations

import json
from pathlib import Path

from contract import artifacts
from contract.defaults import DEFAULT_LAYOUT
from contract.atomic import write_json_atomically, write_text_atomically

from . import plots

E2E_PLACEHOLDER = {"status": "not run", "note": "end-to-end ASR check (validate/asr) fills this section"}


def report_dir(out: Path, layout: str = DEFAULT_LAYOUT) -> Path:
    return artifacts.report_dir(out, layout)


def _json_ready(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def write_report(out_dir, results: dict, e2e: dict | None = None) -> dict:
    """Write report.json, report.md and the plots into `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results["e2e"] = e2e if e2e is not None else results.get("e2e") or dict(E2E_PLACEHOLDER)
    written = {"plots": {}}
    plot_data = results.get("_plots") or {}
    if results.get("steps"):
        path = plots.lm_steps(results["steps"], out_dir / "lm_rollout_errors.png")
        if path:
            written["plots"]["lm_rollout_errors"] = path.name
    if plot_data.get("vae_round_trip"):
        path = plots.vae_round_trip(plot_data["vae_round_trip"], plot_data.get("sample_rate", 44100),
                                    out_dir / "vae_round_trip.png")
        if path:
            written["plots"]["vae_round_trip"] = path.name
    if written["plots"] or "plots" not in results:
        results["plots"] = {**results.get("plots", {}), **written["plots"]}
    write_json_atomically(out_dir / "report.json", _json_ready(results), indent=1)
    write_text_atomically(out_dir / "report.md", markdown(results))
    written.update(json=str(out_dir / "report.json"), markdown=str(out_dir / "report.md"))
    return written


def add_e2e(out_dir, e2e: dict) -> dict:
    """Fill the e2e section of an existing report (plots are kept as they are)."""
    results = json.loads((Path(out_dir) / "report.json").read_text(encoding="utf-8"))
    if "passed" in e2e:
        results["passed"] = bool(results.get("passed")) and bool(e2e["passed"])
    return write_report(out_dir, results, e2e)


# ----------------------------------------------------------------------------- markdown
def _num(value, digits=6) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def table(rows: list[dict]) -> str:
    lines = ["| model | precision | output | correlation (min) | rel-L2 (max) | max-abs | pass | worst case |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        worst = r.get("worst") or {}
        where = worst.get("case", "")
        if worst.get("step") is not None:
            where += f", position {worst['step']}"
        if worst.get("detail"):
            where += f" ({worst['detail']})"
        mark = ("✅" if r["passed"] else "❌") if r.get("gated", True) else "(info)"
        lines.append(f"| {r['name']} | {r['precision']} | {r['output']} | {_num(r['corr'])} | {_num(r['rel_l2'], 5)} "
                     f"| {_num(r['max_abs'], 5)} | {mark} | {where} |")
    return "\n".join(lines)


def _checks(entries: list[dict]) -> str:
    lines = ["| model | precision | check | pass | detail |", "|---|---|---|---|---|"]
    for c in entries:
        lines.append(f"| {c['component']} | {c['precision']} | {c['check']} | {'✅' if c['passed'] else '❌'} "
                     f"| {c.get('detail', '')} |")
    return "\n".join(lines)


def _adapter_lines(adapter: dict | None) -> list[str]:
    if not adapter:
        return []
    config = adapter["config"]
    layers = ", ".join(f"{count} {part}" for part, count in adapter["layers"].items())
    return [f"- LoRA adapter: `{adapter['file']}` (sha256 {adapter['sha256'][:12]}…), r={config['r']}, "
            f"alpha={config['alpha']} (alpha from {adapter['alpha_source']}), adapted layers: {layers}; the "
            f"reference is voxcpm's own LoRA model, the adapter live in its LoRALinear layers (not merged)"]


def markdown(results: dict) -> str:
    gates = results.get("gates", {})
    versions = results.get("versions", {})
    parts = [f"# Validation: {results.get('model', '?')}", "",
             f"**Result: {'PASSED' if results.get('passed') else 'FAILED'}**" +
             ("" if results.get("passed") else f" — {results.get('failure', '')}"), "",
             f"- converted packages: `{results.get('out', '?')}`",
             f"- backend: `{results.get('backend', '?')}` (reference: unpatched voxcpm in FP32 on the CPU)",
             *_adapter_lines(results.get("adapter")),
             f"- interface: the `{results.get('layout', 'published')}` layout, declared from "
             f"{(results.get('declaration') or {}).get('source', '?')}",
             *[f"- not checked: {note}" for note in (results.get("declaration") or {}).get("unknown", [])],
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- wall time: {results.get('wall_seconds', 0):.1f} s",
             "- gates: " + "; ".join(f"{p}: corr ≥ {g['corr']}, rel-L2 ≤ {g['rel_l2']}"
                                     for p, g in gates.get("precisions", {}).items())
             + f"; stop decisions must agree where torch's margin ≥ {gates.get('stop_margin')}"
             + (f"; overrides {gates['components']}" if gates.get("components") else ""), "",
             "## Accuracy", "", table(results.get("components", [])), "",
             "Correlation is the minimum, rel-L2 and max-abs the maximum over every input and rollout step. "
             "LM caches: slots 0..position of every returned cache, worst cache per step.", "",
             "## Structural and decision checks", "", _checks(results.get("structural", []) + results.get("checks", [])), ""]
    if results.get("localization"):
        parts += ["## Localisation", ""]
        parts += [f"- {l['component']} {l['precision']} ({l.get('case', '')}): {l['summary']}"
                  for l in results["localization"]]
        parts.append("")
    parts += ["## Inputs", ""] + [f"- **{k}**: {v}" for k, v in results.get("inputs", {}).items()] + [""]
    if results.get("plots"):
        parts += ["## Plots", ""] + [f"![{k}]({v})" for k, v in results["plots"].items()] + [""]
    e2e = results.get("e2e") or {}
    parts += ["## End to end (e2e)", ""]
    if e2e.get("markdown"):
        parts.append(e2e["markdown"])
    else:
        parts += [f"- {k}: {v}" for k, v in e2e.items()]
    parts.append("")
    return "\n".join(parts)

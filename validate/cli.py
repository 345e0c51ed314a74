"""`python -m validate`: prove every converted component equal to the original voxcpm (see --help)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from contract import cli
from contract.cli import OneLineParser, UsageError
from contract.defaults import E2E_CER_MARGIN, E2E_MAX_WER, GATES, STOP_MARGIN


def build_parser() -> argparse.ArgumentParser:
    from .cases import DECODER_LENGTHS, STREAM_PATCHES

    p = OneLineParser(prog="python -m validate",
                description="Run every converted component (OUT/{fp16,int8}/<component>.mlpackage) and the "
                            "unpatched voxcpm model in FP32 on the same inputs, compare every output (and every "
                            "LM cache, step by step), check the programs' structure, and write "
                            "OUT/validation/report.{md,json} and plots. Exit status 1 when a gate or check "
                            "fails, 2 on bad input.")
    cli.add_model(p)
    cli.add_lora(p)
    cli.add_out(p, "the convert output directory")
    cli.add_verbose(p)
    cli.add_layout(p)
    p.add_argument("--precision", default="all", help="fp16, int8 or all (default all)")
    p.add_argument("--backend", default="auto", help="auto (Core ML on macOS, else the MIL interpreter), "
                                                     "coreml or mil (default auto)")
    p.add_argument("--components", default=None, help="comma-separated subset (default: every converted one)")
    p.add_argument("--steps", type=int, default=64, help="LM rollout steps per start position (default 64)")
    p.add_argument("--decoder-lengths", default=",".join(map(str, DECODER_LENGTHS)),
                   help="VAE decoder latent lengths to test (default %(default)s)")
    p.add_argument("--stream-patches", type=int, default=STREAM_PATCHES,
                   help="calls per streaming-decoder case: every stream of 1..N patches is checked (default %(default)s)")
    p.add_argument("--gates", default=None, help="JSON file with gates (see validate/gates.py)")
    for precision, values in GATES.items():
        p.add_argument(f"--{precision}-corr", type=float, default=None,
                       help=f"minimum correlation for {precision} (default {values['corr']})")
        p.add_argument(f"--{precision}-rel-l2", type=float, default=None,
                       help=f"maximum relative L2 error for {precision} (default {values['rel_l2']})")
    p.add_argument("--stop-margin", type=float, default=None,
                   help=f"stop decisions must agree where torch's logit margin is at least this "
                        f"(default {STOP_MARGIN})")
    p.add_argument("--localize", action="store_true",
                   help="name the first diverging op of every package (always done for failing ones)")
    p.add_argument("--report-dir", default=None, help="where to write the report (default OUT/validation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    e2e = p.add_argument_group("end to end (ASR)")
    e2e.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True,
                     help="synthesize English and Chinese sentences (with and without a voice prompt) with the "
                          "converted packages and the FP32 reference, transcribe them with Whisper and score "
                          "WER/CER (default on)")
    e2e.add_argument("--asr-model", default=None, help="Whisper model: base, a path to an openai-whisper .pt or "
                                                       "a CTranslate2 directory (default $ASR_MODEL, else base)")
    e2e.add_argument("--e2e-max-len", type=int, default=None, help="at most this many patches per sentence "
                                                                   "(default: the model's own limit)")
    e2e.add_argument("--e2e-gate", action=argparse.BooleanOptionalAction, default=None,
                     help="let the ASR scores fail validation (default: yes, except on fixture checkpoints, "
                          "whose random weights speak noise)")
    e2e.add_argument("--e2e-max-wer", type=float, default=E2E_MAX_WER,
                     help=f"maximum English WER (default {E2E_MAX_WER})")
    e2e.add_argument("--e2e-cer-margin", type=float, default=E2E_CER_MARGIN,
                     help=f"maximum Chinese CER above the reference model's on the same sentence "
                          f"(default {E2E_CER_MARGIN})")
    return p


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


def parse_settings(argv):
    from .gating import GateError, load_gates
    from .run import Settings

    args = build_parser().parse_args(argv)
    precisions = cli.precisions(args.precision, allowed=("fp16", "int8", "all"))
    (layout,) = cli.layouts(args.layout)
    if args.backend not in ("auto", "coreml", "mil"):
        raise UsageError(f"unknown backend {args.backend!r}: use auto, coreml or mil")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.stream_patches < 1:
        raise UsageError(f"--stream-patches must be at least 1, got {args.stream_patches}")
    if args.e2e_max_len is not None and args.e2e_max_len < 1:
        raise UsageError(f"--e2e-max-len must be at least 1, got {args.e2e_max_len}")
    if args.e2e_max_wer < 0 or args.e2e_cer_margin < 0:
        raise UsageError("--e2e-max-wer and --e2e-cer-margin must not be negative")
    explicit = args.components is not None
    adapter, adapter_config = cli.lora(args)
    components = cli.components(args.components, layout, optional=True)
    overrides = {(p, key): getattr(args, f"{p}_{key}") for p in GATES for key in ("corr", "rel_l2")}
    try:
        gates = load_gates(args.gates, overrides)
    except GateError as exc:
        raise UsageError(str(exc)) from None
    if args.stop_margin is not None:
        gates.stop_margin = args.stop_margin
    return Settings(model=args.model, out=Path(args.out), precisions=precisions, layout=layout,
                    components=components, explicit_components=explicit, backend=args.backend, steps=args.steps,
                    gates=gates, localize=args.localize, decoder_lengths=_ints(args.decoder_lengths, "--decoder-lengths"),
                    stream_patches=args.stream_patches,
                    revision=args.revision, progress=not args.no_progress,
                    report_dir=Path(args.report_dir) if args.report_dir else None,
                    e2e=args.e2e, asr_model=args.asr_model, e2e_max_len=args.e2e_max_len, e2e_gate=args.e2e_gate,
                    e2e_max_wer=args.e2e_max_wer, e2e_cer_margin=args.e2e_cer_margin, lora=adapter,
                    lora_config=adapter_config)


def summary(results: dict) -> str:
    lines = [f"{'component':<24} {'precision':<9} {'output':<30} {'corr(min)':>10} {'rel-L2(max)':>11} "
             f"{'max-abs':>9}  pass", "-" * 104]
    for r in results["components"]:
        mark = ("ok" if r["passed"] else "FAIL") if r["gated"] else "info"
        lines.append(f"{r['name']:<24} {r['precision']:<9} {r['output'][:30]:<30} {r['corr']:>10.6f} "
                     f"{r['rel_l2']:>11.3e} {r['max_abs']:>9.3g}  {mark}")
    bad = [c for c in results["structural"] + results["checks"] if not c["passed"]]
    lines.append(f"structural and decision checks: {len(results['structural']) + len(results['checks']) - len(bad)} "
                 f"passed, {len(bad)} failed")
    for entry in results["localization"]:
        lines.append(f"localisation {entry['component']} {entry['precision']}: {entry['summary']}")
    from .e2e import summary_lines

    lines += summary_lines(results.get("e2e") or {})
    if (results.get("e2e") or {}).get("status") == "error":
        lines.append(results["e2e"]["error"])
    declaration = results.get("declaration") or {}
    lines.append(f"interface declared from {declaration.get('source', '?')}")
    lines += [f"note: {note}" for note in declaration.get("unknown", [])]
    if results.get("adapter"):
        adapter = results["adapter"]
        lines.append(f"LoRA adapter {adapter['file']} (r={adapter['config']['r']}, alpha={adapter['config']['alpha']}, "
                     f"alpha from {adapter['alpha_source']}), live in the reference")
    lines.append(f"backend {results['backend']}, {results['wall_seconds']:.1f} s")
    return "\n".join(lines)


def run_validation(settings) -> int:
    from .report import report_dir, write_report
    from .run import validate

    start = time.time()
    results = validate(settings)
    results["wall_seconds"] = round(time.time() - start, 1)
    directory = settings.report_dir or report_dir(settings.out, settings.layout)
    try:
        write_report(directory, results)
    except OSError as exc:
        return cli.fail(f"cannot write the report to {directory} ({exc.strerror or exc}): choose --report-dir")
    print(summary(results))
    print(f"report: {directory}/report.md")
    if not results["passed"]:
        print(f"validation FAILED: {results['failure']}", file=sys.stderr)
        return 1
    print("validation passed")
    return 0


def main(argv=None) -> int:
    from checkpoint.loading import CheckpointError
    from runtime.errors import BackendUnavailableError

    from .errors import ValidateError

    return cli.run(argv, parse_settings, run_validation,
                   expected=(ValidateError, CheckpointError, BackendUnavailableError))

"""Command-line plumbing shared by the toolkit's commands: one-line errors, the shared flags, one main().

Every expected failure of a command is one line, `error: <problem>: <fix>`, and exit status 2;
argparse's own usage errors follow the same rule through `OneLineParser`. Ctrl-C is exit 130 with
a line saying what was kept. The flags every command shares (--model, --revision, --out,
--precision, --components, --layout, --lora, --lora-config) are declared here once.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .defaults import DEFAULT_LAYOUT, DEFAULT_MODEL, DEFAULT_OUT
from .layout import LAYOUTS, all_names, component_names

PRECISION_CHOICES = {"fp16": ("fp16",), "int8": ("int8",), "all": ("fp16", "int8"), "fp32": ("fp32",)}


class UsageError(Exception):
    """A wrong argument: the message names it and what to do instead."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message}: see {self.prog} --help")


def fail(message: str) -> int:
    """Print the one-line error and return the exit status for expected failures."""
    print(f"error: {str(message).splitlines()[0] if str(message) else message}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------- shared flags
def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show third-party messages known to be harmless (hidden by default)")


def add_model(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--model", default=None if required else DEFAULT_MODEL, required=required,
                        help=f"Hugging Face id or checkpoint directory (default {DEFAULT_MODEL})")
    parser.add_argument("--revision", default=None, help="hub revision to pin (with a hub id)")


def add_lora(parser: argparse.ArgumentParser) -> None:
    """--lora / --lora-config: a LoRA adapter on top of --model, as voxcpm's fine-tuning script writes it."""
    parser.add_argument("--lora", default=None,
                        help="a LoRA adapter for --model: lora_weights.safetensors or .ckpt, the step folder holding "
                             "it, or the training run's folder (its `latest` link)")
    parser.add_argument("--lora-config", default=None,
                        help="the adapter's training YAML (its lora: section) or a YAML/JSON of voxcpm's LoRAConfig "
                             "fields; without it r and the adapted layers are read from the adapter's keys and alpha "
                             "is voxcpm's default (said in the output and the manifest)")


def lora(args) -> tuple[str | None, str | None]:
    """(adapter, adapter config) from the parsed --lora / --lora-config."""
    if args.lora_config and not args.lora:
        raise UsageError("--lora-config needs --lora: give the adapter it configures")
    return args.lora, args.lora_config


class _DeprecatedAlias(argparse.Action):
    """An old flag name that still works and says which one replaced it."""

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is deprecated: use {self.metavar}", DeprecationWarning, stacklevel=2)
        print(f"warning: {option_string} is deprecated: use {self.metavar}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_out(parser: argparse.ArgumentParser, what: str, old_names: tuple[str, ...] = ()) -> None:
    """--out, the artifacts directory every command reads or writes (old names kept as deprecated aliases)."""
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"{what} (default {DEFAULT_OUT})")
    for old in old_names:
        parser.add_argument(old, dest="out", action=_DeprecatedAlias, metavar="--out", help=f"deprecated: --out")


def add_layout(parser: argparse.ArgumentParser, allow_all: bool = False) -> None:
    names = LAYOUTS + (("all",) if allow_all else ())
    parser.add_argument("--layout", default=DEFAULT_LAYOUT,
                        help=f"which layout's packages: {', '.join(names)} (default {DEFAULT_LAYOUT})")


def layouts(text: str, allow_all: bool = False) -> tuple[str, ...]:
    if allow_all and text == "all":
        return LAYOUTS
    if text not in LAYOUTS:
        raise UsageError(f"unknown layout {text!r}: use {', '.join(LAYOUTS + (('all',) if allow_all else ()))}")
    return (text,)


def precisions(text: str, allowed=tuple(PRECISION_CHOICES)) -> tuple[str, ...]:
    if text not in allowed:
        raise UsageError(f"unknown precision {text!r}: use {', '.join(allowed[:-1])} or {allowed[-1]}")
    return PRECISION_CHOICES[text]


def components(text: str | None, layout: "str | tuple[str, ...]" = DEFAULT_LAYOUT,
               optional: bool = False) -> tuple[str, ...]:
    """A comma-separated subset of the layout's components (optional ones included; of several layouts', their
    union); None: the ones a conversion builds by default, and with `optional` the optional ones too."""
    layouts = (layout,) if isinstance(layout, str) else layout
    names = _union(all_names(name) for name in layouts)
    default = names if optional else _union(component_names(name) for name in layouts)
    chosen = tuple(c.strip() for c in (text or ",".join(default)).split(",") if c.strip())
    unknown = [c for c in chosen if c not in names]
    if unknown or not chosen:
        raise UsageError(f"unknown component {','.join(unknown) or '(none given)'}: choose from {','.join(names)}")
    return chosen


def _union(groups) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


def add_components(parser: argparse.ArgumentParser, default_help: str = "all") -> None:
    names = "; ".join(f"{layout}: {','.join(all_names(layout))}" for layout in LAYOUTS)
    parser.add_argument("--components", default=None,
                        help=f"comma-separated subset of the layout's components ({names}; default {default_help})")


# ----------------------------------------------------------------------------- one main()
def run(argv, parse, work, expected: tuple = (), interrupted: str = "interrupted", cannot_write: str = "") -> int:
    """parse(argv) -> settings, then work(settings) -> exit status; every expected failure is one line.

    `expected`: exception types whose message is the one line; `cannot_write`: the fix to print after
    an OSError while writing (else OSErrors are not expected); `interrupted`: what Ctrl-C kept (a
    string, or a function that says it once the work has stopped).
    Known-harmless third-party noise is hidden unless -v/--verbose is given (contract.quiet)."""
    from . import quiet

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet.install(verbose=bool({"-v", "--verbose"} & set(map(str, argv))))
    try:
        settings = parse(argv)
    except UsageError as exc:
        return fail(str(exc))
    try:
        status = work(settings)
    except expected as exc:
        error = str(exc)
    except OSError as exc:
        if not cannot_write:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        error = f"cannot write{where} ({exc.strerror or exc}): {cannot_write}"
    except KeyboardInterrupt:
        quiet.report()
        print(f"error: {interrupted() if callable(interrupted) else interrupted}", file=sys.stderr)
        return 130
    else:
        quiet.report()
        return status
    quiet.report()  # the notes first: an error is the last line
    return fail(error)

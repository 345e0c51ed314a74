"""What a validation run checks: which packages of OUT, held to which declaration, at which context.

OUT may be a conversion this toolkit did not make (no manifest.json, no constants/): the
declaration then comes from the checkpoint's config.json and the context from the packages
(`convert.declared`), and what cannot be known without a manifest is said in the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract import artifacts
from contract.layout import Layout

from .errors import ValidateError


@dataclass
class Target:
    out: Path
    layout: Layout                      # the fp16 declaration of the layout validated
    todo: dict                          # precision -> [component names] to validate
    source: str                         # where the declaration came from
    unknown: list[str]                  # what could not be known (no manifest)

    @property
    def max_context(self) -> int:
        return self.layout.max_context

    def package(self, component: str, precision: str) -> Path:
        return artifacts.package_path(self.out, precision, component, self.layout.name)

    def wanted(self, component: str) -> bool:
        return any(component in names for names in self.todo.values())

    def specs(self, kind: str) -> list:
        return [spec for spec in self.layout.of_kind(kind) if self.wanted(spec.name)]


def find_target(out, model: str, revision: str | None, layout_name: str, precisions, components,
                explicit_components: bool) -> Target:
    """The Target for these settings, or a ValidateError saying what is missing."""
    from convert.declared import DeclarationError, declared_for

    out = Path(out)
    if not out.is_dir():
        raise ValidateError(f"{out} does not exist: convert first (python -m convert --out {out})")
    have = {p: artifacts.converted(out, p, components, layout_name) for p in ("fp16", "int8")}
    if not any(have.values()):
        raise ValidateError(f"{out} holds no converted packages "
                            f"({artifacts.package_path(out, 'fp16|int8', '<component>', layout_name)}): "
                            f"run python -m convert --out {out} first")
    todo = {}
    for precision in precisions:
        if not have.get(precision):
            raise ValidateError(f"{out} has no {precision} packages: convert with --precision {precision} "
                                f"or validate another precision")
        missing = [c for c in components if c not in have[precision]]
        if missing and explicit_components:
            raise ValidateError(f"{out}/{precision} has no {', '.join(missing)}: convert it or leave it out of "
                                f"--components")
        todo[precision] = [c for c in components if c in have[precision]]
    try:
        declared = declared_for(out, model, revision, layout_name, prefer_model=True)
    except (DeclarationError, artifacts.ArtifactError) as exc:  # (a CheckpointError passes: the CLI says it)
        raise ValidateError(str(exc)) from None
    return Target(out, declared.layout, todo, declared.source, declared.unknown)

"""Whether OUT's artifacts were converted with the LoRA adapter they are validated against (manifest.json).

Each artifact's manifest entry names the adapter merged into it by sha256 (`adapter_sha256`;
absent for a conversion of the base alone). Packages of the base validated against base + adapter,
of one adapter against another, or of an adapter against the base alone fail this check, beside
the numbers that fail too.
"""
from __future__ import annotations

from contract import artifacts

COMPONENT = "manifest"


def check_adapter(out, todo: dict, layout: str, adapter_sha256: str | None, recorder) -> str | None:
    """Record the check; returns a note when it cannot be made (no manifest.json)."""
    manifest = artifacts.read_manifest(out)
    if manifest is None:
        return "no manifest.json: which LoRA adapter the packages were converted with cannot be checked"
    entries = manifest.get("artifacts", {})
    names = [artifacts.artifact_key(p, c, layout) for p, components in todo.items() for c in components]
    names += [artifacts.CONSTANTS] if artifacts.CONSTANTS in entries else []
    wrong = {name: (entries.get(name) or {}).get("adapter_sha256") for name in names
             if (entries.get(name) or {}).get("adapter_sha256") != adapter_sha256}
    what = (f"the LoRA adapter validated against (sha256 {adapter_sha256[:12]}…)" if adapter_sha256
            else "no LoRA adapter")
    if wrong:
        name, sha = next(iter(wrong.items()))
        detail = (f"{len(wrong)} of {len(names)} artifacts were not: {name} was converted "
                  f"{f'with adapter {sha[:12]}…' if sha else 'from the base alone'}")
    else:
        detail = f"all {len(names)} artifacts"
    recorder.check(COMPONENT, "all", f"converted with {what}", not wrong, detail)
    return None

"""A LoRA adapter as voxcpm's fine-tuning script writes it: found, read, checked against the base, merged or live.

The script saves `lora_weights.safetensors` (or `lora_weights.ckpt`, {"state_dict": ...}) in a
step folder: `<module>.lora_A` [r, in] and `<module>.lora_B` [out, r] for every Linear that
voxcpm's `LoRAConfig` wraps in a `LoRALinear` (output = linear(x) + (x·Aᵀ·Bᵀ)·alpha/r).
`open_adapter` checks all a conversion needs before anything is loaded or written: the keys pair
up, with one rank, finite values, and name exactly the layers the config adapts in a model of the
base's sizes (built weightless on torch's meta device, wrapped by voxcpm's own `_apply_lora`).
`Adapter.merge_into` folds it into the weights for conversion (W + alpha/r · B·A in FP32, the
projections that end up in OUT/constants included); `Adapter.load_into` puts it, unmerged, into
voxcpm's own LoRALinear layers: the validation reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .loading import LORA_FILES, MODEL_FILES, build_model, follow_latest, iter_tensors
from .lora_config import LoRAError, LoRASettings, infer_config, part_of, read_config

ADAPTER_HINT = "pass LORA=<the step folder voxcpm's fine-tuning script wrote, or its lora_weights file>"
SUFFIXES = (".lora_A", ".lora_B")


@dataclass
class Adapter:
    source: Path                    # what was given: a file, a step folder, or a run's save_path
    file: Path                      # lora_weights.safetensors / .ckpt
    settings: LoRASettings
    tensors: dict                   # module path -> (A [r, in], B [out, r]), float32
    base_check: str = ""            # what could be checked of the base it was trained on
    parts: dict = field(default_factory=dict)   # "lm" / "dit" / "proj" -> number of adapted layers

    def lora_config(self):
        """voxcpm's LoRAConfig of this adapter (what `VoxCPMModel(…, lora_config=…)` takes)."""
        return self.settings.lora_config()

    def merge_into(self, model):
        """W += alpha/r · B·A in FP32 on every adapted Linear of an unpatched FP32 model; returns it."""
        import torch

        with torch.no_grad():
            for module, (a, b) in self.tensors.items():
                linear = model.get_submodule(module)
                linear.weight += self.settings.scale * (b @ a)
        return model

    def load_into(self, model) -> None:
        """voxcpm's own `load_lora_weights` into the model's LoRALinear layers; every tensor must land."""
        loaded, skipped = model.load_lora_weights(str(self.file), device="cpu")
        if skipped or len(loaded) != 2 * len(self.tensors):
            raise LoRAError(f"voxcpm loaded {len(loaded)} of the {2 * len(self.tensors)} tensors of {self.file} "
                            f"(skipped {', '.join(skipped[:2])}): {ADAPTER_HINT}")

    def describe(self) -> str:
        s = self.settings
        layers = ", ".join(f"{n} {name}" for name, n in (("LM", self.parts.get("lm", 0)),
                                                         ("DiT", self.parts.get("dit", 0)),
                                                         ("projection", self.parts.get("proj", 0))) if n)
        return (f"LoRA adapter {self.file}: r={s.r}, alpha={s.alpha:g} (scale {s.scale:g}) from {s.source}; "
                f"{layers} layers")

    def warning(self) -> str | None:
        """The loud line when alpha, which the weights cannot tell, is voxcpm's default."""
        s = self.settings
        if not s.alpha_from_default:
            return None
        where = "no LORA_CONFIG was given" if s.from_keys else f"{s.source} sets none"
        return (f"alpha is not stored in LoRA weights and {where}: using voxcpm's default alpha={s.alpha:g} "
                f"(scale alpha/r = {s.scale:g}); if the adapter was trained with another alpha, pass its training "
                f"YAML as LORA_CONFIG (--lora-config)")

    def record(self) -> dict:
        """What the manifest keeps of the adapter (the converter adds its sha256)."""
        s = self.settings
        return {"path": str(self.source), "file": str(self.file.resolve()), "config": s.fields,
                "config_source": s.source,
                "alpha_source": "voxcpm's default (LoRAConfig.alpha): neither the weights nor the config hold it"
                if s.alpha_from_default
                else s.source, "scale": s.scale, "layers": dict(self.parts), "base_check": self.base_check}


# ----------------------------------------------------------------------------- reading
def find_file(source) -> Path:
    """The adapter's weights file: `source` itself, or lora_weights.* in a step folder (or `latest`)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise LoRAError(f"LoRA adapter {path} does not exist: {ADAPTER_HINT}")
    folder = follow_latest(path)
    for name in LORA_FILES:
        if (folder / name).is_file():
            return folder / name
    if any((folder / name).is_file() for name in MODEL_FILES):
        raise LoRAError(f"{folder} holds a model, not a LoRA adapter: convert a full fine-tune with MODEL={folder} "
                        f"alone")
    raise LoRAError(f"{folder} has no {' or '.join(LORA_FILES)}: {ADAPTER_HINT}")


def _pairs(file: Path) -> dict:
    """module -> (A, B) in float32, every key a lora_A or lora_B of a pair, all values finite."""
    import torch

    found: dict = {}
    for key, tensor in iter_tensors(file):
        if not key.endswith(SUFFIXES):
            raise LoRAError(f"{file} holds {key}, which is not a LoRA weight (…lora_A / …lora_B): pass a full "
                            f"fine-tune as MODEL=, an adapter as LORA=")
        if not tensor.is_floating_point() or tensor.ndim != 2:
            raise LoRAError(f"{file}: {key} is a {tensor.ndim}-D {tensor.dtype} tensor, not a 2-D float matrix: "
                            f"{ADAPTER_HINT}")
        if not torch.isfinite(tensor).all():
            raise LoRAError(f"{file}: {key} holds NaN or infinite values (a diverged training run?): use an "
                            f"earlier step folder")
        module, _, which = key.rpartition(".")
        found.setdefault(module, {})[which] = tensor.float()
    if not found:
        raise LoRAError(f"{file} holds no tensors: {ADAPTER_HINT}")
    lonely = sorted(m for m, pair in found.items() if len(pair) != 2)
    if lonely:
        have = next(iter(found[lonely[0]]))
        more = f" (and {len(lonely) - 1} more)" if len(lonely) > 1 else ""
        raise LoRAError(f"{file}: {lonely[0]} has {have} but not its partner{more}: the file is incomplete: "
                        f"{ADAPTER_HINT}")
    return {m: (pair["lora_A"], pair["lora_B"]) for m, pair in sorted(found.items())}


def _ranks(tensors: dict, file: Path) -> dict[str, int]:
    ranks = {}
    for module, (a, b) in tensors.items():
        if a.shape[0] != b.shape[1]:
            raise LoRAError(f"{file}: rank mismatch in {module}: lora_A is {list(a.shape)} but lora_B is "
                            f"{list(b.shape)} (A [r, in], B [out, r]): {ADAPTER_HINT}")
        ranks[module] = a.shape[0]
    if len(set(ranks.values())) > 1:
        common = max(set(ranks.values()), key=list(ranks.values()).count)
        odd = next(m for m, r in ranks.items() if r != common)
        raise LoRAError(f"{file}: rank mismatch: {odd} has r={ranks[odd]} but the other layers r={common} (voxcpm's "
                        f"LoRA uses one r): {ADAPTER_HINT}")
    return ranks


# ----------------------------------------------------------------------------- checks against the base
def weightless_model(directory: Path, lora_config):
    """The base's architecture with voxcpm's LoRA layers, on torch's meta device: no weights read or held
    (~2 s and ~0.3 GB at full size)."""
    import torch

    with torch.device("meta"):
        return build_model(directory, lora_config)


def _lora_layers(directory: Path, settings: LoRASettings) -> tuple[dict, set]:
    """({module: (out, in)} of the Linear layers voxcpm wraps with these settings, every module name)."""
    from voxcpm.modules.layers.lora import LoRALinear

    modules = dict(weightless_model(directory, settings.lora_config()).named_modules())
    return ({name: (m.out_features, m.in_features) for name, m in modules.items() if isinstance(m, LoRALinear)},
            set(modules))


def _unknown_modules(unknown: list, all_modules: set, settings: LoRASettings, directory: Path) -> LoRAError:
    example = unknown[0]
    count = f"{len(unknown)} adapted module{'s' if len(unknown) > 1 else ''} (e.g. {example})"
    if example not in all_modules:
        return LoRAError(f"{count} match no module of the model in {directory}: the adapter is for another "
                         f"architecture or model size: use the base it was trained on")
    if part_of(example) is None or settings.from_keys:
        return LoRAError(f"{count} are not layers voxcpm's LoRA adapts (Linear layers of base_lm, residual_lm, "
                         f"feat_decoder.estimator and the top-level projections): {ADAPTER_HINT}")
    return LoRAError(f"{count} are not adapted by {settings.source} (enable_{part_of(example)} / its target "
                     f"module names): the config is not this adapter's: pass its own training YAML")


def _check_layers(tensors: dict, settings: LoRASettings, directory: Path, file: Path) -> None:
    expected, all_modules = _lora_layers(directory, settings)
    unknown = [m for m in tensors if m not in expected]
    if unknown:
        raise _unknown_modules(unknown, all_modules, settings, directory)
    for module, (a, b) in tensors.items():
        out_features, in_features = expected[module]
        if a.shape[1] != in_features or b.shape[0] != out_features:
            raise LoRAError(f"{file} is for another model size: {module} is [{b.shape[0]}, {a.shape[1]}] in the "
                            f"adapter (B·A) but [{out_features}, {in_features}] in {directory}: use the base it "
                            f"was trained on")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise LoRAError(f"{file} has no weights for {len(missing)} of the {len(expected)} layers "
                        f"{settings.source} adapts (e.g. {missing[0]}): it was trained on another model (fewer "
                        f"layers?) or the config is not its own")


def check_base(settings: LoRASettings, checkpoint: Path, sample_rate: int, weights_of=None) -> str:
    """Refuse a base the training config names and that differs from `checkpoint`; else say what was checked.

    `weights_of(directory) -> {file name: sha256}` compares weight files (the converter's cached hashes)."""
    hints, notes = settings.base_hints, []
    if "sample_rate" in hints:
        if int(hints["sample_rate"]) != int(sample_rate):
            raise LoRAError(f"the adapter was trained at sample_rate {hints['sample_rate']} ({settings.source}) but "
                            f"{checkpoint} is a {sample_rate} Hz model: use the base it was trained on")
        notes.append(f"sample rate {sample_rate} Hz matches")
    base = hints.get("pretrained_path")
    if base is None:
        return "; ".join(notes) or "nothing to compare: the adapter does not name its base"
    path = Path(str(base)).expanduser()
    if path.is_dir() and path.resolve() == Path(checkpoint).resolve():
        return "; ".join(notes + [f"trained on {base}, the model given"])
    if not (path / "config.json").is_file() or weights_of is None:
        return "; ".join(notes + [f"trained on {base}, not on this machine: the weights could not be compared"])
    mine, theirs = weights_of(Path(checkpoint)), weights_of(path)
    differ = [name for name in ("config.json", *MODEL_FILES) if name in mine and mine.get(name) != theirs.get(name)]
    if differ:
        raise LoRAError(f"the adapter was trained on {base} ({settings.source}), whose {differ[0]} differs from "
                        f"{checkpoint}'s: use MODEL={base}")
    return "; ".join(notes + [f"trained on {base}: same weights as the model given"])


def open_adapter(source, config_path, checkpoint: Path, sample_rate: int, weights_of=None) -> Adapter:
    """The adapter at `source` with its settings (`config_path`, else read from its keys), checked against the
    base `checkpoint` (a local directory) before anything is loaded or written; raises LoRAError."""
    file = find_file(source)
    tensors = _pairs(file)
    ranks = _ranks(tensors, file)
    settings = read_config(config_path) if config_path else infer_config(ranks)
    rank = next(iter(ranks.values()))
    if settings.r != rank:
        raise LoRAError(f"rank mismatch: {settings.source} says r={settings.r} but the adapter's tensors have rank "
                        f"{rank} (e.g. {next(iter(tensors))}.lora_A {list(next(iter(tensors.values()))[0].shape)}): "
                        f"pass the adapter's own training config")
    _check_layers(tensors, settings, Path(checkpoint), file)
    base_check = check_base(settings, Path(checkpoint), sample_rate, weights_of)
    parts: dict = {}
    for module in tensors:
        parts[part_of(module)] = parts.get(part_of(module), 0) + 1
    return Adapter(Path(source), file, settings, tensors, base_check, parts)

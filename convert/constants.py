"""The arrays and settings a Core ML generator needs besides the models.

`OUT/constants/`: config.json (the generation config, `contract.generation`) and the
seven arrays as .npy in float32 — the checkpoint's own values (bf16 and fp32 both fit exactly),
text embeddings NOT multiplied by scale_emb (config.json says `text_embedding_scale`), Linear
weights in torch's [out, in] layout.
`OUT/constants_bin/`: the same arrays as raw little-endian fp16, row-major, no header
(`<name>.bin`, shapes in constants/config.json "arrays"), and the tokenizer files.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from contract.artifacts import GENERATION_CONFIG, PROJECTIONS, TOKENIZER_FILES
from contract.generation import generation_config


def extract_arrays(model) -> dict[str, np.ndarray]:
    """name -> float32 array, in a fixed order."""
    arrays = {"embed_tokens": model.base_lm.embed_tokens.weight}
    for proj in PROJECTIONS:
        layer = getattr(model, proj)
        arrays[f"{proj}_w"], arrays[f"{proj}_b"] = layer.weight, layer.bias
    return {name: tensor.detach().float().cpu().numpy() for name, tensor in arrays.items()}


def tokenizer_files(checkpoint: Path) -> list[str]:
    return [name for name in TOKENIZER_FILES if (Path(checkpoint) / name).is_file()]


def full_config(raw_config: dict, arrays: dict, checkpoint: Path, max_context: int) -> dict:
    config = generation_config(raw_config, max_context, tokenizer_files(checkpoint), embed_dtype="float32")
    config["arrays"] = {name: {"shape": list(a.shape), "npy_dtype": "float32", "bin_dtype": "float16le"}
                        for name, a in arrays.items()}
    return config


def write_npy_dir(directory: Path, arrays: dict, config: dict) -> None:
    directory.mkdir(parents=True)
    (directory / GENERATION_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))


def write_bin_dir(directory: Path, arrays: dict, checkpoint: Path) -> None:
    directory.mkdir(parents=True)
    for name, array in arrays.items():
        (directory / f"{name}.bin").write_bytes(np.ascontiguousarray(array, dtype="<f2").tobytes())
    for name in tokenizer_files(checkpoint):
        shutil.copyfile(Path(checkpoint) / name, directory / name)

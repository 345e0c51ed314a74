"""Let `import voxcpm` work without torchaudio and librosa.

voxcpm 2.0.3 imports both at module level, yet on the VoxCPM 1.5 path it only calls
`torchaudio.load` and `torchaudio.functional.resample` (prompt audio) and never librosa.
PyPI's torchaudio is CUDA-linked and fails to import beside the CPU torch we pin, so we
register small stand-ins that do the same work with soundfile and scipy. A real, importable
torchaudio/librosa always wins: the stand-in is installed only when the import fails.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import logging
import sys
import types

import numpy as np

from contract.audio import read_audio, resample_poly

log = logging.getLogger(__name__)
STANDIN_ATTR = "__voxcpm_coreml_standin__"


def _new_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    # transformers probes optional packages with importlib.util.find_spec, which needs a spec.
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    setattr(module, STANDIN_ATTR, True)
    return module


def _torchaudio_standin() -> types.ModuleType:
    import torch

    torchaudio = _new_module("torchaudio")
    functional = _new_module("torchaudio.functional")

    def load(path, *args, **kwargs):
        data, sr = read_audio(path)
        return torch.from_numpy(data), sr

    def resample(waveform, orig_freq, new_freq, *args, **kwargs):
        out = resample_poly(waveform.detach().cpu().numpy(), orig_freq, new_freq)
        return torch.from_numpy(out).to(waveform.dtype)

    def save(path, waveform, sample_rate, *args, **kwargs):
        import soundfile as sf

        sf.write(str(path), waveform.detach().cpu().numpy().T, int(sample_rate))

    torchaudio.load, torchaudio.save = load, save
    functional.resample = resample
    torchaudio.functional = functional
    return torchaudio


def _librosa_standin() -> types.ModuleType:
    librosa = _new_module("librosa")
    effects = _new_module("librosa.effects")

    def load(path, sr=22050, mono=True, **kwargs):
        data, file_sr = read_audio(path)
        if mono:
            data = data.mean(axis=0)
        if sr is not None and sr != file_sr:
            data, file_sr = resample_poly(data, file_sr, sr), sr
        return data, file_sr

    def trim(y, top_db=60, frame_length=2048, hop_length=512, **kwargs):
        frames = max(1, 1 + (y.shape[-1] - frame_length) // hop_length)
        rms = np.array([np.sqrt(np.mean(y[..., i * hop_length:i * hop_length + frame_length] ** 2) + 1e-20)
                        for i in range(frames)])
        keep = np.flatnonzero(20 * np.log10(rms / rms.max()) > -top_db)
        if keep.size == 0:
            return y[..., :0], (0, 0)
        start, end = keep[0] * hop_length, min(y.shape[-1], (keep[-1] + 1) * hop_length + frame_length)
        return y[..., start:end], (start, end)

    librosa.load, effects.trim, librosa.effects = load, trim, effects
    return librosa


def _real_import_works(name: str) -> bool:
    if name in sys.modules:
        return not getattr(sys.modules[name], STANDIN_ATTR, False)
    try:
        importlib.import_module(name)
        return True
    except Exception:  # ImportError, OSError from a CUDA-linked build, ...
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return False


def install_standins() -> list[str]:
    """Register stand-ins for the audio packages that cannot be imported; return their names."""
    installed = []
    for name, build in (("torchaudio", _torchaudio_standin), ("librosa", _librosa_standin)):
        if _real_import_works(name):
            continue
        module = build()
        sys.modules[name] = module
        for attr in ("functional", "effects"):
            if hasattr(module, attr):
                sys.modules[f"{name}.{attr}"] = getattr(module, attr)
        installed.append(name)
        log.debug("installed stand-in for %s", name)
    return installed


def import_voxcpm():
    """Import voxcpm's VoxCPM 1.5 model module with the stand-ins in place."""
    install_standins()
    return importlib.import_module("voxcpm.model.voxcpm")

"""The torchaudio/librosa stand-ins do real work and never shadow a working real package."""
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from checkpoint import compat


def test_voxcpm_imports_and_standins_are_marked():
    module = compat.import_voxcpm()
    assert module.VoxCPMModel
    torchaudio = sys.modules["torchaudio"]
    assert getattr(torchaudio, compat.STANDIN_ATTR, False)  # the CPU venv has no working torchaudio
    assert torchaudio.__spec__ is not None  # transformers' find_spec probe needs a real spec


def test_a_working_real_package_wins(monkeypatch):
    real = types.ModuleType("torchaudio")
    monkeypatch.setitem(sys.modules, "torchaudio", real)
    monkeypatch.delitem(sys.modules, "librosa", raising=False)
    installed = compat.install_standins()
    assert "torchaudio" not in installed and sys.modules["torchaudio"] is real


def test_load_returns_channels_first(tmp_path):
    import torchaudio

    stereo = np.stack([np.linspace(-1, 1, 1000), np.zeros(1000)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 22050, subtype="FLOAT")
    audio, rate = torchaudio.load(str(tmp_path / "s.wav"))
    assert rate == 22050 and tuple(audio.shape) == (2, 1000)
    assert np.allclose(audio.numpy(), stereo.T)


def test_resample_is_band_limited():
    import torch
    import torchaudio

    rate = 96000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 30000 * t)  # 30 kHz is above 44.1k's Nyquist
    out = torchaudio.functional.resample(torch.tensor(tone[None], dtype=torch.float32), rate, 44100)[0].numpy()
    assert out.shape == (44100,)
    spectrum = np.abs(np.fft.rfft(out[2000:-2000] * np.hanning(out.size - 4000)))
    freqs = np.fft.rfftfreq(out.size - 4000, 1 / 44100)
    kept = spectrum[np.abs(freqs - 1000) < 20].max()
    aliased = spectrum[np.abs(freqs - (44100 - 30000)) < 40].max()  # where 30 kHz would fold to
    assert aliased < kept * 1e-3


def test_unreadable_audio_is_a_clear_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match="cannot read audio file"):
        compat.read_audio(tmp_path / "bad.wav")


def test_librosa_standin_loads_mono_resampled(tmp_path):
    import librosa

    sf.write(tmp_path / "m.wav", np.zeros((16000, 2), dtype=np.float32), 16000)
    audio, rate = librosa.load(str(tmp_path / "m.wav"), sr=8000, mono=True)
    assert rate == 8000 and audio.shape == (8000,)

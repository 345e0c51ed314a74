"""`python -m generate --stream`: a WAV that is valid at every moment, raw PCM on stdout with every message on
stderr, Ctrl-C keeps a valid partial WAV, and bad streaming flags are one line with nothing written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from generate import progressive_wav
from generate.cli import main
from generate.progressive_wav import HEADER_BYTES, ProgressiveWav, pcm16

ROOT = Path(__file__).resolve().parents[2]
TEXT = "Hello, this is a test."
PATCH = 7056


def _args(out, *extra):
    return ["--out", str(out), "--precision", "fp16", "--backend", "mil", "--text", TEXT, "--seed", "3",
            "--max-len", "5", "--min-len", "5", "--quiet", *map(str, extra)]


def _checked_appends(monkeypatch, seen: list, stop_after: int | None = None):
    """Read the wav with soundfile after every append (what a player opening it then would find)."""
    real = ProgressiveWav.append

    def append(self, audio):
        if stop_after is not None and len(seen) == stop_after:
            raise KeyboardInterrupt
        real(self, audio)
        info = sf.info(self.path)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert info.frames * 2 + HEADER_BYTES == self.path.stat().st_size   # header sizes cover exactly what is there
        seen.append(info.frames)

    monkeypatch.setattr(ProgressiveWav, "append", append)


def test_stream_writes_a_valid_wav_at_every_moment(tiny_stream_out, tmp_path, monkeypatch, capsys):
    wav, stats_path, whole = tmp_path / "stream.wav", tmp_path / "stats.json", tmp_path / "whole.wav"
    seen = []
    _checked_appends(monkeypatch, seen)
    assert main(_args(tiny_stream_out, "--stream", "--wav", wav, "--stats", stats_path)) == 0
    assert seen == [PATCH * n for n in range(1, 6)]                 # one chunk per patch, valid after each
    assert main(_args(tiny_stream_out, "--wav", whole)) == 0
    streamed, rate = sf.read(wav, dtype="int16")
    assert rate == 44100 and streamed.size == 5 * PATCH
    # the streaming decoder (fp16 package) against one whole decode: equal up to fp16 rounding
    reference = sf.read(whole, dtype="int16")[0].astype(np.float64)
    assert np.linalg.norm(streamed - reference) / np.linalg.norm(reference) < 1e-2
    stream = json.loads(stats_path.read_text())["stream"]
    assert stream["decoder"] == "stream (contexts in and out)" and stream["chunks"] == 5
    assert stream["first_audio_patches"] == 1 and stream["time_to_first_audio_s"] > 0 and stream["chunk_interval_s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "stream.wav", "whole.wav"]


def test_ctrl_c_leaves_a_valid_partial_wav(tiny_stream_out, tmp_path, monkeypatch, capsys):
    wav = tmp_path / "partial.wav"
    seen = []
    _checked_appends(monkeypatch, seen, stop_after=2)
    assert main(_args(tiny_stream_out, "--stream", "--wav", wav)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: interrupted: {wav} holds the first {2 * PATCH / 44100:.2f} s (a valid wav)"
    assert sf.info(wav).frames == 2 * PATCH and [p.name for p in tmp_path.iterdir()] == ["partial.wav"]


def test_interrupted_before_any_audio_keeps_the_earlier_file(tiny_stream_out, tmp_path, monkeypatch, capsys):
    wav = tmp_path / "old.wav"
    sf.write(wav, np.zeros(100, np.float32), 44100, subtype="PCM_16")
    before = wav.read_bytes()
    _checked_appends(monkeypatch, [], stop_after=0)
    assert main(_args(tiny_stream_out, "--stream", "--wav", wav)) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: interrupted: nothing was written"
    assert wav.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["old.wav"]


def test_stream_dash_writes_raw_pcm_to_stdout_and_messages_to_stderr(tiny_stream_out, tmp_path):
    wav = tmp_path / "same.wav"
    assert main(_args(tiny_stream_out, "--stream", "--wav", wav)) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [a for a in _args(tiny_stream_out, "--stream", "-") if a != "--quiet"]
    result = subprocess.run([sys.executable, "-m", "generate", *argv], cwd=ROOT, env=env, capture_output=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    pcm = np.frombuffer(result.stdout, "<i2")
    assert pcm.size == 5 * PATCH                                     # nothing but samples on stdout
    assert np.abs(pcm.astype(int) - sf.read(wav, dtype="int16")[0]).max() <= 1
    err = result.stderr.decode()
    assert "first audio after" in err and "5 chunks" in err and "real-time factor" in err
    assert list(tmp_path.iterdir()) == [wav]


@pytest.mark.parametrize("extra, message", [
    (["--stream", "--retry-badcase", "--wav", "x.wav"], "--retry-badcase cannot stream"),
    (["--stream", "now", "--wav", "x.wav"], "--stream takes no value"),
    (["--stream"], "no output: give --wav"),
    ([], "no output: give --wav"),
    (["--stream", "--stream-chunk", "0", "--wav", "x.wav"], "need a chunk of at least 1 patch"),
    (["--stream", "--stream-decoder", "stream", "--wav", "x.wav"], "has no streaming decoder package"),
])
def test_bad_streaming_flags_are_one_line(never_out, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(_args(never_out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_progressive_wav_close_after_a_torn_write(tmp_path):
    """A Ctrl-C in the middle of a write (half a sample on disk): close() keeps the whole samples, sizes right."""
    path = tmp_path / "torn.wav"
    wav = ProgressiveWav(path, 44100)
    wav.append(np.full(10, 0.5, np.float32))
    with open(path, "ab") as f:                  # 3 more samples and half of a fourth, no header update
        f.write(pcm16(np.full(3, -0.25, np.float32)) + b"\x01")
    wav.close()
    data, rate = sf.read(path, dtype="int16")
    assert rate == 44100 and data.tolist() == [16384] * 10 + [-8192] * 3
    assert path.stat().st_size == HEADER_BYTES + 13 * 2
    assert progressive_wav.pcm16(np.array([2.0, -2.0, 0.5])).hex() == "ff7f0180" + "0040"

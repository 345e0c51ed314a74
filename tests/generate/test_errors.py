"""Bad inputs: one line `error: …`, exit status 2, no traceback, nothing written, nothing overwritten."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from generate import GenerationError, Synthesizer
from generate.cli import main

ROOT = Path(__file__).resolve().parents[2]
LONG_TEXT = " ".join(f"word{i}" for i in range(300))  # unknown words: ~4 tokens each, over 512 (a repeated
# corpus sentence would not do: the fixture tokenizer learned whole sentences as single tokens)


def _wav(directory: Path, name: str, data, rate=16000, subtype=None) -> Path:
    path = directory / name
    sf.write(path, np.asarray(data, np.float32), rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def bad_prompts(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_prompts")
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file" + os.urandom(64))
    nan = np.full(8000, 0.1, np.float32)
    nan[100] = np.nan
    return {"missing": d / "missing.wav", "corrupt": corrupt, "empty": _wav(d, "empty.wav", np.zeros(0)),
            "silent": _wav(d, "silent.wav", np.zeros(16000)), "nan": _wav(d, "nan.wav", nan, subtype="FLOAT"),
            "good": _wav(d, "good.wav", 0.1 * np.sin(np.arange(16000) / 5.0))}


def _cases(out, prompts, tmp):
    prompt = ["--prompt", str(prompts["good"]), "--prompt-text", "This is the prompt transcript."]
    bad = lambda key: ["--prompt", str(prompts[key]), "--prompt-text", "This is the prompt transcript."]  # noqa: E731
    return {
        "empty_text": (["--text", "  \n "], "text is empty"),
        "text_over_context": (["--text", LONG_TEXT], "shorten the text or prompt by"),
        "missing_prompt": (["--text", "Hi."] + bad("missing"), "does not exist"),
        "corrupt_prompt": (["--text", "Hi."] + bad("corrupt"), "cannot read prompt audio"),
        "empty_prompt": (["--text", "Hi."] + bad("empty"), "no samples"),
        "silent_prompt": (["--text", "Hi."] + bad("silent"), "silent"),
        "nan_prompt": (["--text", "Hi."] + bad("nan"), "NaN"),
        "prompt_text_without_audio": (["--text", "Hi.", "--prompt-text", "words"], "go together"),
        "prompt_audio_without_text": (["--text", "Hi.", "--prompt", str(prompts["good"])], "go together"),
        "missing_artifacts": (["--text", "Hi.", "--out", str(tmp / "nowhere")], "does not exist"),
        "precision_not_converted": (["--text", "Hi.", "--precision", "int8"], "was not converted"),
        "unknown_option": (["--text", "Hi.", "--bogus"], "unrecognized arguments"),
        "good_prompt_but_output_dir_missing": (["--text", "Hi."] + prompt, "does not exist"),
    }


CASE_NAMES = list(_cases(Path("."), {k: Path(k) for k in ("missing", "corrupt", "empty", "silent", "nan", "good")},
                         Path(".")))


@pytest.mark.parametrize("existing", [False, True], ids=["no_wav", "existing_wav"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_and_writes_nothing(name, existing, never_out, bad_prompts, tmp_path, capsys):
    args, expected = _cases(never_out, bad_prompts, tmp_path)[name]
    wav = tmp_path / ("missing_dir/out.wav" if name.startswith("good_prompt") else "out.wav")
    if existing and wav.parent.is_dir():
        wav.write_bytes(b"previous content")
    argv = ["--out", str(never_out), "--precision", "fp16", "--backend", "mil", "--wav", str(wav),
            "--quiet", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.wav"] if existing and wav.parent == tmp_path else [])
    if existing and wav.exists():
        assert wav.read_bytes() == b"previous content"


def test_context_overflow_fails_before_any_model_work(never_out, bad_prompts):
    synth = Synthesizer(never_out, precision="fp16", backend="mil")
    with pytest.raises(GenerationError, match=r"context holds 512: shorten the text or prompt by \d+ positions"):
        synth.generate(LONG_TEXT)
    assert not synth.packages.calls and not synth.packages._loaded


def _run_cli(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "generate", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_process_error_has_no_traceback(never_out, bad_prompts, tmp_path):
    wav = tmp_path / "out.wav"
    result = _run_cli("--out", never_out, "--precision", "fp16", "--text", "Hi.", "--prompt",
                      bad_prompts["corrupt"], "--prompt-text", "words", "--wav", wav)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] and not wav.exists()


def test_cli_writes_wav_and_stats(never_out, bad_prompts, tmp_path):
    wav, stats = tmp_path / "out.wav", tmp_path / "stats.json"
    result = _run_cli("--out", never_out, "--precision", "fp16", "--backend", "mil", "--text", "Hi there.",
                      "--prompt", bad_prompts["good"], "--prompt-text", "This is the prompt transcript.",
                      "--wav", wav, "--seed", "3", "--max-len", "3", "--stats", stats)
    assert result.returncode == 0, result.stderr
    info = sf.info(wav)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_16", 3 * 7056)
    data = json.loads(stats.read_text())
    for key in ("prefill_tokens_per_second", "generation_steps_per_second", "real_time_factor", "peak_rss_mib",
                "calls_per_generated_patch"):
        assert data[key], key
    assert data["calls_per_generated_patch"]["locdit_step"] == 9
    assert "real-time factor" in result.stdout and f"wav: {wav}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "stats.json"]  # no temporaries left


def test_old_artifacts_flag_still_works_and_says_it_is_deprecated(never_out, tmp_path, capsys):
    """--artifacts was generate's name for what every other command calls --out."""
    wav = tmp_path / "out.wav"
    argv = ["--artifacts", str(never_out / "nowhere"), "--precision", "fp16", "--wav", str(wav), "--text", "Hi."]
    assert main(argv) == 2  # the alias reached --out: that directory does not exist
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "warning: --artifacts is deprecated: use --out"
    assert err[-1].startswith("error: artifact directory") and "nowhere" in err[-1]

"""The offline ASR harness: Whisper base rebuilt from the pinned wheels, proven on real speech.

Needs `make setup` (requirements-asr.txt); no network, no espeak-ng (the clips are committed).
"""
import base64
import gzip
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from validate.asr import ct2, scoring, whisper_offline
from validate.asr.whisper_offline import AsrModelError, BASE_DIMS, BASE_PARAMETERS

DATA = Path(__file__).resolve().parents[1] / "data"
VALIDATE_DATA = Path(__file__).resolve().parents[2] / "validate" / "data"
EN_TEXT = "Hello, this is a test of the voice cloning system."
ZH_TEXT = "你好，这是一个语音合成的测试。"


def _read(name, dtype="float32"):
    audio, sr = sf.read(DATA / name, dtype=dtype)
    return audio, sr


@pytest.fixture(scope="module")
def model():
    start = time.perf_counter()
    m = whisper_offline.load_whisper("base")
    print(f"\nwhisper base loaded in {time.perf_counter() - start:.1f} s")
    return m


# ---------------------------------------------------------------------------- the converted model

def test_converted_checkpoint_is_whisper_base(model):
    assert whisper_offline.parameter_count(model) == BASE_PARAMETERS
    assert whisper_offline.dims_dict(model) == BASE_DIMS
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    assert not model.training


def test_alignment_heads_match_openai_base(model):
    """CTranslate2's config.json carries the alignment heads: they must be openai-whisper's for base."""
    import whisper

    dump = whisper._ALIGNMENT_HEADS["base"]
    expected = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(6, 8)
    assert np.array_equal(model.alignment_heads.to_dense().numpy(), expected)


def test_encoder_positions_are_sinusoids(model):
    from whisper.model import sinusoids

    ref = sinusoids(1500, 512)
    assert float((model.encoder.positional_embedding - ref).abs().max()) < 2e-3


# ------------------------------------------------------------------------------------ real speech

def test_english_clip_is_recognised(model):
    audio, sr = _read("speech_en_16k.wav")
    result = scoring.score(model, audio, sr, EN_TEXT, "en")
    print(f"\nEnglish: {result['transcript']!r} WER {result['wer_or_cer']:.3f}")
    assert result["metric"] == "wer"
    assert result["wer_or_cer"] <= 0.2, result


def test_44k_stereo_int16_is_resampled(model):
    """The same clip at 44.1 kHz, stereo, int16: transcribe() must make it mono 16 kHz float32."""
    from scipy.signal import resample_poly

    audio, sr = _read("speech_en_16k.wav")
    up = resample_poly(audio, 441, 160)
    stereo = np.stack([up, 0.9 * up], axis=1)
    pcm = np.clip(np.round(stereo * 32767), -32768, 32767).astype(np.int16)
    result = scoring.score(model, pcm, 44_100, EN_TEXT, "en")
    print(f"\nEnglish 44.1 kHz stereo: {result['transcript']!r} WER {result['wer_or_cer']:.3f}")
    assert result["wer_or_cer"] <= 0.2, result


def test_noise_is_flagged(model):
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(3 * 16_000)).astype(np.float32)
    result = scoring.score(model, noise, 16_000, EN_TEXT, "en")
    print(f"\nnoise: {result['transcript']!r} WER {result['wer_or_cer']:.3f}")
    assert result["transcript"] == "" or result["wer_or_cer"] >= 0.8, result


def test_mandarin_clip_is_partly_recognised(model):
    audio, sr = _read("speech_zh_16k.wav")
    result = scoring.score(model, audio, sr, ZH_TEXT, "zh")
    print(f"\nMandarin: {result['transcript']!r} CER {result['wer_or_cer']:.3f}")
    assert result["metric"] == "cer"
    assert result["wer_or_cer"] < 1.0, result


def test_committed_clips_are_small_16bit_mono():
    for path, rate in [(DATA / "speech_en_16k.wav", 16_000), (DATA / "speech_zh_16k.wav", 16_000),
                       (VALIDATE_DATA / "speech_en_44k.wav", 44_100)]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16"), path.name
        assert path.stat().st_size < 200 * 1024, path.name


# ------------------------------------------------------------------------------------------ cache

def test_cache_is_written_once_and_reused(tmp_path):
    start = time.perf_counter()
    path = whisper_offline.ensure_base_checkpoint(tmp_path)
    first = time.perf_counter() - start
    mtime = path.stat().st_mtime_ns
    assert path.parent == tmp_path and path.name.startswith("whisper-base-")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file was renamed

    start = time.perf_counter()
    again = whisper_offline.ensure_base_checkpoint(tmp_path)
    second = time.perf_counter() - start
    assert again == path and path.stat().st_mtime_ns == mtime
    assert second < first / 5, (first, second)
    print(f"\nconversion {first:.2f} s, cache hit {second * 1000:.1f} ms")

    m = whisper_offline.load_whisper("base", cache_dir=tmp_path)
    assert path.stat().st_mtime_ns == mtime
    assert whisper_offline.parameter_count(m) == BASE_PARAMETERS


def test_cached_checkpoint_loads_with_openai_whisper(tmp_path, model):
    """The cache is an ordinary openai-whisper checkpoint: whisper.load_model(path) reads it."""
    path = whisper_offline.ensure_base_checkpoint(Path(os.environ.get("VOXCPM_ASR_CACHE") or
                                                       whisper_offline.DEFAULT_CACHE_DIR))
    m = whisper_offline.load_whisper(str(path))
    a, b = m.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in ("decoder.token_embedding.weight",
                                                                     "encoder.blocks.0.attn.key.weight"))


# ------------------------------------------------------------------------------------------ errors

def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_missing_package_names_the_fix():
    parts = (("no-such-whisper-weights-pkg", "x/model.bin.part1", "0" * 64),)
    with pytest.raises(AsrModelError) as exc_info:
        whisper_offline.locate_base_parts(parts)
    message = _one_line(exc_info)
    assert "no-such-whisper-weights-pkg" in message and "make setup" in message and "ASR_MODEL=" in message


def test_missing_files_name_the_fix(tmp_path):
    parts = (tmp_path / "model.bin.part1", tmp_path / "model.bin.part2")
    with pytest.raises(AsrModelError) as exc_info:
        whisper_offline.load_whisper("base", cache_dir=tmp_path / "cache", base_parts=parts)
    message = _one_line(exc_info)
    assert "does not exist" in message and "make setup" in message


def test_hash_mismatch_names_the_fix(tmp_path):
    parts = (tmp_path / "model.bin.part1", tmp_path / "model.bin.part2")
    for p in parts:
        p.write_bytes(b"not the weights")
    with pytest.raises(AsrModelError) as exc_info:
        whisper_offline.load_whisper("base", cache_dir=tmp_path / "cache", base_parts=parts)
    message = _one_line(exc_info)
    assert "sha256" in message and "expected 221b8a894454" in message and "make setup" in message
    assert not (tmp_path / "cache").exists()


def test_other_model_names_fail_offline_with_a_clear_error(monkeypatch):
    import urllib.error

    import whisper

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(whisper, "_download", offline)
    with pytest.raises(AsrModelError) as exc_info:
        whisper_offline.load_whisper("small")
    message = _one_line(exc_info)
    assert "not available offline" in message and "ASR_MODEL=" in message


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(AsrModelError, match="unknown Whisper model"):
        whisper_offline.load_whisper("no-such-size")
    with pytest.raises(AsrModelError, match="no Whisper checkpoint"):
        whisper_offline.load_whisper(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(AsrModelError, match="cannot load Whisper checkpoint"):
        whisper_offline.load_whisper(str(bad))
    with pytest.raises(AsrModelError, match="without model.bin"):
        whisper_offline.load_whisper(str(tmp_path))


# ------------------------------------------------------------------------------- ctranslate2 reader

def _ct2_bytes(variables, aliases=(), version=6):
    def string(s):
        raw = s.encode()
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}
    out = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, arr in variables.items():
        out += string(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<BI", ids[arr.dtype], arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        out += string(alias) + string(target)
    return out


def test_ct2_reader_roundtrip():
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    data = _ct2_bytes({"decoder/embeddings/weight": w, "decoder/num_heads": np.array(8, dtype=np.int16)},
                      aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    model = ct2.read_ct2(data)
    assert (model.spec_name, model.spec_revision, model.binary_version) == ("WhisperSpec", 3, 6)
    assert np.array_equal(model.get("decoder/projection/weight"), w)
    assert int(model.get("decoder/num_heads")) == 8


def test_ct2_reader_rejects_damage():
    data = _ct2_bytes({"a": np.ones(4, dtype=np.float32)})
    with pytest.raises(ct2.Ct2FormatError):
        ct2.read_ct2(data[:-10])
    with pytest.raises(ct2.Ct2FormatError):
        ct2.read_ct2(data + b"\0")
    with pytest.raises(ct2.Ct2FormatError, match="binary version"):
        ct2.read_ct2(_ct2_bytes({}, version=99))


# ------------------------------------------------------------------------------------------ scoring

def test_word_normalisation():
    assert scoring.normalize_words("  Hello,   WORLD!\tIt's  a voice-cloning test… ") == \
        "hello world its a voice cloning test"
    assert scoring.word_error_rate("Hello, world!", "hello world") == 0.0
    assert scoring.word_error_rate("hello world", "hello there world") == 0.5
    assert scoring.word_error_rate("hello world", "") == 1.0
    with pytest.raises(ValueError):
        scoring.word_error_rate("?!", "hello")


def test_char_normalisation_and_t2s_folding():
    assert scoring.normalize_chars("你好， 世界！「测试」。ok?") == "你好世界测试ok"
    assert scoring.normalize_chars("ＡＢＣ，１２３") == "abc123"  # full-width forms folded
    assert scoring.to_simplified("這是一個語音測試") == "这是一个语音测试"
    assert scoring.char_error_rate("这是一个语音测试。", "這是一個語音測試") == 0.0


def test_builtin_t2s_table_agrees_with_opencc(monkeypatch):
    if scoring.t2s_backend() != "opencc":
        pytest.skip("opencc-python-reimplemented is not installed")
    cc = scoring._opencc_t2s()
    for traditional, simplified in scoring._T2S_TABLE.items():
        assert cc.convert(chr(traditional)) == simplified
    monkeypatch.setattr(scoring, "_opencc_t2s", lambda: None)
    assert scoring.to_simplified("這是一個語音測試") == "这是一个语音测试"


def test_cer_extremes():
    assert scoring.char_error_rate("语音合成", "语音合成") == 0.0
    assert scoring.char_error_rate("语音合成", "天地日月") == 1.0
    assert scoring.char_error_rate("语音合成", "") == 1.0
    assert scoring.char_error_rate("语音合成", "语音的合成") == 0.25
    assert scoring.edit_distance("kitten", "sitting") == 3


def test_metric_choice_and_audio_preparation():
    assert scoring.metric_for("en") == "wer" and scoring.metric_for("zh") == "cer"
    x = scoring.to_whisper_audio(np.zeros((2, 44_100), dtype=np.int16), 44_100)
    assert x.dtype == np.float32 and x.shape == (16_000,)
    with pytest.raises(ValueError):
        scoring.to_whisper_audio(np.full(100, np.nan, dtype=np.float32), 16_000)

"""`python -m bench.streaming`: time to first audio and the decoder's cost per patch, whole and streamed."""
import json

from bench.streaming import main


def test_streaming_bench_reports_every_mode(tiny_stream_out, tmp_path, capsys):
    assert main(["--out", str(tiny_stream_out), "--precision", "fp16", "--backend", "mil", "--patches", "6",
                 "--runs", "1", "--report-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "streaming.json").read_text())
    whole, windowed, stream = (result["modes"][m] for m in ("whole", "windowed", "stream"))
    assert whole["patches"] == windowed["patches"] == stream["patches"] == 6
    # the whole path hears nothing before it has decoded everything; the streams after the first patch
    assert whole["first_audio_patches"] == 6 and whole["fraction_of_whole"] == 1.0
    assert windowed["first_audio_patches"] == stream["first_audio_patches"] == 1
    assert 0 < stream["first_audio_s"] < whole["first_audio_s"] and stream["chunks"] == 6
    # the windowed decoder moves 3 patches through the whole decoder for each new one (2 for the second,
    # 1 for the first); the streaming one a patch and its contexts
    assert windowed["decoder_bytes_per_patch"] == round(sum(min(i + 1, 3) for i in range(6)) / 6 * whole[
        "decoder_bytes_per_patch"])
    assert stream["decoder_calls_per_patch"] == windowed["decoder_calls_per_patch"] == 1.0
    assert whole["decoder_calls_per_patch"] == 1 / 6
    table = capsys.readouterr().out
    assert "| stream |" in table and "first/whole" in table


def test_bad_flags_are_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "nowhere"), "--patches", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --patches 0")


def test_every_layout_in_out_gets_its_report(tiny_both_coreml, tmp_path, capsys):
    # make bench passes --layout all: one report per layout OUT holds
    assert main(["--out", str(tiny_both_coreml), "--layout", "all", "--precision", "fp16", "--backend", "mil",
                 "--patches", "2", "--runs", "1", "--report-dir", str(tmp_path)]) == 0
    for layout in ("published", "fast"):
        result = json.loads((tmp_path / f"streaming-{layout}.json").read_text())
        assert result["layout"] == layout and result["modes"]["windowed"]["first_audio_patches"] == 1
    assert "published layout" in capsys.readouterr().out


def test_all_layouts_of_an_empty_out_is_one_line(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["--out", str(tmp_path / "out"), "--layout", "all", "--report-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error:")

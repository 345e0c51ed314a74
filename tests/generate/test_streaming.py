"""`Synthesizer.stream`: chunks as the patches come, the same patches as `generate`, the audio of one whole decode.

On the FP32 reference build in the interpreter's fp32 mode (tiny_stream_out: the six plus the streaming
decoder), identical noise:
- the streaming decoder's chunks joined = `generate()`'s audio within 1e-5 (with and without a voice
  prompt, chunks of 1 and 3 patches);
- the windowed decoder = the FP32 torch reference's windowed stream (itself voxcpm's generate_streaming,
  tests/reference/test_streaming.py) within the FP32 build tolerance;
- stop head, early close, bad input and the stats behave as without streaming; the stateful package's
  state is carried by the same host code; a decoder that drops its contexts differs (negative control).
"""
import json

import numpy as np
import pytest

from contract.streaming import NAME, stream_decoder
from contract.sizes import model_sizes
from generate import GenerationError, Synthesizer
from generate.packages import Packages
from generate.streaming import CarriedDecoder

from .conftest import PROMPT_TEXT, rel_l2, shared_noise

EXACT = 1e-5
COREML_TOLERANCE = 1e-3          # FP32 packages vs the FP32 torch reference (tests/generate/test_parity.py)
TEXT = "Hello, this is a test."


@pytest.fixture(scope="module")
def synth(tiny_stream_out):
    return Synthesizer(tiny_stream_out, precision="fp32", backend="mil", compute="fp32")


def _noise(seed=1):
    return shared_noise(seed)[1]


@pytest.mark.parametrize("with_prompt", [False, True], ids=["text", "clone_7s_stereo_48k"])
def test_streaming_decoder_chunks_equal_the_whole_decode(synth, prompt7_wav, with_prompt):
    kwargs = dict(prompt_wav=prompt7_wav, prompt_text=PROMPT_TEXT) if with_prompt else {}
    whole = synth.generate(TEXT, max_len=8, noise=_noise(), retry_badcase=False, **kwargs)
    for chunk in (1, 3):
        stream = synth.stream(TEXT, max_len=8, noise=_noise(), chunk_patches=chunk, **kwargs)
        chunks = list(stream)
        joined = np.concatenate(chunks)
        error = rel_l2(joined, whole.audio)
        print(f"{'clone' if with_prompt else 'text'} chunk {chunk}: streamed vs whole {error:.2e}")
        assert error <= EXACT and [c.size for c in chunks[:-1]] == [chunk * 7056] * (len(chunks) - 1)
        info = stream.stats["stream"]
        assert info["decoder"] == "stream (contexts in and out)" and info["chunks"] == len(chunks) == -(-8 // chunk)
        assert info["first_audio_patches"] == chunk and info["time_to_first_audio_s"] > 0
        # one decoder call per patch (+ the prompt's 2 context patches, primed once)
        assert info["decoder_calls_per_patch"] == (10 / 8 if with_prompt else 1.0)
        assert stream.stats["patches"] == 8 and stream.stats["retries"] == 0 and info["ended"] == "length limit"


def test_windowed_stream_matches_the_reference(synth, ref_never):
    _, torch_noise = None, shared_noise(2)[0]
    reference = np.concatenate(list(ref_never.stream(TEXT, max_len=6, noise=torch_noise, decoder="windowed")))
    stream = synth.stream(TEXT, max_len=6, noise=_noise(2), decoder="windowed")
    ours = np.concatenate(list(stream))
    assert rel_l2(ours, reference) <= COREML_TOLERANCE
    info = stream.stats["stream"]
    assert info["decoder"] == "windowed" and info["context_patches"] == 2 and info["decoder_calls_per_patch"] == 1.0
    # 3 patches through the whole decoder for each new one (the first: 1), 4 bytes a value in the FP32 build
    frames = sum(min(i + 1, 3) * 4 for i in range(6))
    assert info["decoder_bytes_per_patch"] == round(frames * (64 + 1764) * 4 / 6)


def test_stop_head_ends_the_stream_with_generates_patches(stop_out):
    """The stop head mid-stream: the stream ends cleanly, with the patches generate makes (no retry)."""
    synth = Synthesizer(stop_out, precision="fp16", backend="mil")
    whole = synth.generate(TEXT, seed=4, retry_badcase=False)
    stream = synth.stream(TEXT, seed=4, chunk_patches=2)
    chunks = list(stream)
    assert stream.stats["patches"] == whole.latents.shape[0] < whole.stats["max_len"]
    assert sum(c.size for c in chunks) == whole.audio.size and stream.stats["stream"]["ended"] == "stop head"


def test_close_stops_cleanly_and_bad_input_fails_before_any_audio(synth, never_out):
    stream = synth.stream(TEXT, max_len=8, seed=0)
    next(stream)
    stream.close()
    assert stream.stats["patches"] == 1 and stream.stats["stream"]["ended"] == "stopped by the caller"
    before = dict(synth.packages.calls)
    for bad, match in ((dict(text=" "), "empty"), (dict(text=TEXT, prompt_text="words"), "go together"),
                       (dict(text=TEXT, chunk_patches=0), "chunk_patches"),
                       (dict(text=TEXT, decoder="bogus"), "unknown stream decoder")):
        with pytest.raises(GenerationError, match=match):
            synth.stream(**bad)   # raised by the call itself, not when the stream is read
    assert dict(synth.packages.calls) == before
    with pytest.raises(GenerationError, match="convert it .*--stream-decoder"):
        Synthesizer(never_out, precision="fp16", backend="mil").stream(TEXT, decoder="stream")
    assert Synthesizer(never_out, precision="fp16", backend="mil").stream(TEXT).stats == {}  # auto: windowed, lazy


def _whole_decode(out, latent):
    import runtime

    return runtime.load(out / "fp32" / "audio_vae_decoder.mlpackage", backend="mil",
                        compute="fp32").predict({"latent": latent})["audio"].reshape(-1)


def test_stateful_package_carried_by_the_same_host_code(stateful_probe_out, tiny_stream_out):
    """The generator's CarriedDecoder on the stateful package (Core ML states, fp32 build): one MLState per
    stream, equal to one whole decode; a fresh state for every call (negative control) is not."""
    from tests.helpers import PROBE_LAYOUT

    config = json.loads((tiny_stream_out / "manifest.json").read_text())["source"]["config"]
    spec = stream_decoder(model_sizes(config), stateful=True).with_float_dtype("fp32")
    packages = Packages({NAME: stateful_probe_out / f"fp32-{PROBE_LAYOUT}" / f"{NAME}.mlpackage"}, "mil", "fp32")
    patches = np.random.default_rng(3).standard_normal((10, 4, 64)).astype(np.float32)
    whole = _whole_decode(tiny_stream_out, patches.transpose(2, 0, 1).reshape(1, 64, -1))

    def run(inputs, state):
        return packages(NAME, state=state, **inputs)

    carried = CarriedDecoder(spec, run, lambda: packages.new_state(NAME))
    joined = np.concatenate([carried.push(patches[:3]), carried.push(patches[3:])])
    forgetful = CarriedDecoder(spec, lambda inputs, state: run(inputs, packages.new_state(NAME)),
                               lambda: packages.new_state(NAME))
    dropped = forgetful.push(patches)
    assert carried.kind == "stream (states)" and carried.calls == 10 and carried.bytes == 10 * (64 * 4 + 7056) * 4
    assert rel_l2(joined, whole) <= EXACT < 1e-2 < rel_l2(dropped, whole)

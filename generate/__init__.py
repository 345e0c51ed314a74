"""The Core ML text-to-speech pipeline for VoxCPM 1.5, without torch.

    from generate import Synthesizer
    synth = Synthesizer("build/voxcpm-1.5-coreml", precision="int8", backend="auto")
    audio, sample_rate, stats = synth.synthesize("Hello.", prompt_wav=None, prompt_text=None, seed=0)

`python -m generate --help` for the command line. Modules, one job each:
text (preparation, tokenizer), audio (prompt wav in, 16-bit wav out), vae (windowed prompt
encoding, chunked decoding), sampler (Euler + CFG-Zero*), artifacts (the converted packages and
constants), pipeline (the generator, mirroring patches/reference.py), stats, cli, demo.
"""
from .errors import GenerationError
from .pipeline import Result, Synthesizer

__all__ = ["GenerationError", "Result", "Synthesizer"]

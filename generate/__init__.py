"""The Core ML text-to-speech pipeline for VoxCPM 1.5, without torch.

    from generate import Synthesizer
    synth = Synthesizer("build/voxcpm-1.5-coreml", precision="int8", backend="auto")
    audio, sample_rate, stats = synth.synthesize("Hello.", prompt_wav=None, prompt_text=None, seed=0)

`python -m generate --help` for the command line. Modules, one job each:
loop (the one generation loop, written against steps.ModelSteps), published_steps (the published
layout's packages as ModelSteps), synthesizer (the loop over them), packages (OUT opened: config,
arrays, tokenizer, the packages behind one call), text (preparation, tokenizer), audio (prompt wav
in, 16-bit wav out), vae (windowed prompt encoding, chunked decoding), sampler (Euler + CFG-Zero*),
stats, cli. The FP32 reference (`reference/`) is the same loop over the torch modules.
"""
from .errors import GenerationError
from .loop import Result
from .synthesizer import Synthesizer

__all__ = ["GenerationError", "Result", "Synthesizer"]

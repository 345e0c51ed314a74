"""The Core ML text-to-speech pipeline: `Synthesizer(OUT).synthesize(text, …)`. No torch.

The one generation loop (`generate.loop`) over a layout's converted packages; the layout's
declaration is rebuilt from the generation config the converter wrote (`contract`), so the cache
and tensor names the steps use are the declared ones.
"""
from __future__ import annotations

from contract.defaults import COMPUTE_MODES, DEFAULT_LAYOUT
from contract.layout import LAYOUTS, declare
from contract.sizes import sizes_from_generation_config

from . import packages
from .errors import GenerationError
from .loop import Generator
from .published_steps import PublishedSteps
from .text import TextTokenizer

STEPS = {"published": PublishedSteps}   # layout -> its ModelSteps on Core ML packages


class Synthesizer(Generator):
    """Speech from text (optionally continuing a voice prompt) with the converted packages.

    `compute` only matters on the interpreter backend ("mil"): "fp16" rounds like Core ML's fp16
    programs, "fp32" keeps fp32 values (used to compare with the FP32 reference). `precision` is
    which packages (fp16, int8, or the fp32 reference build)."""

    def __init__(self, out, precision: str = "int8", backend: str = "auto", compute: str = "fp16",
                 layout: str = DEFAULT_LAYOUT):
        if compute not in COMPUTE_MODES:
            raise GenerationError(f"unknown compute mode {compute!r}: use fp16 or fp32")
        if layout not in LAYOUTS:
            raise GenerationError(f"unknown layout {layout!r}: use {', '.join(LAYOUTS)}")
        out = packages.open_out(out)
        self.backend, self.precision, self.compute = packages.resolve_backend(backend), precision, compute
        config = packages.read_config(out)
        # the interface the packages of `precision` have (fp32 floats in the reference build): the stream
        # decoders count the bytes they move by it
        declared = declare(sizes_from_generation_config(config), layout, config["max_context"]).for_precision(precision)
        paths = packages.package_paths(out, precision, declared.required, self.backend, layout, declared.optional)
        self.constants = packages.load_constants(out, config)
        tokenizer = TextTokenizer(packages.tokenizer_path(out))
        self.packages = packages.Packages(paths, self.backend, compute)
        steps = STEPS[layout](self.packages, self.constants, config, declared, precision, packages.vae_rates(config))
        super().__init__(steps, tokenizer)

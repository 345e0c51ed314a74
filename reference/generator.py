"""The FP32 PyTorch reference generator: the one generation loop over the patched torch components.

`ReferencePipeline(model).generate(text, …)` is `generate.loop.Generator` with `TorchSteps` and
voxcpm's own tokenizer. Noise is injectable; by default it is drawn with torch's global generator
in voxcpm's order, so that the same seed gives the same speech as voxcpm itself
(tests/reference/test_generator.py proves the latents equal to voxcpm's `generate`).
"""
from __future__ import annotations

import torch

from contract.defaults import MAX_CONTEXT
from generate.errors import GenerationError
from generate.loop import Generator, Result

from .torch_steps import TorchSteps

GenerationResult = Result
__all__ = ["GenerationError", "GenerationResult", "ReferencePipeline"]


class ReferencePipeline(Generator):
    retry_badcase_default = False   # as voxcpm's model-level generate (VoxCPM.generate turns it on)

    def __init__(self, model, max_context: int = MAX_CONTEXT):
        self.model = model
        super().__init__(TorchSteps(model, max_context), model.text_tokenizer)

    @property
    def locdit(self):
        """The LocDiT module the sampler calls (replace it to watch or alter the calls)."""
        return self.steps.locdit

    @locdit.setter
    def locdit(self, module) -> None:
        self.steps.locdit = module

    def default_noise(self, seed: int | None):
        """torch.randn per patch from torch's global generator, as voxcpm draws it (`seed` reseeds it)."""
        if seed is not None:
            torch.manual_seed(seed)
        return lambda: torch.randn(1, self.feat_dim, self.patch_size).numpy()

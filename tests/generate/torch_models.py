"""The published layout's components as torch modules behind `generate.packages.Packages`' call interface.

Core ML steps (`generate.published_steps`) whose packages are replaced by these run the FP32 torch
components through the Core ML host code (numpy projections, caches by their declared names, VAE
windows): comparing that with `reference.ReferencePipeline` tests the host code alone, free of
conversion error (tests only; imports torch). Inputs and outputs follow the declaration.
"""
from collections import Counter

import numpy as np
import torch

from checkpoint.loading import load_voxcpm
from patches.apply import patch_model
from patches.modules import build


class TorchModels:
    backend, compute = "torch", "fp32"

    def __init__(self, checkpoint, layout):
        model = patch_model(load_voxcpm(checkpoint))
        self.layout = layout
        self.modules = {spec.name: build(spec, model) for spec in layout}
        self.paths = dict.fromkeys(self.modules)  # what the steps may preload: every module is built
        self.calls, self.seconds, self.load_seconds = Counter(), Counter(), 0.0

    def load(self, component):
        return self.modules[component]

    @torch.no_grad()
    def __call__(self, component, **inputs):
        self.calls[component] += 1
        spec = self.layout[component]
        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in spec.inputs]
        out = self.modules[component](*args)
        out = out if isinstance(out, tuple) else (out,)
        return {t.name: value.numpy() for t, value in zip(spec.outputs, out)}

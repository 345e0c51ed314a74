"""The six components as torch modules behind `generate.artifacts.Models`' call interface.

A Synthesizer whose packages are replaced by these runs the FP32 torch components through the
Core ML generator's own code: comparing it with `patches.reference.ReferencePipeline` tests
the generator's logic alone, free of conversion error (tests only; imports torch)."""
from collections import Counter

import numpy as np
import torch

from patches.apply import patch_model
from patches.components import AudioVAEDecoder, AudioVAEEncoder, BaseLMStep, FeatEncoder, LocDiTStep, ResidualLMStep
from patches.loading import load_voxcpm

ORDER = {"audio_vae_encoder": ["audio"], "audio_vae_decoder": ["latent"], "feat_encoder": ["feat"],
         "locdit_step": ["x", "mu", "t", "cond", "dt"]}
OUTPUTS = {"audio_vae_encoder": ["latent"], "audio_vae_decoder": ["audio"], "feat_encoder": ["embedding"],
           "locdit_step": ["velocity"]}


class TorchModels:
    def __init__(self, checkpoint, max_context=512):
        model = patch_model(load_voxcpm(checkpoint))
        self.modules = {"audio_vae_encoder": AudioVAEEncoder(model), "audio_vae_decoder": AudioVAEDecoder(model),
                        "feat_encoder": FeatEncoder(model), "locdit_step": LocDiTStep(model),
                        "base_lm_step": BaseLMStep(model, max_context),
                        "residual_lm_step": ResidualLMStep(model, max_context)}
        self.layers = {"base_lm_step": len(model.base_lm.layers), "residual_lm_step": len(model.residual_lm.layers)}
        self.calls, self.seconds, self.load_seconds = Counter(), Counter(), 0.0

    def load(self, component):
        return self.modules[component]

    @torch.no_grad()
    def __call__(self, component, **inputs):
        self.calls[component] += 1
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if component in ORDER:
            out = self.modules[component](*[t[k] for k in ORDER[component]])
            return {OUTPUTS[component][0]: out.numpy()}
        n = self.layers[component]
        caches = [t[f"k{i}"] for i in range(n)] + [t[f"v{i}"] for i in range(n)]
        out = self.modules[component](t["embed"], t["position"], *caches)
        heads = ["lm_hidden", "lm_hidden_fsq", "stop_logit"] if component == "base_lm_step" else ["res_hidden"]
        names = heads + [f"out_k{i}" for i in range(n)] + [f"out_v{i}" for i in range(n)]
        return {name: value.numpy() for name, value in zip(names, out)}

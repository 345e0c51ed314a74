"""The published layout's packages as `ModelSteps`: six Core ML models, the small projections in numpy.

Per generated patch: feat_encoder + enc_to_lm_proj, base_lm_step, residual_lm_step, then the
sampler's 9 locdit_step calls (13 calls with the published sampler, 12 with voxcpm's). The LM
steps' KV caches go in and out of every call under the names their declaration gives. The VAE
and the text embeddings are every layout's (`generate.package_steps`). A stream decodes with the
optional streaming decoder package where OUT has it, else windowed with the whole decoder
(`generate.streaming`, through `PackageSteps.open_stream`).
"""
from __future__ import annotations

import numpy as np

from contract.components import LM_STEP
from contract.layout import Layout

from .package_steps import PackageSteps
from .packages import Packages
from .sampler import sample_patch
from .steps import Conditioning, OnePositionPerCall


class PublishedSteps(OnePositionPerCall, PackageSteps):
    def __init__(self, packages: Packages, constants: dict, config: dict, layout: Layout, precision: str,
                 vae_rates: tuple[list[int], list[int]]):
        super().__init__(packages, constants, config, layout, precision, vae_rates)
        self.base, self.residual = layout["base_lm_step"], layout["residual_lm_step"]
        self.caches: dict = {}

    # ---------------------------------------------------------------- the LMs
    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        """torch.nn.Linear with the weights in OUT/constants ([out, in] layout)."""
        return (x @ self.constants[f"{name}_w"].T + self.constants[f"{name}_b"]).astype(np.float32)

    def embed_patch(self, patch: np.ndarray) -> np.ndarray:
        """[patch, feat_dim] -> LM-space embedding [1, H] (feat_encoder, then enc_to_lm_proj in numpy)."""
        spec = self.layout["feat_encoder"]
        feat = patch.reshape(spec.inputs[0].shape)
        encoded = self.packages(spec.name, **{spec.inputs[0].name: feat})[spec.primary_output][:, 0]
        return self._linear("enc_to_lm_proj", encoded)

    def _step(self, spec, embed: np.ndarray, position: int) -> dict:
        """One LM step at `position`; its caches are replaced by the step's outputs."""
        out = self.packages(spec.name, **{spec.embed_input: embed,
                                          spec.position_input: np.array([position], np.int32)},
                            **self.caches[spec.name])
        self.caches[spec.name] = {name: out[spec.caches.output_for(name)] for name in spec.caches.input_names()}
        return out

    def _lm_step(self, embed: np.ndarray, position: int, is_audio: bool) -> Conditioning:
        base = self._step(self.base, embed, position)
        lm_hidden = base["lm_hidden_fsq"] if is_audio else base["lm_hidden"]  # FSQ at audio positions only
        residual_in = lm_hidden + embed if is_audio else lm_hidden
        res_hidden = self._step(self.residual, residual_in, position)["res_hidden"]
        mu = self._linear("lm_to_dit_proj", lm_hidden) + self._linear("res_to_dit_proj", res_hidden)
        return Conditioning(mu.astype(np.float32), base["stop_logit"])

    def _reset(self) -> None:
        self.caches = {spec.name: {name: np.zeros(spec.caches.shape, np.float32) for name in spec.caches.input_names()}
                       for spec in self.layout.of_kind(LM_STEP)}

    # ---------------------------------------------------------------- the sampler
    def sample(self, cond: Conditioning, previous: np.ndarray, noise: np.ndarray, timesteps: int,
               cfg: float) -> np.ndarray:
        spec = self.layout["locdit_step"]
        names = [t.name for t in spec.inputs]

        def velocity(*arrays):
            return self.packages(spec.name, **dict(zip(names, arrays)))[spec.primary_output]

        return sample_patch(velocity, cond.mu, previous, noise, timesteps, cfg, self.config["cfg_zero_init_fraction"],
                            self.config["sway_sampling_coef"])

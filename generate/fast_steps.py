"""The fast layout's packages as `ModelSteps`: KV caches as states, two model calls per generated patch.

Prefill: the text tokens' embeddings (looked up on the host) and the prompt patches go to
`lm.prefill` a chunk of positions per call (`contract.fast.prefill_calls`). Per generated patch:
`diffusion` (noise, conditioning, previous patch, cfg -> patch) and `lm.step` (patch, position ->
the next conditioning and stop logit). One state, made fresh for every prefill, holds both LMs' KV
caches across every call of both functions. The host does the stop decision and the embedding lookup.
"""
from __future__ import annotations

import numpy as np

from contract.fast import prefill_calls
from contract.layout import Layout

from .errors import GenerationError
from .package_steps import PackageSteps
from .packages import Packages
from .steps import Conditioning


def prefill_inputs(spec, text: np.ndarray, prompt: np.ndarray, start: int, count: int) -> dict:
    """The `prefill` function's inputs for positions start..start+count-1 of the sequence `text` rows
    ([n_text, H], scaled) then `prompt` patches ([n_prompt, patch, feat_dim]); rows after `count` are padding."""
    chunk = spec.input("text_embeds").shape[1]
    text_embeds = np.zeros(spec.input("text_embeds").shape, np.float32)
    feats = np.zeros(spec.input("feats").shape, np.float32)
    audio_mask = np.zeros(spec.input("audio_mask").shape, np.float32)
    n_text = text.shape[0]
    for row, position in enumerate(range(start, start + min(count, chunk))):
        if position < n_text:
            text_embeds[0, row] = text[position]
        else:
            feats[0, row], audio_mask[0, row] = prompt[position - n_text], 1.0
    return {"text_embeds": text_embeds, "feats": feats, "audio_mask": audio_mask,
            "start": np.array([start], np.int32), "last": np.array([count - 1], np.int32)}


class FastSteps(PackageSteps):
    def __init__(self, packages: Packages, constants: dict, config: dict, layout: Layout, precision: str,
                 vae_rates: tuple[list[int], list[int]]):
        # the generation config's context is the published layout's: this layout's is its own
        super().__init__(packages, constants, {**config, "max_context": layout.max_context}, layout, precision,
                         vae_rates)
        self.lm, self.diffusion = layout["lm"], layout["diffusion"]
        self.prefill_spec = self.lm.function("prefill")
        self.chunk = self.prefill_spec.input("text_embeds").shape[1]
        self.fixed_timesteps = layout.options["timesteps"]   # baked into the diffusion package
        self.state = None

    def describe(self) -> dict:
        return {**super().describe(), "prefill_chunk": self.chunk, "context": self.layout.max_context}

    def _lm(self, function: str, inputs: dict) -> Conditioning:
        out = self.packages.run(self.lm.name, inputs, function=function, state=self.state)
        return Conditioning(out["mu"], out["stop_logit"])

    def prefill(self, tokens: list[int], prompt: np.ndarray) -> Conditioning:
        self.state = self.packages.new_state(self.lm.name, self.lm.functions[0].name)
        text = self._text_embeddings(tokens)
        cond = None
        for start, count in prefill_calls(len(tokens) + prompt.shape[0], self.chunk, self.layout.max_context):
            cond = self._lm("prefill", prefill_inputs(self.prefill_spec, text, prompt, start, count))
        return cond

    def advance(self, patch: np.ndarray, position: int) -> Conditioning:
        feat = np.asarray(patch, np.float32).reshape(self.lm.function("step").input("feat").shape)
        return self._lm("step", {"feat": feat, "position": np.array([position], np.int32)})

    def sample(self, cond: Conditioning, previous: np.ndarray, noise: np.ndarray, timesteps: int,
               cfg: float) -> np.ndarray:
        if timesteps != self.fixed_timesteps:
            raise GenerationError(f"the fast layout's diffusion was converted for {self.fixed_timesteps} timesteps, "
                                  f"not {timesteps}: use --timesteps {self.fixed_timesteps}, or convert with "
                                  f"--diffusion-steps {timesteps}")
        inputs = {"noise": noise, "mu": cond.mu, "cond": previous, "cfg": np.array([cfg], np.float32)}
        return self.packages.run(self.diffusion.name, inputs)["patch"]

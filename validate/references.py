"""The *unpatched* voxcpm model in FP32: what every converted output is compared with.

Nothing here uses `patches.apply`: the references are voxcpm's own modules and its own step
loop (`MiniCPMModel.forward_step` with its `StaticKVCache`), so an error in a patch shows up
as a validation failure just like a conversion error. With a LoRA adapter the model is voxcpm's
own LoRA model (`checkpoint.loading.load_voxcpm(…, adapter=…)`): the adapter live in its
`LoRALinear` layers, never merged, so that a wrong merge shows up too.
"""
from __future__ import annotations

import numpy as np
import torch

from contract.components import CACHE_KINDS

VOXCPM_ZERO_INIT_FRACTION = 0.04   # hard-coded in voxcpm 2.0.3's UnifiedCFM.solve_euler
# torch's long reference calls (the VAE's, the e2e generator) run under runtime.run_allocator with the
# heap trimmed this often, in seconds: 0.1 kept the VAE references' peak below glibc's own (TRIALS.md)
TRIM_SECONDS = 0.1


def _np(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().copy()


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class TorchReference:
    """FP32 outputs of the original modules, numpy in and out."""

    #: the model part each stateless reference method reads (validate drops the rest before the VAE's calls)
    PARTS = {"vae_encode": "audio_vae", "vae_decode": "audio_vae", "feat_encode": "feat_encoder",
             "locdit": "feat_decoder", "diffusion": "feat_decoder"}

    def __init__(self, model):
        assert not getattr(model, "is_patched", False), "the reference must be the unpatched voxcpm model"
        self.model = model.eval()
        self.sample_rate = model.sample_rate
        self.patch_size, self.feat_dim = model.patch_size, model.feat_dim
        self.patch_samples = model.patch_size * model.chunk_size
        lm = model.config.lm_config
        self.text_scale = float(lm.scale_emb) if lm.use_mup else 1.0  # voxcpm's rule in _inference

    # ------------------------------------------------------------------ stateless components
    @torch.no_grad()
    def vae_encode(self, audio: np.ndarray) -> np.ndarray:
        return _np(self.model.audio_vae.encode(_t(audio), self.sample_rate))

    @torch.no_grad()
    def vae_decode(self, latent: np.ndarray) -> np.ndarray:
        return _np(self.model.audio_vae.decode(_t(latent)))

    @torch.no_grad()
    def feat_encode(self, feat: np.ndarray) -> np.ndarray:
        return _np(self.model.feat_encoder(_t(feat)))

    @torch.no_grad()
    def locdit(self, x, mu, t, cond, dt) -> np.ndarray:
        return _np(self.model.feat_decoder.estimator(_t(x), _t(mu), _t(t), _t(cond), _t(dt)))

    @torch.no_grad()
    def diffusion(self, noise, mu, cond, cfg, timesteps: int, sway_coef: float, zero_fraction: float) -> np.ndarray:
        """voxcpm's own sampler (`UnifiedCFM.solve_euler`, CFG-Zero*) from this noise: the timesteps as its
        `forward` makes them, the first step's velocity zeroed as it does (its fraction is fixed at 0.04)."""
        assert zero_fraction == VOXCPM_ZERO_INIT_FRACTION, zero_fraction
        t_span = torch.linspace(1, 0, timesteps + 1)
        t_span = t_span + sway_coef * (torch.cos(torch.pi / 2 * t_span) - 1 + t_span)
        return _np(self.model.feat_decoder.solve_euler(_t(noise), t_span, _t(mu), _t(cond),
                                                       cfg_value=float(np.asarray(cfg).reshape(-1)[0]),
                                                       use_cfg_zero_star=True))

    # ------------------------------------------------------------------ derived inputs
    @torch.no_grad()
    def prompt_patches(self, speech: np.ndarray) -> np.ndarray:
        """Speech -> [n, patch, feat_dim] latent patches, left-padded as voxcpm pads a prompt."""
        pad = (-speech.size) % self.patch_samples
        audio = np.concatenate([np.zeros(pad, np.float32), speech.astype(np.float32)])[None, None]
        latent = self.model.audio_vae.encode(_t(audio), self.sample_rate)
        return _np(latent.view(self.feat_dim, -1, self.patch_size).permute(1, 2, 0))

    @torch.no_grad()
    def encode_patches(self, patches: np.ndarray) -> np.ndarray:
        """[n, P, D] -> feat_encoder outputs [n, H_enc] (before enc_to_lm_proj)."""
        return _np(self.model.feat_encoder(_t(patches)[None])[0])

    @torch.no_grad()
    def project(self, name: str, x: np.ndarray) -> np.ndarray:
        """One of the host-side projections (enc_to_lm_proj, lm_to_dit_proj, res_to_dit_proj) on x [n, in]."""
        return _np(getattr(self.model, name)(_t(x)))

    def embed_patches(self, patches: np.ndarray) -> np.ndarray:
        """[n, P, D] -> LM-space embeddings [n, H] (feat_encoder + enc_to_lm_proj)."""
        return self.project("enc_to_lm_proj", self.encode_patches(patches))

    def tokens(self, text: str) -> list[int]:
        return list(self.model.text_tokenizer(text))

    @torch.no_grad()
    def embed_tokens(self, tokens: list[int]) -> np.ndarray:
        return _np(self.model.base_lm.embed_tokens(torch.tensor(tokens)) * self.text_scale)

    def embedding_table(self) -> np.ndarray:
        """The text embedding table [vocab, H], unscaled."""
        return self.model.base_lm.embed_tokens.weight.detach().float().numpy()

    @torch.no_grad()
    def prefill_hiddens(self, embeds: np.ndarray, is_audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(base LM hidden, FSQ'd at audio positions; residual LM hidden), each [n, H], of a prefill computed
        the way voxcpm's `_inference` does: what lm_to_dit_proj and res_to_dit_proj are applied to."""
        model = self.model
        x = _t(embeds)[None]
        audio = torch.from_numpy(is_audio.astype(np.float32))[None, :, None]
        hidden, _ = model.base_lm(inputs_embeds=x, is_causal=True)
        hidden = model.fsq_layer(hidden) * audio + hidden * (1 - audio)
        residual, _ = model.residual_lm(inputs_embeds=hidden + audio * x, is_causal=True)
        return _np(hidden[0]), _np(residual[0])

    def prefill_mu(self, embeds: np.ndarray, is_audio: np.ndarray) -> np.ndarray:
        """LocDiT's mu [1, H_dit] after a prefill, computed the way voxcpm's `_inference` does."""
        hidden, residual = self.prefill_hiddens(embeds, is_audio)
        return self.project("lm_to_dit_proj", hidden[-1:]) + self.project("res_to_dit_proj", residual[-1:])

    def lm_steps(self, max_context: int) -> "LMStepReference":
        return LMStepReference(self.model, max_context)


class LMStepReference:
    """voxcpm's own decode loop, one position at a time, for both LMs (teacher-forced)."""

    def __init__(self, model, max_context: int):
        self.model, self.max_context = model, max_context
        self.reset()

    def reset(self) -> None:
        for lm in (self.model.base_lm, self.model.residual_lm):
            length = max(self.max_context, lm.kv_cache.max_length if lm.kv_cache is not None else 0)
            lm.setup_cache(1, length, torch.device("cpu"), torch.float32)

    @torch.no_grad()
    def base_prefill(self, embeds: np.ndarray) -> np.ndarray:
        """The base LM over positions 0..n-1 at once, as voxcpm's `_inference` prefills it (full forward +
        fill_caches); its hidden [n, H], before FSQ."""
        hidden, caches = self.model.base_lm(inputs_embeds=_t(embeds)[None], is_causal=True)
        self.model.base_lm.kv_cache.fill_caches(caches)
        return _np(hidden[0])

    @torch.no_grad()
    def prefill(self, embeds: np.ndarray, is_audio: np.ndarray) -> None:
        """Positions 0..n-1 at once, as voxcpm's `_inference` prefills (full forward + fill_caches);
        stepping them one by one costs ~2 s a position at full size."""
        model = self.model
        x = _t(embeds)[None]
        audio = torch.from_numpy(is_audio.astype(np.float32))[None, :, None]
        hidden = _t(self.base_prefill(embeds))[None]
        hidden = model.fsq_layer(hidden) * audio + hidden * (1 - audio)
        _, residual_caches = model.residual_lm(inputs_embeds=hidden + audio * x, is_causal=True)
        model.residual_lm.kv_cache.fill_caches(residual_caches)

    @torch.no_grad()
    def base(self, embed: np.ndarray, position: int) -> np.ndarray:
        """The base LM at `position` (voxcpm's `forward_step`): its hidden [1, H], before FSQ."""
        return _np(self.model.base_lm.forward_step(_t(embed).reshape(1, -1), torch.tensor([position])))

    @torch.no_grad()
    def residual(self, residual_in: np.ndarray, position: int) -> np.ndarray:
        return _np(self.model.residual_lm.forward_step(_t(residual_in).reshape(1, -1), torch.tensor([position])))

    @torch.no_grad()
    def fsq(self, hidden: np.ndarray) -> np.ndarray:
        return _np(self.model.fsq_layer(_t(hidden)))

    @torch.no_grad()
    def heads(self, lm_hidden: np.ndarray, res_hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, stop_logit) from the LM hidden voxcpm conditions on and the residual hidden."""
        model, h = self.model, _t(lm_hidden)
        mu = model.lm_to_dit_proj(h) + model.res_to_dit_proj(_t(res_hidden))
        return _np(mu), _np(model.stop_head(model.stop_actn(model.stop_proj(h))))

    def step(self, embed: np.ndarray, position: int, is_audio: bool) -> dict:
        """Both LMs at `position`: their inputs and outputs by the converted interface's names."""
        x = np.asarray(embed, np.float32).reshape(1, -1)
        hidden = self.base(x, position)
        fsq = self.fsq(hidden)
        stop = self.heads(fsq, np.zeros_like(fsq))[1]
        lm_hidden = fsq if is_audio else hidden
        residual_in = lm_hidden + x if is_audio else lm_hidden
        res_hidden = self.residual(residual_in, position)
        return {"base_lm_step": {"embed": x, "lm_hidden": hidden, "lm_hidden_fsq": fsq, "stop_logit": stop},
                "residual_lm_step": {"embed": residual_in, "res_hidden": res_hidden}}

    def caches(self, spec) -> list[torch.Tensor]:
        """The LM step's caches in its declaration's slot order (`CacheSpec.slots`): views
        [1, kv_heads, max_length, D] of the StaticKVCache of the LM its declaration names first."""
        return self.lm_caches(spec.parts[0], spec.caches)

    def lm_caches(self, lm: str, caches) -> list[torch.Tensor]:
        """The caches of model part `lm` in the slot order of `caches` (a CacheSpec)."""
        cache = getattr(self.model, lm).kv_cache.kv_cache   # [2 (k, v), layers, 1, heads, L, D]
        return [cache[CACHE_KINDS.index(kind), i] for kind, i in caches.slots()]


class FSQReference:
    """What lm_hidden_fsq and stop_logit should be *given the converted lm_hidden*.

    FSQ rounds tanh(in_proj(h)) * scale to integers: where a value sits within rounding noise of
    a boundary (x.5), fp16 or int8 may legitimately pick the other integer, and one flipped code
    moves the output by a column of out_proj / scale (rel-L2 ~3 % on the tiny fixture). So the
    expected output is out_proj of torch's codes computed from the converted hidden, except that
    codes within `margin` of a boundary take the converted model's choice (decoded from its
    output with out_proj's pseudo-inverse). A code flipped far from a boundary, or any error in
    in_proj / out_proj / the stop head, still shows in full.
    """

    def __init__(self, model):
        fsq = model.fsq_layer
        self.scale = float(fsq.scale)
        self.w_in, self.b_in = fsq.in_proj.weight.detach().double().numpy(), fsq.in_proj.bias.detach().double().numpy()
        self.w_out, self.b_out = fsq.out_proj.weight.detach().double().numpy(), fsq.out_proj.bias.detach().double().numpy()
        self.pinv_out = np.linalg.pinv(self.w_out)
        # the stop head alone (8 MB at full size): the rollouts outlive the rest of the model
        self.stop_proj, self.stop_actn, self.stop_head = model.stop_proj, model.stop_actn, model.stop_head

    def expected(self, hidden: np.ndarray, fsq_out: np.ndarray, margin: float) -> tuple[np.ndarray, int]:
        """(expected lm_hidden_fsq [1, H], number of codes taken from the converted output)."""
        z = np.tanh(hidden.astype(np.float64) @ self.w_in.T + self.b_in) * self.scale
        codes = np.round(z)
        chosen = np.round((fsq_out.astype(np.float64) - self.b_out) @ self.pinv_out.T * self.scale)
        near = np.abs(np.abs(z - np.floor(z)) - 0.5) < margin
        adjacent = np.abs(chosen - z) < 1.0  # the converted pick is one of the two neighbours
        take = near & adjacent
        codes[take] = chosen[take]
        return (codes / self.scale) @ self.w_out.T + self.b_out, int(take.sum())

    @torch.no_grad()
    def stop_logit(self, fsq_out: np.ndarray) -> np.ndarray:
        return _np(self.stop_head(self.stop_actn(self.stop_proj(_t(fsq_out)))))

"""The fast layout's `lm` package as torch modules: both LMs, their KV caches as buffers (Core ML states).

`LMPrefill` fills the caches from a chunk of C positions — text embeddings, or prompt patches
through the feature encoder and enc_to_lm_proj, FSQ and the audio embedding at audio positions only,
exactly as voxcpm's `_inference` prefills — and returns the conditioning of one row (rows after it
are padding: their keys and values are written as zeros). `LMStep` feeds one generated patch the
way voxcpm's decode loop does: feature encoder -> enc_to_lm_proj -> base LM -> FSQ -> residual LM
(on FSQ'd hidden + embedding) -> the two DiT projections and the stop head. Both also return the
LM hidden the residual LM read (FSQ'd at audio positions): FSQ rounds to integer codes, and a code
at a rounding boundary may legitimately flip in fp16; validation reads which one was taken.
Both register one buffer per state, named as the declaration names the states (a Core ML state's
name is its buffer's name), so one state serves both functions of the package.
"""
import torch
from torch import nn

from .chunk import lm_chunk
from .kv_cache import chunk_start
from .lm import cache_shape
from .rope import rope_tables


class _LMsWithStates(nn.Module):
    def __init__(self, model, max_context: int, state_caches, chunk: int):
        super().__init__()
        self.base_lm, self.residual_lm = model.base_lm, model.residual_lm
        self.feat_encoder, self.enc_to_lm_proj, self.fsq_layer = model.feat_encoder, model.enc_to_lm_proj, model.fsq_layer
        self.lm_to_dit_proj, self.res_to_dit_proj = model.lm_to_dit_proj, model.res_to_dit_proj
        self.stop_proj, self.stop_actn, self.stop_head = model.stop_proj, model.stop_actn, model.stop_head
        self.max_context, self.chunk = max_context, chunk
        # the residual LM's config is the base LM's with fewer layers: the same RoPE tables
        cos, sin = rope_tables(model.base_lm.config, max_context)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.cache_names = {}
        for caches in state_caches:
            lm = getattr(model, caches.lm)
            assert cache_shape(lm, max_context) == tuple(caches.shape) and len(lm.layers) == caches.layers, caches
            self.cache_names[caches.lm] = ([caches.input_name("k", i) for i in range(caches.layers)],
                                           [caches.input_name("v", i) for i in range(caches.layers)])
            for name in caches.input_names():
                self.register_buffer(name, torch.zeros(caches.shape))

    def caches(self, lm: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        keys, values = self.cache_names[lm]
        return [getattr(self, n) for n in keys], [getattr(self, n) for n in values]

    def reset_state(self) -> None:
        for keys, values in self.cache_names.values():
            for name in keys + values:
                getattr(self, name).zero_()

    def _lms(self, embeds: torch.Tensor, audio, start: torch.Tensor, keep=None):
        """Both LMs over `embeds` [1, C, H] at positions start..start+C-1; `audio` [1, C, 1] is 1 at audio
        positions (None: all of them), `keep` [1, 1, C, 1] 0 at padding rows. Returns (lm hidden as voxcpm
        conditions on it, residual hidden)."""
        chunk = embeds.shape[1]
        begin = chunk_start(start, chunk, self.max_context)
        # gathered, not sliced at `begin`: a slice at a symbolic start has a symbolic length in the program
        rows = start.reshape(1).long() + torch.arange(chunk)
        cos, sin = self.rope_cos.index_select(0, rows), self.rope_sin.index_select(0, rows)
        hidden = lm_chunk(self.base_lm, embeds, cos, sin, begin, start, *self.caches("base_lm"), keep)
        fsq = self.fsq_layer(hidden)
        if audio is None:
            lm_hidden, residual_in = fsq, fsq + embeds
        else:
            lm_hidden = audio * fsq + (1 - audio) * hidden
            residual_in = lm_hidden + audio * embeds
        residual = lm_chunk(self.residual_lm, residual_in, cos, sin, begin, start, *self.caches("residual_lm"), keep)
        return lm_hidden, residual

    def _heads(self, lm_hidden: torch.Tensor, residual: torch.Tensor):
        """[1, H] each -> (mu [1, dit_hidden], stop_logit [1, 2])."""
        mu = self.lm_to_dit_proj(lm_hidden) + self.res_to_dit_proj(residual)
        return mu, self.stop_head(self.stop_actn(self.stop_proj(lm_hidden)))

    def embed_patches(self, feats: torch.Tensor) -> torch.Tensor:
        """[1, C, patch, feat_dim] -> LM-space embeddings [1, C, H] (LocEnc, then enc_to_lm_proj)."""
        return self.enc_to_lm_proj(self.feat_encoder(feats))


class LMPrefill(_LMsWithStates):
    """text_embeds [1, C, H], feats [1, C, P, D], audio_mask [1, C], start int [1], last int [1]
    -> mu [1, dit_hidden], stop_logit [1, 2] of row `last`, lm_hidden [1, C, H] of every row; caches
    written at start..start+C-1 (zeros after row `last`)."""

    def __init__(self, model, max_context: int, state_caches, chunk: int):
        super().__init__(model, max_context, state_caches, chunk)

    def forward(self, text_embeds, feats, audio_mask, start, last):
        audio = audio_mask.unsqueeze(-1)
        embeds = (1 - audio) * text_embeds + audio * self.embed_patches(feats)
        row = last.reshape(1).long()
        keep = (torch.arange(embeds.shape[1]) <= row).to(embeds.dtype).view(1, 1, -1, 1)
        lm_hidden, residual = self._lms(embeds, audio, start, keep)
        mu, stop_logit = self._heads(lm_hidden.index_select(1, row)[:, 0], residual.index_select(1, row)[:, 0])
        return mu, stop_logit, lm_hidden


class LMStep(_LMsWithStates):
    """feat [1, 1, P, D] (the patch just generated), position int [1] -> mu [1, dit_hidden], stop_logit [1, 2],
    lm_hidden [1, H] (FSQ'd)."""

    def __init__(self, model, max_context: int, state_caches):
        super().__init__(model, max_context, state_caches, 1)

    def forward(self, feat, position):
        lm_hidden, residual = self._lms(self.embed_patches(feat), None, position)
        mu, stop_logit = self._heads(lm_hidden[:, 0], residual[:, 0])
        return mu, stop_logit, lm_hidden[:, 0]

"""The convertible components of VoxCPM 1.5 as standalone torch modules, one class per component.

Each wraps parts of a *patched* VoxCPMModel (see `apply.patch_model`) and takes its inputs in
the order of its declaration (`contract/`, whose `torch_module` names the class here). The LM
steps come in two forms: functional caches (inputs k0..kN, v0..vN -> outputs, the published
layout) and stateful caches (registered buffers `k_cache_i` / `v_cache_i`, each [1, kv_heads, L, D],
for Core ML states). The streaming VAE decoder (`stream_decoder.StreamingAudioVAEDecoder`) has the
same two forms for its convolutions' contexts.
"""
import torch
from torch import nn

from contract.defaults import MAX_CONTEXT as DEFAULT_MAX_CONTEXT

from .kv_cache import inplace_write, scatter_write
from .lm import cache_shape
from .rope import rope_tables
from .stream_decoder import StreamingAudioVAEDecoder  # noqa: F401  (a component module `build` resolves)


class AudioVAEEncoder(nn.Module):
    """audio [1, 1, N] (N a multiple of the hop) -> latent [1, latent_dim, N / hop]."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.audio_vae.encoder

    def forward(self, audio):
        return self.encoder(audio)["mu"]


class AudioVAEDecoder(nn.Module):
    """latent [1, latent_dim, T] -> audio [1, 1, T * hop] (tanh included)."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.audio_vae.decoder

    def forward(self, latent):
        return self.decoder(latent)


class FeatEncoder(nn.Module):
    """feat [1, 1, patch, feat_dim] -> embedding [1, 1, encoder_hidden] (LocEnc CLS output)."""

    def __init__(self, model):
        super().__init__()
        self.loc_enc = model.feat_encoder

    def forward(self, feat):
        return self.loc_enc(feat)


class LocDiTStep(nn.Module):
    """One velocity estimate: x [2, D, P], mu [2, H], t [2], cond [2, D, P], dt [2] -> [2, D, P]."""

    def __init__(self, model):
        super().__init__()
        self.estimator = model.feat_decoder.estimator

    def forward(self, x, mu, t, cond, dt):
        return self.estimator(x, mu, t, cond, dt)


class _LMStep(nn.Module):
    def __init__(self, lm, max_context: int, stateful: bool):
        super().__init__()
        self.lm = lm
        self.num_layers = len(lm.layers)
        self.max_context = max_context
        self.stateful = stateful
        cos, sin = rope_tables(lm.config, max_context)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if stateful:
            for i in range(self.num_layers):
                self.register_buffer(f"k_cache_{i}", torch.zeros(cache_shape(lm, max_context)))
                self.register_buffer(f"v_cache_{i}", torch.zeros(cache_shape(lm, max_context)))

    def lm_step(self, embed, position, caches):
        """The LM stack alone: (hidden, new caches). caches: k0..kN then v0..vN (functional) or
        empty (stateful)."""
        cos, sin = self.rope_cos[position.long()], self.rope_sin[position.long()]
        if self.stateful:
            k_in = [getattr(self, f"k_cache_{i}") for i in range(self.num_layers)]
            v_in = [getattr(self, f"v_cache_{i}") for i in range(self.num_layers)]
            write = inplace_write
        else:
            k_in, v_in, write = list(caches[: self.num_layers]), list(caches[self.num_layers:]), scatter_write
        hidden, k_out, v_out = self.lm.step(embed, position, cos, sin, k_in, v_in, write)
        return hidden, ([] if self.stateful else k_out + v_out)

    def reset_state(self):
        for name, buffer in self.named_buffers():
            if name.startswith(("k_cache_", "v_cache_")):
                buffer.zero_()


class BaseLMStep(_LMStep):
    """embed [1, H], position int [1], caches -> lm_hidden, lm_hidden_fsq, stop_logit [1, 2], caches.

    The stop logit is computed from the FSQ'd hidden, as VoxCPM's own loop does (the published
    conversion used the raw hidden).
    """

    def __init__(self, model, max_context: int = DEFAULT_MAX_CONTEXT, stateful: bool = False):
        super().__init__(model.base_lm, max_context, stateful)
        self.fsq_layer = model.fsq_layer
        self.stop_proj, self.stop_actn, self.stop_head = model.stop_proj, model.stop_actn, model.stop_head

    def forward(self, embed, position, *caches):
        hidden, new_caches = self.lm_step(embed, position, caches)
        fsq = self.fsq_layer(hidden)
        stop_logit = self.stop_head(self.stop_actn(self.stop_proj(fsq)))
        return (hidden, fsq, stop_logit, *new_caches)


class ResidualLMStep(_LMStep):
    """embed [1, H] (FSQ'd base hidden + audio embedding), position, caches -> res_hidden, caches."""

    def __init__(self, model, max_context: int = DEFAULT_MAX_CONTEXT, stateful: bool = False):
        super().__init__(model.residual_lm, max_context, stateful)

    def forward(self, embed, position, *caches):
        hidden, new_caches = self.lm_step(embed, position, caches)
        return (hidden, *new_caches)


def build(spec, model) -> nn.Module:
    """The module whose forward is the component `spec` declares (a contract ComponentSpec), in eval mode."""
    cls = globals().get(spec.torch_module)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise KeyError(f"component {spec.name} names torch module {spec.torch_module!r}, which patches/modules.py "
                       f"does not define")
    kwargs = {"max_context": spec.caches.context} if spec.caches is not None else {}
    if spec.carried is not None:
        kwargs["stateful"] = spec.carried.stateful
    return cls(model, **kwargs).eval()

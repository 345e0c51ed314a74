"""Apply every patch to a loaded VoxCPMModel, in place, without touching installed files."""
from voxcpm.modules.minicpm4.model import MiniCPMAttention, MiniCPMDecoderLayer, MiniCPMModel

from .attention import ConvertibleAttention
from .lm import ConvertibleMiniCPMModel
from .mup import ConvertibleDecoderLayer, residual_scale
from .snake import replace_snake
from .weight_norm import remove_weight_norm


def patch_minicpm(lm: MiniCPMModel) -> MiniCPMModel:
    lm.__class__ = ConvertibleMiniCPMModel
    for layer in lm.layers:
        assert type(layer) in (MiniCPMDecoderLayer, ConvertibleDecoderLayer), type(layer)
        layer.__class__ = ConvertibleDecoderLayer
        layer.residual_scale = residual_scale(lm.config)
        assert type(layer.self_attn) in (MiniCPMAttention, ConvertibleAttention), type(layer.self_attn)
        layer.self_attn.__class__ = ConvertibleAttention
    return lm


def patch_audio_vae(vae):
    remove_weight_norm(vae)
    replace_snake(vae)
    return vae


def patch_model(model):
    """Make `model` convertible; its outputs stay equal to the original's (tests/patches prove it)."""
    if getattr(model, "is_patched", False):
        return model
    for lm in (model.base_lm, model.residual_lm, model.feat_encoder.encoder, model.feat_decoder.estimator.decoder):
        patch_minicpm(lm)
    patch_audio_vae(model.audio_vae)
    model.is_patched = True
    return model.eval()

"""The streaming VAE decoder module: one patch per call, contexts carried, equal to the whole decoder.

Both forms (contexts in and out; buffers written in place), on the tiny fixture and at VoxCPM 1.5's
real decoder width for the declared context shapes; a negative control (contexts not carried)
must differ.
"""
import json

import numpy as np
import pytest
import torch

from checkpoint.fixture import make_config
from contract.sizes import model_sizes
from contract.streaming import decoder_contexts, stream_decoder
from patches.apply import patch_model
from patches.stream_decoder import StreamingAudioVAEDecoder

from tests.helpers import max_rel_error

PATCH = 4
EXACT = 1e-6       # float32 rounding: the sums run in another order than in one whole call


@pytest.fixture(scope="module")
def model(tiny_dir):
    from checkpoint.loading import load_voxcpm

    return patch_model(load_voxcpm(tiny_dir))


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 64, 20 * PATCH, generator=torch.Generator().manual_seed(0))


def _rel_l2(a, b) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@torch.no_grad()
def _functional(module, latent, sizes, reset=False):
    contexts = [torch.zeros(shape) for shape in module.context_shapes]
    pieces, start = [], 0
    for size in sizes:
        audio, *carried = module(latent[..., start:start + size], *contexts)
        contexts = [torch.zeros_like(c) for c in carried] if reset else carried
        pieces.append(audio)
        start += size
    return torch.cat(pieces, -1)


@torch.no_grad()
def test_patch_by_patch_equals_one_whole_call(model, latent):
    whole = model.audio_vae.decoder(latent)
    module = StreamingAudioVAEDecoder(model).eval()
    streamed = _functional(module, latent, [PATCH] * 20)
    assert streamed.shape == whole.shape and _rel_l2(streamed, whole) <= EXACT
    # any chunking, even one frame at a time or uneven chunks: contexts are per frame, not per patch
    assert _rel_l2(_functional(module, latent, [1] * 8 + [3, 5, 16, 48]), whole) <= EXACT


@torch.no_grad()
def test_stateful_form_equals_one_whole_call_and_resets(model, latent):
    whole = model.audio_vae.decoder(latent)
    module = StreamingAudioVAEDecoder(model, stateful=True).eval()
    for _ in range(2):  # a second utterance after reset_state is the same again
        module.reset_state()
        streamed = torch.cat([module(latent[..., i:i + PATCH]) for i in range(0, latent.shape[-1], PATCH)], -1)
        assert _rel_l2(streamed, whole) <= EXACT
    names = [n for n, _ in module.named_buffers() if n.startswith("ctx")]
    assert names == [t.name for t in stream_decoder(model_sizes(model.config.model_dump()), stateful=True).states]


@torch.no_grad()
def test_contexts_not_carried_differ(model, latent):
    """Negative control: the same module with every context reset to zeros between calls."""
    whole = model.audio_vae.decoder(latent)
    module = StreamingAudioVAEDecoder(model).eval()
    error = _rel_l2(_functional(module, latent, [PATCH] * 20, reset=True), whole)
    assert error > 1e-2, error


def test_context_shapes_are_the_declared_ones(tiny_dir):
    """The contexts the module finds in voxcpm's decoder = those `contract.streaming` declares from the sizes,
    on the tiny fixture and at VoxCPM 1.5's real width (2048)."""
    from voxcpm.modules.audiovae.audio_vae import AudioVAE, AudioVAEConfig

    from patches.apply import patch_audio_vae

    for config in (json.loads((tiny_dir / "config.json").read_text()), make_config(full=True, vocab_size=73448)):
        vae = AudioVAE(AudioVAEConfig(**config["audio_vae_config"]))
        holder = type("Model", (), {"audio_vae": patch_audio_vae(vae)})()
        module = StreamingAudioVAEDecoder(holder)
        declared = [(1, channels, frames) for channels, frames, _ in decoder_contexts(model_sizes(config))]
        assert module.context_shapes == declared


def test_needs_a_patched_model(tiny_dir):
    from checkpoint.loading import load_voxcpm

    with pytest.raises(ValueError, match="patch_model"):
        StreamingAudioVAEDecoder(load_voxcpm(tiny_dir))


class ReciprocalSnake(torch.nn.Module):
    """voxcpm's formula as written: `(alpha + 1e-9).reciprocal()`."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def _fp32_conversion_error(module, x) -> float:
    import coremltools as ct

    from runtime.mil import MilModel

    mlmodel = ct.convert(torch.jit.trace(module, x), inputs=[ct.TensorType("x", shape=x.shape, dtype=np.float32)],
                         outputs=[ct.TensorType("y", dtype=np.float32)], convert_to="mlprogram",
                         minimum_deployment_target=ct.target.macOS14, compute_precision=ct.precision.FLOAT32,
                         skip_model_load=True)
    got = MilModel.from_program(mlmodel._mil_program, compute="fp32").predict({"x": x.numpy()})["y"]
    return max_rel_error(got, module(x))


@torch.no_grad()
def test_snake_converts_without_an_epsilon():
    """PlainSnake divides (MIL real_div); voxcpm's `reciprocal` becomes MIL `inverse`, whose epsilon 1e-4 is
    added to alpha: in FP32 the first is exact to rounding, the second (negative control) is not."""
    from patches.snake import PlainSnake

    alpha = torch.nn.Parameter(torch.linspace(0.05, 2.0, 8).reshape(1, 8, 1))
    x = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
    assert _fp32_conversion_error(PlainSnake(alpha).eval(), x) <= 1e-6
    assert _fp32_conversion_error(ReciprocalSnake(alpha).eval(), x) > 1e-4

"""A plain 3-D Snake activation for the AudioVAE.

voxcpm's Snake is a TorchScript function that flattens to 3-D and back; the reshape trick does
not survive tracing for conversion. The VAE only ever feeds [B, C, T], so the formula applies
directly: x + 1/(alpha + 1e-9) * sin(alpha * x)^2.

The reciprocal is written as a division of tensors: coremltools converts `Tensor.reciprocal()` (and
`1.0 / t`, which torch traces as one) to MIL `inverse`, whose epsilon (default 1e-4) is added to alpha, which moved every Snake of the
converted VAE by up to 1.9e-4 and the FP32 decoder package's audio by 3.2e-4 rel-L2 (TRIALS.md).
"""
import torch
from torch import nn


class PlainSnake(nn.Module):
    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = alpha  # the original Parameter, shared

    def forward(self, x):
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


def replace_snake(module: nn.Module) -> int:
    """Swap every Snake1d below `module` for PlainSnake; return how many."""
    from voxcpm.modules.audiovae.audio_vae import Snake1d

    count = 0
    for name, child in module.named_children():
        if isinstance(child, Snake1d):
            setattr(module, name, PlainSnake(child.alpha))
            count += 1
        else:
            count += replace_snake(child)
    return count

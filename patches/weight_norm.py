"""Fold the AudioVAE's weight norm (old-style weight_g / weight_v hooks) into plain weights.

Converters see the hook's recomputation as graph ops, and int8 quantization needs one weight.
"""
from torch import nn


def remove_weight_norm(module: nn.Module) -> int:
    """Fold every weight-normed conv below `module`; return how many."""
    count = 0
    for child in module.modules():
        if hasattr(child, "weight_g") and hasattr(child, "weight_v"):
            nn.utils.remove_weight_norm(child)
            count += 1
    return count

"""The AudioVAE decoder one patch per call, each causal convolution's left context carried between calls.

voxcpm's CausalDecoder holds causal convolutions (`CausalConv1d` pads on the left only,
`CausalTransposeConv1d` trims its right end), pointwise Snake and tanh, and residual sums. Decoded
chunk by chunk it equals the whole-signal decoder exactly when every convolution sees, before a
chunk's frames, the last frames of its own input from the chunks before — its left context:
(kernel - 1) * dilation frames for a convolution (zeros before the first call, which is the
convolution's own left padding), one frame for a transposed convolution of kernel 2s and stride s
(its output t reads inputs t // s - 1 and t // s; a zero frame contributes nothing). Kernel-1
convolutions need none. `StreamingAudioVAEDecoder` carries the contexts in the order the decoder
runs its convolutions, which is the order `contract.streaming` declares them in: as inputs and
outputs (functional: traced, macOS 14) or as registered buffers `ctx{i}` written in place
(stateful: for Core ML states, exported with torch.export — torch.jit.trace drops the writes).
"""
import torch
import torch.nn.functional as F
from torch import nn

from contract.streaming import context_name


def _voxcpm_blocks():
    from voxcpm.modules.audiovae.audio_vae import (CausalConv1d, CausalDecoderBlock, CausalResidualUnit,
                                                   CausalTransposeConv1d, NoiseBlock)

    return CausalConv1d, CausalTransposeConv1d, CausalResidualUnit, CausalDecoderBlock, NoiseBlock


def _context_frames(conv: nn.Module) -> int:
    """Left context frames a causal (transposed) convolution needs from the chunks before."""
    conv1d, transposed, *_ = _voxcpm_blocks()
    if isinstance(conv, transposed):
        assert conv.kernel_size[0] == 2 * conv.stride[0], "the decoder's transposed convolutions have kernel 2s"
        return 1
    assert isinstance(conv, conv1d) and conv.stride[0] == 1, "the decoder's convolutions have stride 1"
    return (conv.kernel_size[0] - 1) * conv.dilation[0]


def causal_convolutions(decoder: nn.Module) -> list[nn.Module]:
    """The convolutions of `decoder` that need left context, in the order its forward runs them."""
    conv1d, transposed, residual, block, noise = _voxcpm_blocks()
    found = []
    for module in decoder.modules():   # registration order is forward order in voxcpm's Sequentials
        if isinstance(module, noise):
            raise ValueError("the AudioVAE has a noise block (random per frame): it cannot be streamed exactly")
        if isinstance(module, (conv1d, transposed)) and _context_frames(module) > 0:
            found.append(module)
    return found


class StreamingAudioVAEDecoder(nn.Module):
    """latent [1, latent_dim, T] (+ contexts) -> audio [1, 1, T * hop] (+ the contexts after this call).

    Functional: `forward(latent, ctx0, ..., ctxN) -> (audio, ctx0', ..., ctxN')`. Stateful
    (`stateful=True`): `forward(latent) -> audio`, the contexts live in buffers `ctx0..ctxN`
    ([1, channels, frames], zeros = a fresh utterance; `reset_state()` zeroes them).
    Needs a patched model (`patches.apply.patch_model`: weight norm folded into plain weights).
    """

    def __init__(self, model, stateful: bool = False):
        super().__init__()
        self.decoder = model.audio_vae.decoder
        self.stateful = stateful
        convs = causal_convolutions(self.decoder)
        if any(hasattr(c, "weight_g") for c in convs):
            raise ValueError("StreamingAudioVAEDecoder needs a patched model: call patches.apply.patch_model first")
        self._slot = {id(c): i for i, c in enumerate(convs)}
        self.context_shapes = [(1, c.in_channels, _context_frames(c)) for c in convs]
        if stateful:
            for i, shape in enumerate(self.context_shapes):
                self.register_buffer(context_name(i), torch.zeros(shape))

    def forward(self, latent, *contexts):
        if self.stateful:
            contexts = [getattr(self, context_name(i)) for i in range(len(self.context_shapes))]
        carried = list(contexts)
        new = [None] * len(self.context_shapes)
        audio = self._run(self.decoder.model, latent, carried, new)
        if self.stateful:
            for i, value in enumerate(new):
                getattr(self, context_name(i)).copy_(value)
            return audio
        return (audio, *new)

    def reset_state(self) -> None:
        for i in range(len(self.context_shapes)):
            getattr(self, context_name(i)).zero_()

    def _run(self, module: nn.Module, x, carried: list, new: list):
        conv1d, transposed, residual, block, _ = _voxcpm_blocks()
        if isinstance(module, nn.Sequential):
            for child in module:
                x = self._run(child, x, carried, new)
            return x
        if isinstance(module, residual):
            return x + self._run(module.block, x, carried, new)
        if isinstance(module, block):
            return self._run(module.block, x, carried, new)
        slot = self._slot.get(id(module))
        if slot is None:          # Snake, tanh, kernel-1 convolutions: pointwise in time
            return module(x)
        joined = torch.cat([carried[slot].to(x.dtype), x], dim=-1)
        new[slot] = joined[..., joined.shape[-1] - self.context_shapes[slot][2]:]
        if isinstance(module, transposed):
            stride = module.stride[0]
            full = F.conv_transpose1d(joined, module.weight, module.bias, stride=stride, groups=module.groups)
            return full[..., stride:stride + x.shape[-1] * stride]
        return F.conv1d(joined, module.weight, module.bias, dilation=module.dilation, groups=module.groups)

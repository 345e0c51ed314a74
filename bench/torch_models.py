"""Small generic PyTorch models used to exercise the runtime (tests, bench).

They cover what the converter emits for decoder-style transformers (RMSNorm,
RoPE gathered at a position, GQA, SDPA, SiLU MLP, KV caches as functional
inputs/outputs or as states) and for 1-D conv nets (grouped/dilated Conv1d,
ConvTranspose1d with cropping, Snake activation). Imports torch.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * self.weight


def rope_tables(max_pos, head_dim, base=10000.0):
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.arange(max_pos, dtype=torch.float32)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, d = cfg["hidden"], cfg["head_dim"]
        self.nq, self.nkv, self.d = cfg["q_heads"], cfg["kv_heads"], d
        self.attn_norm = RMSNorm(h)
        self.q = nn.Linear(h, self.nq * d, bias=False)
        self.k = nn.Linear(h, self.nkv * d, bias=False)
        self.v = nn.Linear(h, self.nkv * d, bias=False)
        self.o = nn.Linear(self.nq * d, h, bias=False)
        self.mlp_norm = RMSNorm(h)
        self.gate = nn.Linear(h, cfg["ffn"], bias=False)
        self.up = nn.Linear(h, cfg["ffn"], bias=False)
        self.down = nn.Linear(cfg["ffn"], h, bias=False)

    def project(self, x, cos, sin):
        b = x.shape[0]
        y = self.attn_norm(x)
        q = self.q(y).view(b, 1, self.nq, self.d).transpose(1, 2)
        k = self.k(y).view(b, 1, self.nkv, self.d).transpose(1, 2)
        v = self.v(y).view(b, 1, self.nkv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def attend(self, x, q, k_cache, v_cache, mask):
        b = x.shape[0]
        rep = self.nq // self.nkv
        k = k_cache.repeat_interleave(rep, dim=1)
        v = v_cache.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(b, 1, self.nq * self.d))
        y = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class DecoderStep(nn.Module):
    """One decode step with a functional KV cache (caches in, caches out).

    write: how the cache is updated -- "scatter" (torch.scatter along the
    sequence axis), "index_put" (cache[:, :, pos] = k on a clone) or
    "slice" (torch.cat of the slices around pos is avoided; uses index_copy).
    mask: "bool" or "float" attention mask.
    """

    def __init__(self, cfg, write="scatter", mask="bool"):
        super().__init__()
        self.cfg, self.write, self.mask_kind = cfg, write, mask
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg["layers"]))
        self.norm = RMSNorm(cfg["hidden"])
        cos, sin = rope_tables(cfg["max_pos"], cfg["head_dim"])
        self.register_buffer("cos_table", cos)
        self.register_buffer("sin_table", sin)

    def rope_at(self, position):
        cos = self.cos_table[position].view(1, 1, 1, -1)
        sin = self.sin_table[position].view(1, 1, 1, -1)
        return cos, sin

    def attn_mask(self, position):
        slots = torch.arange(self.cfg["max_pos"], dtype=torch.int32)
        keep = (slots <= position).view(1, 1, 1, -1)
        if self.mask_kind == "bool":
            return keep
        return torch.where(keep, 0.0, -1e4)

    def update(self, cache, new, position):
        if self.write == "scatter":
            idx = position.view(1, 1, 1, 1).expand(new.shape).to(torch.int64)
            return torch.scatter(cache, 2, idx, new)
        if self.write == "index_put":
            cache = cache.clone()
            cache[:, :, position.to(torch.int64)] = new
            return cache
        return cache.index_copy(2, position.to(torch.int64), new)

    def forward(self, x, position, *caches):
        cos, sin = self.rope_at(position)
        mask = self.attn_mask(position)
        out_caches = []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.project(x, cos, sin)
            kc = self.update(caches[2 * i], k, position)
            vc = self.update(caches[2 * i + 1], v, position)
            x = layer.attend(x, q, kc, vc, mask)
            out_caches += [kc, vc]
        return (self.norm(x), *out_caches)


class BakedPositionStep(DecoderStep):
    """Deliberately wrong: the position is a Python int when traced.

    torch.jit.trace records the int as a constant, so the converted model
    always writes and reads at the traced position -- the rollout
    comparison must catch this.
    """

    def forward(self, x, position, *caches):
        return super().forward(x, torch.tensor([int(position[0])], dtype=torch.int32), *caches)


class StatefulDecoderStep(DecoderStep):
    """Same step with the caches held as buffers (Core ML states)."""

    def __init__(self, cfg, mask="bool"):
        super().__init__(cfg, write="index_put", mask=mask)
        shape = (1, cfg["kv_heads"], cfg["max_pos"], cfg["head_dim"])
        for i in range(cfg["layers"]):
            self.register_buffer(f"k_cache_{i}", torch.zeros(shape))
            self.register_buffer(f"v_cache_{i}", torch.zeros(shape))

    def forward(self, x, position):
        cos, sin = self.rope_at(position)
        mask = self.attn_mask(position)
        for i, layer in enumerate(self.layers):
            q, k, v = layer.project(x, cos, sin)
            kc, vc = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
            kc[:, :, position.to(torch.int64)] = k
            vc[:, :, position.to(torch.int64)] = v
            x = layer.attend(x, q, kc, vc, mask)
        return self.norm(x)


class Snake(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(0.5 + torch.rand(1, channels, 1))

    def forward(self, x):
        return x + 1.0 / (self.alpha + 1e-9) * torch.sin(self.alpha * x).pow(2)


class ConvNet(nn.Module):
    """A small vocoder-like 1-D conv stack."""

    def __init__(self, ch=16):
        super().__init__()
        self.inp = nn.Conv1d(4, ch, 7, padding=3)
        self.snake1 = Snake(ch)
        self.dil = nn.Conv1d(ch, ch, 3, padding=3, dilation=3, groups=4)
        self.snake2 = Snake(ch)
        self.up = nn.ConvTranspose1d(ch, ch // 2, kernel_size=8, stride=4, padding=2)
        self.snake3 = Snake(ch // 2)
        self.same = nn.Conv1d(ch // 2, ch // 2, 5, padding="same")
        self.out = nn.Conv1d(ch // 2, 1, 3, padding=1)

    def forward(self, x):
        x = self.inp(x)
        x = x + self.dil(self.snake1(x))
        x = self.up(self.snake2(x))
        x = self.same(torch.tanh(self.snake3(x)))
        return torch.tanh(self.out(x))

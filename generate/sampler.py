"""The LocDiT sampler of voxcpm: Euler over sway-warped time with CFG-Zero*, on the host.

The published layout's steps (Core ML and the torch reference alike) run it around their LocDiT:
all arithmetic in float32, in voxcpm's order, so that identical noise gives identical patches up to
the models' own error.
"""
from __future__ import annotations

import numpy as np


def sway_timesteps(steps: int, coef: float = 1.0) -> np.ndarray:
    """t = linspace(1, 0, steps + 1); t + coef * (cos(pi t / 2) - 1 + t), in float32."""
    t = np.linspace(1, 0, steps + 1, dtype=np.float32)
    return (t + np.float32(coef) * (np.cos(np.float32(np.pi / 2) * t) - 1 + t)).astype(np.float32)


def zero_init_steps(timesteps: int, fraction: float) -> int:
    """CFG-Zero*: the first steps use zero velocity (1 of 10 at fraction 0.04)."""
    return max(1, int((timesteps + 1) * fraction))


def guided_velocity(cond_v: np.ndarray, uncond_v: np.ndarray, cfg: float) -> np.ndarray:
    """CFG-Zero*: scale the unconditional branch by its projection on the conditional one."""
    scale = np.float32((cond_v * uncond_v).sum(dtype=np.float32) / ((uncond_v ** 2).sum(dtype=np.float32)
                                                                    + np.float32(1e-8)))
    return uncond_v * scale + np.float32(cfg) * (cond_v - uncond_v * scale)


def sample_patch(locdit, mu: np.ndarray, cond: np.ndarray, noise: np.ndarray, timesteps: int, cfg: float,
                 zero_fraction: float = 0.04, sway_coef: float = 1.0) -> np.ndarray:
    """mu [1, H]; cond, noise [1, feat_dim, patch] -> the patch [1, feat_dim, patch].

    `locdit(x, mu, t, cond, dt) -> velocity [2, feat_dim, patch]`: batch row 0 is conditional,
    row 1 unconditional (mu = 0); dt is fed as zeros, as voxcpm does."""
    t_span = sway_timesteps(timesteps, sway_coef)
    x = noise.astype(np.float32)
    t, dt = t_span[0], t_span[0] - t_span[1]
    zero_steps = zero_init_steps(timesteps, zero_fraction)
    mu2 = np.concatenate([mu, np.zeros_like(mu)]).astype(np.float32)
    cond2 = np.concatenate([cond, cond]).astype(np.float32)
    for step in range(1, len(t_span)):
        if step <= zero_steps:
            velocity = np.zeros_like(x)
        else:
            out = locdit(np.concatenate([x, x]), mu2, np.full(2, t, np.float32), cond2, np.zeros(2, np.float32))
            velocity = guided_velocity(out[:1], out[1:], cfg)
        x = (x - dt * velocity).astype(np.float32)
        t = np.float32(t - dt)
        if step < len(t_span) - 1:
            dt = np.float32(t - t_span[step + 1])
    return x

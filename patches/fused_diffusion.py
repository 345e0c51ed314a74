"""voxcpm's LocDiT sampler as one torch module: noise, conditioning, previous patch and cfg to the next patch.

`UnifiedCFM.solve_euler` unrolled: sway-warped timesteps, the first steps' velocity zeroed
(CFG-Zero*, 1 of 10), then per step the LocDiT at batch 2 (row 0 conditional, row 1 with mu = 0),
the CFG-Zero* combination and an Euler update — 9 LocDiT passes for 10 timesteps, one call. The
timesteps are fixed when the module is built and computed in float32 exactly as voxcpm computes
them; the time embeddings (sinusoid of 1000 t through time_mlp, plus delta_time_mlp of dt = 0)
depend only on them, so they are computed once here in FP32 and kept as a table: in fp16 the
sinusoid's argument loses its phase (TRIALS.md, "locdit timestep embedding"), and the time MLPs
run 9 times less. The condition projection of the previous patch is the same at every step and is
computed once. tests/patches/test_fast.py proves it equal to voxcpm's sampler with the same noise.
"""
import torch
from torch import nn


def euler_schedule(timesteps: int, sway_coef: float, zero_fraction: float) -> list[tuple[float, float, bool]]:
    """(t, dt, zero velocity) per Euler step, in float32 as voxcpm's `forward` + `solve_euler` compute them."""
    t_span = torch.linspace(1, 0, timesteps + 1, dtype=torch.float32)
    t_span = t_span + sway_coef * (torch.cos(torch.pi / 2 * t_span) - 1 + t_span)
    zero_steps = max(1, int((timesteps + 1) * zero_fraction))
    t, dt, steps = t_span[0], t_span[0] - t_span[1], []
    for step in range(1, len(t_span)):
        steps.append((float(t), float(dt), step <= zero_steps))
        t = t - dt
        if step < len(t_span) - 1:
            dt = t - t_span[step + 1]
    return steps


class FusedDiffusion(nn.Module):
    """noise [1, D, P], mu [1, H], cond [1, D, P], cfg [1] -> the next patch [1, D, P]."""

    def __init__(self, model, timesteps: int, sway_coef: float, zero_fraction: float):
        super().__init__()
        estimator = model.feat_decoder.estimator
        self.in_proj, self.cond_proj, self.out_proj = estimator.in_proj, estimator.cond_proj, estimator.out_proj
        self.decoder = estimator.decoder
        self.schedule = euler_schedule(timesteps, sway_coef, zero_fraction)
        with torch.no_grad():
            times = torch.tensor([[t] for t, _, zero in self.schedule if not zero], dtype=torch.float32)
            no_delta = estimator.delta_time_mlp(estimator.time_embeddings(torch.zeros(1)))
            table = torch.stack([estimator.time_mlp(estimator.time_embeddings(t)) + no_delta for t in times])
        self.register_buffer("time_table", table[:, 0].float(), persistent=False)   # [active steps, H]
        self.register_buffer("dts", torch.tensor([dt for _, dt, _ in self.schedule]), persistent=False)

    def velocity(self, x, mu2, cond_hidden, time_embedding):
        """The LocDiT at batch 2 (as voxcpm's estimator after its time embedding): [2, D, P]."""
        x_hidden = self.in_proj(torch.cat([x, x]).transpose(1, 2))
        tokens = torch.cat([(mu2 + time_embedding).unsqueeze(1), cond_hidden, x_hidden], dim=1)
        hidden, _ = self.decoder(tokens, is_causal=False)
        return self.out_proj(hidden[:, cond_hidden.shape[1] + 1:]).transpose(1, 2)

    def forward(self, noise, mu, cond, cfg):
        x = noise
        mu2 = torch.cat([mu, torch.zeros_like(mu)])
        cond_hidden = self.cond_proj(torch.cat([cond, cond]).transpose(1, 2))
        guidance = cfg.reshape(1, 1, 1)
        active = 0
        for step, (_, _, zero) in enumerate(self.schedule):
            if zero:  # x - dt * 0
                continue
            v = self.velocity(x, mu2, cond_hidden, self.time_table[active])
            active += 1
            v_cond, v_uncond = v[:1], v[1:]
            scale = (v_cond * v_uncond).sum() / ((v_uncond * v_uncond).sum() + 1e-8)
            x = x - self.dts[step] * (v_uncond * scale + guidance * (v_cond - v_uncond * scale))
        return x


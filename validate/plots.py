"""Pictures that say more than the table: LM error per step, VAE round-trip waveforms."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lm_steps(series: list[dict], path: Path) -> Path | None:
    """Per-step rel-L2 and 1-corr (log scale) of each LM output and of the worst cache."""
    rows = [s for s in series if s["name"] in ("base_lm_step", "residual_lm_step") and "not gated" not in s["output"]]
    if not rows:
        return None
    plt = _pyplot()
    components = sorted({s["name"] for s in rows})
    fig, axes = plt.subplots(len(components), 2, figsize=(13, 3.8 * len(components)), squeeze=False)
    for row, component in zip(axes, components):
        for s in (s for s in rows if s["name"] == component):
            label = f"{s['precision']} {s['output']} · {s['rollout'].split(' (')[0]}"
            style = "-" if s["precision"] == "fp16" else "--"
            row[0].semilogy(s["position"], np.maximum(s["rel_l2"], 1e-9), style, label=label, lw=1)
            row[1].semilogy(s["position"], np.maximum(1 - np.asarray(s["corr"]), 1e-12), style, label=label, lw=1)
        row[0].set_title(f"{component}: relative L2 per step")
        row[1].set_title(f"{component}: 1 - correlation per step")
        for ax in row:
            ax.set_xlabel("position")
            ax.grid(True, which="both", alpha=0.3)
        row[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def vae_round_trip(waves: dict, sample_rate: int, path: Path) -> Path | None:
    """Original speech, torch round trip and each precision's converted round trip."""
    if not waves:
        return None
    plt = _pyplot()
    names = ["original", "torch"] + sorted(k for k in waves if k not in ("original", "torch"))
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 2.4 * len(names)), squeeze=False)
    for (wave_ax, spec_ax), name in zip(axes, names):
        audio = np.asarray(waves[name], np.float32)
        t = np.arange(audio.size) / sample_rate
        wave_ax.plot(t, audio, lw=0.4)
        wave_ax.set_title(f"{name if name in ('original', 'torch') else name + ' (converted)'}: waveform", fontsize=9)
        wave_ax.set_xlim(0, t[-1] if t.size else 1)
        # bins of exact zero power (the tiny fixture's near-silent frames) are log10(0) = -inf: drawn
        # at the colour map's floor, which is right, so matplotlib's divide warning is only noise
        with np.errstate(divide="ignore"):
            spec_ax.specgram(audio + 1e-9, NFFT=1024, Fs=sample_rate, noverlap=768, cmap="magma")
        spec_ax.set_title(f"{name}: spectrogram", fontsize=9)
        spec_ax.set_ylabel("Hz", fontsize=8)
    axes[-1][0].set_xlabel("seconds")
    axes[-1][1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

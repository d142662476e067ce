"""PNG plots people would rather look at than read: alignments over fbank, senone occupancy.

matplotlib runs with the non-interactive Agg backend (no display on clusters or CI).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lm2am.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path | str) -> None:
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def _segments(ids: np.ndarray):
    """(value, start, end) runs of an id array."""
    change = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(ids)]])
    return [(int(ids[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def plot_alignment(feats: np.ndarray, phones: np.ndarray, phone_names: Sequence[str],
                   path: Path | str, senones: Optional[np.ndarray] = None,
                   title: str = "", ref_boundaries: Optional[Sequence[float]] = None,
                   frame_shift: float = 0.01) -> None:
    """Fbank (frames x bins) with phone boundaries and labels; senone ids as a strip below.

    ``ref_boundaries`` (seconds), e.g. the synthesizer's own phone ends, are drawn dashed.
    """
    plt = _pyplot()
    rows = 2 if senones is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(max(8, len(phones) / 40), 4 + rows), sharex=True,
                             gridspec_kw={"height_ratios": [4, 1][:rows]}, squeeze=False)
    ax = axes[0, 0]
    ax.imshow(feats.T, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    for pid, s, e in _segments(np.asarray(phones)):
        ax.axvline(s - 0.5, color="white", lw=0.8)
        ax.text((s + e) / 2 - 0.5, feats.shape[1] * 0.93, phone_names[pid], color="white",
                ha="center", va="top", fontsize=7, rotation=90)
    if ref_boundaries is not None:
        for t in ref_boundaries:
            ax.axvline(t / frame_shift - 0.5, color="red", lw=0.8, ls="--")
    ax.set_ylabel("mel bin")
    ax.set_title(title or "alignment (white: lm2am; red dashed: reference)")
    if senones is not None:
        ax2 = axes[1, 0]
        ax2.imshow(np.asarray(senones)[None, :], aspect="auto", cmap="tab20", interpolation="nearest")
        for sid, s, e in _segments(np.asarray(senones)):
            if e - s >= 4:
                ax2.text((s + e) / 2 - 0.5, 0, str(sid), ha="center", va="center", fontsize=6)
        ax2.set_yticks([])
        ax2.set_ylabel("senone")
        ax2.set_xlabel(f"frame ({frame_shift * 1000:.0f} ms)")
    _save(fig, path)


def plot_occupancy(counts: np.ndarray, path: Path | str, title: str = "senone occupancy") -> None:
    """Histogram of frames per senone (log-scaled x) — shows starved and dominant senones."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    counts = np.asarray(counts, dtype=float)
    bins = np.logspace(0, np.log10(max(counts.max(), 10)), 40)
    ax.hist(np.maximum(counts, 1), bins=bins, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("training frames per senone")
    ax.set_ylabel("senones")
    ax.set_title(f"{title}: {len(counts)} senones, median {np.median(counts):.0f} frames")
    _save(fig, path)

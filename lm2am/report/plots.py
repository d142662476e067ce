"""PNG plots people would rather look at than read, and the package's one matplotlib set-up.

matplotlib runs with the non-interactive Agg backend (no display on clusters or CI). Every
module that draws gets pyplot through :func:`pyplot` and writes through :func:`save_png`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from lm2am.io import write_if_changed
from lm2am.report.results import Row, mean_std


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend (the one place that sets matplotlib up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path | str, dpi: int = 110, bbox_inches: Optional[str] = "tight") -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    import io

    buf = io.BytesIO()
    if bbox_inches is None:
        fig.savefig(buf, format="png", dpi=dpi)
    else:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches)
    pyplot().close(fig)
    write_if_changed(Path(path), buf.getvalue())  # a rerun with the same figure leaves the file


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
    plt = pyplot()
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
    save_png(fig, path)


def plot_occupancy(counts: np.ndarray, path: Path | str, title: str = "senone occupancy") -> None:
    """Histogram of frames per senone (log-scaled x) — shows starved and dominant senones."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    counts = np.asarray(counts, dtype=float)
    bins = np.logspace(0, np.log10(max(counts.max(), 10)), 40)
    ax.hist(np.maximum(counts, 1), bins=bins, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("training frames per senone")
    ax.set_ylabel("senones")
    ax.set_title(f"{title}: {len(counts)} senones, median {np.median(counts):.0f} frames")
    save_png(fig, path)


def plot_gmm_history(history: List[Dict[str, Any]], path: Path | str) -> None:
    """GMM training curve PNG: log-likelihood per frame and Gaussians per iteration."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    it = [h["iter"] for h in history]
    ax.plot(it, [h["loglike_per_frame"] for h in history], "o-")
    ax.set_xlabel("iteration")
    ax.set_ylabel("log-likelihood per frame")
    ax2 = ax.twinx()
    ax2.plot(it, [h["num_gauss"] for h in history], "s--", color="gray")
    ax2.set_ylabel("Gaussians", color="gray")
    ax.set_title("GMM monophone training")
    fig.tight_layout()
    save_png(fig, path, dpi=100, bbox_inches=None)


def plot_training_curve(history: List[Dict[str, Any]], path: Path | str, title: str) -> None:
    """AM training curve PNG: loss per epoch (train, dev) and dev frame accuracy per head
    (train accuracy when there is no dev part); ``history`` as in ``history.json``."""
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [h["train"].get("loss", float("nan")) for h in history], "o-", label="train loss")
    a.plot(ep, [h["train"].get("main_ce", float("nan")) for h in history], "o--", label="train main CE")
    if any(h.get("dev") for h in history):
        a.plot(ep, [h.get("dev", {}).get("main_ce", float("nan")) for h in history], "s-", label="dev main CE")
    a.set_xlabel("epoch")
    a.set_ylabel("loss per frame")
    a.legend()
    a.grid(alpha=0.3)
    keys = sorted({k for h in history for k in h.get("dev", {}) if k.endswith("_acc")})
    src = "dev" if keys else "train"
    if not keys:
        keys = sorted({k for h in history for k in h["train"] if k.endswith("_acc")})
    for k in keys:
        b.plot(ep, [h.get(src, {}).get(k, float("nan")) for h in history], "o-", label=k[:-4])
    b.set_xlabel("epoch")
    b.set_ylabel(f"{src} frame accuracy")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(title)
    save_png(fig, path, dpi=100)


def plot_wer(rows: Sequence[Row], parts: Sequence[str], path: Path | str, title: str = "") -> None:
    """Grouped bar chart: one group per row, one bar per part (mean WER, error bar = std)."""
    plt = pyplot()
    n_rows, n_parts = len(rows), len(parts)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * n_rows * max(1, n_parts) / 2 + 2), 4.2))
    width = 0.8 / max(1, n_parts)
    x = np.arange(n_rows)
    for j, p in enumerate(parts):
        stats = [mean_std(r.values(p)) for r in rows]
        means = np.array([0.0 if n == 0 else m for m, _, n in stats])
        stds = np.array([0.0 if n < 2 else s for _, s, n in stats])
        bars = ax.bar(x + (j - (n_parts - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=p)
        for b, (_, _, n) in zip(bars, stats):
            if n == 0:
                ax.text(b.get_x() + b.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([r.name for r in rows], rotation=30, ha="right")
    ax.set_ylabel("WER (%)")
    ax.set_title(title or "WER per system (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_png(fig, path)


def plot_data_size(series: Mapping[str, Sequence[Tuple[float, Row]]], parts: Sequence[str],
                   path: Path | str, title: str = "") -> None:
    """WER against training hours: one panel per part, one line per system (``series``:
    system -> ``(hours, row)`` per size), error bars = std over seeds; log-scaled hours."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts) + 1, 3.8), squeeze=False)
    hours = sorted({h for pts in series.values() for h, _ in pts if np.isfinite(h)})
    for ax, part in zip(axes[0], parts):
        for name, pts in series.items():
            xs, ms, ss = [], [], []
            for h, row in sorted(pts, key=lambda p: p[0]):
                m, s, n = mean_std(row.values(part))
                if n and np.isfinite(h):
                    xs.append(h)
                    ms.append(m)
                    ss.append(s if n > 1 else 0.0)
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(hours)
        ax.set_xticklabels([f"{h:.2g}" for h in hours])
        ax.minorticks_off()
        ax.set_xlabel("training hours")
        ax.set_ylabel(f"{part} WER (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "WER vs training data (mean ± std over seeds)")
    save_png(fig, path)

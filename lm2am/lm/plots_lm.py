"""Heatmap of one utterance's teacher posteriors: frames on x, the vocabulary entries that
appear in any of its top-k lists on y, probability as colour; the reference (target) token of
each frame as a dot, silence frames shaded. Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from lm2am.lm.loader import PosteriorReader

PathLike = Union[str, Path]


def unit_labels(unit: str, lang_dir: Optional[PathLike] = None, tree: object = None
                ) -> Optional[Sequence[str]]:
    """Readable names for a unit's ids: phones.txt names, sentencepiece pieces, or senone ids
    with their centre phone (``AH.42``) when the tree is given; ``None`` if unavailable."""
    if lang_dir is None:
        return None
    lang_dir = Path(lang_dir)
    if unit == "phone" and (lang_dir / "phones.txt").is_file():
        from lm2am.lang import read_phone_list

        return read_phone_list(lang_dir)
    if unit == "subword" and (lang_dir / "bpe.model").is_file():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(lang_dir / "bpe.model"))
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if unit == "senone" and tree is not None:
        s2p = tree.senone_to_phone  # type: ignore[attr-defined]
        return [f"{tree.phones[int(p)]}.{i}" for i, p in enumerate(s2p)]  # type: ignore[attr-defined]
    return None


def plot_teacher_posteriors(post_dir: PathLike, cut_id: str, path: PathLike, *,
                            labels: Optional[Sequence[str]] = None,
                            reference: Optional[np.ndarray] = None, max_rows: int = 60,
                            title: str = "") -> None:
    """Write a PNG heatmap of ``cut_id``'s stored teacher posteriors to ``path``.

    ``labels``: names of the vocabulary ids (:func:`unit_labels`). ``reference``: per-frame
    target id (e.g. the targets' ``senone``/``phone``/``subword_id``; negative = none), drawn as
    cyan dots. At most ``max_rows`` vocabulary entries (the most probable overall) are shown.
    """
    from lm2am.report.plots import pyplot, save_png

    reader = PosteriorReader(post_dir)
    idx, probs, speech = reader.frames(cut_id)
    T, V = len(speech), reader.vocab_size
    dense = np.zeros((T, V), dtype=np.float32)
    np.add.at(dense, (np.repeat(np.arange(T), idx.shape[1]), idx.reshape(-1)), probs.reshape(-1))
    ref = None if reference is None else np.asarray(reference)
    score = dense.sum(0)
    if ref is not None:
        score[np.unique(ref[(ref >= 0) & (ref < V)])] += 1e-3  # keep the reference rows visible
    rows = np.flatnonzero(score > 0)
    rows = rows[np.argsort(-score[rows], kind="stable")][:max_rows]
    rows.sort()
    img = dense[:, rows].T
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, T / 40), max(3.0, len(rows) * 0.16 + 1.5)))
    im = ax.imshow(img, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1,
                   interpolation="nearest")
    for s, e in _silence_runs(speech):
        ax.axvspan(s - 0.5, e - 0.5, color="lightsteelblue", alpha=0.35, lw=0)
    if ref is not None:
        where = {int(v): r for r, v in enumerate(rows)}
        t = [i for i in range(min(T, len(ref))) if int(ref[i]) in where]
        ax.scatter(t, [where[int(ref[i])] for i in t], s=2, c="cyan", marker=".",
                   label="reference token")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([labels[r] if labels is not None and r < len(labels) else str(r) for r in rows],
                       fontsize=6)
    ax.set_xlabel("frame (silence shaded)")
    ax.set_title(title or f"{cut_id}: {reader.info['unit']} teacher posteriors "
                          f"(top-{reader.k}, T={reader.info['temperature']})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    reader.close()
    save_png(fig, path)


def _silence_runs(speech: np.ndarray):
    sil = ~np.asarray(speech, dtype=bool)
    change = np.flatnonzero(np.diff(sil.astype(np.int8))) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(sil)]
    return [(int(s), int(e)) for s, e in zip(starts, ends) if len(sil) and sil[s]]

"""Invariants of one cut's frame targets, checked where they are made, stored and read."""
from __future__ import annotations

from typing import Optional

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.targets.rules import FrameTargets

__all__ = ["check_targets"]


def _check_pos(cut_id: str, name: str, pos: np.ndarray, num_tokens: Optional[int]) -> None:
    p = pos[pos >= 0]
    if len(p) == 0:
        return
    if np.any(np.diff(p) < 0) or (num_tokens is None and p[0] != 0):
        raise Lm2amError(f"cut {cut_id}: {name} positions are not 0, 1, 2, ... in frame order; "
                         "rerun the targets stage")
    if num_tokens is None:  # positions are runs: 0, 1, 2, ... each owning >= 1 frame
        if np.any(np.diff(p) > 1):
            raise Lm2amError(f"cut {cut_id}: {name} positions skip a token; rerun the targets stage")
    elif p[-1] >= num_tokens:
        raise Lm2amError(f"cut {cut_id}: {name} position {int(p[-1])} >= its {num_tokens} tokens; "
                         "rerun the targets stage")


def _check_ids(cut_id: str, targets: FrameTargets, tokens: np.ndarray, num_senones: int,
               num_phones: int, num_subwords: Optional[int]) -> None:
    lo, hi = int(targets.senone.min()), int(targets.senone.max())
    if lo < 0 or hi >= num_senones:
        bad = hi if hi >= num_senones else lo
        raise Lm2amError(f"cut {cut_id}: senone id {bad} outside the model's {num_senones} senones "
                         "(num_pdfs); the alignment comes from another tree, realign or rebuild "
                         "the targets with the current tree")
    lo, hi = int(targets.phone.min()), int(targets.phone.max())
    if lo < 0 or hi >= num_phones:
        raise Lm2amError(f"cut {cut_id}: phone id {hi if hi >= num_phones else lo} outside the "
                         f"{num_phones} phones of phones.txt; the alignment uses another lang dir")
    if num_subwords is not None and len(tokens) and (tokens.min() < 0 or tokens.max() >= num_subwords):
        raise Lm2amError(f"cut {cut_id}: subword id {int(tokens.max())} outside the {num_subwords} "
                         "pieces of bpe.model; the targets were built with another BPE model")


def check_targets(cut_id: str, targets: FrameTargets, num_frames: int, num_senones: int,
                  num_phones: int, num_subwords: Optional[int] = None) -> None:
    """Raise :class:`Lm2amError` unless ``targets`` fit a cut of ``num_frames`` feature frames
    and a model with ``num_senones`` senones / ``num_phones`` phones (/ ``num_subwords``).

    Checks: every array has ``num_frames`` entries; ids in range; the silence mask, ``-1``
    entries and positions agree. Messages name the cut and both numbers.
    """
    for unit, arr in targets.arrays().items():
        if arr.ndim != 1 or arr.shape[0] != num_frames:
            raise Lm2amError(
                f"cut {cut_id}: {unit} targets have {arr.shape[0] if arr.ndim else 0} frames but the "
                f"cut has {num_frames} feature frames; realign with the current features "
                "(same frame shift and snip-edges setting)")
    if num_frames == 0:
        return
    tokens = np.asarray(targets.subword_tokens, dtype=np.int64)
    _check_ids(cut_id, targets, tokens, num_senones, num_phones, num_subwords)
    sil = np.asarray(targets.silence, dtype=bool)
    for name in ("subword", "subword_id", "phone_pos", "senone_pos"):
        if not np.array_equal(getattr(targets, name) < 0, sil):
            raise Lm2amError(f"cut {cut_id}: {name} is -1 exactly on silence frames in valid "
                             "targets, but not here; rerun the targets stage")
    _check_pos(cut_id, "subword", targets.subword, len(tokens))
    _check_pos(cut_id, "phone", targets.phone_pos, None)
    _check_pos(cut_id, "senone", targets.senone_pos, None)
    speech = ~sil
    if speech.any() and not np.array_equal(tokens[targets.subword[speech]], targets.subword_id[speech]):
        raise Lm2amError(f"cut {cut_id}: subword_id differs from subword_tokens[subword]; "
                         "rerun the targets stage")

"""The training subset of ``train.max_hours`` (the data-size curve, ``run.sh --data-sizes``).

Every cut of the training part is ranked by a hash of ``SUBSET_SEED`` and its id: a fixed
shuffle that depends on nothing else (not ``train.seed``, not the system, not the order of the
part or which other cuts it holds). The subset is the longest prefix of that ranking whose
duration fits in ``max_hours``, so

* every system and seed trained at one size sees the same utterances;
* subsets nest: the 0.5 h subset lies inside the 1 h subset, which lies inside the part.

The subset keeps the part's own order (the sampler sees it like a smaller part); every
statistic of the training data (count priors, speaker means) is computed on it.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, List, Optional

from lm2am.errors import Lm2amError

log = logging.getLogger(__name__)

__all__ = ["SUBSET_SEED", "TrainSubset", "subset_rank", "select_hours", "size_tag"]

#: Fixed seed of the subset ranking; deliberately not ``train.seed``, so that seeds vary the
#: model only, never the data.
SUBSET_SEED = 18


def subset_rank(cut_id: str) -> str:
    """The sort key of a cut in the fixed shuffle (a hash of the subset seed and the id)."""
    return hashlib.sha1(f"{SUBSET_SEED}:{cut_id}".encode()).hexdigest()


def size_tag(hours: float) -> str:
    """The suffix naming a system trained on ``hours`` of data: ``h0.5``, ``h1`` (``%g``, as
    the recipe writes it: ``exp/am_<system>_h<hours>/``)."""
    return f"h{hours:g}"


@dataclass
class TrainSubset:
    """The cuts a run trains on and how much of the part they are."""

    cuts: Any                 # lhotse CutSet, in the part's order
    max_hours: Optional[float]
    hours: float
    utterances: int
    part_hours: float
    part_utterances: int

    def describe(self) -> str:
        """One log line: hours and utterances used out of the part's."""
        if self.max_hours is None:
            return f"all of the training part: {self.utterances} utterances, {self.hours:.3f} h"
        return (f"train.max_hours {self.max_hours:g}: {self.utterances} of {self.part_utterances} "
                f"utterances, {self.hours:.3f} h of {self.part_hours:.3f} h")

    def as_dict(self) -> dict:
        """What ``train_data.json`` holds (no cuts)."""
        return {"max_hours": self.max_hours, "hours": self.hours, "utterances": self.utterances,
                "part_hours": self.part_hours, "part_utterances": self.part_utterances,
                "subset_seed": SUBSET_SEED}


def select_hours(cuts: Any, max_hours: Optional[float]) -> TrainSubset:
    """The subset of ``cuts`` for ``max_hours`` (None: every cut). A budget that exceeds the
    part takes all of it (with a warning); one below the first ranked cut is an error."""
    from lhotse import CutSet

    all_cuts = list(cuts)
    part_sec = sum(c.duration for c in all_cuts)
    if max_hours is None:
        return TrainSubset(cuts, None, part_sec / 3600, len(all_cuts), part_sec / 3600, len(all_cuts))
    if max_hours <= 0:
        raise Lm2amError(f"train.max_hours must be > 0 (or null for the whole part), got {max_hours}")
    budget = max_hours * 3600
    keep: List[str] = []
    total = 0.0
    ranked = sorted(all_cuts, key=lambda c: subset_rank(c.id))
    for c in ranked:
        if total + c.duration > budget:
            break  # a prefix, not a best fit: that is what makes the subsets nest
        keep.append(c.id)
        total += c.duration
    if not keep:
        first = f" ({ranked[0].duration:.1f} s)" if ranked else ""
        raise Lm2amError(f"train.max_hours {max_hours:g}: shorter than the first utterance of the subset "
                         f"order{first}; raise it")
    if len(keep) == len(all_cuts):
        log.warning("train.max_hours %g >= the training part's %.3f h: training on all of it",
                    max_hours, part_sec / 3600)
    chosen = set(keep)
    sub = CutSet.from_cuts([c for c in all_cuts if c.id in chosen])
    return TrainSubset(sub, max_hours, total / 3600, len(keep), part_sec / 3600, len(all_cuts))

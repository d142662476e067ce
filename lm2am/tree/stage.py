"""The tree stage: statistics from forced alignments, then the tree (``steps/build_tree.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.tree.build import build_tree
from lm2am.tree.context import PhoneRef, frame_contexts
from lm2am.tree.model import ContextTree
from lm2am.tree.questions import read_questions
from lm2am.tree.stats import TreeStats
from lm2am.config import check_range
from lm2am.data.features import load_features

__all__ = ["TreeConfig", "aligned_frames", "tree_from_alignments"]


@dataclass
class TreeConfig:
    """The ``tree:`` section of a recipe config (see :func:`lm2am.tree.build_tree` for the meaning)."""

    num_leaves: int = 300  # senones: a few hundred for the demo, 2000-6000 for real corpora
    min_count: float = 100.0
    min_gain: float = 0.0
    questions: Optional[str] = None  # Kaldi questions file (phone names); None: cluster phones
    no_context_phones: Tuple[str, ...] = ("SIL", "SPN")

    def __post_init__(self) -> None:
        check_range(self, "min_count", 0)
        check_range(self, "min_gain", 0)
        if self.num_leaves < 1:
            raise ValueError(f"num_leaves must be >= 1, got {self.num_leaves}")
        self.no_context_phones = tuple(self.no_context_phones)


def aligned_frames(cuts: Any, alis: Mapping[str, Tuple[np.ndarray, np.ndarray]], pdf_to_state: np.ndarray
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(feats [T,D], frame phones [T], frame HMM states [T])`` of every aligned cut (a
    progress bar on a terminal); ``alis`` maps cut ids to ``(pdf ids, phone ids)`` per frame,
    ``pdf_to_state`` the aligner's pdf ids to HMM states. Cuts without alignment are skipped."""
    from tqdm import tqdm

    for c in tqdm(cuts, total=len(cuts), desc="tree stats", unit="cut", disable=None, mininterval=2):
        if c.id not in alis:
            continue
        states, ph = alis[c.id]
        feats = load_features(c)
        if feats.shape[0] != len(states):
            raise Lm2amError(f"cut {c.id}: {feats.shape[0]} feature frames but {len(states)} aligned frames; realign")
        yield feats, ph.astype(np.int64), pdf_to_state[states].astype(np.int64)


def tree_from_alignments(items: Iterable[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                         phones: Sequence[str], num_states: Mapping[PhoneRef, int],
                         cfg: TreeConfig) -> Tuple[ContextTree, TreeStats]:
    """Accumulate stats from ``(feats [T,D], frame phones [T], frame HMM states [T])`` items
    (forced alignments, e.g. :func:`aligned_frames`) and build the tree; returns ``(tree, stats)``.

    Context follows the package's convention (see :mod:`lm2am.tree`): cross-word context is
    the neighbouring phone, utterance edges are 0.
    """
    stats: Optional[TreeStats] = None
    for feats, ph, st in items:
        if stats is None:
            stats = TreeStats(feats.shape[1])
        left, right = frame_contexts(ph, st)
        stats.accumulate(feats, left, ph, right, st)
    if stats is None:
        raise Lm2amError("no aligned utterances to build the senone tree from")
    questions = read_questions(cfg.questions, phones) if cfg.questions else None
    present = [p for p in cfg.no_context_phones if p in phones]
    tree = build_tree(stats, phones, cfg.num_leaves, questions=questions, min_count=cfg.min_count,
                      min_gain=cfg.min_gain, no_context_phones=present, num_states=dict(num_states))
    return tree, stats

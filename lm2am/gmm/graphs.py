"""Per-utterance training graphs over transition-ids (Kaldi's ``compile-train-graphs`` followed
by ``AddTransitionProbs``), built directly as kaldifst FSTs, and reading an alignment back.

The graph of a transcript has the same phone occurrences ("units") and the same ways through
them as the k2 aligner's (:func:`lm2am.align.graphs.utterance_units` and
:func:`~lm2am.align.graphs.unit_successors`: each pronunciation of a word an alternative at cost
0, an optional silence with probability ``topo.sil_prob`` before, between and after the words),
so the best path's unit labels also say which pronunciation was taken. Each emitting HMM state of
each unit is an FST state with two arcs, as Kaldi's HMM has: a self-loop labelled with the
state's self-loop transition-id and a forward arc labelled with its forward transition-id, which
consumes the state's last frame. The forward arc out of a unit's last state carries output label
``unit index + 1`` (so the best path says which optional silences and pronunciations were taken
and where each unit ends) and leads to every unit that may follow. Epsilon arcs from a start
state enter the first unit(s); a final state follows the last.

Weights (costs, tropical): optional-silence ``-log p`` / ``-log(1 - p)`` as in Kaldi's L.fst, and
Kaldi's ``GetScaledTransitionLogProb``: a self-loop gets ``self_loop_scale * log p(loop)``, a
forward arc ``self_loop_scale * log(1 - p(loop)) + transition_scale * log p(fwd | not loop)``
(the second term is 0 here: one forward transition per state).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lm2am.align.viterbi import Alignment
from lm2am.align.graphs import Lexicon, Unit, unit_successors, utterance_units
from lm2am.align.topo import StateMap
from lm2am.graph.hmm import TransitionTables
from lm2am.kaldi import kaldi_wheels


@dataclass
class TrainingGraph:
    """A compiled training graph and what reading its best path back needs."""

    fst: object  # kaldifst.StdVectorFst
    units: List[Unit]
    words: List[str]


def transition_costs(tm, tables: TransitionTables, transition_scale: float, self_loop_scale: float
                     ) -> np.ndarray:
    """Cost ``-GetScaledTransitionLogProb`` of every transition-id (index 0 unused)."""
    logp = np.asarray(tm.log_probs, np.float64).reshape(-1)
    nonself = np.asarray(tm.non_self_loop_log_probs, np.float64).reshape(-1)
    ts = tables.tid2ts
    lp = np.where(tables.tid_is_loop, self_loop_scale * logp,
                  self_loop_scale * nonself[ts] + transition_scale * (logp - nonself[ts]))
    lp[0] = 0.0
    return -lp


def compile_graph(words: Sequence[str], lexicon: Lexicon, smap: StateMap, tables: TransitionTables,
                  costs: np.ndarray, utt: Optional[str] = None) -> TrainingGraph:
    """The training graph of one transcript (see the module docstring)."""
    _, kaldifst, _ = kaldi_wheels()
    units = utterance_units(words, lexicon, smap, utt)
    topo = smap.topo
    start, follow = unit_successors(units, math.log(topo.sil_prob), math.log1p(-topo.sil_prob))
    nst = [smap.num_states(u.phone_id) for u in units]
    first = np.concatenate([[1], 1 + np.cumsum(nst)]).astype(np.int64)
    M = len(units)
    final = int(first[-1])
    lines: List[str] = []
    for m, s in start:
        lines.append(f"0 {final if m == M else first[m]} 0 0 {-s:.6g}")
    for k, u in enumerate(units):
        for j in range(nst[k]):
            q = int(first[k]) + j
            ts = tables.ts_of[(u.phone_id, j, smap.pdf(u.phone_id, j))]
            loop, fwd = int(tables.ts_loop[ts]), int(tables.ts_forward[ts])
            if loop:
                lines.append(f"{q} {q} {loop} 0 {costs[loop]:.6g}")
            if j + 1 < nst[k]:
                lines.append(f"{q} {q + 1} {fwd} 0 {costs[fwd]:.6g}")
            else:
                for m, s in follow[k]:
                    dst = final if m == M else int(first[m])
                    lines.append(f"{q} {dst} {fwd} {k + 1} {costs[fwd] - s:.6g}")
    lines.append(str(final))
    fst = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False, keep_state_numbering=True)
    return TrainingGraph(fst=fst, units=units, words=list(words))


def read_alignment(utt_id: str, tids: Sequence[int], unit_marks: Sequence[int], graph: TrainingGraph,
                   tables: TransitionTables, smap: StateMap, loglike: float = 0.0) -> Alignment:
    """An :class:`Alignment` (pdf = monophone state, phone, words, phone segments) from the best
    path's transition-ids and output labels (``unit index + 1`` at each unit's last frame)."""
    tids = np.asarray(tids, np.int64)
    states = tables.tid2pdf[tids].astype(np.int32)
    phones = tables.tid2phone[tids].astype(np.int32)
    ends = np.flatnonzero(~tables.tid_is_loop[tids]
                          & (smap.pdf_to_state[states] == np.asarray([smap.num_states(p) for p in phones]) - 1))
    marks = [int(m) - 1 for m in unit_marks]
    if len(ends) != len(marks):
        raise RuntimeError(f"{utt_id}: {len(ends)} phone ends on the best path but {len(marks)} unit labels")
    segs: List[Tuple[int, int, int]] = []
    spans = {}
    start = 0
    for k, e in zip(marks, ends):
        u = graph.units[k]
        segs.append((u.phone_id, start, int(e) + 1))
        if u.word_id >= 0:
            s0, _ = spans.get(u.word_id, (start, 0))
            spans[u.word_id] = (s0, int(e) + 1)
        start = int(e) + 1
    words = [(graph.words[w], s, e) for w, (s, e) in sorted(spans.items())]
    return Alignment(utt_id=utt_id, states=states, phones=phones, words=words, phone_segments=segs,
                     loglike=loglike)

"""Per-utterance training graphs (transcript → lexicon phones → HMM states) as k2 FSAs.

The graph of an utterance is epsilon-free, so every arc consumes one frame in
``k2.intersect_dense``:

* state 0 is the start state; every emitting HMM state of every phone occurrence ("unit") is one
  FSA state, entered by an arc labelled ``pdf + 1`` and carrying a self-loop with the same label;
* every pronunciation of a word is a parallel chain of units (Kaldi's L without pronunciation
  probabilities, as ``lexicon.txt`` has none: every alternative costs 0). The alternatives of a
  word are entered from the same states (the ends of the previous word's alternatives, or of the
  optional silence before it) and their last states all lead to what may follow the word, so
  they join at word boundaries: a graph has one chain per pronunciation, not one per
  combination (a boundary between words of K and K' pronunciations has K·(K' + 1) entry
  arcs with optional silence, K·K' without);
* an optional silence unit (probability ``topo.sil_prob``) sits before the first word, between
  words and after the last word; skipping it costs ``log(1 - sil_prob)``, taking it ``log(sil_prob)``;
* arcs into the final state carry label -1 (k2's convention).

Each arc also carries, for the frame it emits: ``phone_ids`` (phones.txt id), ``word_ids``
(0-based word position in the transcript, -1 for silence) and ``seg_ids`` (index of the phone
occurrence among the graph's units, unique per unit, so repeated phones stay distinguishable;
increasing along every path, not necessarily by one when a word has several pronunciations).
All three are -1 on final arcs. ``k2.intersect_dense`` and ``k2.shortest_path`` carry these
attributes to the best path, which therefore yields frame-level states, phones (of the
pronunciation the path took), phone segments and word boundaries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import k2
import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.align.topo import StateMap

Lexicon = Mapping[str, Union[Sequence[str], Sequence[Sequence[str]]]]
"""word → phones (``["HH", "AH"]``) or word → list of pronunciations (all of them alternatives)."""

Entries = List[Tuple[int, float]]
"""(unit index, or the number of units for the final state; extra log weight) of the units
that may be entered at some point of the graph."""

FINAL_LABEL = -1


@dataclass
class Unit:
    """One phone occurrence of an utterance's graph."""

    phone_id: int
    word_id: int  # -1 for silence
    optional: bool
    pron_id: int = 0  # which of its word's pronunciations (0 for silence)


def _prons(lexicon: Lexicon, word: str, utt: Optional[str]) -> List[Tuple[str, ...]]:
    """``word``'s pronunciations in lexicon order, repeated ones dropped (a duplicate path
    would double the word's weight in the full-sum training)."""
    try:
        entry = lexicon[word]
    except KeyError:
        where = f" (utterance {utt})" if utt is not None else ""
        raise Lm2amError(f"word '{word}'{where} is not in the lexicon; map OOVs to <UNK> "
                         f"before building alignment graphs") from None
    prons = [entry] if len(entry) == 0 or isinstance(entry[0], str) else list(entry)
    if not prons or any(len(p) == 0 for p in prons):
        raise Lm2amError(f"word '{word}' has an empty pronunciation in the lexicon")
    return list(dict.fromkeys(tuple(p) for p in prons))


def utterance_units(words: Sequence[str], lexicon: Lexicon, smap: StateMap,
                    utt: Optional[str] = None) -> List[Unit]:
    """The phone occurrences of an utterance, with optional silences where the topology puts them.

    A word's units are those of its first pronunciation, then its second one's, and so on
    (``pron_id``); :func:`unit_successors` makes them alternatives. An empty transcript becomes
    one obligatory silence (there must be something to align to).
    """
    topo = smap.topo
    use_sil = topo.optional_silence and smap.sil_phone >= 0
    units: List[Unit] = []
    for w, word in enumerate(words):
        if use_sil:
            units.append(Unit(smap.sil_phone, -1, True))
        for r, pron in enumerate(_prons(lexicon, word, utt)):
            units.extend(Unit(smap.phone_id(p), w, False, r) for p in pron)
    if use_sil:
        units.append(Unit(smap.sil_phone, -1, True))
    if not words:
        if smap.sil_phone < 0:
            raise Lm2amError(f"utterance {utt} has an empty transcript and the phone table has "
                             f"no silence phone to align it to")
        units = [Unit(smap.sil_phone, -1, False)]
    return units


def graph_arcs(units: Sequence[Unit], smap: StateMap) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arcs of the training graph of ``units``.

    Returns:
        ``(arcs, scores, attrs)``: int32 [A, 3] (src, dst, label), float32 [A] (log weights) and
        int32 [A, 3] (phone_ids, word_ids, seg_ids), sorted by (src, label).
    """
    topo = smap.topo
    loop, fwd = topo.loop_score, topo.forward_score
    nst = [smap.num_states(u.phone_id) for u in units]
    first = np.concatenate([[1], 1 + np.cumsum(nst)]).astype(np.int64)  # FSA state of unit k's state 0
    final = int(first[-1])
    M = len(units)
    start, follow = unit_successors(units, math.log(topo.sil_prob), math.log1p(-topo.sil_prob))

    src: List[int] = []
    dst: List[int] = []
    lab: List[int] = []
    sc: List[float] = []
    unit_of: List[int] = []  # unit whose frame the arc emits (M for final)

    def enter(from_state: int, entries: Entries, base: float) -> None:
        for m, s in entries:
            src.append(from_state)
            unit_of.append(m)
            sc.append(base + s)
            if m == M:
                dst.append(final)
                lab.append(FINAL_LABEL)
            else:
                dst.append(int(first[m]))
                lab.append(smap.pdf(units[m].phone_id, 0) + 1)

    enter(0, start, 0.0)
    for k, u in enumerate(units):
        for j in range(nst[k]):
            s = int(first[k]) + j
            label = smap.pdf(u.phone_id, j) + 1
            src.append(s), dst.append(s), lab.append(label), sc.append(loop), unit_of.append(k)
            if j + 1 < nst[k]:
                src.append(s), dst.append(s + 1), lab.append(label + 1), sc.append(fwd)
                unit_of.append(k)
            else:
                enter(s, follow[k], fwd)

    return _sorted_arcs(units, src, dst, lab, sc, unit_of)


def _slots(units: Sequence[Unit]) -> List[List[Tuple[int, int]]]:
    """The units grouped into slots, in order: a silence, or one word's pronunciations. Each
    slot is a list of alternatives, each the (first, last) unit index of one chain."""
    slots: List[List[Tuple[int, int]]] = []
    for k, u in enumerate(units):
        prev = units[k - 1] if k else None
        if prev is None or u.word_id < 0 or u.word_id != prev.word_id:
            slots.append([(k, k)])
        elif u.pron_id != prev.pron_id:
            slots[-1].append((k, k))
        else:
            slots[-1][-1] = (slots[-1][-1][0], k)
    return slots


def unit_successors(units: Sequence[Unit], log_sil: float, log_nosil: float
                    ) -> Tuple[Entries, List[Entries]]:
    """``(start, follow)``: the units entered from the start state, and ``follow[k]`` those
    entered on leaving unit ``k`` (``len(units)`` = the final state), with their extra log
    weight: the next phone of the same pronunciation, else every alternative of the next word,
    preceded by an optional silence (``log_sil``) that may be skipped (``log_nosil``)."""
    M = len(units)
    nxt: Entries = [(M, 0.0)]  # what may be entered before the slot being looked at
    follow: List[Entries] = [[] for _ in range(M)]
    for slot in reversed(_slots(units)):
        for first, last in slot:
            for k in range(first, last):
                follow[k] = [(k + 1, 0.0)]
            follow[last] = nxt
        head = slot[0][0]
        if units[head].optional:
            nxt = [(head, log_sil)] + [(m, s + log_nosil) for m, s in nxt]
        else:
            nxt = [(first, 0.0) for first, _ in slot]
    return nxt, follow


def min_frames(words: Sequence[str], lexicon: Lexicon, smap: StateMap) -> int:
    """Fewest frames any path through the utterance's graph needs (one per HMM state of the
    shortest pronunciations, skipping every optional silence)."""
    units = utterance_units(words, lexicon, smap)
    start, follow = unit_successors(units, 0.0, 0.0)
    need = [0] * (len(units) + 1)  # fewest frames from entering unit k to the end
    for k in range(len(units) - 1, -1, -1):
        need[k] = smap.num_states(units[k].phone_id) + min(need[m] for m, _ in follow[k])
    return min(need[m] for m, _ in start)


def _sorted_arcs(units: Sequence[Unit], src: List[int], dst: List[int], lab: List[int],
                 sc: List[float], unit_of: List[int]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arc lists as ``graph_arcs`` returns them: arrays with the phone/word/segment
    attributes of the emitting unit (``unit_of``; ``len(units)`` = final), sorted."""
    M = len(units)
    arcs = np.stack([np.asarray(src), np.asarray(dst), np.asarray(lab)], axis=1).astype(np.int32)
    scores = np.asarray(sc, dtype=np.float32)
    uo = np.asarray(unit_of)
    phone = np.asarray([u.phone_id for u in units] + [-1], dtype=np.int32)[uo]
    word = np.asarray([u.word_id for u in units] + [-1], dtype=np.int32)[uo]
    seg = np.where(uo == M, -1, uo).astype(np.int32)
    # k2 wants arcs grouped by source state; within a state sort by label (final label last,
    # as k2.arc_sort does: labels compare as unsigned).
    order = np.lexsort((arcs[:, 2].astype(np.uint32), arcs[:, 0]))
    return arcs[order], scores[order], np.stack([phone, word, seg], axis=1)[order]


def build_graph(words: Sequence[str], lexicon: Lexicon, smap: StateMap,
                utt: Optional[str] = None) -> k2.Fsa:
    """Training graph of one transcript (a single k2 Fsa, arc-sorted, on CPU)."""
    arcs, scores, attrs = graph_arcs(utterance_units(words, lexicon, smap, utt), smap)
    t = torch.from_numpy(np.concatenate([arcs, scores.view(np.int32)[:, None]], axis=1).copy())
    fsa = k2.Fsa(t)
    fsa.phone_ids = torch.from_numpy(attrs[:, 0].copy())
    fsa.word_ids = torch.from_numpy(attrs[:, 1].copy())
    fsa.seg_ids = torch.from_numpy(attrs[:, 2].copy())
    return fsa


def compile_graphs(texts: Sequence[Sequence[str]], lexicon: Lexicon, smap: StateMap,
                   utt_ids: Optional[Sequence[str]] = None,
                   device: Union[str, torch.device] = "cpu") -> k2.Fsa:
    """Training graphs of a batch of transcripts as one arc-sorted k2 FsaVec on ``device``."""
    graphs = [build_graph(words, lexicon, smap, utt_ids[i] if utt_ids is not None else None)
              for i, words in enumerate(texts)]
    return k2.arc_sort(k2.create_fsa_vec(graphs)).to(device)

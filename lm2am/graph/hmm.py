"""H: the HMM side of the graph. Kaldi's ``HmmTopology`` and ``TransitionModel`` for the tree,
their lookup tables, ``GetHTransducer`` (no self-loops) and ``add-self-loops --reorder=true``
(see :mod:`lm2am.graph`, steps 5 and 6)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from lm2am.align.topo import HmmTopo
from lm2am.errors import Lm2amError
from lm2am.graph.fst import k2_from_arrays, parse_fst
from lm2am.kaldi import kaldi_wheels
from lm2am.tree import ContextTree

__all__ = ["num_states_per_phone", "make_hmm_topology", "make_transition_model", "TransitionTables",
           "transition_tables", "make_h_transducer", "add_self_loops"]


def num_states_per_phone(tree: ContextTree, topo: HmmTopo) -> Dict[int, int]:
    """Per phone of the tree: its HMM state count, checked against ``topo``."""
    out: Dict[int, int] = {}
    for ps, _ in tree.roots:
        for p in ps:
            n = tree.num_states.get(p)
            want = topo.sil_num_states if tree.phones[p] in topo.silence_phones else topo.num_states
            if n is None:
                n = want
            if n != want:
                raise Lm2amError(f"the tree gives phone {tree.phones[p]} {n} HMM states but the topology "
                                 f"(topo.num_states/sil_num_states) says {want}; rebuild the tree or fix "
                                 "the topo section")
            out[p] = n
    return out


def make_hmm_topology(tree: ContextTree, topo: HmmTopo):
    """Kaldi ``HmmTopology`` matching :class:`HmmTopo` for every phone of ``tree``: states
    ``0..n-1`` emit pdf-class ``s`` (= the tree's state index), each with a self-loop and a
    forward transition; state ``n`` is the final non-emitting state."""
    khg, _, _ = kaldi_wheels()
    nstates = num_states_per_phone(tree, topo)
    loop = 0.5 if topo.self_loop_prob is None else topo.self_loop_prob
    by_n: Dict[int, List[int]] = {}
    for p, n in sorted(nstates.items()):
        by_n.setdefault(n, []).append(p)
    parts = ["<Topology>"]
    for n, phones in sorted(by_n.items()):
        parts += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, phones)), "</ForPhones>"]
        for s in range(n):
            parts.append(f"<State> {s} <PdfClass> {s} <Transition> {s} {loop:.6g} "
                         f"<Transition> {s + 1} {1 - loop:.6g} </State>")
        parts += [f"<State> {n} </State>", "</TopologyEntry>"]
    parts.append("</Topology>")
    t = khg.HmmTopology()
    t.read("\n".join(parts) + "\n")
    return t


def make_transition_model(tree: ContextTree, topo: HmmTopo):
    """``(TransitionModel, ContextDependency)`` for ``tree`` and ``topo``; the model's pdf-ids are
    the tree's senone ids."""
    khg, _, _ = kaldi_wheels()
    ctx = tree.to_kaldi_context_dependency()
    tm = khg.TransitionModel(ctx, make_hmm_topology(tree, topo))
    if tm.num_pdfs != tree.num_leaves:
        raise Lm2amError(f"the transition model has {tm.num_pdfs} pdfs but the tree {tree.num_leaves} "
                         "senones; the tree file is inconsistent, rebuild it")
    return tm, ctx


_TUPLE_RE = re.compile(r"phone=(-?\d+),\s*hmm_state=(-?\d+),\s*forward_pdf=(-?\d+),\s*self_loop_pdf=(-?\d+)")


@dataclass
class TransitionTables:
    """A Kaldi ``TransitionModel`` as lookup arrays (index 0 = no transition-id / no state).

    Transition-state ``ts`` (1-based) = one ``(phone, hmm_state, pdf)``; each has a self-loop
    transition-id and a forward one (our topology has exactly these two transitions).
    """

    tid2pdf: np.ndarray  # [num_tids + 1]
    tid2phone: np.ndarray  # [num_tids + 1]
    tid2ts: np.ndarray  # [num_tids + 1] transition-state of each transition-id
    tid_is_loop: np.ndarray  # [num_tids + 1] bool
    ts_forward: np.ndarray  # [num_ts + 1] forward transition-id of each transition-state
    ts_loop: np.ndarray  # [num_ts + 1] self-loop transition-id (0: none)
    ts_hmm_state: np.ndarray  # [num_ts + 1]
    ts_of: Dict[Tuple[int, int, int], int]  # (phone, hmm_state, pdf) -> transition-state

    @property
    def num_tids(self) -> int:
        return int(self.tid2pdf.size - 1)


def transition_tables(tm) -> TransitionTables:
    """Read the lookups :func:`~lm2am.graph.hclg.build_hclg` needs out of a ``kaldi_hmm_gmm.TransitionModel``."""
    n = int(tm.num_transition_ids)
    tid2pdf = np.asarray(tm.transition_id_to_pdf_array(), np.int32)
    tid2phone = np.zeros(n + 1, np.int32)
    tid2ts = np.asarray(tm.id2state, np.int32)
    loop = np.zeros(n + 1, bool)
    for t in range(1, n + 1):
        tid2phone[t] = tm.transition_id_to_phone(t)
        loop[t] = tm.is_self_loop(t)
    tuples = tm.tuples
    nts = len(tuples)
    fwd = np.zeros(nts + 1, np.int32)
    slp = np.zeros(nts + 1, np.int32)
    hs = np.zeros(nts + 1, np.int32)
    ts_of: Dict[Tuple[int, int, int], int] = {}
    for i, tup in enumerate(tuples, 1):
        m = _TUPLE_RE.search(str(tup))
        if m is None:
            raise RuntimeError(f"cannot read a TransitionModel tuple: {tup}")
        phone, state, fpdf, _ = (int(x) for x in m.groups())
        hs[i] = state
        ts_of[(phone, state, fpdf)] = i
    for t in range(1, n + 1):
        if loop[t]:
            slp[tid2ts[t]] = t
        else:
            fwd[tid2ts[t]] = t
    if (fwd[1:] == 0).any():
        raise RuntimeError("a transition-state has no forward transition; unexpected topology")
    return TransitionTables(tid2pdf=tid2pdf, tid2phone=tid2phone, tid2ts=tid2ts, tid_is_loop=loop,
                            ts_forward=fwd, ts_loop=slp, ts_hmm_state=hs, ts_of=ts_of)


def make_h_transducer(ilabels: Sequence[Sequence[int]], tree: ContextTree, tables: TransitionTables,
                      num_states: Mapping[int, int]):
    """Kaldi's ``GetHTransducer`` (without self-loops) for our topology: ``(Ha, disambig_tids)``.

    Ha maps forward transition-ids to CLG's input labels (indexes into ``ilabels``, the context
    windows ``[left, centre, right]`` from ``compose_context``): one chain of ``n`` arcs per
    window (the window's label on the first arc) from and back to the start state, which is
    final; a disambiguation window ``[-p]`` (or ``[0]``, Kaldi's ``#-1``) becomes a self-loop with
    a new id above the transition-ids (returned, so they can be removed after determinization). Pdfs come from
    ``tree.lookup`` (the same senones as the tree's Kaldi ``ContextDependency``). Arcs are
    unweighted: each HMM state has one forward transition, whose probability given "not a
    self-loop" is 1 (Kaldi's ``GetTransitionLogProbIgnoringSelfLoops``), so Kaldi's
    ``transition_scale`` would change nothing here.
    """
    _, kaldifst, _ = kaldi_wheels()
    lines: List[str] = []
    disambig_tids: List[int] = []
    nxt = 1
    windows = [(j, w) for j, w in enumerate(ilabels) if len(w)]
    tri = [(j, w) for j, w in windows if len(w) == 3]
    other = [(j, w) for j, w in windows if len(w) != 3]
    for j, w in other:
        if len(w) == 1 and w[0] <= 0:  # -p: disambiguation phone p; 0: Kaldi's "#-1" (C's start)
            t = tables.num_tids + 1 + len(disambig_tids)
            disambig_tids.append(t)
            lines.append(f"0 0 {t} {j}")
        else:
            raise Lm2amError(f"context window {list(w)} is neither a triphone nor a disambiguation symbol")
    if tri:
        arr = np.asarray([w for _, w in tri], np.int64)
        if (arr[:, 1] <= 0).any():
            raise Lm2amError("a context window has no centre phone; the lang's phones.txt and the tree disagree")
        max_n = max(num_states.values())
        pdfs = np.stack([tree.lookup_array(arr[:, 0], arr[:, 1], arr[:, 2], np.full(len(tri), s))
                         for s in range(max_n)], axis=1)
        for (j, w), row in zip(tri, pdfs):
            c = int(w[1])
            n = num_states[c]
            cur = 0
            for s in range(n):
                ts = tables.ts_of.get((c, s, int(row[s])))
                if ts is None:
                    raise Lm2amError(f"no transition-state for phone {tree.phones[c]} state {s} pdf {row[s]}")
                dst = 0 if s == n - 1 else nxt
                lines.append(f"{cur} {dst} {tables.ts_forward[ts]} {j if s == 0 else 0}")
                if dst:
                    cur, nxt = nxt, nxt + 1
    lines.append("0")
    Ha = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False, keep_state_numbering=True)
    return Ha, disambig_tids



def add_self_loops(hclga, tables: TransitionTables, disambig_tids: Sequence[int], self_loop_scale: float,
                   loop_prob: float):
    """Kaldi's ``add-self-loops --reorder=true`` for our topology, on HCLGa (forward
    transition-ids in, words out); returns a k2 Fsa with transition-id labels (0 = epsilon,
    -1 = final) and word ``aux_labels``.

    The disambiguation ids become epsilon first (``fstrmsymbols``). Then every state gets a
    single "preceding transition-state" (Kaldi's ``MakePrecedingInputSymbolsSame``: a state
    entered through arcs of several transition-states is split, one copy per transition-state,
    each copy keeping all outgoing arcs), and a copy entered through transition-state ``ts``
    gets the self-loop of ``ts`` (weight ``scale * log p``) while its outgoing arcs and final
    weight get ``scale * log(1 - p)``. So each emitting HMM state emits its pdf one or more
    times, exactly as the topology says.
    """
    src, dst, lab, aux, score, ns = parse_fst(hclga)
    if len(disambig_tids):
        lab = np.where(np.isin(lab, np.asarray(disambig_tids)), 0, lab)
    if (lab > tables.num_tids).any():
        raise RuntimeError("HCLGa has input labels above the transition-ids that are not disambiguation ids")
    cls = np.where(lab > 0, tables.tid2ts[np.clip(lab, 0, tables.num_tids)], 0).astype(np.int64)
    K = int(cls.max()) + 1 if cls.size else 1
    # copies = unique (state, class) over the arcs' destinations, plus (start, 0)
    keys = np.unique(np.concatenate([dst * K + cls, [0]]))
    copy_state, copy_cls = keys // K, keys % K
    first = np.searchsorted(copy_state, np.arange(ns))
    ncopies = np.bincount(copy_state, minlength=ns)
    if (ncopies == 0).any():
        raise RuntimeError("HCLGa has unreachable states; connect it first")
    # replicate each arc once per copy of its source state
    reps = ncopies[src]
    arc_idx = np.repeat(np.arange(src.size), reps)
    within = np.arange(arc_idx.size) - np.repeat(np.cumsum(reps) - reps, reps)
    new_src = first[src[arc_idx]] + within
    new_dst = np.searchsorted(keys, dst[arc_idx] * K + cls[arc_idx])
    new_lab, new_aux = lab[arc_idx], aux[arc_idx]
    log_loop = self_loop_scale * math.log(loop_prob) if self_loop_scale else 0.0
    log_leave = self_loop_scale * math.log1p(-loop_prob) if self_loop_scale else 0.0
    new_score = score[arc_idx] + np.where(copy_cls[new_src] > 0, log_leave, 0.0)
    # self-loops on copies entered through an emitting transition
    with_loop = np.flatnonzero((copy_cls > 0) & (tables.ts_loop[np.minimum(copy_cls, tables.ts_loop.size - 1)] > 0))
    loop_lab = tables.ts_loop[copy_cls[with_loop]]
    fsa = k2_from_arrays(np.concatenate([new_src, with_loop]), np.concatenate([new_dst, with_loop]),
                          np.concatenate([new_lab, loop_lab]), np.concatenate([new_aux, np.zeros_like(with_loop)]),
                          np.concatenate([new_score, np.full(with_loop.size, log_loop)]), keys.size)
    return fsa

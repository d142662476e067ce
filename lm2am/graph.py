"""Decoding graph for the hybrid AM: Kaldi's ``mkgraph.sh`` in Python, then a k2 copy of it.

Steps (Kaldi's algorithms from the ``kaldifst`` / ``kaldilm`` / ``kaldi-hmm-gmm`` wheels)
------------------------------------------------------------------------------------------
1. ``G``: back-off n-gram (:mod:`lm2am.ngram`, Kneser-Ney) → ARPA → ``kaldilm.arpa2fst`` with
   ``#0`` on the back-off arcs.
2. ``L_disambig``: the lexicon with optional silence (probability ``HmmTopo.sil_prob`` at the
   start and after every word; Kaldi's ``make_lexicon_fst.py --sil-prob`` layout, silence
   followed by the extra disambiguation symbol ``#N`` when phones.txt has one that the lexicon
   does not use), the ``#1..`` symbols of ``lexicon_disambig.txt`` and a ``#0:#0`` self-loop
   so G's back-off symbol passes through (``fstaddselfloops``).
3. ``LG = determinize_star(L ∘ G)`` in the log semiring, then ``minimize_encoded``.
4. ``CLG = compose_context(LG)``: triphone context (N=3, P=1) with Kaldi's edge convention (the
   context beyond an utterance edge is phone 0), i.e. the convention of :mod:`lm2am.tree`,
   whose lookup and Kaldi export treat 0 exactly like the silence phone.
5. ``Ha``: Kaldi's ``GetHTransducer`` (no self-loops), written here in Python
   (:func:`make_h_transducer`): transition-ids come from a real Kaldi ``TransitionModel`` built
   from the tree's ``ContextDependency`` (:meth:`ContextTree.to_kaldi_context_dependency`) and
   an ``HmmTopology`` equal to :class:`~lm2am.align.topo.HmmTopo` (left-to-right, a self-loop on
   every emitting state, ``num_states`` per phone, ``sil_num_states`` for silence phones; the
   tree's own per-phone state counts must agree); pdfs of each context window come from the
   tree. Why not ``kaldi_hmm_gmm.get_h_transducer`` / ``add_self_loops``: kaldi-hmm-gmm 1.1.4
   was built against an older OpenFst than kaldifst 1.8.3 (``ArcTpl<W>`` vs
   ``ArcTpl<W, int, int>``), so its FST-typed functions cannot take or return kaldifst FSTs
   ("Unregistered type"); everything that does not touch an FST (TransitionModel, tree) is used.
6. ``HCLGa = determinize_star(Ha ∘ CLG)`` + ``minimize_encoded``; then the disambiguation ids
   become epsilon (``fstrmsymbols``) and the self-loops are added as Kaldi's
   ``add-self-loops --reorder=true`` does (:func:`add_self_loops`, in numpy). ``HCLG.fst`` is the
   result as OpenFst binary: input = transition-ids (0 = epsilon), output = word ids.

Transition weights: with ``HmmTopo.self_loop_prob = None`` (durations left to the AM, as the
aligner does) the HMM adds no weights (self-loop scale 0); otherwise self-loops get
``scale * log p`` and leaving a state ``scale * log(1 - p)``, Kaldi's ``--self-loop-scale``
(default 0.1).

The k2 graph and THE label mapping (transition-id → pdf-id → k2 label)
----------------------------------------------------------------------
``HCLG.pt`` (``k2.Fsa.as_dict()``) is the graph the k2 decoder uses:

* ``label = pdf_id + 1`` where ``pdf_id = TransitionModel.transition_id_to_pdf_array()[tid]``
  (saved as ``tid2pdf.npy``); pdf-ids are the tree's senone ids (leaf ids of
  :class:`~lm2am.tree.ContextTree`), i.e. the column of the AM's main output. Label 0 is k2's
  epsilon and -1 marks final arcs, hence the +1. Arcs that consume no frame (transition-id 0:
  former disambiguation symbols) are removed with ``k2.remove_epsilon``, so every arc consumes
  exactly one frame (tested: every label equals ``tid2pdf[tid] + 1``).
* ``aux_labels`` = word ids of ``words.txt`` (ragged after epsilon removal: 0 or 1 word per arc).
* ``tids`` = the transition-id of each arc (phone alignments and CTM word times).
* The matching dense input has ``num_pdfs + 1`` columns: column 0 unused, column ``p + 1`` =
  scaled log-likelihood of pdf ``p`` (:func:`lm2am.decode.decode` does this). The same ``+1``
  is what Kaldi's ``DecodableCtc`` expects (docs/platform.md), should a Kaldi decoder be used.

The graph directory (``<lang>/graph``) holds ``HCLG.fst``, ``HCLG.pt``, ``G.arpa``,
``words.txt``, ``phones.txt``, ``lexicon.txt``, ``tree`` (Kaldi binary), ``trans_model.pkl``
(pickled ``TransitionModel``), ``tid2pdf.npy``, ``tid2phone.npy``, ``tid_starts_phone.npy`` and
``graph_info.json`` (sizes of every intermediate FST, time per step, total build time).

Size guard: after G is built and before anything is composed, :func:`estimate_hclg_arcs`
predicts the HCLG arc count from G's; above ``GraphConfig.max_hclg_arcs`` the build stops with
a message that says how to shrink G (higher ``lm.min_counts``, lower ``lm.order``).
``determinize_star`` also gets a state limit, so an unexpected blow-up fails cleanly instead of
eating the machine's memory.
"""
from __future__ import annotations

import json
import logging
import math
import pickle
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.align.topo import HmmTopo
from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, atomic_write_text
from lm2am.ngram import NgramConfig, arpa_to_fst, estimate_ngram_from_file, write_arpa
from lm2am.tree import ContextTree

from lm2am.kaldi import kaldi_wheels

log = logging.getLogger(__name__)

__all__ = ["GraphConfig", "Lang", "read_lang", "make_lexicon_fst", "make_hmm_topology",
           "make_transition_model", "TransitionTables", "transition_tables", "make_h_transducer",
           "add_self_loops", "k2_decoding_graph", "estimate_hclg_arcs", "build_hclg", "make_graph",
           "DecodingGraph", "load_graph", "fst_size"]


def _kaldi():
    return kaldi_wheels()[:2]


@dataclass
class GraphConfig:
    """The ``graph:`` section of a recipe config.

    Attributes:
        lm: the n-gram estimated from the LM text pool (order, discounting, cut-offs).
        self_loop_scale: scale of the HMM transition log-probs added with the self-loops
            (Kaldi's ``--self-loop-scale``); ``None``: 0.1 (Kaldi's mkgraph for neural AMs), or 0
            when ``HmmTopo.self_loop_prob`` is None (unweighted HMM, as in training). With one
            forward transition per state, Kaldi's ``--transition-scale`` has no effect, so there
            is no such option.
        max_hclg_arcs: refuse to build when the estimated HCLG (:func:`estimate_hclg_arcs`) has
            more arcs than this (building takes ~400 bytes of memory per arc: 20M ~ 8 GB).
        max_det_states: abort a determinization that reaches this many states (0 = no limit).
    """

    lm: NgramConfig = field(default_factory=NgramConfig)
    self_loop_scale: Optional[float] = None
    max_hclg_arcs: int = 20_000_000
    max_det_states: int = 50_000_000

    def __post_init__(self) -> None:
        if isinstance(self.lm, Mapping):
            self.lm = NgramConfig(**self.lm)
        if self.max_hclg_arcs < 1:
            raise ValueError(f"max_hclg_arcs must be >= 1, got {self.max_hclg_arcs}")
        if self.max_det_states < 0:
            raise ValueError(f"max_det_states must be >= 0, got {self.max_det_states}")

    def scales(self, topo: HmmTopo) -> float:
        """The self-loop scale after applying the default."""
        if self.self_loop_scale is not None:
            return float(self.self_loop_scale)
        return 0.0 if topo.self_loop_prob is None else 0.1


# ----------------------------------------------------------------------------- lang
@dataclass
class Lang:
    """What the graph needs from a lang dir (ids are those of phones.txt / words.txt)."""

    phones: List[str]  # id -> symbol
    words: List[str]  # id -> symbol
    lexicon: List[Tuple[str, Tuple[str, ...]]]  # lexicon_disambig.txt entries
    disambig_phones: List[int]  # ids of #0, #1, ...
    sil_phone: Optional[int]
    sil_disambig: Optional[int]  # the extra #N after optional silence, if any

    @property
    def phone_id(self) -> Dict[str, int]:
        return {p: i for i, p in enumerate(self.phones) if p is not None}

    @property
    def word_id(self) -> Dict[str, int]:
        return {w: i for i, w in enumerate(self.words) if w is not None}


def _symbol_list(path: Path) -> List[str]:
    from lm2am.lang import read_symbols

    table = read_symbols(path)
    out: List[Optional[str]] = [None] * (max(table.values()) + 1)
    for s, i in table.items():
        out[i] = s
    return out  # type: ignore[return-value]


def read_lang(lang_dir: Union[Path, str], sil_phone: str = "SIL") -> Lang:
    """Read phones.txt, words.txt and lexicon_disambig.txt of a lang dir (see lm2am.lang)."""
    lang_dir = Path(lang_dir)
    phones = _symbol_list(lang_dir / "phones.txt")
    words = _symbol_list(lang_dir / "words.txt")
    lex_path = lang_dir / "lexicon_disambig.txt"
    if not lex_path.is_file():
        raise Lm2amError(f"{lex_path} is missing; run the lang stage (steps/prepare_lang.py)")
    pid = {p: i for i, p in enumerate(phones) if p is not None}
    wid = {w: i for i, w in enumerate(words) if w is not None}
    for s in ("#0", "<s>", "</s>"):
        if s not in wid:
            raise Lm2amError(f"{lang_dir}/words.txt lacks {s}; rerun the lang stage")
    lexicon = []
    used_disambig = set()
    for n, line in enumerate(lex_path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 2:
            raise Lm2amError(f"{lex_path} line {n}: expected 'WORD P1 P2 ...', got {line!r}")
        if f[0] not in wid:
            raise Lm2amError(f"{lex_path} line {n}: word {f[0]} is not in words.txt; rerun the lang stage")
        for p in f[1:]:
            if p not in pid:
                raise Lm2amError(f"{lex_path} line {n}: phone {p} is not in phones.txt; rerun the lang stage")
            if p.startswith("#"):
                used_disambig.add(p)
        lexicon.append((f[0], tuple(f[1:])))
    disambig = sorted((i for p, i in pid.items() if p.startswith("#")))
    if "#0" not in pid:
        raise Lm2amError(f"{lang_dir}/phones.txt lacks #0; rerun the lang stage")
    sil = pid.get(sil_phone)
    top = max(disambig, key=lambda i: int(phones[i][1:]))
    sil_dis = top if phones[top] != "#0" and phones[top] not in used_disambig else None
    return Lang(phones=phones, words=words, lexicon=lexicon, disambig_phones=disambig,
                sil_phone=sil, sil_disambig=sil_dis)


# ----------------------------------------------------------------------------- FST helpers
def fst_size(fst) -> Tuple[int, int]:
    """(states, arcs) of a kaldifst FST."""
    return int(fst.num_states), int(sum(fst.num_arcs(s) for s in range(fst.num_states)))


def _k2_size(fsa) -> Tuple[int, int]:
    """(states, arcs) of a k2 FSA counted as OpenFst would: without k2's super-final state and
    the arcs into it (OpenFst's final weights)."""
    return int(fsa.shape[0]) - 1, int((fsa.labels != -1).sum())


def _k2_from_arrays(src, dst, labels, aux, scores, num_states: int):
    """A k2 Fsa from arc arrays (any order; stably sorted by source state here)."""
    import k2
    import torch

    order = np.argsort(src, kind="stable")
    arcs = torch.empty((order.size, 4), dtype=torch.int32)
    arcs[:, 0] = torch.as_tensor(src[order], dtype=torch.int32)
    arcs[:, 1] = torch.as_tensor(dst[order], dtype=torch.int32)
    arcs[:, 2] = torch.as_tensor(labels[order], dtype=torch.int32)
    arcs[:, 3] = torch.as_tensor(scores[order], dtype=torch.float32).view(torch.int32)
    fsa = k2.Fsa(arcs, aux_labels=torch.as_tensor(aux[order], dtype=torch.int32))
    assert fsa.shape[0] == num_states, (fsa.shape, num_states)
    return fsa


# ----------------------------------------------------------------------------- L
def make_lexicon_fst(lang: Lang, sil_prob: float = 0.5, optional_silence: bool = True):
    """``L_disambig`` (phones → words) as a kaldifst FST, olabel-sorted (see the module docstring).

    Layout as Kaldi's ``make_lexicon_fst.py``: state 0 = start, 1 = loop (word boundary, final),
    2 = "after silence-eligible point"; a word ends with ``-log(1 - sil_prob)`` into the loop
    state or ``-log(sil_prob)`` into the silence state, which goes back to the loop through
    ``SIL`` (and the silence disambiguation symbol when there is one).
    """
    _, kaldifst = _kaldi()
    pid, wid = lang.phone_id, lang.word_id
    eps = 0
    lines: List[str] = []
    use_sil = optional_silence and lang.sil_phone is not None
    if use_sil:
        if not 0.0 < sil_prob < 1.0:
            raise Lm2amError(f"sil_prob must be in (0, 1), got {sil_prob}")
        sil_cost, nosil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
    else:
        sil_cost = nosil_cost = 0.0
    start, loop, sil_state = 0, 1, 2
    nxt = 3
    if use_sil:
        lines.append(f"{start} {loop} {eps} {eps} {nosil_cost}")
        lines.append(f"{start} {sil_state} {eps} {eps} {sil_cost}")
        if lang.sil_disambig is None:
            lines.append(f"{sil_state} {loop} {lang.sil_phone} {eps} 0")
        else:
            lines.append(f"{sil_state} {nxt} {lang.sil_phone} {eps} 0")
            lines.append(f"{nxt} {loop} {lang.sil_disambig} {eps} 0")
            nxt += 1
    else:
        lines.append(f"{start} {loop} {eps} {eps} 0")
    for word, pron in lang.lexicon:
        w = wid[word]
        ph = [pid[p] for p in pron]
        cur = loop
        for i, p in enumerate(ph[:-1]):
            lines.append(f"{cur} {nxt} {p} {w if i == 0 else eps} 0")
            cur, nxt = nxt, nxt + 1
        last = ph[-1]
        olab = w if len(ph) == 1 else eps
        if use_sil:
            lines.append(f"{cur} {loop} {last} {olab} {nosil_cost}")
            lines.append(f"{cur} {sil_state} {last} {olab} {sil_cost}")
        else:
            lines.append(f"{cur} {loop} {last} {olab} 0")
    lines.append(f"{loop} 0")
    L = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False, keep_state_numbering=True)
    # G's back-off symbol #0 must pass through L (fstaddselfloops at word-boundary states)
    kaldifst.add_self_loops(L, isyms=[pid["#0"]], osyms=[wid["#0"]])
    kaldifst.arcsort(L, sort_type="olabel")
    return L


# ----------------------------------------------------------------------------- H
def _num_states_per_phone(tree: ContextTree, topo: HmmTopo) -> Dict[int, int]:
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
    khg, _ = _kaldi()
    nstates = _num_states_per_phone(tree, topo)
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
    khg, _ = _kaldi()
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
    """Read the lookups :func:`build_hclg` needs out of a ``kaldi_hmm_gmm.TransitionModel``."""
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
    _, kaldifst = _kaldi()
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


def _parse_fst(fst):
    """kaldifst FST -> arc arrays (src, dst, label, aux, score) via k2's C++ text reader; final
    weights become arcs labelled -1 into one super-final state (the last state), as in k2."""
    import k2

    f = k2.Fsa.from_openfst(fst.to_str(), acceptor=False)
    a = f.arcs.values().numpy()
    return (a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
            f.aux_labels.numpy().astype(np.int64), f.scores.detach().numpy().astype(np.float64),
            int(f.shape[0]))


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
    src, dst, lab, aux, score, ns = _parse_fst(hclga)
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
    fsa = _k2_from_arrays(np.concatenate([new_src, with_loop]), np.concatenate([new_dst, with_loop]),
                          np.concatenate([new_lab, loop_lab]), np.concatenate([new_aux, np.zeros_like(with_loop)]),
                          np.concatenate([new_score, np.full(with_loop.size, log_loop)]), keys.size)
    return fsa


def k2_decoding_graph(hclg_tids, tid2pdf: np.ndarray):
    """The k2 decoding graph from the transition-id HCLG (see "THE label mapping" above):
    labels ``pdf + 1``, ``aux_labels`` word ids (ragged), ``tids`` transition-ids; epsilon-free,
    connected and arc-sorted."""
    import k2
    import torch

    fsa = hclg_tids.clone()
    tids = fsa.labels.to(torch.int64)
    lut = torch.as_tensor(np.asarray(tid2pdf), dtype=torch.int64) + 1
    emitting = tids > 0
    labels = torch.where(emitting, lut[tids.clamp(min=0)], tids)  # 0 stays epsilon, -1 final
    fsa.labels = labels.to(torch.int32)
    fsa.tids = torch.where(emitting, tids, torch.zeros_like(tids)).to(torch.int32)
    fsa = k2.remove_epsilon(fsa)
    fsa = k2.connect(fsa)
    fsa = k2.arc_sort(fsa)
    # epsilon removal made `tids` ragged; every emitting arc kept exactly one, final arcs none
    if isinstance(fsa.tids, k2.RaggedTensor):
        r = fsa.tids
        if r.numel() and int((r.shape.row_splits(1)[1:] - r.shape.row_splits(1)[:-1]).max()) > 1:
            raise RuntimeError("an arc of the epsilon-free graph carries two transition-ids")
        fsa.tids = r.pad(mode="constant", padding_value=0)[:, 0] if r.dim0 and r.numel() else \
            torch.zeros(r.dim0, dtype=torch.int32)
    return fsa


# ----------------------------------------------------------------------------- size estimate
def estimate_hclg_arcs(g_arcs: int) -> int:
    """Rough HCLG arc count from G's, before anything is composed: ``10 * g_arcs``.

    Measured on the demo lang (47k words, 50 phones, 3-state HMMs, 300 senones): a bigram G
    with 204k arcs gave 1.23M HCLG arcs (6.0 per G arc), a pruned trigram with 373k gave 2.30M
    (6.2), the full trigram with 1.66M gave 16.0M (9.6, in 7.3 min and 6.4 GB peak memory on
    one core). So the estimate errs on the high side by up to ~1.7x; peak memory while
    building is about 400 bytes per HCLG arc.
    """
    return int(10 * g_arcs)


# ----------------------------------------------------------------------------- HCLG
def _det(fst, what: str, max_states: int) -> None:
    _, kaldifst = _kaldi()
    stopped = kaldifst.determinize_star(fst, use_log=True, max_states=max_states if max_states > 0 else -1)
    if stopped:
        raise Lm2amError(f"determinizing {what} reached graph.max_det_states={max_states} states; the "
                         "graph is too big: prune the LM (raise graph.lm.min_counts, lower graph.lm.order) "
                         "or raise graph.max_det_states if the machine has the memory")


def build_hclg(lang: Lang, tree: ContextTree, G, topo: HmmTopo, cfg: Optional[GraphConfig] = None
               ) -> Tuple[object, object, TransitionTables, Dict[str, object]]:
    """Kaldi's mkgraph.sh: returns ``(HCLG, TransitionModel, tables, info)``; HCLG is a k2 Fsa with
    transition-ids as labels (0 = epsilon) and word ids as aux_labels (disambiguation ids
    removed, self-loops added); ``k2.to_str(HCLG, openfst=True)`` is its OpenFst text."""
    khg, kaldifst = _kaldi()
    cfg = cfg or GraphConfig()
    info: Dict[str, object] = {"sizes": {}, "seconds": {}}
    sizes, secs = info["sizes"], info["seconds"]

    def note(name: str, fst, t0: float) -> None:
        s, a = _k2_size(fst) if hasattr(fst, "arcs") else fst_size(fst)
        sizes[name] = {"states": s, "arcs": a}
        secs[name] = round(time.time() - t0, 3)
        log.info("%s: %d states, %d arcs (%.1f s)", name, s, a, secs[name])

    sizes["G"] = dict(zip(("states", "arcs"), fst_size(G)))
    t0 = time.time()
    L = make_lexicon_fst(lang, topo.sil_prob, topo.optional_silence)
    note("L_disambig", L, t0)
    est = estimate_hclg_arcs(sizes["G"]["arcs"])
    info["estimated_hclg_arcs"] = est
    log.info("G: %d states, %d arcs; estimated HCLG: <= ~%d arcs (peak memory <= ~%.1f GB)", sizes["G"]["states"],
             sizes["G"]["arcs"], est, est * 400 / 1e9)
    if est > cfg.max_hclg_arcs:
        raise Lm2amError(f"the decoding graph would have ~{est:,} arcs (G has {sizes['G']['arcs']:,} arcs; "
                         f"~{est * 400 / 1e9:.1f} GB to build), above graph.max_hclg_arcs={cfg.max_hclg_arcs:,}; "
                         "prune the LM (raise graph.lm.min_counts, e.g. [2, 3], or lower graph.lm.order) "
                         "or raise graph.max_hclg_arcs")

    t0 = time.time()
    LG = kaldifst.compose(L, G)
    note("LG_composed", LG, t0)
    t0 = time.time()
    _det(LG, "LG", cfg.max_det_states)
    kaldifst.minimize_encoded(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    note("LG", LG, t0)

    t0 = time.time()
    CLG, ilabels = kaldifst.compose_context(disambig_syms=lang.disambig_phones, context_width=3,
                                            central_position=1, ifst=LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    note("CLG", CLG, t0)
    info["num_context_labels"] = len(ilabels)

    t0 = time.time()
    tm, _ = make_transition_model(tree, topo)
    tables = transition_tables(tm)
    Ha, disambig_tids = make_h_transducer(ilabels, tree, tables, _num_states_per_phone(tree, topo))
    kaldifst.arcsort(Ha, sort_type="olabel")
    note("Ha", Ha, t0)

    t0 = time.time()
    HCLGa = kaldifst.compose(Ha, CLG)
    note("HCLGa_composed", HCLGa, t0)
    t0 = time.time()
    _det(HCLGa, "HCLGa", cfg.max_det_states)
    kaldifst.minimize_encoded(HCLGa)
    note("HCLGa", HCLGa, t0)

    t0 = time.time()
    ss = cfg.scales(topo)
    loop_p = 0.5 if topo.self_loop_prob is None else topo.self_loop_prob
    HCLG = add_self_loops(HCLGa, tables, disambig_tids, ss, loop_p)
    note("HCLG", HCLG, t0)
    info.update(num_pdfs=int(tm.num_pdfs), num_transition_ids=int(tm.num_transition_ids),
                self_loop_scale=ss, self_loop_prob=loop_p, sil_prob=topo.sil_prob,
                optional_silence=topo.optional_silence)
    return HCLG, tm, tables, info


# ----------------------------------------------------------------------------- the stage
def make_graph(lang_dir: Union[Path, str], tree: Union[ContextTree, Path, str], out_dir: Union[Path, str],
               topo: Optional[HmmTopo] = None, cfg: Optional[GraphConfig] = None,
               lm_text: Union[Path, str, None] = None, arpa: Union[Path, str, None] = None) -> Dict[str, object]:
    """Build the whole graph directory (see the module docstring) and return its info dict.

    Give either ``lm_text`` (an n-gram is estimated with ``cfg.lm``) or an existing ``arpa``.
    The directory is written under a temporary name and renamed at the end.
    """
    import k2
    import torch

    _, kaldifst = _kaldi()
    t_start = time.time()
    cfg = cfg or GraphConfig()
    topo = topo or HmmTopo()
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    if (lm_text is None) == (arpa is None):
        raise Lm2amError("make_graph: give exactly one of an LM text (--lm-text) or an ARPA file (--arpa)")
    if not isinstance(tree, ContextTree):
        tree = ContextTree.load(tree)
    opt_sil = lang_dir / "optional_silence.txt"
    sil_name = (opt_sil.read_text().split() or ["SIL"])[0] if opt_sil.is_file() else \
        next(iter(topo.silence_phones), "SIL")
    lang = read_lang(lang_dir, sil_phone=sil_name)
    if tree.phones != [p for p in lang.phones]:
        raise Lm2amError(f"the tree's phone list differs from {lang_dir}/phones.txt; build the tree with "
                         "this lang dir")

    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        info: Dict[str, object] = {"lang_dir": str(lang_dir), "config": asdict(cfg), "topo": asdict(topo)}
        t0 = time.time()
        if lm_text is not None:
            model = estimate_ngram_from_file(lm_text, lang.words, cfg.lm)
            write_arpa(model, tmp / "G.arpa")
            info["lm"] = model.info
            info["lm_text"] = str(lm_text)
        else:
            shutil.copyfile(arpa, tmp / "G.arpa")
            info["arpa"] = str(arpa)
        G = arpa_to_fst(tmp / "G.arpa", lang_dir / "words.txt")
        info["seconds_G"] = round(time.time() - t0, 3)

        HCLG, tm, tables, binfo = build_hclg(lang, tree, G, topo, cfg)
        info.update(binfo)
        t0 = time.time()
        hclg_fst = kaldifst.compile(s=k2.to_str(HCLG, openfst=True), acceptor=False)
        hclg_fst.write(str(tmp / "HCLG.fst"))  # OpenFst binary: transition-ids in, words out
        np.save(tmp / "tid2pdf.npy", tables.tid2pdf)
        np.save(tmp / "tid2phone.npy", tables.tid2phone)
        # frame t starts a phone when its transition-id is a forward one out of HMM state 0
        np.save(tmp / "tid_starts_phone.npy",
                (~tables.tid_is_loop) & (tables.ts_hmm_state[tables.tid2ts] == 0) & (np.arange(tables.num_tids + 1) > 0))
        with open(tmp / "trans_model.pkl", "wb") as f:
            pickle.dump(tm, f)
        tree.to_kaldi_context_dependency().write(True, str(tmp / "tree"))  # Kaldi binary tree file
        fsa = k2_decoding_graph(HCLG, tables.tid2pdf)
        torch.save(fsa.as_dict(), tmp / "HCLG.pt")
        n_states, n_arcs = _k2_size(fsa)
        info["sizes"]["HCLG_k2"] = {"states": n_states, "arcs": n_arcs}
        info["seconds"]["write_and_k2"] = round(time.time() - t0, 3)
        log.info("k2 HCLG (labels = pdf + 1, epsilon-free): %d states, %d arcs (%.1f s)", n_states, n_arcs,
                 time.time() - t0)
        shutil.copyfile(lang_dir / "words.txt", tmp / "words.txt")
        shutil.copyfile(lang_dir / "phones.txt", tmp / "phones.txt")
        if (lang_dir / "lexicon.txt").is_file():
            shutil.copyfile(lang_dir / "lexicon.txt", tmp / "lexicon.txt")  # for word alignments (CTM)
        info["label_mapping"] = ("k2 label = pdf_id + 1 (pdf_id = tree senone id = AM output column; "
                                 "0 = epsilon, -1 = final); HCLG.fst input = Kaldi transition-id")
        info["build_seconds"] = round(time.time() - t_start, 2)
        atomic_write_text(tmp / "graph_info.json", json.dumps(info, indent=1, default=str) + "\n")
    log.info("graph %s: HCLG %d states, %d arcs (k2: %d arcs), %d pdfs; built in %.1f s", out_dir,
             info["sizes"]["HCLG"]["states"], info["sizes"]["HCLG"]["arcs"], n_arcs, info["num_pdfs"],
             info["build_seconds"])
    return info


# ----------------------------------------------------------------------------- loading
@dataclass
class DecodingGraph:
    """A k2 decoding graph with what decoding and word alignment need around it.

    Attributes:
        fsa: k2.Fsa, labels ``pdf + 1``, ragged ``aux_labels`` (word ids), ``tids`` per arc.
        words: word id -> word (words.txt).
        num_pdfs: number of pdfs (senones) the graph expects from the AM.
        tid2phone: transition-id -> phone id.
        tid_starts_phone: transition-id -> whether its frame is the first of a phone.
        phones: phone id -> symbol.
        lexicon: word -> pronunciations (for CTM word boundaries), or None.
        info: graph_info.json.
    """

    fsa: object
    words: List[str]
    num_pdfs: int
    tid2phone: Optional[np.ndarray] = None
    tid_starts_phone: Optional[np.ndarray] = None
    phones: Optional[List[str]] = None
    lexicon: Optional[Dict[str, List[Tuple[str, ...]]]] = None
    info: Dict[str, object] = field(default_factory=dict)

    def to(self, device) -> "DecodingGraph":
        """A copy whose FSA lives on ``device``."""
        return DecodingGraph(self.fsa.to(device), self.words, self.num_pdfs, self.tid2phone,
                             self.tid_starts_phone, self.phones, self.lexicon, self.info)


def load_graph(graph_dir: Union[Path, str], device: str = "cpu") -> DecodingGraph:
    """Load ``HCLG.pt`` + ``words.txt`` (+ info, alignment tables) written by :func:`make_graph`."""
    import k2
    import torch

    graph_dir = Path(graph_dir)
    pt = graph_dir / "HCLG.pt"
    if not pt.is_file():
        raise Lm2amError(f"{pt} does not exist; build the graph first (steps/make_graph.py)")
    fsa = k2.Fsa.from_dict(torch.load(pt, map_location="cpu", weights_only=False)).to(device)
    words = _symbol_list(graph_dir / "words.txt")

    def opt(name: str):
        return np.load(graph_dir / name) if (graph_dir / name).is_file() else None

    info = json.loads((graph_dir / "graph_info.json").read_text()) if (graph_dir / "graph_info.json").is_file() else {}
    phones = _symbol_list(graph_dir / "phones.txt") if (graph_dir / "phones.txt").is_file() else None
    lexicon = None
    if (graph_dir / "lexicon.txt").is_file():
        from lm2am.lang import read_lexicon

        lexicon = read_lexicon(graph_dir)
    num_pdfs = int(info["num_pdfs"]) if "num_pdfs" in info else int(fsa.labels.max())
    return DecodingGraph(fsa=fsa, words=words, num_pdfs=num_pdfs, tid2phone=opt("tid2phone.npy"),
                         tid_starts_phone=opt("tid_starts_phone.npy"), phones=phones, lexicon=lexicon, info=info)

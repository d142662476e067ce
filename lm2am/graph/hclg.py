"""HCLG: Kaldi's ``mkgraph.sh`` (compose, determinize, minimize; see :mod:`lm2am.graph`), the
size guard, the k2 copy of the graph and the stage that writes the graph directory."""
from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.align.topo import HmmTopo
from lm2am.errors import Lm2amError
from lm2am.graph.arpa import arpa_to_fst, write_arpa
from lm2am.graph.fst import fst_size, k2_size
from lm2am.graph.hmm import (TransitionTables, add_self_loops, make_h_transducer, make_transition_model,
                             num_states_per_phone, transition_tables)
from lm2am.graph.lang_dir import Lang, read_lang
from lm2am.graph.lexicon import make_lexicon_fst
from lm2am.graph.lm_text import lm_sentences
from lm2am.graph.ngram import NgramConfig, estimate_ngram
from lm2am.io import atomic_path, atomic_write_text
from lm2am.kaldi import kaldi_wheels
from lm2am.tree import ContextTree
from lm2am.config import check_range

log = logging.getLogger(__name__)

__all__ = ["GraphConfig", "k2_decoding_graph", "estimate_hclg_arcs", "build_hclg", "make_graph"]


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
        add_train_transcripts: also estimate the n-gram on the AM training part's transcripts
            (in-domain text the recipe already has; never the dev or test transcripts).
        lm_sources: estimate it on these sources of the LM text pool only (named in the
            pool's ``sources.tsv``); ``None`` = the whole pool.
    """

    lm: NgramConfig = field(default_factory=NgramConfig)
    self_loop_scale: Optional[float] = None
    max_hclg_arcs: int = 20_000_000
    max_det_states: int = 50_000_000
    add_train_transcripts: bool = False
    lm_sources: Optional[List[str]] = None

    def __post_init__(self) -> None:
        check_range(self, "self_loop_scale", 0)
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


def k2_decoding_graph(hclg_tids, tid2pdf: np.ndarray):
    """The k2 decoding graph from the transition-id HCLG (see "THE label mapping" in :mod:`lm2am.graph`):
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


# ----------------------------------------------------------------------------- HCLG
def _det(fst, what: str, max_states: int) -> None:
    _, kaldifst, _ = kaldi_wheels()
    stopped = kaldifst.determinize_star(fst, use_log=True, max_states=max_states if max_states > 0 else -1)
    if stopped:
        raise Lm2amError(f"determinizing {what} reached graph.max_det_states={max_states} states; the "
                         "graph is too big: prune the LM (raise graph.lm.min_counts, lower graph.lm.order) "
                         "or raise graph.max_det_states if the machine has the memory")


class _Steps:
    """Sizes and times of the build's intermediate FSTs, as they are logged and stored."""

    def __init__(self) -> None:
        self.info: Dict[str, object] = {"sizes": {}, "seconds": {}}
        self.sizes: Dict[str, Dict[str, int]] = self.info["sizes"]  # type: ignore[assignment]
        self.secs: Dict[str, float] = self.info["seconds"]  # type: ignore[assignment]

    def note(self, name: str, fst, t0: float) -> None:
        s, a = k2_size(fst) if hasattr(fst, "arcs") else fst_size(fst)
        self.sizes[name] = {"states": s, "arcs": a}
        self.secs[name] = round(time.time() - t0, 3)
        log.info("%s: %d states, %d arcs (%.1f s)", name, s, a, self.secs[name])


def _check_size(g_size: Dict[str, int], cfg: GraphConfig) -> int:
    """The estimated HCLG arc count; an error above ``cfg.max_hclg_arcs``."""
    est = estimate_hclg_arcs(g_size["arcs"])
    log.info("G: %d states, %d arcs; estimated HCLG: <= ~%d arcs (peak memory <= ~%.1f GB)", g_size["states"],
             g_size["arcs"], est, est * 400 / 1e9)
    if est > cfg.max_hclg_arcs:
        raise Lm2amError(f"the decoding graph would have ~{est:,} arcs (G has {g_size['arcs']:,} arcs; "
                         f"~{est * 400 / 1e9:.1f} GB to build), above graph.max_hclg_arcs={cfg.max_hclg_arcs:,}; "
                         "prune the LM (raise graph.lm.min_counts, e.g. [2, 3], or lower graph.lm.order) "
                         "or raise graph.max_hclg_arcs")
    return est


def _compose_det_min(A, B, name: str, cfg: GraphConfig, steps: _Steps, sort_type: Optional[str] = None):
    """``min(det(A o B))`` (log semiring, encoded minimization, then arc-sorted by ``sort_type``
    if given); sizes noted as ``<name>_composed`` and ``<name>``."""
    _, kaldifst, _ = kaldi_wheels()
    t0 = time.time()
    X = kaldifst.compose(A, B)
    steps.note(f"{name}_composed", X, t0)
    t0 = time.time()
    _det(X, name, cfg.max_det_states)
    kaldifst.minimize_encoded(X)
    if sort_type is not None:
        kaldifst.arcsort(X, sort_type=sort_type)
    steps.note(name, X, t0)
    return X


def _make_clg(L, G, lang: Lang, cfg: GraphConfig, steps: _Steps):
    """``(CLG, ilabels)``: ``LG = min(det(L o G))``, then the triphone context."""
    _, kaldifst, _ = kaldi_wheels()
    LG = _compose_det_min(L, G, "LG", cfg, steps, sort_type="ilabel")
    t0 = time.time()
    CLG, ilabels = kaldifst.compose_context(disambig_syms=lang.disambig_phones, context_width=3,
                                            central_position=1, ifst=LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    steps.note("CLG", CLG, t0)
    return CLG, ilabels


def _make_hclga(CLG, ilabels, tree: ContextTree, topo: HmmTopo, cfg: GraphConfig, steps: _Steps):
    """``(HCLGa, TransitionModel, tables, disambig_tids)``: ``HCLGa = min(det(Ha o CLG))``."""
    _, kaldifst, _ = kaldi_wheels()
    t0 = time.time()
    tm, _ = make_transition_model(tree, topo)
    tables = transition_tables(tm)
    Ha, disambig_tids = make_h_transducer(ilabels, tree, tables, num_states_per_phone(tree, topo))
    kaldifst.arcsort(Ha, sort_type="olabel")
    steps.note("Ha", Ha, t0)

    HCLGa = _compose_det_min(Ha, CLG, "HCLGa", cfg, steps)
    return HCLGa, tm, tables, disambig_tids


def build_hclg(lang: Lang, tree: ContextTree, G, topo: HmmTopo, cfg: Optional[GraphConfig] = None
               ) -> Tuple[object, object, TransitionTables, Dict[str, object]]:
    """Kaldi's mkgraph.sh: returns ``(HCLG, TransitionModel, tables, info)``; HCLG is a k2 Fsa with
    transition-ids as labels (0 = epsilon) and word ids as aux_labels (disambiguation ids
    removed, self-loops added); ``k2.to_str(HCLG, openfst=True)`` is its OpenFst text."""
    cfg = cfg or GraphConfig()
    steps = _Steps()
    info = steps.info
    steps.sizes["G"] = dict(zip(("states", "arcs"), fst_size(G)))
    t0 = time.time()
    L = make_lexicon_fst(lang, topo.sil_prob, topo.optional_silence)
    steps.note("L_disambig", L, t0)
    info["estimated_hclg_arcs"] = _check_size(steps.sizes["G"], cfg)

    CLG, ilabels = _make_clg(L, G, lang, cfg, steps)
    info["num_context_labels"] = len(ilabels)
    HCLGa, tm, tables, disambig_tids = _make_hclga(CLG, ilabels, tree, topo, cfg, steps)

    t0 = time.time()
    ss = cfg.scales(topo)
    loop_p = 0.5 if topo.self_loop_prob is None else topo.self_loop_prob
    HCLG = add_self_loops(HCLGa, tables, disambig_tids, ss, loop_p)
    steps.note("HCLG", HCLG, t0)
    info.update(num_pdfs=int(tm.num_pdfs), num_transition_ids=int(tm.num_transition_ids),
                self_loop_scale=ss, self_loop_prob=loop_p, sil_prob=topo.sil_prob,
                optional_silence=topo.optional_silence)
    return HCLG, tm, tables, info


# ----------------------------------------------------------------------------- the stage
def _graph_lang(lang_dir: Path, topo: HmmTopo, tree: ContextTree) -> Lang:
    """The lang dir read for the graph (optional silence from ``optional_silence.txt``), checked
    against the tree's phone list."""
    opt_sil = lang_dir / "optional_silence.txt"
    sil_name = (opt_sil.read_text().split() or ["SIL"])[0] if opt_sil.is_file() else \
        next(iter(topo.silence_phones), "SIL")
    lang = read_lang(lang_dir, sil_phone=sil_name)
    if tree.phones != [p for p in lang.phones]:
        raise Lm2amError(f"the tree's phone list differs from {lang_dir}/phones.txt; build the tree with "
                         "this lang dir")
    return lang


def _make_g(lang: Lang, lang_dir: Path, tmp: Path, cfg: GraphConfig, info: Dict[str, object],
            lm_text: Union[Path, str, None], arpa: Union[Path, str, None], extra_sentences: Sequence[str] = ()):
    """``G`` from an n-gram estimated on ``lm_text`` (plus ``extra_sentences``) or from ``arpa``;
    ``tmp/G.arpa`` is written."""
    t0 = time.time()
    if lm_text is not None:
        model = estimate_ngram(lm_sentences(lm_text, cfg.lm_sources, extra_sentences), lang.words, cfg.lm)
        info["extra_sentences"] = len(extra_sentences)
        write_arpa(model, tmp / "G.arpa")
        info["lm"] = model.info
        info["lm_text"] = str(lm_text)
    else:
        shutil.copyfile(arpa, tmp / "G.arpa")
        info["arpa"] = str(arpa)
    G = arpa_to_fst(tmp / "G.arpa", lang_dir / "words.txt")
    info["seconds_G"] = round(time.time() - t0, 3)
    return G


def _write_graph_files(tmp: Path, HCLG, tm, tables: TransitionTables, tree: ContextTree,
                       info: Dict[str, object]) -> int:
    """``HCLG.fst``, the transition-id tables, the transition model, the Kaldi tree and the k2
    graph ``HCLG.pt``; returns the k2 graph's arc count."""
    import k2
    import torch

    _, kaldifst, _ = kaldi_wheels()
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
    n_states, n_arcs = k2_size(fsa)
    info["sizes"]["HCLG_k2"] = {"states": n_states, "arcs": n_arcs}  # type: ignore[index]
    info["seconds"]["write_and_k2"] = round(time.time() - t0, 3)  # type: ignore[index]
    log.info("k2 HCLG (labels = pdf + 1, epsilon-free): %d states, %d arcs (%.1f s)", n_states, n_arcs,
             time.time() - t0)
    return n_arcs


def make_graph(lang_dir: Union[Path, str], tree: Union[ContextTree, Path, str], out_dir: Union[Path, str],
               topo: Optional[HmmTopo] = None, cfg: Optional[GraphConfig] = None,
               lm_text: Union[Path, str, None] = None, arpa: Union[Path, str, None] = None,
               extra_sentences: Sequence[str] = ()) -> Dict[str, object]:
    """Build the whole graph directory (see :mod:`lm2am.graph`) and return its info dict.

    Give either ``lm_text`` (an n-gram is estimated with ``cfg.lm`` on it and
    ``extra_sentences``, e.g. the training transcripts) or an existing ``arpa``.
    The directory is written under a temporary name and renamed at the end.
    """
    t_start = time.time()
    cfg = cfg or GraphConfig()
    topo = topo or HmmTopo()
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    if (lm_text is None) == (arpa is None):
        raise Lm2amError("make_graph: give exactly one of an LM text (--lm-text) or an ARPA file (--arpa)")
    if not isinstance(tree, ContextTree):
        tree = ContextTree.load(tree)
    lang = _graph_lang(lang_dir, topo, tree)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        info: Dict[str, object] = {"lang_dir": str(lang_dir), "config": asdict(cfg), "topo": asdict(topo)}
        G = _make_g(lang, lang_dir, tmp, cfg, info, lm_text, arpa, extra_sentences)
        HCLG, tm, tables, binfo = build_hclg(lang, tree, G, topo, cfg)
        info.update(binfo)
        n_arcs = _write_graph_files(tmp, HCLG, tm, tables, tree, info)
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

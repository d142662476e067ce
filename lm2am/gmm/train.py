"""Flat-start EM training of the GMM monophone system, as Kaldi's ``steps/train_mono.sh``:

1. ``gmm-init-mono``: one Gaussian per pdf with the global mean and variance of the features;
2. ``compile-train-graphs`` + ``align-equal-compiled``: equal alignment;
3. ``gmm-acc-stats-ali`` + ``gmm-est --min-gaussian-occupancy=3 --mix-up=<#pdfs>``;
4. iterations ``1 .. num_iters - 1``: on ``realign_iters``, realign (``gmm-align-compiled``, beam
   ``beam_first`` the first time, then ``beam``; retry beam ``beam * retry_beam_factor``), then
   accumulate and re-estimate (transitions, means, variances, weights) and mix up to the current
   Gaussian target, which grows by ``(tot_gauss - #pdfs) / max_iter_inc`` up to ``max_iter_inc``.

Statistics are accumulated with Kaldi's ``AccumAmDiagGmm.accumulate_for_gmm`` frame by frame (as
``gmm-acc-stats-ali`` does); its total log-likelihood per frame is the figure reported per
iteration (likelihood of the alignment used for that iteration's update under the model before
it). Transition statistics are the counts of each transition-id (``TransitionModel::Accumulate``).
``gmm-boost-silence`` is left out (train_mono.sh's default factor 1.0 is a no-op).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.align.graphs import Lexicon
from lm2am.align.topo import HmmTopo, StateMap
from lm2am.errors import Lm2amError
from lm2am.gmm.config import GmmConfig
from lm2am.gmm.features import FeatureTransform
from lm2am.gmm.graphs import TrainingGraph, compile_graph, transition_costs
from lm2am.gmm.mixup import split_by_count
from lm2am.gmm.model import GmmSystem, monophone_tree
from lm2am.gmm.viterbi import equal_align, tid_matrix, viterbi_align
from lm2am.data.features import load_features
from lm2am.kaldi import kaldi_wheels

log = logging.getLogger("lm2am.gmm")


def _khg():
    return kaldi_wheels()[0]


def init_system(feats: Sequence[np.ndarray], phones: Sequence[str], topo: HmmTopo,
                transform: FeatureTransform) -> GmmSystem:
    """``gmm-init-mono``: every pdf one Gaussian with the global mean and variance."""
    from lm2am.graph.hmm import make_transition_model

    khg = _khg()
    x = np.concatenate([np.asarray(f, np.float64) for f in feats])
    mean, var = x.mean(0), np.maximum(x.var(0), 1e-6)
    tree = monophone_tree(phones, topo)
    tm, _ = make_transition_model(tree, topo)
    gmm = khg.DiagGmm(nmix=1, dim=x.shape[1])
    gmm.set_weights(np.ones(1, np.float32))
    gmm.set_means(mean[None].astype(np.float32))
    gmm.set_invvars((1.0 / var)[None].astype(np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    for _ in range(tm.num_pdfs):
        am.add_pdf(gmm)  # copied on the C++ side
    return GmmSystem(tm=tm, am=am, tree=tree, topo=topo, phones=list(phones), transform=transform)


class _Accs:
    """Kaldi's GMM accumulators plus transition-id counts for one iteration."""

    def __init__(self, system: GmmSystem):
        khg = _khg()
        self.gmm = khg.AccumAmDiagGmm()
        self.gmm.init(model=system.am, flags=khg.GmmUpdateFlags.kGmmAll)
        self.trans = np.zeros(int(system.tm.num_transition_ids) + 1, np.float64)
        self.pdf_occs = np.zeros(system.am.num_pdfs, np.float64)

    def add(self, system: GmmSystem, feats: np.ndarray, tids: Sequence[int], pdfs: np.ndarray) -> None:
        for t in range(feats.shape[0]):
            self.gmm.accumulate_for_gmm(system.am, feats[t], int(pdfs[t]), 1.0)
        self.trans += np.bincount(np.asarray(tids), minlength=self.trans.size)
        self.pdf_occs += np.bincount(pdfs, minlength=self.pdf_occs.size)


def update(system: GmmSystem, accs: _Accs, num_gauss: int, cfg: GmmConfig, rng: np.random.Generator,
           min_gaussian_occupancy: Optional[float] = None) -> Dict[str, float]:
    """``gmm-est --mix-up=num_gauss --power=cfg.power``: transition and GMM MLE updates, then
    mix-up (Kaldi's ``split_by_count`` with perturb 0.01 and min count 20, its perturbation
    drawn from ``rng``: :func:`lm2am.gmm.mixup.split_by_count`)."""
    khg = _khg()
    t_impr, t_count = system.tm.mle_update(accs.trans, khg.MleTransitionUpdateConfig())
    opts = khg.MleDiagGmmOptions()
    if min_gaussian_occupancy is not None:
        opts.min_gaussian_occupancy = min_gaussian_occupancy
    g_impr, g_count = khg.mle_am_diag_gmm_update(config=opts, amdiag_gmm_acc=accs.gmm,
                                                 flags=int(khg.GmmUpdateFlags.kGmmAll), am_gmm=system.am)
    if num_gauss > system.am.num_gauss:
        split_by_count(system.am, accs.pdf_occs, num_gauss, perturb_factor=0.01, power=cfg.power,
                       min_count=20.0, rng=rng)
    system.am.compute_gconsts()
    return {"gmm_objf_impr_per_frame": g_impr / max(g_count, 1.0),
            "trans_objf_impr_per_frame": t_impr / max(t_count, 1.0)}


def train_mono(feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]], lexicon: Lexicon,
               phones: Sequence[str], topo: HmmTopo, cfg: GmmConfig, transform: FeatureTransform,
               utt_ids: Optional[Sequence[str]] = None) -> Tuple[GmmSystem, List[Dict[str, float]]]:
    """Train a monophone GMM-HMM on GMM features (``transform`` already applied to ``feats``).

    Returns ``(system, history)``: one history entry per model update (``iter`` 0 = the
    flat-start estimate) with ``loglike_per_frame``, ``num_gauss`` (after the update),
    ``alignment`` (``equal``, ``viterbi``: realigned before this update, ``previous``), ``frames``, ``utterances``, ``failed`` (no alignment), ``retried`` and
    ``seconds``.
    """
    from tqdm import tqdm

    from lm2am.graph.hmm import transition_tables

    utt_ids = list(utt_ids) if utt_ids is not None else [f"utt{i:06d}" for i in range(len(feats))]
    if not feats:
        raise Lm2amError("train_mono: no training utterances")
    system = init_system(feats, phones, topo, transform)
    smap = StateMap(list(phones), topo)
    tables = transition_tables(system.tm)

    def graphs() -> List[TrainingGraph]:
        costs = transition_costs(system.tm, tables, cfg.transition_scale, cfg.self_loop_scale)
        return [compile_graph(t, lexicon, smap, tables, costs, u) for t, u in zip(texts, utt_ids)]

    t0 = time.time()
    alis = _equal_alignments(feats, graphs(), cfg.seed)
    history: List[Dict[str, float]] = []
    num_gauss = system.am.num_pdfs
    inc_gauss = max(0, (cfg.tot_gauss - num_gauss) // max(cfg.max_iter_inc, 1))
    realigned_once = False
    for it in tqdm(range(cfg.num_iters), desc="GMM EM", unit="iter", disable=None):
        realign = it > 0 and it in cfg.realign_iters
        retried = 0
        if realign:
            gs = graphs()  # transition probabilities changed
            beam = cfg.beam if realigned_once else cfg.beam_first
            realigned_once = True
            retried = _realign(system, feats, gs, tables, cfg, beam, alis)
        accs, n_utts = _accumulate(system, feats, alis, tables)
        frames = accs.gmm.tot_count
        ll = accs.gmm.tot_log_like / frames
        rng = np.random.default_rng([cfg.seed, it])  # per iteration: draws independent of earlier ones
        info = update(system, accs, num_gauss, cfg, rng, cfg.min_gaussian_occupancy_first if it == 0 else None)
        if it > 0 and it <= cfg.max_iter_inc:
            num_gauss = min(cfg.tot_gauss, num_gauss + inc_gauss)
        entry = {"iter": it, "loglike_per_frame": float(ll), "num_gauss": int(system.am.num_gauss),
                 "alignment": "equal" if it == 0 else ("viterbi" if realign else "previous"), "frames": int(frames), "utterances": n_utts,
                 "failed": len(feats) - n_utts, "retried": retried, "seconds": round(time.time() - t0, 2),
                 **{k: float(v) for k, v in info.items()}}
        history.append(entry)
        log.info("iter %d: log-likelihood per frame %.3f over %d frames (%d utts, %d failed%s), %d Gaussians",
                 it, ll, frames, n_utts, entry["failed"], ", realigned" if realign else "", entry["num_gauss"])
        t0 = time.time()
    return system, history


def _equal_alignments(feats: Sequence[np.ndarray], gs: Sequence[TrainingGraph], seed: int
                      ) -> List[Optional[List[int]]]:
    """``align-equal-compiled``: transition-ids of an equal alignment per utterance (None when
    it has fewer frames than its graph needs)."""
    alis: List[Optional[List[int]]] = []
    for i, (f, g) in enumerate(zip(feats, gs)):
        r = equal_align(g.fst, f.shape[0], seed + i)
        alis.append(r[0] if r else None)
    return alis


def _realign(system: GmmSystem, feats: Sequence[np.ndarray], gs: Sequence[TrainingGraph],
             tables, cfg: GmmConfig, beam: float, alis: List[Optional[List[int]]]) -> int:
    """``gmm-align-compiled`` of every utterance with the current model, into ``alis``;
    returns how many needed the retry beam."""
    from tqdm import tqdm

    params = system.params()
    retried = 0
    for i, (f, g) in enumerate(tqdm(list(zip(feats, gs)), desc="realign", unit="utt", disable=None,
                                    leave=False)):
        m = tid_matrix(params.pdf_loglikes(params.component_loglikes(f)), tables, cfg.acoustic_scale)
        path, was_retried = viterbi_align(g.fst, m, beam, beam * cfg.retry_beam_factor)
        retried += was_retried
        alis[i] = path[0] if path else None
    return retried


def _accumulate(system: GmmSystem, feats: Sequence[np.ndarray], alis: Sequence[Optional[List[int]]],
                tables) -> Tuple[_Accs, int]:
    """``gmm-acc-stats-ali`` over the aligned utterances: the statistics and their number."""
    accs = _Accs(system)
    n_utts = 0
    for f, a in zip(feats, alis):
        if a is not None:
            accs.add(system, f, a, tables.tid2pdf[np.asarray(a)])
            n_utts += 1
    if n_utts == 0:
        raise Lm2amError("train_mono: no utterance could be aligned (all shorter than their transcripts?)")
    return accs, n_utts


def train_gmm_mono(cuts, lang_dir, out_dir, cfg: GmmConfig, topo: HmmTopo) -> List[Dict[str, float]]:
    """The training stage: GMM features of ``cuts`` (at most ``cfg.max_train_utts``, evenly
    spread), :func:`train_mono`, then ``final.mdl``, ``tree.json``, ``final.pt`` (aligner
    descriptor), ``history.json`` and ``loglike.png`` in ``out_dir``."""
    import json
    from pathlib import Path

    from lm2am.align.pipeline import load_lexicon
    from lm2am.lang import read_phone_list
    from lm2am.io import atomic_write_text

    out_dir = Path(out_dir)
    cuts = list(cuts)
    if cfg.max_train_utts is not None and len(cuts) > cfg.max_train_utts:
        step = len(cuts) / cfg.max_train_utts
        cuts = [cuts[int(i * step)] for i in range(cfg.max_train_utts)]
    t0 = time.time()
    transform = FeatureTransform.from_config(cfg)
    if cfg.cmvn == "global":
        transform.fit(load_features(c) for c in cuts)
    feats = [transform(load_features(c)) for c in cuts]
    log.info("GMM features: %s%s, %s CMVN, dim %d, %d utterances, %d frames (%.1f s)", cfg.features,
             " + deltas" if cfg.deltas else "", cfg.cmvn, feats[0].shape[1], len(feats),
             sum(f.shape[0] for f in feats), time.time() - t0)
    texts = [c.supervisions[0].text.split() for c in cuts]
    system, history = train_mono(feats, texts, load_lexicon(lang_dir), read_phone_list(lang_dir), topo, cfg,
                                 transform, [c.id for c in cuts])
    system.save(out_dir, cfg)
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")
    from lm2am.report.plots import plot_gmm_history

    plot_gmm_history(history, out_dir / "loglike.png")
    log.info("log-likelihood per frame by iteration: %s",
             " ".join(f"{h['loglike_per_frame']:.2f}" for h in history))
    return history

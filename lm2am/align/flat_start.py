"""Flat-start training of the neural monophone-state model over k2 training graphs.

Training maximizes the total (forward, log-semiring) log-likelihood of each utterance's training
graph given the network's per-frame log-posteriors, like CTC but over HMM state graphs:
``k2.intersect_dense`` + ``get_tot_scores(log_semiring=True)``; loss = -Σ score / Σ frames.
No alignment is needed to start (hence "flat start"): the sum over all paths lets the model
discover the segmentation.

Priors: the emission score is ``log p(s|x) - prior_scale * log p(s)``, with ``p(s)`` a running
average of the model's posteriors (detached, updated every batch), as in hybrid full-sum training
(Zeyer et al., 2017). Without it (``prior_scale=0``) a locally normalized model with a few frames
of context converges to a wrong segmentation on some seeds: on the synthetic test corpus the
default model reached 0.74-0.92 frame phone accuracy without priors and 0.95-0.98 with 0.5.
``align`` uses the scale the model was trained with unless told otherwise.

Weighted HMM transitions (``HmmTopo.self_loop_prob``) are best left off for flat start: a
forward-arc cost of ``log(1 - p)`` makes every optional silence several nats dearer than
skipping it, so the untrained model learns silence frames as parts of phones (0.55-0.68
accuracy with ``p = 0.75`` on the synthetic corpus).

Alignment with the trained model (``align``) and the batching it shares with training are in
``viterbi.py``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import k2
import numpy as np
import torch

from lm2am.align.graphs import Lexicon, build_graph, min_frames, utterance_units
from lm2am.align.model import INPUT_NORMS, MonoStateModel
from lm2am.align.topo import HmmTopo, PhoneTable, StateMap
from lm2am.align.viterbi import Device, check_inputs, dense_fsa, length_batches, pad_batch
from lm2am.config import check_range
from lm2am.errors import Lm2amError
from lm2am.log import TensorBoard

log = logging.getLogger("lm2am.align")


@dataclass
class AlignConfig:
    """Flat-start training and alignment settings.

    Attributes:
        epochs: passes over the training data ("rounds"); LL/frame is logged for each.
        lr: Adam learning rate.
        batch_size: utterances per minibatch (utterances are bucketed by length).
        hidden_dim, num_layers, kernel_size: model size (see ``MonoStateModel``).
        input_norm: ``global`` or ``utterance_mean`` (each utterance's mean removed first).
        seed: seeds model init and batch order; CPU runs are deterministic.
        output_beam: ``k2.intersect_dense`` output beam (pruning relative to the best path).
        grad_clip: max gradient norm (0 disables clipping).
        prior_scale: weight of the log state prior subtracted from the log-posteriors in the
            training graphs (0 disables; see the module docstring).
        prior_momentum: per-batch update weight of the running-average prior.
        equal_align_epochs: first rounds trained by frame cross-entropy on equally spaced
            alignments (Kaldi's ``align-equal-compiled``) before the full-sum rounds; 0: none.
        viterbi_epochs: last rounds trained by frame cross-entropy on each batch's own
            Viterbi alignment (hard EM, as Kaldi's GMM training) instead of the full sum.
    """

    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 16
    hidden_dim: int = 256
    num_layers: int = 3
    kernel_size: int = 5
    input_norm: str = "global"
    seed: int = 0
    output_beam: float = 10.0
    grad_clip: float = 5.0
    prior_scale: float = 0.5
    prior_momentum: float = 0.1
    equal_align_epochs: int = 0
    viterbi_epochs: int = 0
    max_train_utts: Optional[int] = None  # stage only: train on at most this many (evenly spread)

    def __post_init__(self) -> None:
        check_range(self, "epochs", 1)
        check_range(self, "batch_size", 1)
        check_range(self, "hidden_dim", 1)
        check_range(self, "num_layers", 1)
        check_range(self, "kernel_size", 1)
        check_range(self, "max_train_utts", 1)
        check_range(self, "lr", 0, lo_open=True)
        check_range(self, "seed", 0)
        check_range(self, "output_beam", 0, lo_open=True)
        check_range(self, "grad_clip", 0)
        check_range(self, "prior_scale", 0, 1)
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        check_range(self, "prior_momentum", 0, 1)
        check_range(self, "equal_align_epochs", 0)
        check_range(self, "viterbi_epochs", 0)
        if self.equal_align_epochs + self.viterbi_epochs > self.epochs:
            raise ValueError(f"equal_align_epochs + viterbi_epochs ({self.equal_align_epochs} + "
                             f"{self.viterbi_epochs}) exceed epochs ({self.epochs})")


def equal_alignment(words: Sequence[str], lexicon: Lexicon, smap: StateMap, num_frames: int) -> np.ndarray:
    """Kaldi's ``align-equal-compiled`` for flat start: the pdf of every frame when the
    utterance's obligatory HMM states (first pronunciations; optional silences only at the two
    ends) share its ``num_frames`` equally, in order. Needs ``num_frames >= min_frames``."""
    units = [u for u in utterance_units(words, lexicon, smap) if u.pron_id == 0]
    keep = [u for k, u in enumerate(units) if not u.optional or k in (0, len(units) - 1)]
    pdfs = [smap.pdf(u.phone_id, j) for u in keep for j in range(smap.num_states(u.phone_id))]
    if len(pdfs) > num_frames:  # too short for the end silences too: the obligatory states only
        pdfs = [smap.pdf(u.phone_id, j) for u in keep if not u.optional
                for j in range(smap.num_states(u.phone_id))]
    edges = np.linspace(0, num_frames, len(pdfs) + 1).round().astype(np.int64)
    return np.repeat(np.asarray(pdfs, dtype=np.int64), np.diff(edges))


def train_flat_start(feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]],
                     lexicon: Lexicon, phones: PhoneTable, topo: Optional[HmmTopo] = None,
                     cfg: Optional[AlignConfig] = None, device: Device = "cpu",
                     utt_ids: Optional[Sequence[str]] = None,
                     tb_dir: Optional[Union[str, Path]] = None, source: str = "train_flat_start"
                     ) -> Tuple[MonoStateModel, List[Dict[str, float]]]:
    """Train a monophone-state model from scratch by maximizing the training-graph likelihood.

    Args:
        feats: one float ``(T, F)`` feature matrix per utterance (e.g. 80-dim fbank).
        texts: the words of each utterance (OOVs already mapped to ``<UNK>``).
        lexicon: word → pronunciations (a list of phone lists; every one is an
            alternative of the training graph, see ``graphs.py``) or word → phones.
        phones: phones.txt as a list (id = index) or symbol → id mapping.
        topo: HMM topology (default ``HmmTopo()``).
        cfg: training settings (default ``AlignConfig()``).
        device: "cpu" or a CUDA device.
        utt_ids: names used in messages.
        tb_dir: write each round's figures as TensorBoard scalars there (e.g. the aligner
            directory's ``tensorboard/``); None: no TensorBoard.
        source: what the utterances came from (e.g. the cuts file), named in messages.

    Returns:
        ``(model, history)``: the trained model (in eval mode, on ``device``) and one dict per
        epoch with ``epoch``, ``loglike_per_frame`` (total log-likelihood of the training
        graphs per frame, accumulated during the epoch; emissions are the prior-scaled
        ``log p(s|x) - prior_scale * log p(s)``, a scaled likelihood, so it can exceed 0),
        ``frames``, ``skipped`` (utterances with no path: fewer frames than obligatory HMM
        states, or pruned) and ``frames_per_sec``.
    """
    topo = topo or HmmTopo()
    cfg = cfg or AlignConfig()
    utt_ids = check_inputs(feats, texts, utt_ids)
    if not feats:
        raise Lm2amError("train_flat_start: no training utterances")
    smap = StateMap(phones, topo)
    feats = [np.asarray(f, dtype=np.float32) for f in feats]
    graphs, usable = _training_graphs(feats, texts, lexicon, smap, utt_ids, source)

    torch.manual_seed(cfg.seed)
    model = _init_model(feats, usable, smap, cfg, device)
    equal = None
    if cfg.equal_align_epochs:
        equal = {i: torch.from_numpy(equal_alignment(texts[i], lexicon, smap, feats[i].shape[0])) for i in usable}
    prior, history = _train_rounds(model, graphs, feats, usable, smap, cfg, device, tb_dir, equal)
    model.log_prior.copy_(prior.clamp_min(1e-10).log())
    model.prior_scale.fill_(cfg.prior_scale)
    model.eval()
    return model, history


def _train_rounds(model: MonoStateModel, graphs: Sequence[k2.Fsa], feats: Sequence[np.ndarray],
                  usable: Sequence[int], smap: StateMap, cfg: AlignConfig, device: Device,
                  tb_dir: Optional[Union[str, Path]], equal: Optional[Dict[int, torch.Tensor]] = None
                  ) -> Tuple[torch.Tensor, List[Dict[str, float]]]:
    """``cfg.epochs`` rounds of training on the usable utterances: ``(state prior, history)``;
    the first ``cfg.equal_align_epochs`` on the equal alignments ``equal`` (utterance index ->
    pdf per frame)."""
    from tqdm import tqdm

    rng = np.random.RandomState(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    lens_all = [feats[i].shape[0] for i in usable]
    batches = [np.asarray(usable)[b] for b in length_batches(lens_all, cfg.batch_size)]

    history: List[Dict[str, float]] = []
    prior = torch.full((smap.num_pdfs,), 1.0 / smap.num_pdfs, device=device)
    tb = TensorBoard(Path(tb_dir) if tb_dir is not None else None)
    try:
        for epoch in tqdm(range(1, cfg.epochs + 1), desc="flat start", unit="round", disable=None):
            model.train()
            labels = equal if epoch <= cfg.equal_align_epochs else None
            viterbi = epoch > cfg.epochs - cfg.viterbi_epochs
            entry, prior = _train_round(model, opt, graphs, feats, batches,
                                        rng.permutation(len(batches)), prior, cfg, device,
                                        len(feats) - len(usable), labels, viterbi)
            mode = "equal" if labels is not None else "viterbi" if viterbi else "full_sum"
            history.append({"epoch": epoch, "mode": mode, **entry})
            tb.scalars("train", entry, epoch)
            log.info("flat start epoch %d/%d (%s): loglike/frame %.4f over %d frames (%d utts skipped), "
                     "%.0f frames/s", epoch, cfg.epochs, history[-1]["mode"], entry["loglike_per_frame"],
                     entry["frames"], entry["skipped"], entry["frames_per_sec"])
    finally:
        tb.close()
    return prior, history


def _init_model(feats: Sequence[np.ndarray], usable: Sequence[int], smap: StateMap,
                cfg: AlignConfig, device: Device) -> MonoStateModel:
    """A new model (weights from the torch RNG) with the CMVN of the usable utterances."""
    model = MonoStateModel(feats[0].shape[1], smap.num_pdfs, cfg.hidden_dim, cfg.num_layers,
                           cfg.kernel_size, cfg.input_norm)
    model.set_cmvn([feats[i] for i in usable])
    return model.to(device)


def _training_graphs(feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]], lexicon: Lexicon,
                     smap: StateMap, utt_ids: Sequence[str], source: str) -> Tuple[List[k2.Fsa], List[int]]:
    """Every utterance's training graph and the indices of those long enough for theirs
    (the others are left out with a warning; none at all is an error)."""
    graphs = [build_graph(t, lexicon, smap, u) for t, u in zip(texts, utt_ids)]
    needed = [min_frames(t, lexicon, smap) for t in texts]
    usable = [i for i in range(len(feats)) if feats[i].shape[0] >= needed[i]]
    too_short = len(feats) - len(usable)
    if too_short:
        log.warning("flat start: %d of %d utterances have fewer frames than obligatory HMM "
                    "states and are left out of training", too_short, len(feats))
    if not usable:
        raise Lm2amError(f"{source}: every utterance is shorter than its transcript's "
                         f"HMM states (e.g. {utt_ids[0]}: {feats[0].shape[0]} feature frames, "
                         f"needs {needed[0]}); check that the transcripts belong to the audio")
    return graphs, usable


def _train_round(model: MonoStateModel, opt: torch.optim.Optimizer, graphs: Sequence[k2.Fsa],
                 feats: Sequence[np.ndarray], batches: Sequence[np.ndarray], order: np.ndarray,
                 prior: torch.Tensor, cfg: AlignConfig, device: Device, skipped: int,
                 labels: Optional[Dict[int, torch.Tensor]] = None, viterbi: bool = False
                 ) -> Tuple[Dict[str, float], torch.Tensor]:
    """One pass over ``batches`` in ``order``: ``(figures of the round, updated prior)``;
    ``skipped`` counts the utterances already left out. With ``labels`` (a pdf per frame of
    each utterance) the round trains by frame cross-entropy instead of the full sum; with
    ``viterbi`` by frame cross-entropy on each batch's best path."""
    t0 = time.time()
    tot_ll, tot_frames = 0.0, 0
    for bi in order:
        prior, ll, frames, failed = _train_batch(model, opt, graphs, feats, batches[bi], prior,
                                                 cfg, device, labels, viterbi)
        skipped += failed
        tot_ll += ll
        tot_frames += frames
    dt = time.time() - t0
    return {"loglike_per_frame": tot_ll / max(tot_frames, 1), "frames": tot_frames,
            "skipped": skipped, "frames_per_sec": tot_frames / max(dt, 1e-9)}, prior


def _train_batch(model: MonoStateModel, opt: torch.optim.Optimizer, graphs: Sequence[k2.Fsa],
                 feats: Sequence[np.ndarray], idx: np.ndarray, prior: torch.Tensor,
                 cfg: AlignConfig, device: Device, labels: Optional[Dict[int, torch.Tensor]] = None,
                 viterbi: bool = False) -> Tuple[torch.Tensor, float, int, int]:
    """One update on the utterances ``idx``: ``(updated prior, total log-likelihood, frames,
    utterances without a path)``; a batch with no path at all makes no update. With
    ``labels``: frame cross-entropy against them (the log-likelihood is then that of the labels)."""
    x, lens = pad_batch(feats, idx, device)
    logp = model(x, lens)
    with torch.no_grad():  # running average posterior = state prior estimate
        valid = (torch.arange(x.shape[1], device=device)[None, :]
                 < lens.to(device)[:, None])
        batch_post = logp.detach().exp()[valid].mean(0)
        prior = (1 - cfg.prior_momentum) * prior + cfg.prior_momentum * batch_post
    if labels is not None:
        target = torch.cat([labels[int(i)] for i in idx]).to(device)
        ll = logp[valid].gather(1, target[:, None]).sum()
        _step(model, opt, -ll / target.numel(), cfg)
        return prior, float(ll), int(target.numel()), 0
    emis = logp - cfg.prior_scale * prior.clamp_min(1e-10).log() if cfg.prior_scale else logp
    g = k2.create_fsa_vec([graphs[i] for i in idx]).to(device)
    lat = k2.intersect_dense(g, dense_fsa(emis, lens), cfg.output_beam)
    scores = lat.get_tot_scores(log_semiring=True, use_double_scores=True)
    ok = torch.isfinite(scores)
    failed = 0 if bool(ok.all()) else int((~ok).sum())  # pruned away or no path: not in the loss
    if not bool(ok.any()):
        return prior, 0.0, 0, failed
    frames = int(lens[ok.cpu()].sum())
    if viterbi:  # hard EM: cross-entropy on the best paths (the lattice's scores carry no gradient)
        target = _best_path_pdfs(k2.shortest_path(lat, use_double_scores=True), lens, ok.cpu())
        keep = valid & ok.to(device)[:, None]
        ll = logp[keep].gather(1, target.to(device)[:, None]).sum()
        _step(model, opt, -ll / frames, cfg)
        return prior, float(ll), frames, failed
    _step(model, opt, -scores[ok].sum() / frames, cfg)
    return prior, float(scores[ok].sum()), frames, failed


def _best_path_pdfs(best: k2.Fsa, lens: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """The pdf of every frame of the utterances with a path (``ok``), concatenated in batch
    order: the best paths' labels minus 1, final arcs dropped."""
    shape = best.arcs.shape()
    arc_split = shape.row_splits(2)[shape.row_splits(1).long()].cpu()
    labels = best.labels.cpu()
    out = []
    for b in range(len(lens)):
        if bool(ok[b]):
            lab = labels[int(arc_split[b]):int(arc_split[b + 1])]
            pdfs = lab[lab != -1].long() - 1
            assert pdfs.numel() == int(lens[b]), "best path and features disagree on the frame count"
            out.append(pdfs)
    return torch.cat(out)


def _step(model: MonoStateModel, opt: torch.optim.Optimizer, loss: torch.Tensor, cfg: AlignConfig) -> None:
    opt.zero_grad()
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()

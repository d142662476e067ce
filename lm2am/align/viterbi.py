"""Viterbi forced alignment with a trained monophone-state model, and the batching that
flat-start training (``flat_start.py``) shares with it.

Alignment is ``k2.shortest_path`` over the same training graphs; the graphs' arc attributes (see
``graphs.py``) give frame-level pdfs, phones, phone segments and word boundaries. A word with
several pronunciations is aligned with the one its frames support best (Viterbi), and the
frame phones are that pronunciation's.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import k2
import numpy as np
import torch

from lm2am.align.graphs import Lexicon, build_graph
from lm2am.align.model import MonoStateModel
from lm2am.align.topo import HmmTopo, PhoneTable, StateMap
from lm2am.errors import Lm2amError

log = logging.getLogger("lm2am.align")

Device = Union[str, torch.device]


@dataclass
class Alignment:
    """Frame-level forced alignment of one utterance (``T`` = its number of feature frames).

    Attributes:
        utt_id: utterance id.
        states: np.int32 [T], monophone-state (pdf) index per frame; the HMM state within the
            phone is ``StateMap.pdf_to_state[states]``.
        phones: np.int32 [T], phones.txt id per frame.
        words: (word, start frame, end frame exclusive) per transcript word, in order.
        phone_segments: (phone id, start frame, end frame exclusive) per phone occurrence,
            silences included (so repeated phones keep their boundary).
        loglike: Viterbi log-likelihood of the best path (sum over frames).
    """

    utt_id: str
    states: np.ndarray
    phones: np.ndarray
    words: List[Tuple[str, int, int]]
    phone_segments: List[Tuple[int, int, int]] = field(default_factory=list)
    loglike: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.states.shape[0])


def check_inputs(feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]],
                  utt_ids: Optional[Sequence[str]]) -> List[str]:
    if len(feats) != len(texts):
        raise Lm2amError(f"got {len(feats)} feature matrices but {len(texts)} transcripts")
    if utt_ids is None:
        utt_ids = [f"utt{i:06d}" for i in range(len(feats))]
    elif len(utt_ids) != len(feats):
        raise Lm2amError(f"got {len(utt_ids)} utterance ids for {len(feats)} utterances")
    dims = {np.asarray(f).shape[1] for f in feats if np.asarray(f).ndim == 2}
    if any(np.asarray(f).ndim != 2 for f in feats) or len(dims) > 1:
        raise Lm2amError(f"features must be 2-D (frames, dim) with one dim, got dims {sorted(dims)}")
    return list(utt_ids)


def length_batches(lengths: Sequence[int], batch_size: int) -> List[np.ndarray]:
    """Utterance indices bucketed by length (less padding), longest first within each batch."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(feats: Sequence[np.ndarray], idx: np.ndarray, device: Device
         ) -> Tuple[torch.Tensor, torch.Tensor]:
    lens = [feats[i].shape[0] for i in idx]
    x = np.zeros((len(idx), max(lens), feats[idx[0]].shape[1]), dtype=np.float32)
    for b, i in enumerate(idx):
        x[b, :lens[b]] = feats[i]
    return torch.from_numpy(x).to(device), torch.tensor(lens, dtype=torch.int32)


def dense_fsa(log_probs: torch.Tensor, lens: torch.Tensor) -> k2.DenseFsaVec:
    """DenseFsaVec with column ``pdf + 1`` = log p(pdf); column 0 (label 0, never used) is a
    constant. ``lens`` must be sorted in decreasing order (k2.intersect_dense requires it)."""
    n = log_probs.shape[0]
    pad = torch.full((n, log_probs.shape[1], 1), -1.0e4, dtype=log_probs.dtype,
                     device=log_probs.device)
    sup = torch.stack([torch.arange(n, dtype=torch.int32), torch.zeros(n, dtype=torch.int32),
                       lens.to(torch.int32)], dim=1)
    return k2.DenseFsaVec(torch.cat([pad, log_probs], dim=2), sup)


def _segments(ids: np.ndarray) -> List[Tuple[int, int, int]]:
    """Runs of equal values: (value, start, end exclusive)."""
    if ids.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [ids.size]])
    return [(int(ids[s]), int(s), int(e)) for s, e in zip(starts, ends)]


@torch.no_grad()
def align(model: MonoStateModel, feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]],
          lexicon: Lexicon, phones: PhoneTable, topo: Optional[HmmTopo] = None,
          device: Device = "cpu", batch_size: int = 16, utt_ids: Optional[Sequence[str]] = None,
          output_beam: float = 10.0, prior_scale: Optional[float] = None,
          allow_failures: bool = False) -> List[Alignment]:
    """Viterbi forced alignment of each utterance against its training graph.

    Args:
        model: a trained ``MonoStateModel`` (its ``num_pdfs`` must match ``phones`` + ``topo``).
        feats, texts, lexicon, phones, topo, utt_ids: as for ``train_flat_start``.
        device: "cpu" or a CUDA device; the model is moved there.
        batch_size: utterances per batch (bucketed by length).
        output_beam: intersection beam; only the best path is needed, so it can be small.
        prior_scale: subtract ``prior_scale * model.log_prior`` from the log-posteriors;
            ``None`` uses the scale the model was trained with.
        allow_failures: if true, utterances with no path are logged and left out of the result;
            otherwise they raise Lm2amError naming them.

    Returns:
        One ``Alignment`` per utterance, in input order; each has exactly as many frames as its
        feature matrix (checked).
    """
    from tqdm import tqdm

    topo = topo or HmmTopo()
    utt_ids = check_inputs(feats, texts, utt_ids)
    smap = StateMap(phones, topo)
    if model.num_pdfs != smap.num_pdfs:
        raise Lm2amError(f"align: the model has {model.num_pdfs} outputs but phones + topology "
                         f"give {smap.num_pdfs} monophone states")
    feats = [np.asarray(f, dtype=np.float32) for f in feats]
    model.eval().to(device)
    result: Dict[int, Alignment] = {}
    failed: List[str] = []
    with tqdm(total=len(feats), desc="align", unit="utt", disable=None, leave=False) as bar:
        for idx in length_batches([f.shape[0] for f in feats], batch_size):
            bar.update(len(idx))
            idx = np.asarray([i for i in idx if feats[i].shape[0] > 0], dtype=np.int64)
            if idx.size == 0:
                continue
            x, lens = pad_batch(feats, idx, device)
            logp = model.emission_scores(x, lens, prior_scale)
            g = k2.create_fsa_vec([build_graph(texts[i], lexicon, smap, utt_ids[i]) for i in idx])
            lat = k2.intersect_dense(g.to(device), dense_fsa(logp, lens), output_beam)
            best = k2.shortest_path(lat, use_double_scores=True)
            for i, ali in zip(idx, _read_best_paths(best, feats, texts, utt_ids, idx, smap)):
                if ali is None:
                    failed.append(utt_ids[i])
                else:
                    result[int(i)] = ali
    empty = [utt_ids[i] for i in range(len(feats)) if feats[i].shape[0] == 0]
    _report_failures(empty + failed, allow_failures)
    return [result[i] for i in range(len(feats)) if i in result]


def _read_best_paths(best: k2.Fsa, feats: Sequence[np.ndarray], texts: Sequence[Sequence[str]],
                     utt_ids: Sequence[str], idx: np.ndarray, smap: StateMap
                     ) -> List[Optional[Alignment]]:
    """The alignment of each utterance ``idx[b]`` from the best paths ``best`` of a batch
    (None where it has no path), read from the arcs' attributes."""
    scores = best.get_tot_scores(log_semiring=False, use_double_scores=True).cpu().numpy()
    shape = best.arcs.shape()
    # arc offsets of each FSA: row_splits(1) indexes states, row_splits(2) arcs per state
    arc_split = shape.row_splits(2)[shape.row_splits(1).long()].cpu().numpy()
    labels = best.labels.cpu().numpy()
    ph_all = best.phone_ids.cpu().numpy()
    wd_all = best.word_ids.cpu().numpy()
    sg_all = best.seg_ids.cpu().numpy()
    out: List[Optional[Alignment]] = []
    for b, i in enumerate(idx):
        a, e = arc_split[b], arc_split[b + 1]
        lab = labels[a:e]
        if lab.size == 0 or not math.isfinite(scores[b]):
            out.append(None)
            continue
        keep = lab != -1
        T = feats[i].shape[0]
        states = (lab[keep] - 1).astype(np.int32)
        if states.shape[0] != T:  # the invariant the targets rely on
            raise AssertionError(f"{utt_ids[i]}: alignment has {states.shape[0]} frames, "
                                 f"features {T}")
        ph = ph_all[a:e][keep].astype(np.int32)
        wd = wd_all[a:e][keep]
        sg = sg_all[a:e][keep]
        assert np.array_equal(smap.pdf_to_phone[states], ph)
        words = []
        for w, word in enumerate(texts[i]):
            fr = np.flatnonzero(wd == w)
            words.append((word, int(fr[0]), int(fr[-1]) + 1))
        segs = [(int(ph[s]), s, e2) for _, s, e2 in _segments(sg)]
        out.append(Alignment(utt_ids[i], states, ph, words, segs, float(scores[b])))
    return out


def _report_failures(failed: List[str], allow_failures: bool) -> None:
    """Utterances without an alignment: an error, or a warning with ``allow_failures``."""
    if failed:
        msg = (f"no alignment for {len(failed)} utterance(s) (fewer frames than HMM states, or "
               f"pruned): {', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}")
        if not allow_failures:
            raise Lm2amError(msg)
        log.warning(msg)

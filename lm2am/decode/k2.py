"""Batched k2 decoding of the hybrid AM's scaled log-likelihoods over the HCLG of lm2am.graph.

Input per utterance: a ``[T, num_pdfs]`` matrix of log-likelihoods, i.e. the AM's main-output
log-posteriors minus the log senone priors (:func:`~lm2am.decode.result.loglikes_from_log_posteriors`);
column ``p`` belongs to pdf (senone) ``p``. :func:`decode` multiplies by ``acoustic_scale`` and builds a
``k2.DenseFsaVec`` whose column ``p + 1`` holds pdf ``p`` (the graph's labels are ``pdf + 1``,
column 0 = k2's epsilon, never used: see "THE label mapping" in lm2am.graph), then
``k2.intersect_dense_pruned`` (beams and active-state limits from :class:`DecodeConfig`) and
``k2.shortest_path`` give the one-best word sequence. Everything runs on CPU or CUDA.

Frame rate: the graph's HMM is a 10 ms topology (3 states with self-loops per phone). An AM that
subsamples its output by ``f`` (lm2am.frames) is decoded by repeating every output frame ``f``
times (``DecodeConfig.subsampling_factor``), which keeps the graph and its minimum phone
duration unchanged; the effective acoustic weight per 10 ms frame is then the same as for an
unsubsampled AM, so the acoustic scale needs no change.

Robustness: a batch that raises (e.g. out of memory) is split in halves down to
single utterances; an utterance whose lattice is empty (beam too narrow) is retried alone with
beams multiplied by ``retry_beam_factor`` (up to ``max_retries`` times); an utterance that still
fails gets an empty hypothesis, a warning and an entry in ``DecodeResult.failed``, and decoding
goes on.

Scale sweep without re-decoding: the graph's own scores ride along the lattice
(``graph_scores``), so :func:`decode` can re-pick the best path for other acoustic scales
(``extra_scales``) from the same lattices, like Kaldi's ``lattice-scale`` / icefall's lm-scale
sweep (exact within the lattice's ``output_beam``).

Word times: :func:`~lm2am.decode.result.word_alignment`. Progress: a tqdm bar over the
utterances (on a terminal only).
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from lm2am.decode.config import Beams, DecodeConfig
from lm2am.decode.result import (DecodeResult, Matrix, check_loglikes, expand_frames, iter_items,
                                 word_alignment)
from lm2am.graph.load import DecodingGraph

log = logging.getLogger(__name__)

__all__ = ["decode", "intersect"]


def _batches(items: Iterable[Tuple[str, Matrix]], cfg: DecodeConfig) -> Iterator[List[Tuple[str, Matrix]]]:
    """Consecutive batches within ``max_frames_per_batch`` (expanded frames) and ``max_utts_per_batch``."""
    batch: List[Tuple[str, Matrix]] = []
    frames = 0
    for utt, m in items:
        n = int(m.shape[0]) * cfg.subsampling_factor
        if batch and (frames + n > cfg.max_frames_per_batch or len(batch) >= cfg.max_utts_per_batch):
            yield batch
            batch, frames = [], 0
        batch.append((utt, m))
        frames += n
    if batch:
        yield batch


def intersect(graph: DecodingGraph, mats: List["torch.Tensor"], scale: float, beams: Beams, device):  # noqa: F821
    """Lattices of a batch (order of ``mats``)."""
    import k2
    import torch

    lens = [int(m.shape[0]) for m in mats]
    T, C = max(lens), graph.num_pdfs + 1
    x = torch.full((len(mats), T, C), -1e10, dtype=torch.float32, device=device)  # col 0: epsilon, unused
    for i, m in enumerate(mats):
        x[i, : lens[i], 1:] = m.to(device=device, dtype=torch.float32) * scale
    sup = torch.tensor([[i, 0, n] for i, n in enumerate(lens)], dtype=torch.int32)
    dense = k2.DenseFsaVec(x, sup)
    return k2.intersect_dense_pruned(graph.fsa, dense, search_beam=beams.search, output_beam=beams.output,
                                     min_active_states=beams.min_active, max_active_states=beams.max_active)


def _best_paths(lattice, am_factor: Optional[float] = None):
    """Shortest paths; with ``am_factor = f`` the acoustic part of the arc scores (score minus
    graph score) is multiplied by ``f`` first (a scale sweep on the same lattice)."""
    import k2

    if am_factor is not None:
        lattice = lattice.clone()
        g = lattice.graph_scores
        lattice.scores = (lattice.scores - g) * am_factor + g
    return k2.shortest_path(lattice, use_double_scores=True)


def _paths_to_lists(best, graph: DecodingGraph) -> List[Tuple[List[int], List[int], np.ndarray]]:
    """Per FSA of ``best``: (word ids, frame index of each word, transition-id per frame);
    an FSA without arcs (decoding failed) gives ``None`` in place of the tuple."""
    import k2

    arcs_shape = best.arcs.shape().remove_axis(1)  # [fsa][arc]
    arc_splits = arcs_shape.row_splits(1).cpu().numpy()
    aux = best.aux_labels
    if isinstance(aux, k2.RaggedTensor):
        word_arc = aux.shape.row_ids(1).cpu().numpy()
        word_val = aux.values.cpu().numpy()
    else:
        word_val = aux.cpu().numpy()
        word_arc = np.arange(word_val.size)
    keep = word_val > 0
    word_arc, word_val = word_arc[keep], word_val[keep]
    tids = best.tids.cpu().numpy() if hasattr(best, "tids") else None
    out = []
    for i in range(len(arc_splits) - 1):
        a0, a1 = int(arc_splits[i]), int(arc_splits[i + 1])
        if a1 == a0:
            out.append(None)
            continue
        sel = (word_arc >= a0) & (word_arc < a1)
        # the best path is linear: arc k (k < a1 - a0 - 1) consumes frame k; the last arc is final
        frames = word_arc[sel] - a0
        out.append((word_val[sel].tolist(), frames.tolist(),
                    tids[a0:a1 - 1] if tids is not None else np.zeros(0, np.int64)))
    return out


def _to_tensor(utt: str, m: Matrix, num_pdfs: int, factor: int) -> "torch.Tensor":  # noqa: F821
    """One utterance's log-likelihoods as a checked float32 tensor at 10 ms."""
    import torch

    if not isinstance(m, torch.Tensor):
        m = np.asarray(m)
        if not m.flags.writeable:  # e.g. kaldiio's read-only arrays: torch warns on those
            m = m.copy()
    t = torch.as_tensor(m, dtype=torch.float32)
    check_loglikes(utt, t, num_pdfs)
    return expand_frames(t, factor)


class _Search:
    """One :func:`decode` call: the graph, the options and the result being filled; a failing
    batch is split, an empty lattice retried with wider beams (see the module docstring)."""

    def __init__(self, graph: DecodingGraph, cfg: DecodeConfig, dev, scales: List[float], word_times: bool):
        self.graph, self.cfg, self.dev, self.scales, self.word_times = graph, cfg, dev, scales, word_times
        self.res = DecodeResult(hyps_by_scale={s: {} for s in scales})

    def run(self, batch: List[Tuple[str, "torch.Tensor"]], beams: Beams, attempt: int) -> None:  # noqa: F821
        cfg = self.cfg
        try:
            lat = intersect(self.graph, [m for _, m in batch], cfg.acoustic_scale, beams, self.dev)
            per_scale = {s: _paths_to_lists(_best_paths(lat, None if s == cfg.acoustic_scale
                                                        else s / cfg.acoustic_scale), self.graph)
                         for s in self.scales}
        except RuntimeError as e:  # k2/torch errors, including out of memory
            self._recover(batch, beams, attempt, str(e).splitlines()[0][:200])
            return
        retry = self._store(batch, per_scale)
        for utt, m in retry:
            if attempt < cfg.max_retries:
                wider = beams.wider(cfg.retry_beam_factor)
                log.warning("utterance %s: no path survived the beams (search %.1f, max active %d); retrying "
                            "with search beam %.1f, max active %d", utt, beams.search, beams.max_active,
                            wider.search, wider.max_active)
                self.run([(utt, m)], wider, attempt + 1)
            else:
                log.warning("utterance %s: no path even with search beam %.1f; empty hypothesis", utt, beams.search)
                self.fail(utt)

    def _recover(self, batch: List[Tuple[str, "torch.Tensor"]], beams: Beams, attempt: int,  # noqa: F821
                 err: str) -> None:
        """After an error: split the batch, or retry one utterance with fewer active states, or
        give up on it."""
        if len(batch) > 1:
            log.warning("decoding a batch of %d utterances failed (%s); splitting it", len(batch), err)
            half = len(batch) // 2
            self.run(batch[:half], beams, attempt)
            self.run(batch[half:], beams, attempt)
            return
        if attempt == 0 and beams.max_active > 100:
            log.warning("utterance %s: decoding failed (%s); retrying with a quarter of the active states",
                        batch[0][0], err)
            self.run(batch, Beams(beams.search / 2, beams.output, beams.min_active, beams.max_active // 4),
                     attempt + 1)
            return
        log.warning("utterance %s: decoding failed (%s); empty hypothesis", batch[0][0], err)
        self.fail(batch[0][0])

    def _store(self, batch, per_scale) -> List[Tuple[str, "torch.Tensor"]]:  # noqa: F821
        """Keep every utterance's hypotheses (and word times); return those with an empty lattice."""
        res, graph, main = self.res, self.graph, per_scale[self.cfg.acoustic_scale]
        retry = []
        for i, (utt, m) in enumerate(batch):
            if main[i] is None:
                retry.append((utt, m))
                continue
            for s in self.scales:
                r = per_scale[s][i]
                res.hyps_by_scale[s][utt] = [graph.words[w] for w in r[0]] if r is not None else []
            res.hyps[utt] = res.hyps_by_scale[self.cfg.acoustic_scale][utt]
            if self.word_times:
                tids = main[i][2]
                if graph.tid2phone is not None and tids.size:
                    res.frame_phones[utt] = graph.tid2phone[tids]
                wt = word_alignment(res.hyps[utt], tids, graph, self.cfg.frame_shift)
                if wt is not None:
                    res.word_times[utt] = wt
        return retry

    def fail(self, utt: str) -> None:
        self.res.failed.append(utt)
        self.res.hyps[utt] = []
        for s in self.scales:
            self.res.hyps_by_scale[s][utt] = []


def decode(log_likes: Union[Mapping[str, Matrix], Iterable[Tuple[str, Matrix]]], graph: DecodingGraph,
           cfg: Optional[DecodeConfig] = None, device: str = "cpu",
           extra_scales: Sequence[float] = (), word_times: bool = True) -> DecodeResult:
    """Decode every utterance of ``log_likes`` (``utt -> [T, num_pdfs]`` log-likelihoods, or an
    iterable of ``(utt, matrix)`` pairs, e.g. a generator running the AM batch by batch).

    Args:
        log_likes: log-posteriors minus log-priors, numpy or torch, at the AM's frame rate.
        graph: from :func:`lm2am.graph.load_graph` (moved to ``device`` here if needed).
        cfg: beams, batching, acoustic scale, subsampling factor.
        device: ``"cpu"`` or ``"cuda[:n]"``.
        extra_scales: more acoustic scales whose best paths are re-picked from the same lattices.
        word_times: also compute word times (CTM) and per-frame phones.

    Returns:
        :class:`DecodeResult` (``.hyps`` maps utterance id to its word list).
    """
    import torch

    cfg = cfg or DecodeConfig()
    dev = torch.device(device)
    if str(graph.fsa.device) != str(dev):
        graph = graph.to(dev)
    if not hasattr(graph.fsa, "graph_scores"):
        graph.fsa.graph_scores = graph.fsa.scores.clone()  # rides along the lattice for scale sweeps
    scales = [cfg.acoustic_scale] + [float(s) for s in extra_scales if float(s) != cfg.acoustic_scale]
    search = _Search(graph, cfg, dev, scales, word_times)
    res = search.res
    base = cfg.beams()
    t_start = time.time()
    n_utts = 0
    total = len(log_likes) if isinstance(log_likes, Mapping) else None
    with tqdm(total=total, desc="decode", unit="utt", disable=None, mininterval=2) as bar:
        for batch in _batches(iter_items(log_likes), cfg):
            tb = [(utt, _to_tensor(utt, m, graph.num_pdfs, cfg.subsampling_factor)) for utt, m in batch]
            tb.sort(key=lambda x: -x[1].shape[0])
            res.audio_seconds += sum(m.shape[0] for _, m in tb) * cfg.frame_shift
            search.run(tb, base, 0)
            n_utts += len(tb)
            bar.update(len(tb))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    res.decode_seconds = time.time() - t_start
    log.info("decoded %d utterances (%.1f s of audio) in %.1f s on %s: real-time factor %.4f%s", n_utts,
             res.audio_seconds, res.decode_seconds, dev, res.rtf, res.failed_note())
    return res

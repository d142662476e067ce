"""Batched k2 decoding of the hybrid AM's scaled log-likelihoods over the HCLG of lm2am.graph.

Input per utterance: a ``[T, num_pdfs]`` matrix of log-likelihoods, i.e. the AM's main-output
log-posteriors minus the log senone priors (:func:`loglikes_from_log_posteriors`); column ``p``
belongs to pdf (senone) ``p``. :func:`decode` multiplies by ``acoustic_scale`` and builds a
``k2.DenseFsaVec`` whose column ``p + 1`` holds pdf ``p`` (the graph's labels are ``pdf + 1``,
column 0 = k2's epsilon, never used: see "THE label mapping" in lm2am.graph), then
``k2.intersect_dense_pruned`` (beams and active-state limits from :class:`DecodeConfig`) and
``k2.shortest_path`` give the one-best word sequence. Everything runs on CPU or CUDA.

Frame rate: the graph's HMM is a 10 ms topology (3 states with self-loops per phone). An AM that
subsamples its output by ``f`` (lm2am.frames) is decoded by repeating every output frame ``f``
times (``DecodeConfig.subsampling_factor``), which keeps the graph and its minimum phone
duration unchanged; the effective acoustic weight per 10 ms frame is then the same as for an
unsubsampled AM, so the acoustic scale needs no change.

Robustness (docs/users.md): a batch that raises (e.g. out of memory) is split in halves down to
single utterances; an utterance whose lattice is empty (beam too narrow) is retried alone with
beams multiplied by ``retry_beam_factor`` (up to ``max_retries`` times); an utterance that still
fails gets an empty hypothesis, a warning and an entry in ``DecodeResult.failed``, and decoding
goes on.

Scale sweep without re-decoding: the graph's own scores ride along the lattice
(``graph_scores``), so :func:`decode` can re-pick the best path for other acoustic scales
(``extra_scales``) from the same lattices, like Kaldi's ``lattice-scale`` / icefall's lm-scale
sweep (exact within the lattice's ``output_beam``).

Word times: the graph's arcs carry transition-ids, so the best path gives a phone per frame and
phone starts; :func:`word_alignment` fits the lexicon's pronunciations of the decoded words onto
that phone sequence (skipping optional silence), giving word start/duration for CTM files.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.graph import DecodingGraph

log = logging.getLogger(__name__)

__all__ = ["DecodeConfig", "DecodeResult", "decode", "loglikes_from_log_posteriors", "expand_frames",
           "word_alignment", "WordTime"]

Matrix = Union[np.ndarray, "torch.Tensor"]  # noqa: F821


@dataclass
class DecodeConfig:
    """The ``decode:`` section of a recipe config.

    Attributes:
        acoustic_scale: multiplies the log-likelihoods (the LM weight is its inverse).
        search_beam: decoding beam of ``intersect_dense_pruned`` (Kaldi's ``--beam``).
        output_beam: lattice beam, relative to the best path (Kaldi's ``--lattice-beam``).
        min_active_states, max_active_states: per-frame active-state limits.
        max_frames_per_batch: sum of (expanded) frames decoded together.
        max_utts_per_batch: utterances decoded together.
        subsampling_factor: the AM's output frame-rate reduction; frames are repeated this often.
        retry_beam_factor: beams (and max active) multiply by this on each retry of a failure.
        max_retries: retries of an utterance whose lattice came out empty.
        frame_shift: seconds per (expanded) frame, for the real-time factor and word times.
    """

    acoustic_scale: float = 0.1
    search_beam: float = 15.0
    output_beam: float = 8.0
    min_active_states: int = 30
    max_active_states: int = 7000
    max_frames_per_batch: int = 30000
    max_utts_per_batch: int = 64
    subsampling_factor: int = 1
    retry_beam_factor: float = 2.0
    max_retries: int = 2
    frame_shift: float = 0.01

    def __post_init__(self) -> None:
        if self.acoustic_scale <= 0:
            raise ValueError(f"acoustic_scale must be > 0, got {self.acoustic_scale}")
        if self.search_beam <= 0 or self.output_beam <= 0:
            raise ValueError("search_beam and output_beam must be > 0")
        if self.min_active_states < 0 or self.max_active_states < max(1, self.min_active_states):
            raise ValueError("need 0 <= min_active_states <= max_active_states, max_active_states >= 1")
        if self.max_frames_per_batch < 1 or self.max_utts_per_batch < 1:
            raise ValueError("max_frames_per_batch and max_utts_per_batch must be >= 1")
        if self.subsampling_factor < 1:
            raise ValueError(f"subsampling_factor must be >= 1, got {self.subsampling_factor}")
        if self.retry_beam_factor < 1 or self.max_retries < 0:
            raise ValueError("retry_beam_factor must be >= 1 and max_retries >= 0")


@dataclass
class WordTime:
    """One decoded word with its time span (seconds)."""

    word: str
    start: float
    duration: float


@dataclass
class DecodeResult:
    """What :func:`decode` returns.

    Attributes:
        hyps: utterance id -> decoded words (at ``cfg.acoustic_scale``).
        hyps_by_scale: acoustic scale -> utterance id -> words (``extra_scales`` + the main one).
        word_times: utterance id -> words with times (when the graph has alignment tables).
        frame_phones: utterance id -> phone id per (expanded) frame of the best path.
        failed: utterances that got an empty hypothesis because decoding failed.
        audio_seconds, decode_seconds, rtf: duration decoded, wall time spent, their ratio.
    """

    hyps: Dict[str, List[str]] = field(default_factory=dict)
    hyps_by_scale: Dict[float, Dict[str, List[str]]] = field(default_factory=dict)
    word_times: Dict[str, List[WordTime]] = field(default_factory=dict)
    frame_phones: Dict[str, np.ndarray] = field(default_factory=dict)
    failed: List[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor: decode wall time / audio duration."""
        return self.decode_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0


def loglikes_from_log_posteriors(log_post: Matrix, log_priors: Matrix) -> Matrix:
    """Scaled likelihoods of the hybrid AM: ``log p(s|x) - log p(s)`` (rows = frames)."""
    return log_post - log_priors


def expand_frames(x: Matrix, factor: int) -> Matrix:
    """Repeat each frame ``factor`` times (back to 10 ms for a subsampling AM; see module doc)."""
    if factor == 1:
        return x
    if isinstance(x, np.ndarray):
        return np.repeat(x, factor, axis=0)
    return x.repeat_interleave(factor, dim=0)


def _items(log_likes) -> Iterator[Tuple[str, Matrix]]:
    if isinstance(log_likes, Mapping):
        yield from log_likes.items()
    else:
        for item in log_likes:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise Lm2amError("decode: log_likes must be a mapping or an iterable of (utt_id, matrix) pairs")
            yield item


def _batches(items: Iterable[Tuple[str, Matrix]], cfg: DecodeConfig) -> Iterator[List[Tuple[str, Matrix]]]:
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


@dataclass
class _Beams:
    search: float
    output: float
    min_active: int
    max_active: int

    def wider(self, f: float) -> "_Beams":
        return _Beams(self.search * f, self.output * f, self.min_active, int(self.max_active * f))


def _intersect(graph: DecodingGraph, mats: List["torch.Tensor"], scale: float, beams: _Beams, device):  # noqa: F821
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


def word_alignment(word_list: Sequence[str], frame_tids: np.ndarray, graph: DecodingGraph,
                   frame_shift: float, sil_phones: Sequence[str] = ("SIL",)) -> Optional[List[WordTime]]:
    """Fit the decoded words' pronunciations onto the best path's phone segmentation.

    Phones start at frames whose transition-id is the forward transition out of HMM state 0;
    optional-silence phones between words are skipped. Returns None when the tables are missing
    or the phones do not spell the words (should not happen for paths of this graph).
    """
    if graph.tid2phone is None or graph.tid_starts_phone is None or graph.lexicon is None or graph.phones is None:
        return None
    tids = np.asarray(frame_tids, np.int64)
    if tids.size == 0:
        return [] if not word_list else None
    ph = graph.tid2phone[tids]
    starts = np.flatnonzero(graph.tid_starts_phone[tids])
    if starts.size == 0 or starts[0] != 0:
        starts = np.r_[0, starts]
    ends = np.r_[starts[1:], tids.size]
    seg = [(graph.phones[ph[s]], int(s), int(e)) for s, e in zip(starts, ends)]
    sil = set(sil_phones)
    out: List[WordTime] = []
    k = 0
    for w in word_list:
        while k < len(seg) and seg[k][0] in sil and not any(p and p[0] in sil for p in graph.lexicon.get(w, [])):
            k += 1
        match = None
        for pron in graph.lexicon.get(w, []):
            n = len(pron)
            if tuple(p for p, _, _ in seg[k:k + n]) == tuple(pron):
                match = n
                break
        if match is None:
            return None
        out.append(WordTime(w, seg[k][1] * frame_shift, (seg[k + match - 1][2] - seg[k][1]) * frame_shift))
        k += match
    return out


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
    res = DecodeResult(hyps_by_scale={s: {} for s in scales})
    base = _Beams(cfg.search_beam, cfg.output_beam, cfg.min_active_states, cfg.max_active_states)
    t_start = time.time()

    def to_tensor(utt: str, m: Matrix) -> "torch.Tensor":
        if not isinstance(m, torch.Tensor):
            m = np.asarray(m)
            if not m.flags.writeable:  # e.g. kaldiio's read-only arrays: torch warns on those
                m = m.copy()
        t = torch.as_tensor(m, dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != graph.num_pdfs:
            raise Lm2amError(f"utterance {utt}: log-likelihoods have shape {tuple(t.shape)} but the graph expects "
                             f"[frames, {graph.num_pdfs}] (its tree's senone count); use the AM trained with "
                             "this tree")
        if not torch.isfinite(t).all():
            raise Lm2amError(f"utterance {utt}: log-likelihoods contain NaN or inf; check the AM output")
        return expand_frames(t, cfg.subsampling_factor)

    def run(batch: List[Tuple[str, "torch.Tensor"]], beams: _Beams, attempt: int) -> None:
        try:
            lat = _intersect(graph, [m for _, m in batch], cfg.acoustic_scale, beams, dev)
            per_scale = {s: _paths_to_lists(_best_paths(lat, None if s == cfg.acoustic_scale
                                                        else s / cfg.acoustic_scale), graph) for s in scales}
        except RuntimeError as e:  # k2/torch errors, including out of memory
            if len(batch) > 1:
                log.warning("decoding a batch of %d utterances failed (%s); splitting it", len(batch),
                            str(e).splitlines()[0][:200])
                half = len(batch) // 2
                run(batch[:half], beams, attempt)
                run(batch[half:], beams, attempt)
                return
            if attempt == 0 and beams.max_active > 100:
                log.warning("utterance %s: decoding failed (%s); retrying with a quarter of the active states",
                            batch[0][0], str(e).splitlines()[0][:200])
                run(batch, _Beams(beams.search / 2, beams.output, beams.min_active, beams.max_active // 4), attempt + 1)
                return
            log.warning("utterance %s: decoding failed (%s); empty hypothesis", batch[0][0],
                        str(e).splitlines()[0][:200])
            fail(batch[0][0])
            return
        main = per_scale[cfg.acoustic_scale]
        retry = []
        for i, (utt, m) in enumerate(batch):
            if main[i] is None:
                retry.append((utt, m))
                continue
            for s in scales:
                r = per_scale[s][i]
                res.hyps_by_scale[s][utt] = [graph.words[w] for w in r[0]] if r is not None else []
            res.hyps[utt] = res.hyps_by_scale[cfg.acoustic_scale][utt]
            if word_times:
                tids = main[i][2]
                if graph.tid2phone is not None and tids.size:
                    res.frame_phones[utt] = graph.tid2phone[tids]
                wt = word_alignment(res.hyps[utt], tids, graph, cfg.frame_shift)
                if wt is not None:
                    res.word_times[utt] = wt
        for utt, m in retry:
            if attempt < cfg.max_retries:
                wider = beams.wider(cfg.retry_beam_factor)
                log.warning("utterance %s: no path survived the beams (search %.1f, max active %d); retrying "
                            "with search beam %.1f, max active %d", utt, beams.search, beams.max_active,
                            wider.search, wider.max_active)
                run([(utt, m)], wider, attempt + 1)
            else:
                log.warning("utterance %s: no path even with search beam %.1f; empty hypothesis", utt, beams.search)
                fail(utt)

    def fail(utt: str) -> None:
        res.failed.append(utt)
        res.hyps[utt] = []
        for s in scales:
            res.hyps_by_scale[s][utt] = []

    n_utts = 0
    for batch in _batches(_items(log_likes), cfg):
        tb = [(utt, to_tensor(utt, m)) for utt, m in batch]
        tb.sort(key=lambda x: -x[1].shape[0])
        res.audio_seconds += sum(m.shape[0] for _, m in tb) * cfg.frame_shift
        run(tb, base, 0)
        n_utts += len(tb)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    res.decode_seconds = time.time() - t_start
    log.info("decoded %d utterances (%.1f s of audio) in %.1f s on %s: real-time factor %.4f%s", n_utts,
             res.audio_seconds, res.decode_seconds, dev, res.rtf,
             f"; {len(res.failed)} failed (empty hypotheses): {', '.join(res.failed[:5])}" if res.failed else "")
    return res

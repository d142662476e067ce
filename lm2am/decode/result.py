"""What both decoders share: the result, the input matrices and word times from a best path.

Word times: the graph's arcs carry transition-ids, so the best path gives a phone per frame and
phone starts; :func:`word_alignment` fits the lexicon's pronunciations of the decoded words onto
that phone sequence (skipping optional silence), giving word start/duration for CTM files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.graph.load import DecodingGraph

__all__ = ["Matrix", "WordTime", "DecodeResult", "loglikes_from_log_posteriors", "expand_frames", "iter_items",
           "check_loglikes", "word_alignment"]

Matrix = Union[np.ndarray, "torch.Tensor"]  # noqa: F821


@dataclass
class WordTime:
    """One decoded word with its time span (seconds)."""

    word: str
    start: float
    duration: float


@dataclass
class DecodeResult:
    """What a decoder returns (:func:`lm2am.decode.k2.decode`, :func:`lm2am.decode.kaldi.decode`).

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

    def failed_note(self) -> str:
        """``"; N failed (empty hypotheses): u1, u2, ..."`` for the summary log line ("" if none)."""
        return (f"; {len(self.failed)} failed (empty hypotheses): {', '.join(self.failed[:5])}"
                if self.failed else "")


def loglikes_from_log_posteriors(log_post: Matrix, log_priors: Matrix) -> Matrix:
    """Scaled likelihoods of the hybrid AM: ``log p(s|x) - log p(s)`` (rows = frames)."""
    return log_post - log_priors


def expand_frames(x: Matrix, factor: int) -> Matrix:
    """Repeat each frame ``factor`` times (back to 10 ms for a subsampling AM; see :mod:`lm2am.decode.k2`)."""
    if factor == 1:
        return x
    if isinstance(x, np.ndarray):
        return np.repeat(x, factor, axis=0)
    return x.repeat_interleave(factor, dim=0)


def iter_items(log_likes) -> Iterator[Tuple[str, Matrix]]:
    """``(utt, matrix)`` pairs of a mapping or of an iterable of pairs (checked)."""
    if isinstance(log_likes, Mapping):
        yield from log_likes.items()
    else:
        for item in log_likes:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise Lm2amError("decode: log_likes must be a mapping or an iterable of (utt_id, matrix) pairs")
            yield item


def check_loglikes(utt: str, m: Matrix, num_pdfs: int) -> None:
    """An error unless ``m`` is a finite ``[frames, num_pdfs]`` matrix (numpy or torch)."""
    if m.ndim != 2 or m.shape[1] != num_pdfs:
        raise Lm2amError(f"utterance {utt}: log-likelihoods have shape {tuple(m.shape)} but the graph expects "
                         f"[frames, {num_pdfs}] (its tree's senone count); use the AM trained with this tree")
    if isinstance(m, np.ndarray):
        finite = np.isfinite(m).all()
    else:
        import torch

        finite = torch.isfinite(m).all()
    if not finite:
        raise Lm2amError(f"utterance {utt}: log-likelihoods contain NaN or inf; check the AM output")


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

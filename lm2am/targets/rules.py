"""Frame targets of one utterance from its alignment: the token rules and the piece placement.

Token sequences (what each teacher LM reads; the teacher-posterior stage runs a teacher on its
sequence and copies position ``i``'s distribution to the frames whose ``*_pos`` is ``i``):

* **subwords** ``subword_tokens``: the sentencepiece pieces of the transcript's words, in
  order. Each word is encoded on its own (``sp.encode(word)``); with sentencepiece's defaults
  (``split_by_whitespace``, ``add_dummy_prefix``, which ``lang.train_bpe`` uses) no piece spans a
  space and this equals encoding the whole sentence, so the LM's text-side sequences match. A
  word whose frames are all silence phones (``<UNK>`` -> SPN, noise words) contributes one
  ``sp.unk_id()`` token that owns no frame: the LM still sees that a word stood there. Stored per
  cut because a token may own no frame (see the placement rule), so it cannot be recovered from
  the frames.
* **phones** (:attr:`FrameTargets.phone_tokens`): one token per phone occurrence on speech
  frames: a maximal run of one phone id, cut at word boundaries and at the given phone starts
  (an aligner's phone segments, so a phone repeated across a boundary stays two tokens).
  Silence is not a token: text-derived phone sequences (lexicon) have no optional silence.
* **senones** (:attr:`FrameTargets.senone_tokens`): one token per HMM state, i.e. a maximal run of
  one senone id inside one phone token (duration repeats collapsed, as the method asks). The
  text-side equivalent: per phone, the senones of its HMM states with consecutive equal ids
  merged (:func:`collapse_state_senones`); two states of one phone that share a senone are one
  token on both sides. A topology that can skip states (Kaldi's silence) is not an issue
  because silence is not a token.

Piece placement (:func:`allocate_frames`): a word's pieces share its speech frames in order,
in proportion to each piece's character count without the ``▁`` marker (a lone ``▁`` weighs
0; an unknown/byte piece weighs 1). Counts are ``floor(n * w / W)`` plus one frame for the
largest remainders (ties: earlier piece); then every piece still at 0 frames takes one frame
from the piece with the most frames (earliest on ties), so each piece has >= 1 frame when the
word has at least as many frames as pieces. With fewer frames than pieces, frame ``j`` goes to
the piece whose character span holds the point ``(j + 0.5) * W / n``; the other pieces own no
frame (they stay in ``subword_tokens``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError

__all__ = ["FRAME_UNITS", "TOKENS", "FrameTargets", "allocate_frames", "collapse_state_senones",
           "make_frame_targets", "subword_pieces"]

#: Per-frame arrays of :class:`FrameTargets`, in storage order (file ``<unit>_<part>.ark``).
FRAME_UNITS: Tuple[str, ...] = ("senone", "phone", "subword", "subword_id", "phone_pos",
                                "senone_pos", "silence")
#: The per-cut token list stored next to the frame arrays.
TOKENS = "subword_tokens"

Words = Sequence[Tuple[str, int, int]]


@dataclass
class FrameTargets:
    """Frame-level targets of one cut (see :mod:`lm2am.targets` for every field's meaning)."""

    senone: np.ndarray  # int32 [T]
    phone: np.ndarray  # int32 [T]
    subword: np.ndarray  # int32 [T], index into subword_tokens, -1 on silence
    subword_id: np.ndarray  # int32 [T], piece id, -1 on silence
    phone_pos: np.ndarray  # int32 [T], index into phone_tokens, -1 on silence
    senone_pos: np.ndarray  # int32 [T], index into senone_tokens, -1 on silence
    silence: np.ndarray  # bool [T]
    subword_tokens: List[int]

    @property
    def num_frames(self) -> int:
        return int(self.senone.shape[0])

    def _tokens(self, values: np.ndarray, pos: np.ndarray) -> List[int]:
        speech = pos >= 0
        if not speech.any():
            return []
        p, v = pos[speech], values[speech]
        first = np.ones(len(p), dtype=bool)
        first[1:] = p[1:] != p[:-1]
        return [int(x) for x in v[first]]

    @property
    def phone_tokens(self) -> List[int]:
        """The phone token sequence (phones.txt ids), one per ``phone_pos`` value."""
        return self._tokens(self.phone, self.phone_pos)

    @property
    def senone_tokens(self) -> List[int]:
        """The collapsed senone token sequence, one per ``senone_pos`` value."""
        return self._tokens(self.senone, self.senone_pos)

    def arrays(self) -> Dict[str, np.ndarray]:
        """The per-frame arrays by unit name (:data:`FRAME_UNITS`)."""
        return {u: getattr(self, u) for u in FRAME_UNITS}


def collapse_state_senones(phone_state_senones: Iterable[Sequence[int]]) -> List[int]:
    """Text-side senone token sequence: per phone, its HMM states' senones with consecutive
    equal ids merged, phones concatenated. Matches :attr:`FrameTargets.senone_tokens` of an
    alignment of the same phones (without silence)."""
    out: List[int] = []
    for states in phone_state_senones:
        prev = None
        for s in states:
            if s != prev:
                out.append(int(s))
            prev = s
    return out


def allocate_frames(num_frames: int, weights: Sequence[int]) -> np.ndarray:
    """Piece index (0..k-1, non-decreasing) for each of ``num_frames`` frames of one word.

    ``weights`` are the pieces' character counts. Rule (module docstring): largest-remainder
    proportional split, then every piece gets >= 1 frame if ``num_frames >= k``; otherwise frame
    ``j`` goes to the piece whose character span holds ``(j + 0.5) * W / num_frames``.
    """
    k = len(weights)
    if num_frames <= 0 or k == 0:
        return np.full(max(num_frames, 0), -1 if k == 0 else 0, dtype=np.int32)
    w = np.asarray(weights, dtype=np.int64)
    if w.min() < 0:
        raise ValueError(f"negative piece weight in {list(weights)}")
    if w.sum() == 0:
        w = np.ones(k, dtype=np.int64)
    total = int(w.sum())
    if num_frames < k:
        # Integer form of (j + 0.5) * W / n: compare 2*cum*n with (2j + 1) * W.
        points = (2 * np.arange(num_frames, dtype=np.int64) + 1) * total
        idx = np.searchsorted(2 * np.cumsum(w) * num_frames, points, side="right")
        return np.minimum(idx, k - 1).astype(np.int32)
    num = num_frames * w  # exact integer quotas num / total
    counts = num // total
    rest = num_frames - int(counts.sum())
    if rest:
        order = np.argsort(-(num % total), kind="stable")  # largest remainder, earlier on ties
        counts[order[:rest]] += 1
    for z in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))  # has >= 2 frames: n >= k and some piece has 0
        counts[donor] -= 1
        counts[z] += 1
    return np.repeat(np.arange(k, dtype=np.int32), counts)


def _piece_weight(sp: Any, piece_id: int) -> int:
    if sp.is_unknown(piece_id) or sp.is_control(piece_id) or sp.is_byte(piece_id):
        return 1
    return len(sp.id_to_piece(piece_id).replace("\u2581", ""))


def subword_pieces(word: str, sp: Any) -> List[int]:
    """Sentencepiece ids of one word (upper-cased, as the BPE model was trained)."""
    return [int(i) for i in sp.encode(word.upper())]


def _runs(values: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Run id per element: a new run where the value changes or ``breaks`` is set."""
    new = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        new[1:] = (values[1:] != values[:-1]) | breaks[1:]
    return np.cumsum(new) - 1


def _word_index(words: Words, T: int, utt_id: str) -> np.ndarray:
    """Index into ``words`` per frame, -1 outside every word."""
    word_idx = np.full(T, -1, dtype=np.int64)
    prev_end = 0
    for i, (w, s, e) in enumerate(words):
        if not (prev_end <= s <= e <= T):
            raise Lm2amError(f"utterance {utt_id}: word {i} {w!r} spans frames [{s}, {e}), which "
                             f"is out of order or outside the {T} frames; realign it")
        word_idx[s:e] = i
        prev_end = e
    return word_idx


def _token_positions(phones: np.ndarray, senones: np.ndarray, speech: np.ndarray, word_idx: np.ndarray,
                     phone_starts: Optional[Iterable[int]]) -> Tuple[np.ndarray, np.ndarray]:
    """``(phone_pos, senone_pos)``: runs on speech frames, cut at word and given phone boundaries."""
    T = len(phones)
    breaks = np.zeros(T, dtype=bool)
    if T > 1:
        breaks[1:] = word_idx[1:] != word_idx[:-1]
    if phone_starts is not None:
        starts = np.fromiter(phone_starts, dtype=np.int64)
        breaks[starts[(starts >= 0) & (starts < T)]] = True
    phone_pos = np.full(T, -1, dtype=np.int32)
    senone_pos = np.full(T, -1, dtype=np.int32)
    sidx = np.flatnonzero(speech)
    if len(sidx):
        # A silence gap between two speech frames also separates tokens.
        gap = np.zeros(len(sidx), dtype=bool)
        gap[1:] = sidx[1:] != sidx[:-1] + 1
        pb = breaks[sidx] | gap
        prun = _runs(phones[sidx], pb)
        phone_pos[sidx] = prun
        sb = np.zeros(len(sidx), dtype=bool)
        sb[1:] = prun[1:] != prun[:-1]
        senone_pos[sidx] = _runs(senones[sidx], sb)
    return phone_pos, senone_pos


def _subword_frames(words: Words, speech: np.ndarray, sp: Any) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """``(subword, subword_id, subword_tokens)``: the words' pieces placed on their speech frames."""
    T = len(speech)
    subword = np.full(T, -1, dtype=np.int32)
    subword_id = np.full(T, -1, dtype=np.int32)
    tokens: List[int] = []
    for w, s, e in words:
        frames = s + np.flatnonzero(speech[s:e])
        if e > s and len(frames) == 0:  # non-speech word (<UNK> -> SPN, noise): one <unk> token
            tokens.append(int(sp.unk_id()))
            continue
        pieces = subword_pieces(w, sp)
        where = allocate_frames(len(frames), [_piece_weight(sp, p) for p in pieces])
        if len(frames):
            subword[frames] = len(tokens) + where
            subword_id[frames] = np.asarray(pieces, dtype=np.int32)[where]
        tokens.extend(pieces)
    return subword, subword_id, tokens


def make_frame_targets(phones: np.ndarray, senones: np.ndarray, words: Words, sp: Any,
                       silence_phone_ids: Collection[int], *,
                       phone_starts: Optional[Iterable[int]] = None,
                       utt_id: str = "") -> FrameTargets:
    """Build the :class:`FrameTargets` of one utterance from its frame alignment.

    Args:
        phones: ``int [T]`` phones.txt id per frame.
        senones: ``int [T]`` senone (pdf) id per frame.
        words: ``(word, start, end)`` per transcript word in order, frames ``[start, end)``;
            frames outside every word are silence.
        sp: a ``sentencepiece.SentencePieceProcessor`` (the lang dir's ``bpe.model``).
        silence_phone_ids: ids of the silence phones (SIL, SPN, ...).
        phone_starts: frames where a phone occurrence starts (e.g. from the aligner's phone
            segments); without them a phone token is a run of one phone id within one word.
        utt_id: named in error messages.

    Silence frames get -1 in every position array. Rules for tokens and piece placement: see
    the module docstring.
    """
    phones = np.asarray(phones, dtype=np.int32)
    senones = np.asarray(senones, dtype=np.int32)
    T = len(phones)
    if phones.ndim != 1 or senones.ndim != 1 or len(senones) != T:
        raise Lm2amError(f"utterance {utt_id}: phone alignment has {T} frames but senone alignment "
                         f"{len(senones)}; both must come from the same alignment")
    word_idx = _word_index(words, T, utt_id)
    silence = (word_idx < 0) | np.isin(phones, np.fromiter(silence_phone_ids, dtype=np.int64))
    speech = ~silence
    phone_pos, senone_pos = _token_positions(phones, senones, speech, word_idx, phone_starts)
    subword, subword_id, tokens = _subword_frames(words, speech, sp)
    return FrameTargets(senone=senones.copy(), phone=phones.copy(), subword=subword,
                        subword_id=subword_id, phone_pos=phone_pos, senone_pos=senone_pos,
                        silence=silence, subword_tokens=tokens)

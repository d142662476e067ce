"""Frame-level targets for three units (senones, monophones, subwords), their checks and storage.

Every frame ``t`` of a cut gets (all ``np.int32[T]`` unless noted, ``T`` = feature frames):

============== ===========================================================================
``senone``     senone (pdf) id: the main output's hard target.
``phone``      monophone id of ``phones.txt`` (silence phones included).
``subword``    index into the cut's ``subword_tokens`` (its sentencepiece token sequence),
               ``-1`` on silence frames.
``subword_id`` sentencepiece piece id of that token (``subword_tokens[subword]``), ``-1`` on
               silence frames.
``phone_pos``  index into the cut's phone token sequence, ``-1`` on silence frames.
``senone_pos`` index into the cut's collapsed senone (HMM-state) token sequence, ``-1`` on
               silence frames.
``silence``    ``np.bool_[T]``: the frame is outside every word or its phone is a silence
               phone (SIL, SPN). Equivalent to ``subword == -1`` (and to both ``*_pos == -1``).
============== ===========================================================================

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

Storage (:func:`write_targets`, :func:`read_targets`, :func:`attach_targets`), per ``part``:

* ``<out_dir>/<unit>_<part>.ark/.scp`` for each unit of :data:`FRAME_UNITS` plus
  ``subword_tokens_<part>.ark/.scp``: Kaldi binary int32 vectors (``\\0B``, then ``\\4`` + int32
  length, then ``\\4`` + int32 per element: 5 bytes per frame and unit), what ``ali-to-pdf``
  writes, so ``copy-int-vector ark:senone_train.ark ark,t:-`` prints them; byte-identical to
  ``kaldiio.save_ark`` of ``int32`` vectors, so ``kaldiio.load_scp`` reads them too. ``silence`` is
  stored as 0/1. Keys are cut ids, scp lines C-locale sorted, scp paths are the final ark paths
  as given (relative to the directory the stage runs in, as Kaldi's scp files are).
* ``<out_dir>/targets_<part>.json``: frame shift, ``num_senones``, ``num_phones``,
  ``num_subwords``, counts. Written last: it is the completion signal.
* ``<out_dir>/arrays_<part>/<unit>/`` + ``<out_dir>/cuts_<part>.jsonl.gz``: the same arrays as
  lhotse ``TemporalArray`` custom fields (``numpy_files`` storage, lossless, stock lhotse
  reader), so ``cut.load_custom("senone")`` returns the exact ``int32`` array;
  ``cut.custom["subword_tokens"]`` is the token list.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Collection, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import save_manifest

log = logging.getLogger(__name__)

__all__ = [
    "FRAME_UNITS", "FrameTargets", "TargetsInfo", "allocate_frames", "attach_targets",
    "check_targets", "collapse_state_senones", "encode_int32_vector", "iter_int32_vector_ark",
    "make_frame_targets", "read_targets", "subword_pieces", "write_targets",
]

#: Per-frame arrays of :class:`FrameTargets`, in storage order (file ``<unit>_<part>.ark``).
FRAME_UNITS: Tuple[str, ...] = ("senone", "phone", "subword", "subword_id", "phone_pos",
                                "senone_pos", "silence")
_TOKENS = "subword_tokens"
_FORMAT = "lm2am-frame-targets"
_VERSION = 1

Words = Sequence[Tuple[str, int, int]]


@dataclass
class FrameTargets:
    """Frame-level targets of one cut (see the module docstring for every field's meaning)."""

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


# ----------------------------------------------------------------------------------------------
# Construction


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
    word_idx = np.full(T, -1, dtype=np.int64)  # index into words per frame, -1 outside words
    prev_end = 0
    for i, (w, s, e) in enumerate(words):
        if not (prev_end <= s <= e <= T):
            raise Lm2amError(f"utterance {utt_id}: word {i} {w!r} spans frames [{s}, {e}), which "
                             f"is out of order or outside the {T} frames; realign it")
        word_idx[s:e] = i
        prev_end = e
    silence = (word_idx < 0) | np.isin(phones, np.fromiter(silence_phone_ids, dtype=np.int64))
    speech = ~silence

    # Phone and senone tokens: runs on speech frames, cut at word and given phone boundaries.
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

    # Subword tokens and their frames.
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
    return FrameTargets(senone=senones.copy(), phone=phones.copy(), subword=subword,
                        subword_id=subword_id, phone_pos=phone_pos, senone_pos=senone_pos,
                        silence=silence, subword_tokens=tokens)


# ----------------------------------------------------------------------------------------------
# Checks


def _check_pos(cut_id: str, name: str, pos: np.ndarray, num_tokens: Optional[int]) -> None:
    p = pos[pos >= 0]
    if len(p) == 0:
        return
    if np.any(np.diff(p) < 0) or (num_tokens is None and p[0] != 0):
        raise Lm2amError(f"cut {cut_id}: {name} positions are not 0, 1, 2, ... in frame order; "
                         "rerun the targets stage")
    if num_tokens is None:  # positions are runs: 0, 1, 2, ... each owning >= 1 frame
        if np.any(np.diff(p) > 1):
            raise Lm2amError(f"cut {cut_id}: {name} positions skip a token; rerun the targets stage")
    elif p[-1] >= num_tokens:
        raise Lm2amError(f"cut {cut_id}: {name} position {int(p[-1])} >= its {num_tokens} tokens; "
                         "rerun the targets stage")


def check_targets(cut_id: str, targets: FrameTargets, num_frames: int, num_senones: int,
                  num_phones: int, num_subwords: Optional[int] = None) -> None:
    """Raise :class:`Lm2amError` unless ``targets`` fit a cut of ``num_frames`` feature frames
    and a model with ``num_senones`` senones / ``num_phones`` phones (/ ``num_subwords``).

    Checks: every array has ``num_frames`` entries; ids in range; the silence mask, ``-1``
    entries and positions agree. Messages name the cut and both numbers.
    """
    for unit, arr in targets.arrays().items():
        if arr.ndim != 1 or arr.shape[0] != num_frames:
            raise Lm2amError(
                f"cut {cut_id}: {unit} targets have {arr.shape[0] if arr.ndim else 0} frames but the "
                f"cut has {num_frames} feature frames; realign with the current features "
                "(same frame shift and snip-edges setting)")
    if num_frames == 0:
        return
    lo, hi = int(targets.senone.min()), int(targets.senone.max())
    if lo < 0 or hi >= num_senones:
        bad = hi if hi >= num_senones else lo
        raise Lm2amError(f"cut {cut_id}: senone id {bad} outside the model's {num_senones} senones "
                         "(num_pdfs); the alignment comes from another tree, realign or rebuild "
                         "the targets with the current tree")
    lo, hi = int(targets.phone.min()), int(targets.phone.max())
    if lo < 0 or hi >= num_phones:
        raise Lm2amError(f"cut {cut_id}: phone id {hi if hi >= num_phones else lo} outside the "
                         f"{num_phones} phones of phones.txt; the alignment uses another lang dir")
    tokens = np.asarray(targets.subword_tokens, dtype=np.int64)
    if num_subwords is not None and len(tokens) and (tokens.min() < 0 or tokens.max() >= num_subwords):
        raise Lm2amError(f"cut {cut_id}: subword id {int(tokens.max())} outside the {num_subwords} "
                         "pieces of bpe.model; the targets were built with another BPE model")
    sil = np.asarray(targets.silence, dtype=bool)
    for name in ("subword", "subword_id", "phone_pos", "senone_pos"):
        if not np.array_equal(getattr(targets, name) < 0, sil):
            raise Lm2amError(f"cut {cut_id}: {name} is -1 exactly on silence frames in valid "
                             "targets, but not here; rerun the targets stage")
    _check_pos(cut_id, "subword", targets.subword, len(tokens))
    _check_pos(cut_id, "phone", targets.phone_pos, None)
    _check_pos(cut_id, "senone", targets.senone_pos, None)
    speech = ~sil
    if speech.any() and not np.array_equal(tokens[targets.subword[speech]], targets.subword_id[speech]):
        raise Lm2amError(f"cut {cut_id}: subword_id differs from subword_tokens[subword]; "
                         "rerun the targets stage")


# ----------------------------------------------------------------------------------------------
# Kaldi ark/scp storage


# Kaldi's binary int32 vector (BasicVectorHolder<int32>): "\0B", "\4" + int32 length, then
# "\4" + int32 per element. kaldiio writes and reads the same bytes, but element by element in
# Python (~0.3 us each); a packed numpy record does it at memory speed.
_INT_REC = np.dtype([("size", "u1"), ("value", "<i4")])  # itemsize 5, no padding


def encode_int32_vector(values: np.ndarray) -> bytes:
    """Kaldi binary int32-vector bytes of ``values`` (the part after ``"<key> "``)."""
    rec = np.empty(len(values), dtype=_INT_REC)
    rec["size"] = 4
    rec["value"] = values
    return b"\0B\x04" + np.int32(len(values)).astype("<i4").tobytes() + rec.tobytes()


def _decode_int32_vector(buf: bytes, pos: int, where: str) -> Tuple[np.ndarray, int]:
    """Parse one binary int32 vector at ``buf[pos:]``; returns (array, position after it)."""
    if buf[pos:pos + 3] != b"\0B\x04" or len(buf) < pos + 7:
        raise Lm2amError(f"{where}: not a Kaldi binary int32 vector; give int-vector archives "
                         "(ali-to-pdf, ali-to-phones --per-frame=true, lm2am targets)")
    n = int(np.frombuffer(buf, dtype="<i4", count=1, offset=pos + 3)[0])
    end = pos + 7 + 5 * n
    if n < 0 or len(buf) < end:
        raise Lm2amError(f"{where}: truncated int32 vector ({n} entries announced); regenerate the file")
    rec = np.frombuffer(buf, dtype=_INT_REC, count=n, offset=pos + 7)
    if n and not np.all(rec["size"] == 4):
        raise Lm2amError(f"{where}: not an int32 vector (element size byte != 4); regenerate the file")
    return rec["value"].astype(np.int32), end


def iter_int32_vector_ark(buf: bytes, name: str = "archive") -> Iterator[Tuple[str, np.ndarray]]:
    """``(key, np.int32[T])`` of a binary Kaldi int32-vector archive held in ``buf``."""
    pos = 0
    while pos < len(buf):
        if buf[pos:pos + 1].isspace():  # tolerate trailing newlines
            pos += 1
            continue
        sp = buf.find(b" ", pos)
        if sp < 0:
            raise Lm2amError(f"{name}: truncated archive at byte {pos}; regenerate it")
        key = buf[pos:sp].decode("utf-8", errors="replace")
        arr, pos = _decode_int32_vector(buf, sp + 1, f"{name} (utterance {key})")
        yield key, arr


def _read_int32_vector_at(fd: int, offset: int, where: str) -> np.ndarray:
    head = os.pread(fd, 7, offset)  # pread: no shared file position, safe in forked workers
    if len(head) == 7 and head[:3] == b"\0B\x04":
        n = int(np.frombuffer(head, dtype="<i4", count=1, offset=3)[0])
        return _decode_int32_vector(head + os.pread(fd, 5 * max(n, 0), offset + 7), 0, where)[0]
    return _decode_int32_vector(head, 0, where)[0]  # raises the right message


@dataclass
class TargetsInfo:
    """Contents of ``targets_<part>.json``: what the targets of one part were made for."""

    frame_shift: float
    num_senones: int
    num_phones: int
    num_subwords: Optional[int]
    utterances: int = 0
    frames: int = 0
    silence_frames: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "frame_shift": self.frame_shift,
                "num_senones": self.num_senones, "num_phones": self.num_phones,
                "num_subwords": self.num_subwords, "utterances": self.utterances,
                "frames": self.frames, "silence_frames": self.silence_frames,
                "units": list(FRAME_UNITS) + [_TOKENS]}


def _info_path(out_dir: Path, part: str) -> Path:
    return out_dir / f"targets_{part}.json"


def read_info(out_dir: Union[Path, str], part: str) -> TargetsInfo:
    """Read ``<out_dir>/targets_<part>.json`` (the part's completion signal)."""
    path = _info_path(Path(out_dir), part)
    if not path.is_file():
        raise Lm2amError(f"{path} is missing: the targets of {part!r} were not written (or not "
                         "completely); run the targets stage")
    d = json.loads(path.read_text())
    if d.get("format") != _FORMAT or d.get("version") != _VERSION:
        raise Lm2amError(f"{path}: not lm2am frame targets version {_VERSION}; rerun the targets stage")
    return TargetsInfo(frame_shift=d["frame_shift"], num_senones=d["num_senones"],
                       num_phones=d["num_phones"], num_subwords=d["num_subwords"],
                       utterances=d["utterances"], frames=d["frames"],
                       silence_frames=d["silence_frames"])


def write_targets(targets: Union[Mapping[str, FrameTargets], Iterable[Tuple[str, FrameTargets]]],
                  out_dir: Union[Path, str], part: str, *, num_senones: Optional[int] = None,
                  num_phones: Optional[int] = None, num_subwords: Optional[int] = None,
                  frame_shift: float = 0.01) -> TargetsInfo:
    """Write the targets of one part as Kaldi int-vector ark/scp files (module docstring).

    ``targets`` is a mapping or an iterable of ``(cut_id, FrameTargets)`` (streamed: memory
    stays flat). ``num_senones``/``num_phones`` default to the largest id + 1 seen; pass the
    tree's and phones.txt's numbers so the recorded values are the model's. Every utterance is
    checked with :func:`check_targets`. Files are written in a temporary directory inside
    ``out_dir`` (scp lines already naming the final ark paths) and renamed; the info json comes
    last.
    """
    out_dir = Path(out_dir)
    if any(c.isspace() for c in str(out_dir)):
        raise Lm2amError(f"targets dir {out_dir!r} contains whitespace, which Kaldi scp files cannot "
                         "hold; use a path without spaces")
    out_dir.mkdir(parents=True, exist_ok=True)
    info_path = _info_path(out_dir, part)
    if info_path.exists():
        info_path.unlink()  # an interrupted rewrite must not look complete
    names = list(FRAME_UNITS) + [_TOKENS]
    tmp = out_dir / f".targets_{part}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    items = targets.items() if isinstance(targets, Mapping) else targets
    scp: Dict[str, List[Tuple[str, str]]] = {n: [] for n in names}
    seen: set = set()
    max_senone = max_phone = max_sub = -1
    frames = silence_frames = 0
    arks = {n: open(tmp / f"{n}_{part}.ark", "wb") for n in names}
    try:
        for cut_id, t in items:
            if not cut_id or any(c.isspace() for c in cut_id):
                raise Lm2amError(f"cut id {cut_id!r} is empty or contains whitespace, which Kaldi "
                                 "ark keys cannot; fix the manifests' cut ids")
            if cut_id in seen:
                raise Lm2amError(f"cut {cut_id} appears twice in the targets of {part!r}")
            seen.add(cut_id)
            T = t.num_frames
            if T:
                max_senone = max(max_senone, int(t.senone.max()))
                max_phone = max(max_phone, int(t.phone.max()))
            if t.subword_tokens:
                max_sub = max(max_sub, max(t.subword_tokens))
            check_targets(cut_id, t, T, num_senones if num_senones is not None else max_senone + 1,
                          num_phones if num_phones is not None else max_phone + 1, num_subwords)
            frames += T
            silence_frames += int(np.count_nonzero(t.silence))
            values = dict(t.arrays())
            values["silence"] = values["silence"].astype(np.int32)
            values[_TOKENS] = np.asarray(t.subword_tokens, dtype=np.int32)
            key = cut_id.encode() + b" "
            for n in names:
                f = arks[n]
                offset = f.tell() + len(key)  # the scp offset points past "<key> "
                f.write(key + encode_int32_vector(values[n]))
                scp[n].append((cut_id, f"{out_dir / f'{n}_{part}.ark'}:{offset}"))
        for f in arks.values():
            f.close()
        for n in names:
            lines = sorted(scp[n], key=lambda kv: kv[0].encode())  # C-locale (byte) order
            (tmp / f"{n}_{part}.scp").write_text("".join(f"{k} {v}\n" for k, v in lines))
        info = TargetsInfo(
            frame_shift=frame_shift,
            num_senones=num_senones if num_senones is not None else max_senone + 1,
            num_phones=num_phones if num_phones is not None else max_phone + 1,
            num_subwords=num_subwords if num_subwords is not None else (max_sub + 1 if max_sub >= 0 else None),
            utterances=len(seen), frames=frames, silence_frames=silence_frames)
        for n in names:  # ark before scp: an scp never points at a missing ark
            os.replace(tmp / f"{n}_{part}.ark", out_dir / f"{n}_{part}.ark")
            os.replace(tmp / f"{n}_{part}.scp", out_dir / f"{n}_{part}.scp")
        (tmp / info_path.name).write_text(json.dumps(info.to_dict(), indent=1) + "\n")
        os.replace(tmp / info_path.name, info_path)
    except OSError as e:
        if e.errno == 28:  # ENOSPC
            raise Lm2amError(f"disk full while writing targets to {out_dir}; free space and rerun "
                             "the stage") from None
        raise
    finally:
        for f in arks.values():
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("targets %s: %d utterances, %d frames (%.1f%% silence) -> %s", part, info.utterances,
             frames, 100.0 * silence_frames / max(frames, 1), out_dir)
    return info


class TargetsReader(Mapping[str, FrameTargets]):
    """Lazy ``cut_id -> FrameTargets`` over the ark/scp files of one part.

    Each lookup reads the cut's arrays (random access through the scp offsets, ``os.pread``,
    so forked data-loader workers can share a reader) and checks them against the recorded
    ``num_senones``/``num_phones``; ``info`` holds the part's :class:`TargetsInfo`.
    """

    def __init__(self, out_dir: Union[Path, str], part: str, num_senones: Optional[int] = None):
        out_dir = Path(out_dir)
        self.info = read_info(out_dir, part)
        if num_senones is not None and num_senones != self.info.num_senones:
            raise Lm2amError(f"{_info_path(out_dir, part)}: targets were made for "
                             f"{self.info.num_senones} senones but the model has {num_senones}; "
                             "rebuild the targets with the model's tree (or train with that tree)")
        self._scp: Dict[str, Dict[str, Tuple[str, int]]] = {}
        for n in list(FRAME_UNITS) + [_TOKENS]:
            self._scp[n] = _read_scp(out_dir / f"{n}_{part}.scp")
        keys = set(self._scp["senone"])
        for n, d in self._scp.items():
            if set(d) != keys:
                odd = sorted(keys.symmetric_difference(d))[0]
                raise Lm2amError(f"{out_dir / f'{n}_{part}.scp'} and senone_{part}.scp list "
                                 f"different cuts (e.g. {odd}); rerun the targets stage")
        self._keys = sorted(keys, key=str.encode)
        self._fds: Dict[str, int] = {}
        self._pid = os.getpid()

    def _fd(self, path: str) -> int:
        if self._pid != os.getpid():  # forked: descriptors are shared but fine with pread;
            self._fds, self._pid = {}, os.getpid()  # reopen anyway so close() stays per process
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise Lm2amError(f"{path} (named in an scp file) is missing; rerun the targets "
                                 "stage, from the directory it ran in") from None
        return fd

    def close(self) -> None:
        """Close the archive files (reopened on the next lookup)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                self.close()
        except Exception:
            pass

    def __getitem__(self, cut_id: str) -> FrameTargets:
        v = {}
        for n, d in self._scp.items():
            path, offset = d[cut_id]
            v[n] = _read_int32_vector_at(self._fd(path), offset, f"{path}:{offset} ({cut_id})")
        t = FrameTargets(senone=v["senone"], phone=v["phone"], subword=v["subword"],
                         subword_id=v["subword_id"], phone_pos=v["phone_pos"],
                         senone_pos=v["senone_pos"], silence=v["silence"].astype(bool),
                         subword_tokens=[int(x) for x in v[_TOKENS]])
        check_targets(cut_id, t, t.num_frames, self.info.num_senones, self.info.num_phones,
                      self.info.num_subwords)
        return t

    def __contains__(self, cut_id: object) -> bool:
        return cut_id in self._scp["senone"]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _read_scp(path: Path) -> Dict[str, Tuple[str, int]]:
    """``key -> (ark path, byte offset)`` of an scp file of ``ark:offset`` entries."""
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; rerun the targets stage")
    out: Dict[str, Tuple[str, int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        ark, _, off = fields[-1].rpartition(":") if len(fields) == 2 else ("", "", "")
        if not ark or not off.isdigit():
            raise Lm2amError(f"{path} line {n}: expected '<key> <ark>:<offset>', got {line[:80]!r}; "
                             "rerun the targets stage")
        out[fields[0]] = (ark, int(off))
    return out


def read_targets(out_dir: Union[Path, str], part: str,
                 num_senones: Optional[int] = None) -> TargetsReader:
    """Open the targets of ``part`` written by :func:`write_targets` as a lazy mapping.

    ``num_senones``, if given, must equal the recorded number (the model's), else
    :class:`Lm2amError` with both numbers.
    """
    return TargetsReader(out_dir, part, num_senones)


# ----------------------------------------------------------------------------------------------
# lhotse cuts


def attach_targets(cuts: Any, out_dir: Union[Path, str], part: str, *, missing: str = "error",
                   manifest_path: Optional[Union[Path, str]] = None) -> Any:
    """Attach the targets of ``part`` to ``cuts`` as lhotse custom fields; save the manifest.

    Each unit of :data:`FRAME_UNITS` becomes a ``TemporalArray`` (``numpy_files`` storage under
    ``<out_dir>/arrays_<part>/<unit>/``, frame shift from the targets, start = cut start) and
    ``subword_tokens`` a plain list, so ``cut.load_custom("senone")`` returns the exact array.
    Every cut is checked: it has features, its frame shift is the targets' and its feature
    frame count equals the targets' (:func:`check_targets`). Cuts without targets raise
    :class:`Lm2amError` (``missing="error"``) or are dropped with a log line (``"drop"``).
    The manifest (default ``<out_dir>/cuts_<part>.jsonl.gz``) and the arrays are built under
    temporary names and swapped in at the end, so ``cuts`` may be read from the manifest being
    replaced and a killed run leaves the old pair (or no manifest), never a mixed one.
    Returns the new CutSet (lazy if ``cuts`` was lazy).
    """
    from lhotse import CutSet, NumpyFilesWriter
    from lhotse.array import seconds_to_frames
    from lhotse.utils import fastcopy

    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    out_dir = Path(out_dir)
    reader = read_targets(out_dir, part)
    info = reader.info
    manifest_path = Path(manifest_path) if manifest_path else out_dir / f"cuts_{part}.jsonl.gz"
    arrays_dir = out_dir / f"arrays_{part}"
    # Arrays go to a temp dir (manifest entries already naming the final dir); the old manifest
    # and arrays stay valid until the new ones are complete (the input may be that manifest).
    tmp_arrays = out_dir / f".arrays_{part}.tmp{os.getpid()}"
    shutil.rmtree(tmp_arrays, ignore_errors=True)
    writers = {u: NumpyFilesWriter(tmp_arrays / u) for u in FRAME_UNITS}
    dropped: List[str] = []

    def keep(cut) -> bool:
        if cut.id in reader:
            return True
        if missing == "error":
            raise Lm2amError(f"cut {cut.id} of {part!r} has no frame targets in {out_dir} (its "
                             "alignment failed or it was added later); realign, or drop such cuts")
        dropped.append(cut.id)
        return False

    def attach(cut):
        if not cut.has_features:
            raise Lm2amError(f"cut {cut.id} has no features; attach targets to the feature stage's "
                             "cuts (data/fbank/cuts_<part>.jsonl.gz)")
        if abs(cut.frame_shift - info.frame_shift) > 1e-9:
            raise Lm2amError(f"cut {cut.id}: features have frame shift {cut.frame_shift} s but the "
                             f"targets {info.frame_shift} s; realign with the same frame shift")
        t = reader[cut.id]
        check_targets(cut.id, t, cut.num_frames, info.num_senones, info.num_phones, info.num_subwords)
        # lhotse slices a TemporalArray by the cut's duration: that must give all T frames back.
        n = seconds_to_frames(cut.duration, info.frame_shift)
        if n != t.num_frames:
            raise Lm2amError(f"cut {cut.id}: duration {cut.duration} s spans {n} frames of "
                             f"{info.frame_shift} s but it has {t.num_frames} feature frames; "
                             "recompute the features")
        for u, arr in t.arrays().items():
            ta = writers[u].store_array(cut.id, arr, frame_shift=info.frame_shift, temporal_dim=0,
                                        start=cut.start)
            ta = fastcopy(ta, array=fastcopy(ta.array, storage_path=str(arrays_dir / u)))
            cut = cut.with_custom(u, ta)
        return cut.with_custom(_TOKENS, list(t.subword_tokens))

    tmp_manifest = manifest_path.with_name(f".{part}.tmp{os.getpid()}.jsonl.gz")
    try:
        out = cuts.filter(keep).map(attach)  # eager input: arrays written here
        save_manifest(out, tmp_manifest)  # lazy input: streamed here (arrays written on the way)
        tmp_arrays.mkdir(parents=True, exist_ok=True)  # (no cuts: still an arrays dir)
        if manifest_path.exists():
            manifest_path.unlink()  # never a manifest next to arrays it does not describe
        shutil.rmtree(arrays_dir, ignore_errors=True)
        os.replace(tmp_arrays, arrays_dir)
        os.replace(tmp_manifest, manifest_path)
    finally:
        shutil.rmtree(tmp_arrays, ignore_errors=True)
        if tmp_manifest.exists():
            tmp_manifest.unlink()
    if dropped:
        log.warning("attach_targets %s: dropped %d cuts without targets (first: %s)", part,
                    len(dropped), dropped[0])
    return CutSet.from_jsonl_lazy(manifest_path) if out.is_lazy else out


def make_targets_for_part(cuts_path: Union[Path, str], lang_dir: Union[Path, str],
                          ali_dir: Union[Path, str], tree_dir: Union[Path, str],
                          out_dir: Union[Path, str], part: str, num_plots: int = 1,
                          corpus_dir: Optional[Union[Path, str]] = None) -> Dict[str, int]:
    """The targets stage for one part: alignments + senone tree + BPE -> stored targets.

    Senones come from the tree with the tree's context convention (``lm2am.tree``): left/right
    phone of each frame's phone segment, a new segment where the phone changes or the HMM state
    goes back (a repeated phone). Cuts the aligner could not align are left out (counted).
    Returns counts (cuts, frames, unaligned).
    """
    import sentencepiece as spm
    from lhotse import CutSet

    from lm2am.align.pipeline import load_aligner, read_alignments, read_ctm
    from lm2am.align.topo import StateMap
    from lm2am.tree import ContextTree, frame_contexts

    out_dir = Path(out_dir)
    _, _, topo, phones = load_aligner(ali_dir)
    smap = StateMap(phones, topo)
    tree = ContextTree.load(Path(tree_dir) / "tree.json")
    sp = spm.SentencePieceProcessor(model_file=str(Path(lang_dir) / "bpe.model"))
    alis = read_alignments(ali_dir, part)
    cuts = CutSet.from_file(cuts_path)
    words = read_ctm(ali_dir, part, frame_shift=cuts[0].frame_shift if len(cuts) else 0.01)
    sil_ids = {i for i, p in enumerate(phones) if p in topo.silence_phones}
    counts = {"cuts": 0, "frames": 0, "unaligned": 0}
    plotted: List[str] = []

    def generate():
        for c in cuts:
            if c.id not in alis:
                counts["unaligned"] += 1
                continue
            states, ph = alis[c.id]
            hmm_state = smap.pdf_to_state[states]
            starts = np.flatnonzero((np.diff(ph) != 0) | (np.diff(hmm_state) < 0)) + 1
            left, right = frame_contexts(ph, hmm_state, segment_starts=_start_mask(len(ph), starts))
            senone = tree.lookup_array(left, ph, right, hmm_state).astype(np.int32)
            t = make_frame_targets(ph, senone, words.get(c.id, []), sp, sil_ids,
                                   phone_starts=np.concatenate([[0], starts]), utt_id=c.id)
            check_targets(c.id, t, c.num_frames, tree.num_leaves, len(phones), sp.get_piece_size())
            counts["cuts"] += 1
            counts["frames"] += len(senone)
            if len(plotted) < num_plots:
                plotted.append(c.id)
                _plot_targets(c, t, phones, out_dir / "plots" / f"{c.id}.png", corpus_dir)
            yield c.id, t

    write_targets(generate(), out_dir, part, num_senones=tree.num_leaves, num_phones=len(phones),
                  num_subwords=sp.get_piece_size(), frame_shift=cuts[0].frame_shift)
    attach_targets(cuts, out_dir, part, missing="drop")
    return counts


def _start_mask(T: int, starts: Any) -> Any:
    mask = np.zeros(T, dtype=bool)
    mask[starts] = True
    return mask


def _plot_targets(cut: Any, t: FrameTargets, phones: Sequence[str], path: Path,
                  corpus_dir: Optional[Union[Path, str]]) -> None:
    """fbank + phone boundaries + senone strip for one cut (reference boundaries if known)."""
    from lm2am.plots import plot_alignment

    ref = None
    if corpus_dir is not None:
        from lm2am.align.evaluate import read_reference_phones

        spk, chap = cut.id.split("-")[:2]
        files = list(Path(corpus_dir).glob(f"*/{spk}/{chap}/{spk}-{chap}.phones.txt"))
        refs = read_reference_phones(files) if files else {}
        if cut.id in refs:
            ref = [end for _, end in refs[cut.id]]
    plot_alignment(cut.load_features(), t.phone, phones, path, senones=t.senone,
                   title=f"{cut.id}: {cut.supervisions[0].text[:80]}", ref_boundaries=ref)

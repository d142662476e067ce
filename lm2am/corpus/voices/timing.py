"""Helpers every engine shares: resampling with a speed factor, phone mapping, word timings."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.corpus.voices.base import SAMPLE_RATE, SpeakerSpec, Synthesized, Timing

# flite/festival phone names (lower-case ARPAbet-like, "radio" phone set) -> ARPAbet.
_TO_ARPABET: Dict[str, Tuple[str, ...]] = {
    "pau": ("SIL",), "h#": ("SIL",), "sil": ("SIL",), "brth": ("SIL",), "#": ("SIL",),
    "ax": ("AH",), "axr": ("ER",), "ix": ("IH",), "ux": ("UW",), "hv": ("HH",), "nx": ("N",),
    "dx": ("T",), "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"),
}
PAUSES = frozenset({"pau", "h#", "sil", "brth", "#"})


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE, speed: float = 1.0) -> np.ndarray:
    """Band-limited resampling (FFT, like scipy's ``resample``) with a ``sox speed`` factor.

    ``speed`` > 1 plays faster and higher: the signal is treated as sampled at
    ``sr_in * speed``. Deterministic and in-process (no sox start per utterance); the edges
    are silence, so the FFT's periodic wrap-around is harmless.
    """
    x = np.asarray(x, dtype=np.float64)
    n_in = len(x)
    n_out = int(round(n_in * sr_out / (sr_in * speed)))
    if n_out == n_in:
        return x.astype(np.float32)
    spec = np.fft.rfft(x)
    m = n_out // 2 + 1
    out = np.zeros(m, dtype=complex)
    k = min(len(spec), m)
    out[:k] = spec[:k]
    if n_out < n_in and n_out % 2 == 0:
        out[-1] = out[-1].real  # the new Nyquist bin must be real
    y = np.fft.irfft(out, n_out) * (n_out / n_in)
    return y.astype(np.float32)


def _map_phone(label: str) -> Tuple[str, ...]:
    if label in _TO_ARPABET:
        return _TO_ARPABET[label]
    return (re.sub(r"\d", "", label).upper(),)


def to_arpabet(phones: Timing) -> Timing:
    """Map flite/festival phones to ARPAbet; two-phone expansions split the duration evenly."""
    out: Timing = []
    start = 0.0
    for label, end in phones:
        mapped = _map_phone(label)
        step = (end - start) / len(mapped)
        for i, p in enumerate(mapped):
            out.append((p, end if i == len(mapped) - 1 else start + step * (i + 1)))
        start = end
    return out


def merge_same(items: Timing, label: str) -> Timing:
    """Merge consecutive items with label ``label`` (adjacent pauses) into one."""
    out: Timing = []
    for lab, end in items:
        if out and lab == label and out[-1][0] == label:
            out[-1] = (label, end)
        else:
            out.append((lab, end))
    return out


def words_from_phones(phone_words: Sequence[Tuple[float, int, bool]], words: Sequence[str]
                       ) -> Optional[Timing]:
    """Word end times from (phone end, 1-based input word index or 0, is-pause) triples.

    A non-pause phone without a word (festival's post-lexical rules insert some, e.g. the
    ``r`` of ``er r``) joins the preceding word. Returns ``None`` if a word got no phones or
    its phones are not contiguous (then the engine's word association can't be trusted and
    the alignment is omitted).
    """
    out: Timing = []
    seen: List[int] = []
    last = -1
    for end, idx, pause in phone_words:
        if not 0 <= idx <= len(words):
            return None
        if idx == 0 and not pause and last > 0:
            idx = last
        if idx == last:  # same word (or same silence) continues
            out[-1] = (out[-1][0], end)
            continue
        if idx:
            if idx in seen:
                return None
            seen.append(idx)
        out.append((words[idx - 1] if idx else "", end))
        last = idx
    if seen != list(range(1, len(words) + 1)):
        return None
    return out


def _scale(items: Optional[Timing], factor: float, total: float) -> Optional[Timing]:
    """Divide times by ``factor`` (speed), clamp to ``total`` and end exactly at ``total``."""
    if items is None:
        return None
    out = [(lab, min(round(end / factor, 4), total)) for lab, end in items]
    if out:
        out[-1] = (out[-1][0], total)
    return out


def finish(audio: np.ndarray, sr: int, spec: SpeakerSpec, phones: Timing,
            words: Optional[Timing]) -> Synthesized:
    """Resample to 16 kHz with the speaker's speed and rescale the timings accordingly."""
    y = resample(audio, sr, SAMPLE_RATE, spec.speed)
    total = round(len(y) / SAMPLE_RATE, 4)
    # Engine timings are at the engine's own rate; sample rounding may leave a sliver past the end.
    return Synthesized(audio=y, phones=_scale(phones, spec.speed, total) or [],
                       words=_scale(words, spec.speed, total), phone_set=spec.phone_set)

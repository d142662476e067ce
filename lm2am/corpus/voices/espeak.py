"""espeak-ng through ``libespeak-ng`` with ctypes: PHONEME events give each phoneme's start sample.

espeak-ng's output depends on the library's internal state left by earlier utterances (there is
no reset call), so callers run each batch in a process that has not used espeak-ng before.
"""
from __future__ import annotations

import ctypes
import re
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.corpus.voices.base import SpeakerSpec, Synthesized, Timing, check_engine, find_lib
from lm2am.corpus.voices.timing import finish, merge_same, words_from_phones
from lm2am.errors import Lm2amError

# Accent -> the name libespeak-ng's SetVoiceByName resolves (en-gb lives in the file gmw/en;
# the CLI falls back to a language search, the library call with a +variant does not).
_ESPEAK_LIB_NAMES = {"en-gb": "en"}
_ESPEAK_VOLUME = 70  # default 100 clips by a sample or two on some variants
_ESPEAK_DEFAULT_WPM = 175


class _EspeakEventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EspeakEventId)]


_ESPEAK_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                    ctypes.POINTER(_EspeakEvent))
_EV_END, _EV_WORD, _EV_PHONEME = 0, 1, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 0x0001, 0x8000
_ESPEAK_RATE, _ESPEAK_VOLUME_PARAM, _ESPEAK_PITCH = 1, 2, 3


class _Espeak:
    """The espeak-ng library, initialized once per process with phoneme events."""

    def __init__(self) -> None:
        check_engine("espeak", "")
        self.lib = ctypes.CDLL(find_lib("libespeak-ng.so.1"))
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                                   ctypes.c_int]
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                      _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self.chunks: List[np.ndarray] = []
        self.events: List[Tuple[int, int, int, str]] = []  # type, text position, sample, phoneme
        self._cb = _ESPEAK_CALLBACK(self._callback)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._cb)

    def _callback(self, wav, n, events) -> int:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EV_END:
            e = events[i]
            name = e.id.string.decode("utf-8", "replace") if e.type == _EV_PHONEME else ""
            self.events.append((e.type, e.text_position, e.sample, name))
            i += 1
        return 0

    def synth(self, voice: str, pitch: int, wpm: int, text: str
              ) -> Tuple[np.ndarray, List[Tuple[int, int, int, str]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise Lm2amError(f"espeak-ng has no voice {voice!r}; check the accent and variant "
                             f"names (espeak-ng --voices=en, --voices=variant)")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(_ESPEAK_VOLUME_PARAM, _ESPEAK_VOLUME, 0)
        self.chunks, self.events = [], []
        data = text.encode()
        rc = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # 1 = UTF-8
        self.lib.espeak_Synchronize()
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed ({rc}) for {text!r}")
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, self.events


    def phoneme_count(self, word: str) -> int:
        """Phonemes espeak-ng gives ``word`` on its own (for the current voice)."""
        buf = ctypes.c_char_p(word.encode())
        n = 0
        while buf.value:
            # textmode 1 = UTF-8; phonememode: '|' between phoneme names (bits 8-23).
            res = self.lib.espeak_TextToPhonemes(ctypes.byref(buf), 1, ord("|") << 8)
            for tok in (res or b"").decode("utf-8", "replace").replace(" ", "|").split("|"):
                n += bool(tok.lstrip("'\",%="))  # stress marks are not phonemes
        return n


_espeak: Optional[_Espeak] = None


def _split_merged(raw: List[Tuple[str, int, int]], words: Sequence[str],
                  count: Callable[[str], int]) -> None:
    """Give merged word groups back their words, in place.

    espeak-ng's dictionary speaks some pairs as one word (``in the``, ``of the``): one WORD
    event, the phonemes of both. When the group's phoneme count equals the sum of the words'
    own counts, the phonemes are handed out in order; otherwise the group stays merged and
    the utterance gets no word alignment.
    """
    order = []
    for _, _, w in raw:
        if w > 0 and (not order or order[-1] != w):
            order.append(w)
    bounds = order + [len(words) + 1]
    for i, j in zip(bounds, bounds[1:]):
        if j <= i + 1:
            continue
        pos = [k for k, (lab, _, w) in enumerate(raw) if w == i and lab != "SIL"]
        counts = [count(w.lower()) for w in words[i - 1:j - 1]]
        if sum(counts) != len(pos) or 0 in counts:
            continue
        k = 0
        for widx, c in zip(range(i, j), counts):
            for p in pos[k:k + c]:
                raw[p] = (raw[p][0], raw[p][1], widx)
            k += c


def espeak_knobs(spec: SpeakerSpec) -> Tuple[int, int]:
    """espeak-ng ``-p`` (0-99, default 50) and ``-s`` (words/min) for a speaker's pitch/rate."""
    pitch = int(np.clip(round(50 + 100 * (spec.pitch - 1.0)), 0, 99))
    wpm = int(round(_ESPEAK_DEFAULT_WPM / spec.rate))
    return pitch, wpm


def synth_espeak(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize ``texts`` with one espeak-ng pseudo-speaker (in process, phoneme events)."""
    global _espeak
    if _espeak is None:
        _espeak = _Espeak()
    sr = _espeak.sample_rate
    pitch, wpm = espeak_knobs(spec)
    name = _ESPEAK_LIB_NAMES.get(spec.voice, spec.voice)
    voice = f"{name}+{spec.variant}" if spec.variant else name
    out = []
    for text in texts:  # seeding rand() does not help espeak-ng (see the module docstring)
        lower = text.lower()
        words = text.split()
        starts = {m.start() + 1: i for i, m in enumerate(re.finditer(r"\S+", lower), 1)}
        audio, events = _espeak.synth(voice, pitch, wpm, lower)
        n = len(audio)
        # Phoneme events mark starts; a phone ends where the next starts, the last at the end.
        raw: List[Tuple[str, int, int]] = []  # phoneme, start sample, word index
        cur_word, ok = 0, True
        for etype, pos, sample, name in events:
            if etype == _EV_WORD:
                # -1: a position that starts none of our words (e.g. a stray event at position
                # 0 after the first utterance); fatal only if phonemes follow it.
                cur_word = starts.get(pos, -1)
            elif etype == _EV_PHONEME:
                is_pause = name.startswith("_")
                label = "SIL" if is_pause else re.sub(r'[\s,"]', "_", name)
                if cur_word < 0 and not is_pause:
                    ok = False
                raw.append((label, min(max(sample, 0), n), 0 if is_pause else max(cur_word, 0)))
        if not raw or raw[0][1] > 0:
            raw.insert(0, ("SIL", 0, 0))
        if ok:
            _split_merged(raw, words, _espeak.phoneme_count)
        phones: Timing = []
        phone_words: List[Tuple[float, int, bool]] = []
        for i, (label, start, widx) in enumerate(raw):
            end = raw[i + 1][1] if i + 1 < len(raw) else n
            if end <= start and i + 1 < len(raw):
                continue  # zero-length event (e.g. a pause marker at the same sample)
            phones.append((label, end / sr))
            phone_words.append((end / sr, widx, label == "SIL"))
        wt = words_from_phones(phone_words, words) if ok else None
        out.append(finish(audio.astype(np.float32) / 32768.0, sr, spec,
                           merge_same(phones, "SIL"), wt))
    return out

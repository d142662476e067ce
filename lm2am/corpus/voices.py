"""Speech synthesizer back ends for synth-en, each returning 16 kHz audio plus reference timings.

Three engines (see docs/corpus.md for measured quality and speed):

* **flite** (``slt``, ``rms``, ``awb``, ``kal16``) through ``libflite`` with ctypes: in-process
  synthesis (no process start per utterance) and direct access to the utterance structure, so
  every phone's end time *and* the input word it belongs to are exact. The timings are the ones
  ``flite -psdur`` prints.
* **festival** (``kal_diphone``, ``ked_diphone``, ``cmu_us_slt_arctic_hts``) in batch mode: one
  ``festival -b script.scm`` per batch of utterances (per-utterance processes are 20x slower);
  the script saves each wave and a segment file (phone, end time, input-token index).
* **espeak-ng** (English accents x voice variants) through ``libespeak-ng`` with ctypes: PHONEME
  events carry the sample offset where each phoneme starts, WORD events the text position.

Reference phones from flite/festival are mapped to upper-case ARPAbet without stress
(``pau`` -> ``SIL``, ``ax`` -> ``AH``; phone set ``"arpabet"``). espeak-ng phonemes have no
clean one-to-one ARPAbet mapping (``@2``, ``I#``, ``aI@``...), so they keep espeak's own names,
pauses excepted (``_``, ``_:`` -> ``SIL``), and are marked with phone set ``"espeak"``.

Pseudo-speakers come from per-voice knobs (:class:`SpeakerSpec`): pitch (flite
``int_f0_target_mean``, festival diphone ``target_f0_mean``, espeak ``-p``), rate (flite
``duration_stretch``, festival ``Duration_Stretch`` / HTS ``-r``, espeak ``-s``) and a speed
factor with the effect of ``sox speed`` (resampling: pitch and tempo together), applied while
resampling to 16 kHz; reference times are divided by the same factor.

Determinism: festival and flite ``kal16`` are deterministic; flite's clustergen voices draw
noise from libc ``rand()``, which is seeded per utterance here; espeak-ng's output depends on
the library's internal state left by earlier utterances (there is no reset call), so callers
run each batch in a process that has not used espeak-ng before (same batch -> same audio).
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from lm2am.errors import Lm2amError

SAMPLE_RATE = 16000
ENGINES: Tuple[str, ...] = ("flite", "festival", "espeak")
FLITE_VOICES: Tuple[str, ...] = ("slt", "rms", "awb", "kal16")
FESTIVAL_VOICES: Tuple[str, ...] = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
# gmw/ English accents of espeak-ng 1.51 (``espeak-ng --voices=en`` minus the mb-* voices,
# which need MBROLA, absent from Debian main).
ESPEAK_ACCENTS: Tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan",
                                   "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Variants that do not sound like a person talking (whispers, robots, a speed test).
ESPEAK_BAD_VARIANTS = frozenset({"whisper", "whisperf", "fast", "Demonic", "UniRobot",
                                 "anikaRobot", "announcer", "croak"})

# Module-level so tests can point them at nothing to simulate a missing package.
LIB_DIRS: Tuple[str, ...] = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                             "/usr/lib64", "/usr/lib", "/usr/local/lib")
FESTIVAL_BIN = "festival"
FESTIVAL_VOICE_DIRS: Tuple[str, ...] = ("/usr/share/festival/voices",)
ESPEAK_DATA_DIRS: Tuple[str, ...] = ("/usr/lib/x86_64-linux-gnu/espeak-ng-data",
                                     "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
                                     "/usr/share/espeak-ng-data")

_FESTIVAL_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                      "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
_FESTIVAL_DIPHONE_STRETCH = 1.1  # what kal/ked set at voice selection; our rate multiplies it
# Accent -> the name libespeak-ng's SetVoiceByName resolves (en-gb lives in the file gmw/en;
# the CLI falls back to a language search, the library call with a +variant does not).
_ESPEAK_LIB_NAMES = {"en-gb": "en"}
_ESPEAK_VOLUME = 70  # default 100 clips by a sample or two on some variants
_ESPEAK_DEFAULT_WPM = 175

# flite/festival phone names (lower-case ARPAbet-like, "radio" phone set) -> ARPAbet.
_TO_ARPABET: Dict[str, Tuple[str, ...]] = {
    "pau": ("SIL",), "h#": ("SIL",), "sil": ("SIL",), "brth": ("SIL",), "#": ("SIL",),
    "ax": ("AH",), "axr": ("ER",), "ix": ("IH",), "ux": ("UW",), "hv": ("HH",), "nx": ("N",),
    "dx": ("T",), "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"),
}
_PAUSES = frozenset({"pau", "h#", "sil", "brth", "#"})
#: The 39 stress-free ARPAbet phones of CMUdict (reference phones of flite/festival speakers).
ARPABET = frozenset("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P "
                     "R S SH T TH UH UW V W Y Z ZH".split())

Timing = List[Tuple[str, float]]  # (label, end time in seconds); starts are previous ends


@dataclass(frozen=True)
class SpeakerSpec:
    """One pseudo-speaker: a base voice plus knobs.

    ``pitch`` scales the voice's mean F0 (1 = default), ``rate`` stretches durations (>1 is
    slower), ``speed`` is a ``sox speed`` factor (>1 is faster and higher). Knobs a voice does
    not obey are normalized to 1.0 by :func:`make_speaker`, so recorded knobs are the real ones.
    """

    engine: str
    voice: str
    variant: str = ""  # espeak-ng voice variant (``f3`` in ``en-us+f3``); "" otherwise
    pitch: float = 1.0
    rate: float = 1.0
    speed: float = 1.0

    @property
    def base_voice(self) -> str:
        """``engine:voice``, the unit train/dev/test are split by."""
        return f"{self.engine}:{self.voice}"

    @property
    def phone_set(self) -> str:
        """Name of the reference phone inventory: ``arpabet`` or ``espeak``."""
        return "espeak" if self.engine == "espeak" else "arpabet"


@dataclass
class Synthesized:
    """One synthesized utterance on the final 16 kHz timeline.

    ``phones`` and ``words`` are (label, end time) lists covering the whole audio; ``words``
    uses ``""`` for silence (LibriSpeech alignment style) and is ``None`` when the engine's
    word/phone association could not be matched to the input words.
    """

    audio: np.ndarray  # float32, 16 kHz mono
    phones: Timing
    words: Optional[Timing]
    phone_set: str

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def supports_pitch(engine: str, voice: str) -> bool:
    """Whether the pitch knob changes this voice (flite rms and the festival HTS voice ignore it)."""
    return not ((engine == "flite" and voice == "rms")
                or (engine == "festival" and voice == "cmu_us_slt_arctic_hts"))


def make_speaker(engine: str, voice: str, variant: str = "", pitch: float = 1.0,
                 rate: float = 1.0, speed: float = 1.0) -> SpeakerSpec:
    """Build a :class:`SpeakerSpec`, setting knobs the voice ignores to 1.0."""
    if not supports_pitch(engine, voice):
        pitch = 1.0
    return SpeakerSpec(engine, voice, variant, round(pitch, 3), round(rate, 3), round(speed, 3))


def parse_voice(name: str) -> Tuple[str, str]:
    """Split ``engine:voice`` (e.g. ``flite:slt``, ``espeak:en-us``); ValueError if unknown."""
    engine, sep, voice = name.partition(":")
    known = {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES, "espeak": ESPEAK_ACCENTS}
    if not sep or engine not in known:
        raise ValueError(f"voice {name!r} must look like ENGINE:VOICE with ENGINE one of "
                         f"{', '.join(ENGINES)}")
    if voice not in known[engine]:
        raise ValueError(f"unknown {engine} voice {voice!r} in {name!r}; choose from "
                         f"{', '.join(known[engine])}")
    return engine, voice


# ---------------------------------------------------------------------------------------------
# Availability checks: one-line errors naming the Debian package to install.

def _find_lib(soname: str) -> Optional[str]:
    for d in LIB_DIRS:
        p = os.path.join(d, soname)
        if os.path.exists(p):
            return p
    return None


def _espeak_data_dir() -> Optional[str]:
    for d in ESPEAK_DATA_DIRS:
        if os.path.isdir(os.path.join(d, "voices")):
            return d
    return None


def check_engine(engine: str, voice: str) -> None:
    """Raise :class:`Lm2amError` naming the missing Debian package if ``engine:voice`` can't run."""
    if engine == "flite":
        if _find_lib("libflite.so.1") is None:
            raise Lm2amError("flite library libflite.so.1 not found: install the Debian packages "
                             "flite and libflite1 (apt-get install flite)")
        if _find_lib(f"libflite_cmu_us_{voice}.so.1") is None:
            raise Lm2amError(f"flite voice {voice} (libflite_cmu_us_{voice}.so.1) not found: "
                             f"install the Debian package libflite1 (apt-get install flite)")
    elif engine == "festival":
        if shutil.which(FESTIVAL_BIN) is None:
            raise Lm2amError(f"'{FESTIVAL_BIN}' not on PATH: install the Debian package festival "
                             f"(apt-get install festival)")
        if not any(list(Path(d).glob(f"*/{voice}")) for d in FESTIVAL_VOICE_DIRS):
            pkg = _FESTIVAL_PACKAGES[voice]
            raise Lm2amError(f"festival voice {voice} not found under "
                             f"{', '.join(FESTIVAL_VOICE_DIRS)}: install the Debian package "
                             f"{pkg} (apt-get install {pkg})")
    elif engine == "espeak":
        if _find_lib("libespeak-ng.so.1") is None:
            raise Lm2amError("libespeak-ng.so.1 not found: install the Debian package "
                             "libespeak-ng1 (apt-get install espeak-ng)")
        if _espeak_data_dir() is None:
            raise Lm2amError("espeak-ng-data not found: install the Debian package "
                             "espeak-ng-data (apt-get install espeak-ng)")
    else:
        raise Lm2amError(f"unknown synthesis engine {engine!r}; choose from {', '.join(ENGINES)}")


def espeak_variants() -> List[str]:
    """Usable espeak-ng voice variants (file names under ``voices/!v``), sorted."""
    d = _espeak_data_dir()
    if d is None:
        raise Lm2amError("espeak-ng-data not found: install the Debian package espeak-ng-data "
                         "(apt-get install espeak-ng)")
    names = sorted(p.name for p in Path(d, "voices", "!v").iterdir() if p.is_file())
    return [n for n in names if n not in ESPEAK_BAD_VARIANTS and not re.search(r"\s", n)]


# ---------------------------------------------------------------------------------------------
# Shared helpers: resampling with speed, phone mapping, word timing.

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


def _to_arpabet(phones: Timing) -> Timing:
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


def _merge_same(items: Timing, label: str) -> Timing:
    """Merge consecutive items with label ``label`` (adjacent pauses) into one."""
    out: Timing = []
    for lab, end in items:
        if out and lab == label and out[-1][0] == label:
            out[-1] = (label, end)
        else:
            out.append((lab, end))
    return out


def _words_from_phones(phone_words: Sequence[Tuple[float, int, bool]], words: Sequence[str]
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


def _finish(audio: np.ndarray, sr: int, spec: SpeakerSpec, phones: Timing,
            words: Optional[Timing]) -> Synthesized:
    """Resample to 16 kHz with the speaker's speed and rescale the timings accordingly."""
    y = resample(audio, sr, SAMPLE_RATE, spec.speed)
    total = round(len(y) / SAMPLE_RATE, 4)
    # Engine timings are at the engine's own rate; sample rounding may leave a sliver past the end.
    return Synthesized(audio=y, phones=_scale(phones, spec.speed, total) or [],
                       words=_scale(words, spec.speed, total), phone_set=spec.phone_set)


# ---------------------------------------------------------------------------------------------
# flite (ctypes)

class _CstWave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int),
                ("num_samples", ctypes.c_int), ("num_channels", ctypes.c_int),
                ("samples", ctypes.POINTER(ctypes.c_short))]


class _CstVoice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p),
                ("ffunctions", ctypes.c_void_p), ("utt_init", ctypes.c_void_p)]


_flite: Optional[ctypes.CDLL] = None
_flite_voices: Dict[str, ctypes.POINTER(_CstVoice)] = {}  # type: ignore[valid-type]
_flite_defaults: Dict[str, Tuple[float, float]] = {}
_libc: Optional[ctypes.CDLL] = None


def _load_flite(voice: str):
    global _flite, _libc
    check_engine("flite", voice)
    if _flite is None:
        lib = ctypes.CDLL(_find_lib("libflite.so.1"))
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        for name, res, args in [
            ("flite_init", ctypes.c_int, []),
            ("flite_synth_text", vp, [cp, vp]), ("utt_relation", vp, [vp, cp]),
            ("relation_head", vp, [vp]), ("item_next", vp, [vp]),
            ("item_set_string", None, [vp, cp, cp]),
            ("ffeature_string", cp, [vp, cp]), ("ffeature_float", ctypes.c_float, [vp, cp]),
            ("utt_wave", ctypes.POINTER(_CstWave), [vp]), ("delete_utterance", None, [vp]),
            ("feat_set_float", None, [vp, cp, ctypes.c_float]),
            ("get_param_float", ctypes.c_float, [vp, cp, ctypes.c_float]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.flite_init()
        _flite = lib
        _libc = ctypes.CDLL("libc.so.6")
    if voice not in _flite_voices:
        vlib = ctypes.CDLL(_find_lib(f"libflite_cmu_us_{voice}.so.1"))
        reg = getattr(vlib, f"register_cmu_us_{voice}")
        reg.restype, reg.argtypes = ctypes.POINTER(_CstVoice), [ctypes.c_char_p]
        v = reg(None)
        feats = v.contents.features
        _flite_voices[voice] = v
        _flite_defaults[voice] = (_flite.get_param_float(feats, b"int_f0_target_mean", 100.0),
                                  _flite.get_param_float(feats, b"duration_stretch", 1.0))
    return _flite, _flite_voices[voice]


def _items(fl, utt, relation: bytes):
    it = fl.relation_head(fl.utt_relation(utt, relation))
    while it:
        yield it
        it = fl.item_next(it)


def synth_flite(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize ``texts`` with one flite pseudo-speaker (in process)."""
    fl, v = _load_flite(spec.voice)
    feats = v.contents.features
    f0, stretch = _flite_defaults[spec.voice]
    fl.feat_set_float(feats, b"int_f0_target_mean", f0 * spec.pitch)
    fl.feat_set_float(feats, b"duration_stretch", stretch * spec.rate)
    out = []
    for text, seed in zip(texts, seeds):
        words = text.split()
        _libc.srand(seed & 0x7FFFFFFF)  # clustergen voices draw excitation noise from rand()
        utt = fl.flite_synth_text(text.lower().encode(), ctypes.cast(v, ctypes.c_void_p))
        try:
            tokens = list(_items(fl, utt, b"Token"))
            for i, tok in enumerate(tokens, 1):
                fl.item_set_string(tok, b"lm2am_idx", str(i).encode())
            phones: Timing = []
            phone_words: List[Tuple[float, int, bool]] = []
            for seg in _items(fl, utt, b"Segment"):
                end = float(fl.ffeature_float(seg, b"end"))
                phones.append((fl.ffeature_string(seg, b"name").decode(), end))
                idx = fl.ffeature_string(seg, b"R:SylStructure.parent.parent.R:Token.parent.lm2am_idx")
                phone_words.append((end, int(idx), phones[-1][0] in _PAUSES))
            w = fl.utt_wave(utt).contents
            audio = np.ctypeslib.as_array(w.samples, shape=(w.num_samples,)).astype(np.float32) / 32768.0
            sr = w.sample_rate
        finally:
            fl.delete_utterance(utt)
        wt = _words_from_phones(phone_words, words) if len(tokens) == len(words) else None
        out.append(_finish(audio, sr, spec, _to_arpabet(_merge_same(phones, "pau")), wt))
    return out


# ---------------------------------------------------------------------------------------------
# festival (batch mode)

_FESTIVAL_PRELUDE = """
(define (lm2am_synth text wavfile segfile)
  (let ((u (utt.synth (eval (list 'Utterance 'Text text))))
        (i 1) (tok nil) (fd nil))
    ;; Number the input tokens so every segment can name the token (word) it belongs to.
    (set! tok (utt.relation.first u 'Token))
    (while tok (item.set_feat tok "lm2am_idx" i) (set! i (+ i 1)) (set! tok (item.next tok)))
    (utt.save.wave u wavfile 'riff)
    (set! fd (fopen segfile "w"))
    (format fd "ntok %d\\n" (- i 1))
    (mapcar (lambda (s) (format fd "%s %f %s\\n" (item.name s) (item.feat s "end")
               (item.feat s "R:SylStructure.parent.parent.R:Token.parent.lm2am_idx")))
            (utt.relation.items u 'Segment))
    (fclose fd)))
"""


def _festival_voice_setup(spec: SpeakerSpec) -> str:
    lines = [f"(voice_{spec.voice})"]
    if spec.voice == "cmu_us_slt_arctic_hts":
        # hts_engine's -r is a speech-speed factor (>1 faster); it has no working pitch option.
        lines.append(f'(set! hts_engine_params (append hts_engine_params '
                     f'(list (list "-r" {1.0 / spec.rate:.4f}))))')
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {_FESTIVAL_DIPHONE_STRETCH * spec.rate:.4f})")
        lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean (* {spec.pitch:.4f} "
                     f"(cadr (assoc 'target_f0_mean int_lr_params)))) int_lr_params))")
    return "\n".join(lines)


def synth_festival(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize ``texts`` with one festival pseudo-speaker: one festival process per call."""
    check_engine("festival", spec.voice)
    with tempfile.TemporaryDirectory(prefix="lm2am_fest_") as tmp:
        script = [_FESTIVAL_PRELUDE, _festival_voice_setup(spec)]
        for i, text in enumerate(texts):
            # Texts are normalized (A-Z, apostrophe, space): nothing to escape.
            script.append(f'(lm2am_synth "{text.lower()}" "{tmp}/{i}.wav" "{tmp}/{i}.seg")')
        Path(tmp, "batch.scm").write_text("\n".join(script) + "\n")
        proc = subprocess.run([FESTIVAL_BIN, "-b", f"{tmp}/batch.scm"], cwd=tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        for i, text in enumerate(texts):
            wav, seg = Path(tmp, f"{i}.wav"), Path(tmp, f"{i}.seg")
            if not (wav.is_file() and seg.is_file()):
                raise RuntimeError(f"festival ({spec.voice}) produced no audio for {text!r} "
                                   f"(exit {proc.returncode}): {proc.stdout[-500:]}")
            audio, sr = sf.read(wav, dtype="float32")
            lines = seg.read_text().split("\n")
            ntok = int(lines[0].split()[1])
            phones: Timing = []
            phone_words: List[Tuple[float, int, bool]] = []
            for line in lines[1:]:
                if not line.strip():
                    continue
                name, end, idx = line.split()
                phones.append((name, float(end)))
                phone_words.append((float(end), int(float(idx)), name in _PAUSES))
            # The wave may be a few ms longer than the last segment: extend the last pause.
            total = len(audio) / sr
            if phones and phones[-1][1] < total:
                phones[-1] = (phones[-1][0], total)
                phone_words[-1] = (total,) + phone_words[-1][1:]
            words = text.split()
            wt = _words_from_phones(phone_words, words) if ntok == len(words) else None
            out.append(_finish(audio, sr, spec, _to_arpabet(_merge_same(phones, "pau")), wt))
    return out


# ---------------------------------------------------------------------------------------------
# espeak-ng (ctypes, phoneme events)

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
        self.lib = ctypes.CDLL(_find_lib("libespeak-ng.so.1"))
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
        wt = _words_from_phones(phone_words, words) if ok else None
        out.append(_finish(audio.astype(np.float32) / 32768.0, sr, spec,
                           _merge_same(phones, "SIL"), wt))
    return out


def synthesize(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize a batch of normalized texts with one pseudo-speaker.

    ``seeds`` (one per text) make the noisy flite voices reproducible. Run espeak-ng batches in
    a process that has not used espeak-ng before when the audio must be reproducible (the
    library keeps state between utterances).
    """
    if len(texts) != len(seeds):
        raise ValueError("texts and seeds differ in length")
    fn = {"flite": synth_flite, "festival": synth_festival, "espeak": synth_espeak}.get(spec.engine)
    if fn is None:
        raise Lm2amError(f"unknown synthesis engine {spec.engine!r}; choose from {', '.join(ENGINES)}")
    return fn(spec, texts, seeds)

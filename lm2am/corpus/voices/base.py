"""Pseudo-speaker specs, voice names and engine availability checks shared by every engine.

The lookup paths (``LIB_DIRS``, ``FESTIVAL_BIN``, ``FESTIVAL_VOICE_DIRS``, ``ESPEAK_DATA_DIRS``)
are module-level here so tests can point them at nothing to simulate a missing package.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

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

def find_lib(soname: str) -> Optional[str]:
    for d in LIB_DIRS:
        p = os.path.join(d, soname)
        if os.path.exists(p):
            return p
    return None


def espeak_data_dir() -> Optional[str]:
    for d in ESPEAK_DATA_DIRS:
        if os.path.isdir(os.path.join(d, "voices")):
            return d
    return None


def check_engine(engine: str, voice: str) -> None:
    """Raise :class:`Lm2amError` naming the missing Debian package if ``engine:voice`` can't run."""
    if engine == "flite":
        if find_lib("libflite.so.1") is None:
            raise Lm2amError("flite library libflite.so.1 not found: install the Debian packages "
                             "flite and libflite1 (apt-get install flite)")
        if find_lib(f"libflite_cmu_us_{voice}.so.1") is None:
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
        if find_lib("libespeak-ng.so.1") is None:
            raise Lm2amError("libespeak-ng.so.1 not found: install the Debian package "
                             "libespeak-ng1 (apt-get install espeak-ng)")
        if espeak_data_dir() is None:
            raise Lm2amError("espeak-ng-data not found: install the Debian package "
                             "espeak-ng-data (apt-get install espeak-ng)")
    else:
        raise Lm2amError(f"unknown synthesis engine {engine!r}; choose from {', '.join(ENGINES)}")


def espeak_variants() -> List[str]:
    """Usable espeak-ng voice variants (file names under ``voices/!v``), sorted."""
    d = espeak_data_dir()
    if d is None:
        raise Lm2amError("espeak-ng-data not found: install the Debian package espeak-ng-data "
                         "(apt-get install espeak-ng)")
    names = sorted(p.name for p in Path(d, "voices", "!v").iterdir() if p.is_file())
    return [n for n in names if n not in ESPEAK_BAD_VARIANTS and not re.search(r"\s", n)]

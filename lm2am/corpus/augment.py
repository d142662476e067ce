"""Noise and reverberation for synth-en: make clean synthetic speech less trivially clean.

* Additive noise at a signal-to-noise ratio measured on the active speech frames:
  ``white``/``pink``/``brown`` noise generated with numpy (sox ``synth`` noise is unseeded),
  ``babble`` from other utterances of the same split, ``music`` from the Debian
  ``asterisk-moh-opsound-wav`` hold music (8 kHz, upsampled).
* Reverberation with ``sox reverb`` (deterministic; the output keeps the input length, so the
  reference timings stay valid).
* A final peak normalization so nothing clips when written as 16-bit FLAC.

Everything random comes from a ``numpy.random.Generator`` the caller seeds per utterance, so
a corpus is reproducible from its seed.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from lm2am.corpus.voices import SAMPLE_RATE, resample
from lm2am.errors import Lm2amError

NOISE_TYPES: Tuple[str, ...] = ("white", "pink", "brown", "babble", "music")
MUSIC_DIR = "/usr/share/asterisk/moh"  # module-level so tests can redirect it
SOX_BIN = "sox"
PEAK = 0.9  # target peak when a signal must be scaled down
_CLIP = 0.99  # scale only signals whose peak exceeds this


@dataclass(frozen=True)
class Reverb:
    """``sox reverb`` parameters (percentages and milliseconds, as sox takes them)."""

    reverberance: float
    hf_damping: float
    room_scale: float
    pre_delay_ms: float

    def describe(self) -> str:
        return (f"rev{self.reverberance:.0f}/hf{self.hf_damping:.0f}/room{self.room_scale:.0f}"
                f"/pre{self.pre_delay_ms:.0f}ms")


@dataclass(frozen=True)
class AugmentParams:
    """What to do to one utterance; drawn once (deterministically) by :func:`draw_params`."""

    noise: str = "none"  # "none" or one of NOISE_TYPES
    snr_db: Optional[float] = None
    reverb: Optional[Reverb] = None
    babble: Tuple[str, ...] = ()  # utterance ids whose clean audio makes the babble
    noise_seed: int = 0


def check_tools(noise_types: Sequence[str], reverb: bool) -> None:
    """Raise :class:`Lm2amError` naming the Debian package if augmentation can't run."""
    if reverb and shutil.which(SOX_BIN) is None:
        raise Lm2amError(f"'{SOX_BIN}' not on PATH (needed for reverb_share > 0): install the "
                         f"Debian package sox, or set reverb_share: 0")
    if "music" in noise_types and not music_files():
        raise Lm2amError(f"no hold music under {MUSIC_DIR}/*.wav (needed for noise type 'music'): "
                         f"install the Debian package asterisk-moh-opsound-wav, or drop 'music' "
                         f"from noise_types")


def music_files() -> List[str]:
    """The hold-music WAV files, sorted (the order is part of the corpus's reproducibility)."""
    return sorted(glob.glob(os.path.join(MUSIC_DIR, "*.wav")))


def draw_params(rng: np.random.Generator, clean_share: float, noise_types: Sequence[str],
                snr_range: Sequence[float], reverb_share: float,
                babble_pool: Sequence[str], babble_count: Tuple[int, int] = (3, 6)
                ) -> AugmentParams:
    """Draw one utterance's augmentation. ``babble_pool``: candidate utterance ids (same split,
    other speakers). The number of draws is fixed, so changing one share doesn't reshuffle the
    rest of the choices."""
    u_clean, u_rev = rng.random(), rng.random()
    kind = str(noise_types[rng.integers(len(noise_types))]) if noise_types else "none"
    snr = round(float(rng.uniform(snr_range[0], snr_range[1])), 1)
    rev = Reverb(reverberance=round(float(rng.uniform(20, 80))),
                 hf_damping=round(float(rng.uniform(20, 80))),
                 room_scale=round(float(rng.uniform(30, 100))),
                 pre_delay_ms=round(float(rng.uniform(0, 20))))
    n_babble = int(rng.integers(babble_count[0], babble_count[1] + 1))
    pool = list(babble_pool)
    babble: Tuple[str, ...] = ()
    if kind == "babble" and pool:
        idx = rng.choice(len(pool), size=min(n_babble, len(pool)), replace=False)
        babble = tuple(pool[i] for i in sorted(idx))
    noise_seed = int(rng.integers(2 ** 31))
    if u_clean < clean_share or kind == "none" or (kind == "babble" and not babble):
        kind, snr, babble = "none", None, ()
    return AugmentParams(noise=kind, snr_db=snr if kind != "none" else None,
                         reverb=rev if u_rev < reverb_share else None,
                         babble=babble, noise_seed=noise_seed)


# ---------------------------------------------------------------------------------------------
# Noise signals

def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise of unit RMS, shaped in the FFT domain."""
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        f[0] = f[1] if n > 1 else 1.0
        f = np.maximum(f, 20.0)  # no runaway DC drift for brown noise
        spec *= f ** (-0.5 if kind == "pink" else -1.0)
        x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def music_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of hold music, upsampled to 16 kHz, looped if too short."""
    files = music_files()
    if not files:
        raise Lm2amError(f"no hold music under {MUSIC_DIR}/*.wav: install the Debian package "
                         f"asterisk-moh-opsound-wav")
    path = files[int(rng.integers(len(files)))]
    info = sf.info(path)
    need = int(np.ceil(n * info.samplerate / SAMPLE_RATE)) + 16
    start = int(rng.integers(max(info.frames - need, 1)))
    x, sr = sf.read(path, start=start, frames=need, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if len(x) < need:
        x = np.resize(x, need)  # loop
    y = resample(x, sr, SAMPLE_RATE)[:n]
    if len(y) < n:
        y = np.resize(y, n)
    return y


def babble_noise(sources: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of other utterances, each at unit active power, circularly shifted to random offsets."""
    out = np.zeros(n, dtype=np.float64)
    for src in sources:
        if len(src) == 0:
            continue
        s = np.resize(src, max(n, len(src)))  # loop short sources
        s = np.roll(s, int(rng.integers(len(s))))[:n]
        out += s / np.sqrt(active_power(src) + 1e-12)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Mixing

def active_power(x: np.ndarray, frame: int = 400, floor_db: float = 30.0) -> float:
    """Mean power of the frames within ``floor_db`` of the loudest (speech, not its silences)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < frame:
        return float(np.mean(x ** 2)) if len(x) else 0.0
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    p = np.mean(frames ** 2, axis=1)
    keep = p >= p.max() * 10 ** (-floor_db / 10)
    return float(np.mean(p[keep]))


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` into ``x`` so that active-speech power / noise power = ``snr_db``."""
    ps = active_power(x)
    pn = float(np.mean(np.asarray(noise, dtype=np.float64) ** 2)) + 1e-12
    gain = np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return (x + gain * noise).astype(np.float32)


def reverberate(x: np.ndarray, rev: Reverb) -> np.ndarray:
    """Apply ``sox reverb`` (float in, float out; same length as the input)."""
    cmd = [SOX_BIN, "-D", "-V1", "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-",
           "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-", "reverb",
           f"{rev.reverberance:g}", f"{rev.hf_damping:g}", f"{rev.room_scale:g}", "100",
           f"{rev.pre_delay_ms:g}", "0"]
    proc = subprocess.run(cmd, input=np.asarray(x, dtype="<f4").tobytes(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"sox reverb failed: {proc.stderr.decode(errors='replace')[-300:]}")
    y = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    return y[: len(x)]


def normalize_peak(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale ``x`` down to ``peak`` if it would clip; leave it alone otherwise."""
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    if m > _CLIP:
        return (x * (peak / m)).astype(np.float32)
    return np.asarray(x, dtype=np.float32)


def augment(x: np.ndarray, params: AugmentParams,
            babble_sources: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Apply reverb (to the speech), then additive noise, then peak normalization."""
    y = np.asarray(x, dtype=np.float32)
    if params.reverb is not None:
        y = reverberate(y, params.reverb)
    if params.noise != "none":
        rng = np.random.default_rng(params.noise_seed)
        n = len(y)
        if params.noise in ("white", "pink", "brown"):
            noise = colored_noise(params.noise, n, rng)
        elif params.noise == "music":
            noise = music_noise(n, rng)
        elif params.noise == "babble":
            noise = babble_noise(babble_sources, n, rng)
        else:
            raise ValueError(f"unknown noise type {params.noise!r}")
        y = add_noise(y, noise, float(params.snr_db))
    return normalize_peak(y)


def describe(params: AugmentParams) -> Dict[str, str]:
    """utt_info.tsv columns for ``params``."""
    return {"noise": params.noise,
            "snr": "-" if params.snr_db is None else f"{params.snr_db:.1f}",
            "reverb": "-" if params.reverb is None else params.reverb.describe()}

"""Real-speech check set: the Asterisk English prompts, decoded and normalized.

Debian ``asterisk-core-sounds-en-g722`` ships about 570 prompts read by one female US speaker
(16 kHz G.722, CC-BY-SA-3.0); their transcripts are in ``core-sounds-en.txt.gz`` in the doc
directory of ``asterisk-core-sounds-en`` (``name: text`` lines). This module decodes them with
PyPI ``G722`` (sox cannot read G.722) and writes part ``test-asterisk`` in LibriSpeech layout,
so it reaches the manifests through the same door as synth-en::

    <out_dir>/test-asterisk/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac
    <out_dir>/test-asterisk/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <out_dir>/test-asterisk/prompt_map.tsv      (utt id, prompt name, original text)

It is real but out-of-domain speech (telephony prompts, one speaker): report it separately.

Transcript rules (:func:`normalize_prompt`), all driven by what the real file contains:

- tones, beeps and ``silence/*`` entries are annotations (``[ascending tones]``,
  ``<beep ascending>``, ``(1 second of silence)``): dropped as ``non_speech``; annotations
  inside speech (``IAX (note: does not say "2")``) are removed from the text;
- ``letters/*`` (spelled letters and symbols, ``at [@]``) are dropped unless ``keep_letters``;
  kept ones lose the bracketed symbol (``at [@]`` -> ``AT``);
- ``#`` and ``*`` are the keypad keys, read ``pound`` and ``star``; digits are verbalized;
- a number of three or more digits (``dial 1234``), a decimal (``28.8``) or a dotted name
  (``H.323``, ``www.asterisk.org``) has no single reading, so the prompt is dropped as
  ``ambiguous_reading`` rather than scored against a guessed reference;
- a few misspellings in the upstream file are corrected (the speaker says the real word).
"""
from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lm2am.corpus.text_norm import normalize_text
from lm2am.errors import Lm2amError
from lm2am.io import atomic_path

log = logging.getLogger(__name__)

PART = "test-asterisk"
SAMPLING_RATE = 16000
G722_BITRATE = 64000  # Asterisk's .g722 files are raw 64 kbit/s G.722, no header

#: where Debian installs the prompts (``en`` and ``en_US`` are alternatives links)
SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
#: where Debian installs the transcripts (doc directory of asterisk-core-sounds-en)
TRANSCRIPT_CANDIDATES = (
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt"),
)

#: misspellings in core-sounds-en.txt (checked against CMUdict); key and value are normalized words
TYPO_FIXES: Dict[str, str] = {
    "UMUTE": "UNMUTE",
    "FOURTIETH": "FORTIETH",
    "REPRESENATIVES": "REPRESENTATIVES",
    "INDENTIFIED": "IDENTIFIED",
    "WITHELD": "WITHHELD",
    "EXCLAIMATION": "EXCLAMATION",
    "DECENDING": "DESCENDING",
}

# annotations in the transcript file: [tone description], <beep ...>, (stage direction)
_ANNOTATION_RE = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
# numbers and names whose spoken form the transcript does not pin down
_AMBIGUOUS_RE = re.compile(r"\d{3,}|\d\.\d|[A-Za-z]\.\d|[A-Za-z]{2,}\.[A-Za-z]{2,}")


@dataclass
class AsteriskConfig:
    """Section ``asterisk`` of a recipe config: which prompts make the real-speech set."""

    min_words: int = 1  # prompts with fewer normalized words are dropped
    max_prompts: Optional[int] = None  # keep only the first N usable prompts (None = all)
    speaker_id: str = "9000"  # LibriSpeech-layout speaker id of the (single) Asterisk speaker
    chapter_id: str = "1"
    keep_letters: bool = False  # also keep letters/* (isolated spelled letters and symbols)

    def __post_init__(self) -> None:
        for name in ("speaker_id", "chapter_id"):
            value = getattr(self, name)
            # the utterance id is split on '-' into speaker and chapter by lhotse
            if not value or not re.fullmatch(r"[A-Za-z0-9_]+", value):
                raise ValueError(f"{name} must be letters/digits/underscores (no '-'), got {value!r}")
        if self.min_words < 0:
            raise ValueError(f"min_words must be >= 0, got {self.min_words}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1 or null, got {self.max_prompts}")


# ----------------------------------------------------------------------------------------------
# Locating the inputs


def find_sounds_dir(sounds_dir: Optional[Path | str] = None) -> Path:
    """The directory holding the ``*.g722`` prompts (``sounds_dir`` if given, else Debian's)."""
    if sounds_dir is not None:
        d = Path(sounds_dir)
        if not d.is_dir() or not any(d.rglob("*.g722")):
            raise Lm2amError(f"{d}: no *.g722 prompts there; pass the directory where "
                             "asterisk-core-sounds-en-g722 put them (/usr/share/asterisk/sounds/en)")
        return d
    candidates = [SOUNDS_ROOT / "en"] + sorted(SOUNDS_ROOT.glob("en*"))
    for d in candidates:
        if d.is_dir() and any(d.rglob("*.g722")):
            return d
    raise Lm2amError(f"no G.722 prompts under {SOUNDS_ROOT}/en*; install them with "
                     "'apt-get install asterisk-core-sounds-en-g722' or pass --sounds-dir")


def find_transcripts(transcripts: Optional[Path | str] = None) -> Path:
    """The ``core-sounds-en.txt[.gz]`` transcript file (``transcripts`` if given, else Debian's)."""
    if transcripts is not None:
        p = Path(transcripts)
        if not p.is_file():
            raise Lm2amError(f"transcript file {p} does not exist; pass core-sounds-en.txt.gz "
                             "from the asterisk-core-sounds-en package")
        return p
    for p in TRANSCRIPT_CANDIDATES:
        if p.is_file():
            return p
    raise Lm2amError(
        f"{TRANSCRIPT_CANDIDATES[0]} is missing; install it with 'apt-get install "
        "asterisk-core-sounds-en' (if doc files are excluded: 'apt-get download "
        "asterisk-core-sounds-en && dpkg-deb -x asterisk-core-sounds-en_*.deb x' and pass "
        "--transcripts x/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz)")


def read_transcripts(path: Path | str) -> Dict[str, str]:
    """Read ``name: text`` lines (``;`` comments and blank lines skipped); first entry wins."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise Lm2amError(f"{path}: cannot read transcripts ({e}); "
                         "reinstall asterisk-core-sounds-en") from None
    out: Dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if not sep or not name.strip():
            raise Lm2amError(f"{path} line {n}: expected 'name: text', got {line[:60]!r}")
        name = name.strip()
        if name in out:
            log.warning("%s line %d: duplicate prompt %s, keeping the first", path, n, name)
            continue
        out[name] = text.strip()
    return out


def list_prompts(sounds_dir: Path | str) -> Dict[str, Path]:
    """Prompt name (path relative to ``sounds_dir`` without ``.g722``, e.g. ``digits/1``) -> file."""
    sounds_dir = Path(sounds_dir)
    return {p.relative_to(sounds_dir).with_suffix("").as_posix(): p
            for p in sorted(sounds_dir.rglob("*.g722"))}


# ----------------------------------------------------------------------------------------------
# Text


def normalize_prompt(name: str, text: str, keep_letters: bool = False) -> Tuple[str, Optional[str]]:
    """Normalize one prompt's transcript.

    Returns ``(normalized_text, None)`` for a usable prompt, or ``("", reason)`` with reason
    one of ``non_speech``, ``letters``, ``ambiguous_reading``, ``empty_text``.
    """
    if name.startswith("silence/"):
        return "", "non_speech"
    if name.startswith("letters/") and not keep_letters:
        return "", "letters"
    spoken = _ANNOTATION_RE.sub(" ", text)
    if not spoken.strip(" .,!?") and _ANNOTATION_RE.search(text):
        return "", "non_speech"  # the whole entry describes a sound, nobody speaks
    if _AMBIGUOUS_RE.search(spoken):
        return "", "ambiguous_reading"
    # keypad keys, as the prompts read them ("press * to toggle", "followed by #")
    spoken = spoken.replace("#", " pound ").replace("*", " star ")
    words = [TYPO_FIXES.get(w, w) for w in normalize_text(spoken).split()]
    if not words:
        return "", "empty_text"
    return " ".join(words), None


# ----------------------------------------------------------------------------------------------
# Audio


def decode_g722(path: Path | str):
    """Decode a raw 64 kbit/s G.722 file to 16 kHz int16 samples (numpy array)."""
    import numpy as np
    import G722

    data = Path(path).read_bytes()
    # a fresh codec per file: G.722 is ADPCM, its state must not leak between prompts
    samples = G722.G722(SAMPLING_RATE, G722_BITRATE).decode(data)
    return np.asarray(samples, dtype=np.int16)


# ----------------------------------------------------------------------------------------------
# The part


#: one selected prompt: (name, original text, normalized text, audio file)
_Prompt = Tuple[str, str, str, Path]


def _select_prompts(prompts: Dict[str, Path], texts: Dict[str, str],
                    cfg: AsteriskConfig) -> Tuple[List[_Prompt], Dict[str, int]]:
    """The usable prompts in name order, and how many were dropped for which reason."""
    dropped: Dict[str, int] = {}
    selected: List[_Prompt] = []
    for name in sorted(prompts):  # plain str sort = C-locale order
        if name not in texts:
            reason: Optional[str] = "no_transcript"
            norm = ""
        else:
            norm, reason = normalize_prompt(name, texts[name], cfg.keep_letters)
            if reason is None and len(norm.split()) < cfg.min_words:
                reason = "too_few_words"
            if reason is None and cfg.max_prompts is not None and len(selected) >= cfg.max_prompts:
                reason = "max_prompts"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        selected.append((name, texts[name], norm, prompts[name]))
    return selected, dropped


def _write_part(part_dir: Path, selected: List[_Prompt], cfg: AsteriskConfig) -> Tuple[int, int]:
    """Decode and write the selected prompts in LibriSpeech layout (atomically).

    Returns ``(total samples, total words)``.
    """
    import soundfile as sf

    spk, chap = cfg.speaker_id, cfg.chapter_id
    total_samples = 0
    words = 0
    trans_lines: List[str] = []
    map_lines = ["utt_id\tprompt\toriginal_text"]
    with atomic_path(part_dir) as tmp:
        chap_dir = tmp / spk / chap
        chap_dir.mkdir(parents=True)
        for i, (name, orig, norm, audio) in enumerate(selected):
            utt = f"{spk}-{chap}-{i:04d}"
            samples = decode_g722(audio)
            if samples.size == 0:
                raise Lm2amError(f"{audio}: decodes to no audio; reinstall asterisk-core-sounds-en-g722")
            sf.write(str(chap_dir / f"{utt}.flac"), samples, SAMPLING_RATE, subtype="PCM_16")
            total_samples += samples.size
            words += len(norm.split())
            trans_lines.append(f"{utt} {norm}")
            map_lines.append(f"{utt}\t{name}\t{' '.join(orig.split())}")
        (chap_dir / f"{spk}-{chap}.trans.txt").write_text("\n".join(trans_lines) + "\n")
        (tmp / "prompt_map.tsv").write_text("\n".join(map_lines) + "\n")
    return total_samples, words


def prepare_asterisk(out_dir: Path | str, cfg: Optional[AsteriskConfig] = None,
                     sounds_dir: Optional[Path | str] = None,
                     transcripts: Optional[Path | str] = None) -> Dict[str, object]:
    """Write part ``test-asterisk`` under ``out_dir`` (atomically) and return its statistics.

    Stats keys: ``prompts_found`` (audio files), ``transcripts`` (transcript entries),
    ``transcripts_without_audio``, ``kept``, ``dropped`` (reason -> count), ``seconds``,
    ``minutes``, ``hours``, ``words``, ``sounds_dir``, ``transcript_file``.
    """
    cfg = cfg or AsteriskConfig()
    out_dir = Path(out_dir)
    sounds = find_sounds_dir(sounds_dir)
    trans_path = find_transcripts(transcripts)
    texts = read_transcripts(trans_path)
    prompts = list_prompts(sounds)
    log.info("asterisk: %d G.722 prompts in %s, %d transcripts in %s",
             len(prompts), sounds, len(texts), trans_path)

    selected, dropped = _select_prompts(prompts, texts, cfg)
    if not selected:
        raise Lm2amError(f"no usable Asterisk prompt in {sounds} (dropped: {dropped}); check "
                         "--sounds-dir/--transcripts and the asterisk config section")
    total_samples, words = _write_part(out_dir / PART, selected, cfg)

    seconds = total_samples / SAMPLING_RATE
    stats: Dict[str, object] = {
        "prompts_found": len(prompts),
        "transcripts": len(texts),
        "transcripts_without_audio": len(set(texts) - set(prompts)),
        "kept": len(selected),
        "dropped": dict(sorted(dropped.items())),
        "seconds": round(seconds, 2),
        "minutes": round(seconds / 60, 2),
        "hours": round(seconds / 3600, 4),
        "words": words,
        "sounds_dir": str(sounds),
        "transcript_file": str(trans_path),
    }
    log.info("asterisk: kept %d of %d prompts (%.1f min, %d words) in %s; dropped %s",
             len(selected), len(prompts), seconds / 60, words, out_dir / PART, stats["dropped"])
    return stats


def format_stats(stats: Dict[str, object]) -> str:
    """One line of the stats for logs and the CLI."""
    reasons: Dict[str, int] = stats["dropped"]  # type: ignore[assignment]
    dropped = ", ".join(f"{k} {v}" for k, v in reasons.items()) or "none"
    return (f"{PART}: {stats['prompts_found']} prompts found, {stats['kept']} kept "
            f"({stats['minutes']} min, {stats['words']} words); dropped: {dropped}")


__all__ = ["AsteriskConfig", "PART", "decode_g722", "find_sounds_dir", "find_transcripts",
           "format_stats", "list_prompts", "normalize_prompt", "prepare_asterisk",
           "read_transcripts"]

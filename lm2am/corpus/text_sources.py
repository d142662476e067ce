"""Transcript pools for the embedded synthetic corpus ``synth-en`` (see README.md, "The synth-en corpus").

* AM transcripts (train/dev/test) come from WordNet example sentences: the double-quoted
  strings in the glosses of ``data.{noun,verb,adj,adv}`` (Debian ``wordnet-base``), kept
  when they have ``min_words..max_words`` words after :func:`normalize_text` and no digits
  in the original (digits verbalize into long, unnatural-sounding word strings).
* LM-only text comes from the WordNet sentences not used as AM transcripts, the
  ``fortunes``/``fortunes-min`` cookie files and the King James Bible (``bible-kjv``).
  It is disjoint from every AM transcript so that the LM never memorizes a test utterance.

Every string is ``normalize_text`` output (upper-case words, ``A-Z``, apostrophe, single
spaces), never empty. Parsed sources are cached in memory only (nothing is written to disk).
"""
from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from lm2am.corpus.text_norm import normalize_text
from lm2am.errors import Lm2amError

# Directories searched for WordNet's data.* files; $WNSEARCHDIR (WordNet's own variable)
# is tried first. Module-level so tests can point them elsewhere.
WORDNET_DIRS: Tuple[str, ...] = ("/usr/share/wordnet", "/usr/share/wordnet/dict",
                                 "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict")
WORDNET_POS: Tuple[str, ...] = ("noun", "verb", "adj", "adv")
FORTUNE_DIRS: Tuple[str, ...] = ("/usr/share/games/fortunes", "/usr/share/fortunes")
# Fortune files that are pictures, not prose: their "words" are ASCII-art debris.
FORTUNE_SKIP: Tuple[str, ...] = ("ascii-art",)
BIBLE_COMMAND = "bible"
BIBLE_RANGE = "Gen1:1-Rev22:21"

LM_SOURCES: Tuple[str, ...] = ("bible", "fortunes", "wordnet")
# Length window for LM-only sentences from WordNet and fortunes (bible verses are kept whole).
LM_MIN_WORDS = 3
LM_MAX_WORDS = 40

_QUOTED_RE = re.compile(r'"([^"]+)"')
_DIGIT_RE = re.compile(r"\d")
# Attribution lines of fortunes: indented "-- Mark Twain" (also "- ", en/em dash, "~").
_ATTRIBUTION_RE = re.compile(r"^\s+(--|-\s|\u2013|\u2014|~)")
# Fortune sentences with these characters are code, IRC logs, prices or tables, not prose.
_NOT_PROSE_RE = re.compile(r"[<>{}|\\=#@^~$%\[\]]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc e.g i.e prof gen col capt lt sgt rev mt no vol fig "
    "inc ltd co corp dept univ approx ca cf al op".split())
_BIBLE_VERSE_RE = re.compile(r"^\s+\d+\s+(.*\S)\s*$")


@dataclass
class TextPools:
    """Normalized transcript pools; train/dev/test/lm are pairwise disjoint on text."""

    train: List[str]
    dev: List[str]
    test: List[str]
    lm: List[str]
    lm_sources: Dict[str, int] = field(default_factory=dict)  # source -> LM sentences from it


def _n_words(text: str) -> int:
    return text.count(" ") + 1 if text else 0


def _dedupe(items: Iterable[str]) -> List[str]:
    """Drop empty strings and repeats, keeping first-occurrence order."""
    seen = set()
    out = []
    for s in items:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ----------------------------------------------------------------------------- WordNet

def _find_wordnet_dir() -> str:
    dirs = list(WORDNET_DIRS)
    env = os.environ.get("WNSEARCHDIR")
    if env:
        dirs.insert(0, env)
    for d in dirs:
        if all(os.path.isfile(os.path.join(d, "data." + p)) for p in WORDNET_POS):
            return d
    raise Lm2amError(f"WordNet data files (data.noun/verb/adj/adv) not found in "
                     f"{', '.join(dirs)}: run `apt-get install wordnet-base` "
                     f"(or set WNSEARCHDIR)")


@functools.lru_cache(maxsize=4)
def _wordnet_examples(dict_dir: str) -> Tuple[Tuple[str, bool], ...]:
    """All (normalized, had_digits) WordNet example sentences, deduped, sorted by text."""
    has_digits: Dict[str, bool] = {}
    for pos in WORDNET_POS:
        path = os.path.join(dict_dir, "data." + pos)
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                # License header lines start with spaces; examples live in the gloss after "|".
                bar = line.find(" | ")
                if line.startswith(" ") or bar < 0:
                    continue
                for raw in _QUOTED_RE.findall(line, bar):
                    norm = normalize_text(raw)
                    if norm:
                        digits = bool(_DIGIT_RE.search(raw))
                        # A sentence counts as digit-free if any spelling of it was.
                        has_digits[norm] = has_digits.get(norm, True) and digits
    return tuple(sorted(has_digits.items()))


def wordnet_sentences(min_words: int = 5, max_words: int = 20) -> List[str]:
    """AM-eligible WordNet example sentences: normalized, deduped, sorted.

    Kept: ``min_words..max_words`` words after normalization and no digits in the original.
    Raises :class:`Lm2amError` (``apt-get install wordnet-base``) if WordNet is missing.
    """
    return [s for s, digits in _wordnet_examples(_find_wordnet_dir())
            if not digits and min_words <= _n_words(s) <= max_words]


# ----------------------------------------------------------------------------- fortunes

def _find_fortune_files() -> List[str]:
    for d in FORTUNE_DIRS:
        if not os.path.isdir(d):
            continue
        # Plain text cookie files only: skip the strfile indexes (.dat) and the .u8 symlinks.
        files = sorted(os.path.join(d, n) for n in os.listdir(d)
                       if "." not in n and n not in FORTUNE_SKIP
                       and os.path.isfile(os.path.join(d, n))
                       and not os.path.islink(os.path.join(d, n)))
        if files:
            return files
    raise Lm2amError(f"fortune cookie files not found in {', '.join(FORTUNE_DIRS)}: "
                     f"run `apt-get install fortunes fortunes-min`")


def _split_sentences(text: str) -> List[str]:
    """Split prose at ``.!?`` + space, not after common abbreviations or initials."""
    parts = _SENTENCE_END_RE.split(text)
    out: List[str] = []
    for part in parts:
        if out:
            last = out[-1].rstrip("\"')]").rsplit(None, 1)[-1].rstrip(".").lower()
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                out[-1] += " " + part
                continue
        out.append(part)
    return out


def _fortune_records(text: str) -> Iterable[str]:
    """Yield each cookie's text with attribution lines removed and lines joined."""
    for record in re.split(r"(?m)^%\s*$", text):
        lines: List[str] = []
        in_attribution = False
        for line in record.splitlines():
            if _ATTRIBUTION_RE.match(line):
                in_attribution = True  # indented lines right after it continue the attribution
                continue
            if in_attribution and line[:1].isspace() and line.strip():
                continue
            in_attribution = False
            lines.append(line.strip())
        yield " ".join(x for x in lines if x)


@functools.lru_cache(maxsize=4)
def _fortune_sentences(files: Tuple[str, ...]) -> Tuple[str, ...]:
    out = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for record in _fortune_records(text):
            for sent in _split_sentences(record):
                if _NOT_PROSE_RE.search(sent):
                    continue
                norm = normalize_text(sent)
                if LM_MIN_WORDS <= _n_words(norm) <= LM_MAX_WORDS:
                    out.append(norm)
    return tuple(_dedupe(out))


def fortune_sentences() -> List[str]:
    """Normalized, deduped sentences (3..40 words) from the ``fortunes``/``fortunes-min`` files.

    Sentences that look like code, IRC logs or tables (``<>{}|=#$%`` ...) are dropped.

    Raises :class:`Lm2amError` (``apt-get install fortunes fortunes-min``) if none are found.
    """
    return list(_fortune_sentences(tuple(_find_fortune_files())))


# ----------------------------------------------------------------------------- bible

@functools.lru_cache(maxsize=2)
def _bible_verses(command: str) -> Tuple[str, ...]:
    try:
        proc = subprocess.run([command, "-l100000", BIBLE_RANGE], capture_output=True,
                              stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise Lm2amError(f"cannot run `{command}` ({e}): run "
                         f"`apt-get install bible-kjv bible-kjv-text`") from e
    text = proc.stdout.decode("utf-8", errors="replace")
    # Verse lines are "  <n> <text>"; book/chapter headers and blank lines are dropped.
    verses = [normalize_text(m.group(1)) for m in map(_BIBLE_VERSE_RE.match, text.splitlines())
              if m]
    if proc.returncode != 0 or not verses:
        msg = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise Lm2amError(f"`{command} {BIBLE_RANGE}` failed (exit {proc.returncode}"
                         f"{': ' + msg[-1] if msg else ''}): run "
                         f"`apt-get install bible-kjv bible-kjv-text`")
    return tuple(_dedupe(verses))


def bible_sentences() -> List[str]:
    """Normalized, deduped KJV verses (verse references stripped), in canonical order.

    Raises :class:`Lm2amError` (``apt-get install bible-kjv bible-kjv-text``) if missing.
    """
    path: Optional[str] = shutil.which(BIBLE_COMMAND)
    if path is None:
        raise Lm2amError(f"`{BIBLE_COMMAND}` not found on PATH: run "
                         f"`apt-get install bible-kjv bible-kjv-text`")
    return list(_bible_verses(path))


# ----------------------------------------------------------------------------- pools

def load_text_pools(seed: int, num_train: int, num_dev: int, num_test: int,
                    min_words: int = 5, max_words: int = 20,
                    lm_sources: Sequence[str] = ("wordnet", "fortunes", "bible")) -> TextPools:
    """Split WordNet sentences into AM train/dev/test and build the LM-only pool.

    Deterministic for a given ``seed``: the sorted AM-eligible pool is shuffled with
    ``random.Random(seed)`` and cut into test, dev, train (test first, so a given seed's
    test set does not change when ``num_train`` grows). The LM pool concatenates
    ``lm_sources`` in sorted name order, deduped, minus every AM transcript.

    Raises :class:`Lm2amError` for bad arguments, an unknown LM source, a missing source
    package, or a request larger than the AM-eligible WordNet pool.
    """
    for name, value in (("num_train", num_train), ("num_dev", num_dev), ("num_test", num_test)):
        if not isinstance(value, int) or value < 0:
            raise Lm2amError(f"{name}={value!r} must be a non-negative integer")
    if not 1 <= min_words <= max_words:
        raise Lm2amError(f"min_words={min_words}, max_words={max_words}: "
                         f"need 1 <= min_words <= max_words")
    unknown = sorted(set(lm_sources) - set(LM_SOURCES))
    if unknown:
        raise Lm2amError(f"unknown LM source(s) {', '.join(unknown)}: "
                         f"choose from {', '.join(LM_SOURCES)}")

    pool = wordnet_sentences(min_words, max_words)  # already sorted -> shuffle is reproducible
    need = num_train + num_dev + num_test
    if need > len(pool):
        raise Lm2amError(f"num_train+num_dev+num_test = {num_train}+{num_dev}+{num_test} = "
                         f"{need} exceeds the {len(pool)} WordNet sentences of "
                         f"{min_words}..{max_words} words: request fewer utterances")
    random.Random(seed).shuffle(pool)
    test = pool[:num_test]
    dev = pool[num_test:num_test + num_dev]
    train = pool[num_test + num_dev:need]

    # The LM must never contain an AM transcript, or test WER would be optimistic.
    seen = set(pool[:need])
    lm: List[str] = []
    counts: Dict[str, int] = {}
    for name in sorted(set(lm_sources)):
        if name == "wordnet":
            # Every WordNet example (also those with digits or outside the AM length window).
            sents: Sequence[str] = [
                s for s, _ in _wordnet_examples(_find_wordnet_dir())
                if LM_MIN_WORDS <= _n_words(s) <= LM_MAX_WORDS]
        elif name == "fortunes":
            sents = fortune_sentences()
        else:
            sents = bible_sentences()
        n = 0
        for s in sents:
            if s not in seen:
                seen.add(s)
                lm.append(s)
                n += 1
        counts[name] = n
    return TextPools(train=train, dev=dev, test=test, lm=lm, lm_sources=counts)

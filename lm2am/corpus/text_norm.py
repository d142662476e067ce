"""Transcript normalization shared by every corpus: LibriSpeech-style upper-case words.

Output alphabet: ``A-Z``, apostrophe and single spaces. Digits are verbalized (cardinals,
ordinals like ``3rd``, years are read as cardinals); other punctuation is dropped.
"""
from __future__ import annotations

import re
import unicodedata

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def verbalize_number(n: int) -> str:
    """Spell a non-negative integer in English words (``123`` -> ``one hundred twenty three``)."""
    if n < 0:
        return "minus " + verbalize_number(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = verbalize_number(head) + " " + name
            return words if rest == 0 else words + " " + verbalize_number(rest)
    raise AssertionError("unreachable")


def verbalize_ordinal(n: int) -> str:
    """Spell an ordinal (``3`` -> ``third``, ``21`` -> ``twenty first``)."""
    words = verbalize_number(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"\d+")


def verbalize_digits(text: str) -> str:
    """Replace every digit run in ``text`` by words; ``1st``/``2nd``/... become ordinals."""
    text = _ORDINAL_RE.sub(lambda m: " " + verbalize_ordinal(int(m.group(1))) + " ", text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    return _NUMBER_RE.sub(lambda m: " " + verbalize_number(int(m.group(0))) + " ", text)


def normalize_text(text: str) -> str:
    """Normalize free text to an upper-case word string (may return ``""``)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("`", "'")
    text = verbalize_digits(text)
    text = text.replace("&", " and ").replace("-", " ")
    text = re.sub(r"[^A-Za-z' ]+", " ", text)
    words = []
    for w in text.upper().split():
        w = w.strip("'")  # quotes, not apostrophes inside words
        if w:
            words.append(w)
    return " ".join(words)

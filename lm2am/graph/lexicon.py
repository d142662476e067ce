"""``L_disambig``: the lexicon FST with optional silence and disambiguation symbols."""
from __future__ import annotations

import math
from typing import List

from lm2am.errors import Lm2amError
from lm2am.graph.lang_dir import Lang
from lm2am.kaldi import kaldi_wheels

__all__ = ["make_lexicon_fst"]


def make_lexicon_fst(lang: Lang, sil_prob: float = 0.5, optional_silence: bool = True):
    """``L_disambig`` (phones → words) as a kaldifst FST, olabel-sorted (see :mod:`lm2am.graph`).

    Layout as Kaldi's ``make_lexicon_fst.py``: state 0 = start, 1 = loop (word boundary, final),
    2 = "after silence-eligible point"; a word ends with ``-log(1 - sil_prob)`` into the loop
    state or ``-log(sil_prob)`` into the silence state, which goes back to the loop through
    ``SIL`` (and the silence disambiguation symbol when there is one).
    """
    _, kaldifst, _ = kaldi_wheels()
    pid, wid = lang.phone_id, lang.word_id
    eps = 0
    lines: List[str] = []
    use_sil = optional_silence and lang.sil_phone is not None
    if use_sil:
        if not 0.0 < sil_prob < 1.0:
            raise Lm2amError(f"sil_prob must be in (0, 1), got {sil_prob}")
        sil_cost, nosil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
    else:
        sil_cost = nosil_cost = 0.0
    start, loop, sil_state = 0, 1, 2
    nxt = 3
    if use_sil:
        lines.append(f"{start} {loop} {eps} {eps} {nosil_cost}")
        lines.append(f"{start} {sil_state} {eps} {eps} {sil_cost}")
        if lang.sil_disambig is None:
            lines.append(f"{sil_state} {loop} {lang.sil_phone} {eps} 0")
        else:
            lines.append(f"{sil_state} {nxt} {lang.sil_phone} {eps} 0")
            lines.append(f"{nxt} {loop} {lang.sil_disambig} {eps} 0")
            nxt += 1
    else:
        lines.append(f"{start} {loop} {eps} {eps} 0")
    for word, pron in lang.lexicon:
        w = wid[word]
        ph = [pid[p] for p in pron]
        cur = loop
        for i, p in enumerate(ph[:-1]):
            lines.append(f"{cur} {nxt} {p} {w if i == 0 else eps} 0")
            cur, nxt = nxt, nxt + 1
        last = ph[-1]
        olab = w if len(ph) == 1 else eps
        if use_sil:
            lines.append(f"{cur} {loop} {last} {olab} {nosil_cost}")
            lines.append(f"{cur} {sil_state} {last} {olab} {sil_cost}")
        else:
            lines.append(f"{cur} {loop} {last} {olab} 0")
    lines.append(f"{loop} 0")
    L = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False, keep_state_numbering=True)
    # G's back-off symbol #0 must pass through L (fstaddselfloops at word-boundary states)
    kaldifst.add_self_loops(L, isyms=[pid["#0"]], osyms=[wid["#0"]])
    kaldifst.arcsort(L, sort_type="olabel")
    return L

"""What the decoding graph reads from a lang dir (lm2am.lang writes it): symbol tables and the
disambiguated lexicon."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from lm2am.errors import Lm2amError
from lm2am.lang import read_symbol_list

__all__ = ["Lang", "read_lang"]


@dataclass
class Lang:
    """What the graph needs from a lang dir (ids are those of phones.txt / words.txt)."""

    phones: List[str]  # id -> symbol
    words: List[str]  # id -> symbol
    lexicon: List[Tuple[str, Tuple[str, ...]]]  # lexicon_disambig.txt entries
    disambig_phones: List[int]  # ids of #0, #1, ...
    sil_phone: Optional[int]
    sil_disambig: Optional[int]  # the extra #N after optional silence, if any

    @property
    def phone_id(self) -> Dict[str, int]:
        return {p: i for i, p in enumerate(self.phones) if p is not None}

    @property
    def word_id(self) -> Dict[str, int]:
        return {w: i for i, w in enumerate(self.words) if w is not None}


def read_lang(lang_dir: Union[Path, str], sil_phone: str = "SIL") -> Lang:
    """Read phones.txt, words.txt and lexicon_disambig.txt of a lang dir (see lm2am.lang)."""
    lang_dir = Path(lang_dir)
    phones = read_symbol_list(lang_dir / "phones.txt")
    words = read_symbol_list(lang_dir / "words.txt")
    lex_path = lang_dir / "lexicon_disambig.txt"
    if not lex_path.is_file():
        raise Lm2amError(f"{lex_path} is missing; run the lang stage (steps/prepare_lang.py)")
    pid = {p: i for i, p in enumerate(phones) if p is not None}
    wid = {w: i for i, w in enumerate(words) if w is not None}
    for s in ("#0", "<s>", "</s>"):
        if s not in wid:
            raise Lm2amError(f"{lang_dir}/words.txt lacks {s}; rerun the lang stage")
    lexicon = []
    used_disambig = set()
    for n, line in enumerate(lex_path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 2:
            raise Lm2amError(f"{lex_path} line {n}: expected 'WORD P1 P2 ...', got {line!r}")
        if f[0] not in wid:
            raise Lm2amError(f"{lex_path} line {n}: word {f[0]} is not in words.txt; rerun the lang stage")
        for p in f[1:]:
            if p not in pid:
                raise Lm2amError(f"{lex_path} line {n}: word {f[0]} uses phone {p}, which is not in "
                                 f"{lang_dir / 'phones.txt'}; rerun the lang stage (steps/prepare_lang.py)")
            if p.startswith("#"):
                used_disambig.add(p)
        lexicon.append((f[0], tuple(f[1:])))
    disambig = sorted((i for p, i in pid.items() if p.startswith("#")))
    if "#0" not in pid:
        raise Lm2amError(f"{lang_dir}/phones.txt lacks #0; rerun the lang stage")
    sil = pid.get(sil_phone)
    top = max(disambig, key=lambda i: int(phones[i][1:]))
    sil_dis = top if phones[top] != "#0" and phones[top] not in used_disambig else None
    return Lang(phones=phones, words=words, lexicon=lexicon, disambig_phones=disambig,
                sil_phone=sil, sil_disambig=sil_dis)

"""Reading and writing the files of a lang dir: symbol tables (``phones.txt``, ``words.txt``),
``lexicon.txt`` and ``silence_phones.txt``. The one home of these readers: every stage that
reads a lang dir (or a Kaldi symbol table) uses them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from lm2am.errors import Lm2amError
from lm2am.io import reject_bom
from lm2am.lang.phones import Pron


def lexicon_line(word: str, pron: Pron) -> str:
    """A ``lexicon.txt`` line: ``WORD P1 P2 ...``."""
    return " ".join((word,) + pron)


def symbols_text(symbols: Sequence[str]) -> str:
    """A symbol table's text: ``symbol id`` per line, ids counting from 0."""
    return "".join(f"{s} {i}\n" for i, s in enumerate(symbols))


def read_utf8_lines(path: Path) -> List[str]:
    """The lines of a UTF-8 text file; :class:`Lm2amError` naming the byte if it is not UTF-8."""
    try:
        return reject_bom(path, path.read_text(encoding="utf-8")).splitlines()
    except UnicodeDecodeError as e:
        raise Lm2amError(f"{path}: not valid UTF-8 (byte {e.start}); re-encode it as UTF-8 or "
                         "rerun the lang stage") from None


def read_symbols(path: Path | str) -> Dict[str, int]:
    """Read a Kaldi symbol table (``symbol id`` per line) such as ``words.txt``/``phones.txt``."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; run the lang stage (steps/prepare_lang.py)")
    table: Dict[str, int] = {}
    for n, line in enumerate(read_utf8_lines(path), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isascii() or not fields[1].isdigit():
            raise Lm2amError(f"{path} line {n}: expected 'symbol id', got {line!r}; rerun the lang stage")
        table[fields[0]] = int(fields[1])
    return table


def read_lexicon(lang_dir: Path | str, check_phones: bool = False) -> Dict[str, List[Pron]]:
    """Read ``lang_dir/lexicon.txt`` as ``word -> [pronunciation, ...]`` (file order).

    With ``check_phones`` every phone must be in ``lang_dir/phones.txt``; otherwise one line
    naming both files, the word and the phone."""
    path = Path(lang_dir) / "lexicon.txt"
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; run the lang stage (steps/prepare_lang.py)")
    phones_txt = Path(lang_dir) / "phones.txt"
    known = read_symbols(phones_txt) if check_phones else None
    lex: Dict[str, List[Pron]] = {}
    for n, line in enumerate(read_utf8_lines(path), 1):
        fields = line.split()
        if len(fields) < 2:
            raise Lm2amError(f"{path} line {n}: expected 'WORD P1 P2 ...', got {line!r}; rerun the lang stage")
        if known is not None:
            check_pron_phones(fields[1:], known, f"{path} line {n}", fields[0], phones_txt)
        lex.setdefault(fields[0], []).append(tuple(fields[1:]))
    return lex


def check_pron_phones(pron: Sequence[str], known: Mapping[str, int], where: str, word: str,
                      phones_txt: Path | str) -> None:
    """Every phone of ``word``'s pronunciation is in the phone table ``known`` (read from
    ``phones_txt``); else :class:`Lm2amError` naming ``where``, the word, the phone and the table."""
    for p in pron:
        if p not in known:
            raise Lm2amError(f"{where}: word {word} uses phone {p}, which is not in {phones_txt}; "
                             "rerun the lang stage (steps/prepare_lang.py) so both files agree")



def read_symbol_list(path: Path | str, fill: Optional[str] = None) -> List[Optional[str]]:
    """A symbol table as a list indexed by id; ids without a symbol hold ``fill``."""
    table = read_symbols(path)
    out: List[Optional[str]] = [fill] * (max(table.values()) + 1)
    for sym, i in table.items():
        out[i] = sym
    return out


def read_phone_list(lang_dir: Path | str) -> List[str]:
    """``lang_dir/phones.txt`` as a list indexed by id (``""`` for an unused id)."""
    return read_symbol_list(Path(lang_dir) / "phones.txt", fill="")  # type: ignore[return-value]


def read_silence_phones(lang_dir: Path | str) -> List[str]:
    """The phones of ``lang_dir/silence_phones.txt`` (``SIL``, ``SPN`` if the file is absent)."""
    path = Path(lang_dir) / "silence_phones.txt"
    return path.read_text().split() if path.is_file() else ["SIL", "SPN"]

"""The sentences the decoding n-gram is estimated on: the LM text pool, optionally only some of
its sources, plus (``graph.add_train_transcripts``) the AM training transcripts.

A pool made of several sources describes itself in ``sources.tsv`` next to it (synth-en's
``corpus/lm_text/``: ``source<TAB>sentences`` rows in file order); ``graph.lm_sources`` keeps the
listed ones.
"""
from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from lm2am.errors import Lm2amError


def read_sources(lm_text: Union[Path, str]) -> List[Tuple[str, int]]:
    """``(source, sentences)`` of each block of ``lm_text``, in file order, from ``sources.tsv``."""
    tsv = Path(lm_text).with_name("sources.tsv")
    if not tsv.is_file():
        raise Lm2amError(f"{tsv} is missing: graph.lm_sources needs the LM text's sources.tsv "
                         "(written by the synth-en corpus stage); set graph.lm_sources: null")
    with open(tsv, newline="", encoding="utf-8") as f:
        rows = [(r["source"], int(r["sentences"])) for r in csv.DictReader(f, delimiter="\t")]
    return rows


def lm_sentences(lm_text: Union[Path, str], sources: Optional[Sequence[str]] = None,
                 extra: Sequence[str] = ()) -> Iterator[str]:
    """The lines of ``lm_text`` (only the blocks of ``sources`` when given), then ``extra``."""
    lm_text = Path(lm_text)
    if not lm_text.is_file():
        raise Lm2amError(f"LM text {lm_text} does not exist; run the corpus stage or fix --lm-text")
    blocks = read_sources(lm_text) if sources is not None else None
    if blocks is not None:
        unknown = sorted(set(sources) - {name for name, _ in blocks})
        if unknown:
            raise Lm2amError(f"graph.lm_sources: {', '.join(unknown)} not in {lm_text.with_name('sources.tsv')} "
                             f"(it has {', '.join(name for name, _ in blocks)})")
    with open(lm_text, encoding="utf-8") as f:
        if blocks is None:
            yield from f
        else:
            total = 0
            for name, n in blocks:
                lines = list(itertools.islice(f, n))
                total += len(lines)
                if len(lines) != n:
                    raise Lm2amError(f"{lm_text} has {total} lines but sources.tsv lists more; rerun the corpus stage")
                if name in sources:
                    yield from lines
    yield from extra

"""ARPA files of the n-gram LM: writing, reading back for checks, and Kaldi's ``G.fst``.

:func:`write_arpa` writes an :class:`~lm2am.graph.ngram.NgramModel` (atomically);
:func:`read_arpa` reads a small ARPA file back for queries; :func:`arpa_to_fst` turns an ARPA
file into ``G`` with ``kaldilm`` (back-off arcs carry ``#0``, ``<s>``/``</s>`` become epsilons).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

from lm2am.errors import Lm2amError
from lm2am.graph.ngram import LOG10_ZERO, NgramModel
from lm2am.io import atomic_path
from lm2am.kaldi import kaldi_wheels, kaldilm

__all__ = ["write_arpa", "ArpaLm", "read_arpa", "arpa_to_fst"]


def write_arpa(model: NgramModel, path: Union[Path, str]) -> None:
    """Write ``model`` as an ARPA file, atomically (n-grams sorted by word ids within an order)."""
    path = Path(path)
    vocab = model.vocab
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for k, n in enumerate(model.num_ngrams(), 1):
            f.write(f"ngram {k}={n}\n")
        for k in range(1, model.order + 1):
            f.write(f"\n\\{k}-grams:\n")
            rows, lp, bw = model.grams[k - 1], model.logp[k - 1], model.bow[k - 1]
            has_bow = k < model.order
            lines = []
            for i in range(rows.shape[0]):
                words = " ".join(vocab[w] for w in rows[i])
                if has_bow and bw[i] != 0.0:
                    lines.append(f"{lp[i]:.7g}\t{words}\t{bw[i]:.7g}\n")
                else:
                    lines.append(f"{lp[i]:.7g}\t{words}\n")
            f.writelines(lines)
        f.write("\n\\end\\\n")


@dataclass
class ArpaLm:
    """An ARPA model read back for queries (tests, sanity checks): ``logprob(word, history)``."""

    order: int
    prob: Dict[Tuple[str, ...], float]
    bow: Dict[Tuple[str, ...], float]

    def log10prob(self, word: str, history: Sequence[str] = ()) -> float:
        """log10 p(word | history) by the standard back-off recursion."""
        h = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        total = 0.0
        while True:
            if h + (word,) in self.prob:
                return total + self.prob[h + (word,)]
            if not h:
                return total + LOG10_ZERO
            total += self.bow.get(h, 0.0)
            h = h[1:]


def read_arpa(path: Union[Path, str]) -> ArpaLm:
    """Read an ARPA file (small ones; for checks)."""
    prob: Dict[Tuple[str, ...], float] = {}
    bow: Dict[Tuple[str, ...], float] = {}
    order = 0
    k = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("ngram ") and "=" in line:
                order = max(order, int(line.split()[1].split("=")[0]))
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                k = int(line[1:].split("-")[0])
                continue
            if line.startswith("\\"):
                continue
            if k == 0:
                continue
            parts = line.split()
            words = tuple(parts[1:1 + k])
            prob[words] = float(parts[0])
            if len(parts) > k + 1:
                bow[words] = float(parts[k + 1])
    return ArpaLm(order=order, prob=prob, bow=bow)


def arpa_to_fst(arpa: Union[Path, str], words_txt: Union[Path, str], out_fst: Union[Path, str, None] = None,
                disambig_symbol: str = "#0"):
    """ARPA -> ``G`` (kaldifst.StdVectorFst) with ``kaldilm.arpa2fst``, labels = ids of ``words_txt``,
    back-off arcs labelled ``disambig_symbol`` on both sides, ``<s>``/``</s>`` as epsilons, and
    ilabel-sorted (Kaldi's ``arpa2fst --disambig-symbol=#0 --read-symbol-table=words.txt``).
    Writes ``out_fst`` (OpenFst binary) too when given."""
    _, kaldifst, _ = kaldi_wheels()
    arpa2fst = kaldilm().arpa2fst

    arpa, words_txt = Path(arpa), Path(words_txt)
    for p in (arpa, words_txt):
        if not p.is_file():
            raise Lm2amError(f"{p} does not exist")
    text = arpa2fst(input_arpa=str(arpa), disambig_symbol=disambig_symbol,
                    read_symbol_table=str(words_txt), ilabel_sort=True)
    G = kaldifst.compile(s=text, acceptor=False)
    kaldifst.arcsort(G, sort_type="ilabel")
    if out_fst is not None:
        with atomic_path(out_fst) as tmp:
            G.write(str(tmp))
    return G

"""Loading a graph directory for decoding: the k2 HCLG and the tables around it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.lang import read_symbol_list

__all__ = ["DecodingGraph", "load_graph"]


@dataclass
class DecodingGraph:
    """A k2 decoding graph with what decoding and word alignment need around it.

    Attributes:
        fsa: k2.Fsa, labels ``pdf + 1``, ragged ``aux_labels`` (word ids), ``tids`` per arc.
        words: word id -> word (words.txt).
        num_pdfs: number of pdfs (senones) the graph expects from the AM.
        tid2phone: transition-id -> phone id.
        tid_starts_phone: transition-id -> whether its frame is the first of a phone.
        phones: phone id -> symbol.
        lexicon: word -> pronunciations (for CTM word boundaries), or None.
        info: graph_info.json.
    """

    fsa: object
    words: List[str]
    num_pdfs: int
    tid2phone: Optional[np.ndarray] = None
    tid_starts_phone: Optional[np.ndarray] = None
    phones: Optional[List[str]] = None
    lexicon: Optional[Dict[str, List[Tuple[str, ...]]]] = None
    info: Dict[str, object] = field(default_factory=dict)

    def to(self, device) -> "DecodingGraph":
        """A copy whose FSA lives on ``device``."""
        return DecodingGraph(self.fsa.to(device), self.words, self.num_pdfs, self.tid2phone,
                             self.tid_starts_phone, self.phones, self.lexicon, self.info)


def load_graph(graph_dir: Union[Path, str], device: str = "cpu") -> DecodingGraph:
    """Load ``HCLG.pt`` + ``words.txt`` (+ info, alignment tables) written by :func:`~lm2am.graph.hclg.make_graph`."""
    import k2
    import torch

    graph_dir = Path(graph_dir)
    pt = graph_dir / "HCLG.pt"
    if not pt.is_file():
        raise Lm2amError(f"{pt} does not exist; build the graph first (steps/make_graph.py)")
    fsa = k2.Fsa.from_dict(torch.load(pt, map_location="cpu", weights_only=False)).to(device)
    words = read_symbol_list(graph_dir / "words.txt")

    def opt(name: str):
        return np.load(graph_dir / name) if (graph_dir / name).is_file() else None

    info = json.loads((graph_dir / "graph_info.json").read_text()) if (graph_dir / "graph_info.json").is_file() else {}
    phones = read_symbol_list(graph_dir / "phones.txt") if (graph_dir / "phones.txt").is_file() else None
    lexicon = None
    if (graph_dir / "lexicon.txt").is_file():
        from lm2am.lang import read_lexicon

        lexicon = read_lexicon(graph_dir)
    num_pdfs = int(info["num_pdfs"]) if "num_pdfs" in info else int(fsa.labels.max())
    return DecodingGraph(fsa=fsa, words=words, num_pdfs=num_pdfs, tid2phone=opt("tid2phone.npy"),
                         tid_starts_phone=opt("tid_starts_phone.npy"), phones=phones, lexicon=lexicon, info=info)

"""Small FST helpers shared by the graph build: sizes, and arc arrays to and from k2."""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["fst_size", "k2_size", "k2_from_arrays", "parse_fst"]


def fst_size(fst) -> Tuple[int, int]:
    """(states, arcs) of a kaldifst FST."""
    return int(fst.num_states), int(sum(fst.num_arcs(s) for s in range(fst.num_states)))


def k2_size(fsa) -> Tuple[int, int]:
    """(states, arcs) of a k2 FSA counted as OpenFst would: without k2's super-final state and
    the arcs into it (OpenFst's final weights)."""
    return int(fsa.shape[0]) - 1, int((fsa.labels != -1).sum())


def k2_from_arrays(src, dst, labels, aux, scores, num_states: int):
    """A k2 Fsa from arc arrays (any order; stably sorted by source state here)."""
    import k2
    import torch

    order = np.argsort(src, kind="stable")
    arcs = torch.empty((order.size, 4), dtype=torch.int32)
    arcs[:, 0] = torch.as_tensor(src[order], dtype=torch.int32)
    arcs[:, 1] = torch.as_tensor(dst[order], dtype=torch.int32)
    arcs[:, 2] = torch.as_tensor(labels[order], dtype=torch.int32)
    arcs[:, 3] = torch.as_tensor(scores[order], dtype=torch.float32).view(torch.int32)
    fsa = k2.Fsa(arcs, aux_labels=torch.as_tensor(aux[order], dtype=torch.int32))
    assert fsa.shape[0] == num_states, (fsa.shape, num_states)
    return fsa


def parse_fst(fst):
    """kaldifst FST -> arc arrays (src, dst, label, aux, score) via k2's C++ text reader; final
    weights become arcs labelled -1 into one super-final state (the last state), as in k2."""
    import k2

    f = k2.Fsa.from_openfst(fst.to_str(), acceptor=False)
    a = f.arcs.values().numpy()
    return (a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
            f.aux_labels.numpy().astype(np.int64), f.scores.detach().numpy().astype(np.float64),
            int(f.shape[0]))

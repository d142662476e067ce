"""Tree questions: phone sets (given, as Kaldi's ``questions.int``, or clustered from the
statistics, as Kaldi's ``cluster-phones``) and HMM-state sets."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.tree.context import CENTER, STATE, phone_table
from lm2am.tree.stats import TreeStats, gauss_loglik

__all__ = ["read_questions", "state_questions", "cluster_phones", "dedupe_sets"]


def read_questions(path: Union[Path, str], phones: Sequence[str]) -> List[List[int]]:
    """Read phone-set questions: one set per line, phone names or integer ids separated by
    blanks (Kaldi's ``questions.int`` / ``extra_questions.txt``). Blank lines and ``#`` comment
    lines (a line whose first token starts with ``#`` followed by a space) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"questions file {path} does not exist; give an existing file or leave it "
                         "out to derive questions automatically")
    table = phone_table(phones)
    out: List[List[int]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        toks = line.split()
        if not toks or line.lstrip().startswith("# "):
            continue
        ids = []
        for tok in toks:
            if tok in table:
                ids.append(table[tok])
            elif tok.isdigit() and int(tok) < len(phones):
                ids.append(int(tok))
            else:
                raise Lm2amError(f"{path}:{lineno}: unknown phone {tok!r}; use names or ids from phones.txt")
        out.append(sorted(set(ids)))
    return out


def state_questions(num_states: int) -> List[List[int]]:
    """HMM-state questions for states 0..num_states-1: every prefix {0..i} and every singleton
    {i}, without sets equivalent to an earlier one (complements give the same split)."""
    cand = [list(range(i + 1)) for i in range(num_states - 1)] + [[i] for i in range(num_states)]
    return dedupe_sets(cand, set(range(num_states)))


def dedupe_sets(sets: Iterable[Sequence[int]], universe: set) -> List[List[int]]:
    """Drop empty/full sets and sets equal (or complementary, within ``universe``) to an
    earlier one; keep the first occurrence so the order stays deterministic."""
    seen = set()
    out = []
    for s in sets:
        fs = frozenset(int(v) for v in s)
        inside = fs & universe
        if not inside or inside == universe:
            continue
        comp = frozenset(universe - inside)
        if inside in seen or comp in seen:
            continue
        seen.add(inside)
        out.append(sorted(fs))
    return out


def _principal_cut(z: np.ndarray, var_floor: float) -> np.ndarray:
    """Best cut of the items along the principal direction of their (variance-normalized)
    means; returns a bool side per item."""
    k = z.shape[0]
    d = (z.shape[1] - 1) // 2
    n = z[:, 0]
    tot = z.sum(0)
    gmean = tot[1:1 + d] / tot[0]
    gvar = np.maximum(tot[1 + d:] / tot[0] - gmean ** 2, var_floor)
    m = (z[:, 1:1 + d] / n[:, None] - gmean) / np.sqrt(gvar)
    cov = (m * n[:, None]).T @ m / n.sum()
    _, vecs = np.linalg.eigh(cov)
    v = vecs[:, -1]
    v = v * (1.0 if v[np.argmax(np.abs(v))] >= 0 else -1.0)  # canonical sign
    proj = m @ v
    order = np.lexsort((np.arange(k), np.round(proj, 12)))
    cum = np.cumsum(z[order], axis=0)[:-1]
    obj = gauss_loglik(cum, var_floor) + gauss_loglik(tot - cum, var_floor)
    cut = int(np.argmax(obj)) + 1
    side = np.zeros(k, bool)
    side[order[cut:]] = True
    return side


def _bisect(z: np.ndarray, var_floor: float) -> np.ndarray:
    """Split items (rows of stats ``z``) in two, maximizing the summed Gaussian log-likelihood:
    best cut along the principal direction of the (variance-normalized) means, then greedy
    single-item moves until none improves. Deterministic. Returns a bool side per item."""
    k = z.shape[0]
    if k == 2:
        return np.array([False, True])
    side = _principal_cut(z, var_floor)
    a, b = z[~side].sum(0), z[side].sum(0)
    for _ in range(100):  # refinement: move one item at a time while it helps
        moved = False
        for i in range(k):
            src, dst = (b, a) if side[i] else (a, b)
            if (side == side[i]).sum() == 1:
                continue
            before = gauss_loglik(np.stack([src, dst]), var_floor).sum()
            after = gauss_loglik(np.stack([src - z[i], dst + z[i]]), var_floor).sum()
            if after > before + 1e-9 * abs(before):
                side[i] = not side[i]
                a, b = z[~side].sum(0), z[side].sum(0)
                moved = True
        if not moved:
            break
    return side


def cluster_phones(stats: TreeStats, units: Optional[Sequence[Sequence[int]]] = None,
                   state: Optional[int] = 1, var_floor: float = 0.01) -> List[List[int]]:
    """Phone-set questions by top-down binary clustering of the phones' pooled Gaussians (as
    Kaldi's ``cluster-phones``): every node of the resulting tree is one question.

    ``units``: groups of phone ids clustered as one item (default: every centre phone in the
    stats on its own). ``state``: pool only this HMM state (Kaldi uses the middle state, 1);
    ``None`` pools all states; a unit without frames in ``state`` falls back to all its states.
    Phones without statistics appear in no question (they always take the "no" branch).
    """
    keys, x = stats.keys, stats.stats
    if units is None:
        units = [[int(p)] for p in np.unique(keys[:, CENTER])]
    items, zs = [], []
    for u in units:
        in_unit = np.isin(keys[:, CENTER], np.asarray(u, np.int64))
        sel = in_unit & (keys[:, STATE] == state) if state is not None else in_unit
        z = x[sel].sum(0) if sel.any() else x[in_unit].sum(0)
        if z[0] > 0:
            items.append(sorted(int(p) for p in u))
            zs.append(z)
    if len(items) < 2:
        return []
    zmat = np.stack(zs)
    questions: List[List[int]] = []

    def rec(idx: np.ndarray) -> None:
        if idx.size < 2:
            return
        side = _bisect(zmat[idx], var_floor)
        parts = [idx[~side], idx[side]]
        # the part holding the smallest phone id first, so output order does not depend on
        # which side the splitter called "True"
        parts.sort(key=lambda p: min(items[i][0] for i in p))
        for p in parts:
            questions.append(sorted(ph for i in p for ph in items[i]))
        for p in parts:
            rec(p)

    rec(np.arange(len(items)))
    universe = {ph for it in items for ph in it}
    return dedupe_sets(questions, universe)

"""Kaldi-style senone tree: decision-tree clustering of context-dependent HMM states.

What it does
------------
:class:`TreeStats` holds, for every seen context state ``(left, center, right, state)``, the
sufficient statistics of one diagonal Gaussian (count, sum, sum of squares), accumulated from
frame-level alignments with :meth:`TreeStats.accumulate`. :func:`build_tree` grows one tree per
root (by default one root per phone, all HMM states of the phone under it, as Kaldi's default
``roots.txt`` "shared split"): it greedily applies, across all roots at once, the yes/no
question with the largest log-likelihood gain until ``num_leaves`` leaves exist (Kaldi's
``build-tree --max-leaves``). Questions ask whether the left / right phone (or the centre phone,
for roots holding several phones) lies in a phone set, or whether the HMM state lies in a state
set. Phone sets are given (:func:`read_questions`, like Kaldi's ``questions.int`` /
``extra_questions``) or derived by top-down clustering of the phones' pooled Gaussians
(:func:`cluster_phones`, like Kaldi's ``cluster-phones``). The result, :class:`ContextTree`,
maps any ``(left, center, right, state)``, seen or not, to a dense senone id, saves to a
readable JSON file, and converts to Kaldi's own ``ContextDependency`` (:meth:`ContextTree.
to_kaldi_context_dependency`), so Kaldi's graph tools can use the same senones.

Context convention (alignment, targets and decoding graphs must all follow it)
-----------------------------------------------------------------------------
* Phone ids are those of ``phones.txt`` (``phones[i]`` is the name of id ``i``); id 0 is
  ``<eps>`` and never a centre phone; names starting with ``#`` (disambiguation) get no root.
* ``state`` is the 0-based HMM state index, i.e. Kaldi's pdf-class for the usual topologies.
* Triphone context (Kaldi ``N=3, P=1``). Cross-word context is real context: the last phone of a
  word has the first phone of the next word as right context, as in Kaldi's cross-word trees.
  Silence between words (optional or not) is a phone of the sequence, so the phones next to it
  see the silence phone as context.
* Utterance edges: the context beyond the first/last phone is the edge symbol ``0`` (what
  Kaldi's context FST and ``acc-tree-stats`` use). The tree treats ``0`` exactly like the
  silence phone ``sil_phone``: :meth:`ContextTree.lookup` maps a left/right ``0`` to
  ``sil_phone`` before asking questions, and the Kaldi export adds ``0`` to every phone set that
  contains ``sil_phone``. So writing the edge either as ``0`` or as the silence phone gives the
  same senone, and Kaldi-built graphs agree with lm2am's lookup. Without a silence phone
  (``sil_phone=None``) ``0`` is a context of its own that is in no phone set.
* ``no_context_phones`` (silence, noise) do not split on context: one senone per HMM state.

File format (``ContextTree.save``): JSON with the phone table, per-root nested question nodes
(``{"ask": "left", "in": [phone names], "gain": g, "yes": node, "no": node}`` or
``{"senone": id, "count": frames}``), written atomically; :meth:`ContextTree.load` reads it back
exactly.
"""
from __future__ import annotations

import heapq
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, atomic_write_text

__all__ = [
    "EDGE", "TreeStats", "ContextTree", "frame_contexts", "build_tree", "cluster_phones",
    "read_questions", "state_questions",
]

#: Context symbol for "beyond the utterance edge" (Kaldi's convention; treated as the silence phone).
EDGE = 0

# Internal key numbering; the file uses the names, Kaldi's EventMap the Kaldi keys.
LEFT, CENTER, RIGHT, STATE = 0, 1, 2, 3
KEY_NAMES = ("left", "center", "right", "state")
_KALDI_KEY = {LEFT: 0, CENTER: 1, RIGHT: 2, STATE: -1}  # -1 = kPdfClass
_FORMAT = "lm2am-senone-tree"
_VERSION = 1
_BITS = 15  # bits per field in a packed context code: ids < 32768
_MAXID = 1 << _BITS
_LOG2PI = math.log(2.0 * math.pi)

PhoneRef = Union[int, str]


# --------------------------------------------------------------------------- statistics
def _encode(left: np.ndarray, center: np.ndarray, right: np.ndarray, state: np.ndarray) -> np.ndarray:
    cols = [np.asarray(a, dtype=np.int64).reshape(-1) for a in (left, center, right, state)]
    n = cols[0].size
    for name, c in zip(KEY_NAMES, cols):
        if c.size != n:
            raise ValueError(f"accumulate: {name} has {c.size} entries, expected {n}")
        if n and (c.min() < 0 or c.max() >= _MAXID):
            raise ValueError(f"accumulate: {name} ids must lie in [0, {_MAXID})")
    lt, c, r, s = cols
    return (((lt << _BITS | c) << _BITS | r) << _BITS) | s


def _decode(codes: np.ndarray) -> np.ndarray:
    m = _MAXID - 1
    return np.stack([(codes >> (3 * _BITS)) & m, (codes >> (2 * _BITS)) & m,
                     (codes >> _BITS) & m, codes & m], axis=1)


def _reduce(codes: np.ndarray, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sum the rows of ``x`` that share a code (sort + reduceat: far faster than np.add.at)."""
    if codes.size == 0:
        return codes, x
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    return sc[starts], np.add.reduceat(x[order], starts, axis=0)


class TreeStats:
    """Per context state ``(left, center, right, state)``: one diagonal Gaussian's sufficient
    statistics (count, sum, sum of squares), in float64.

    Accumulation is cheap and lazy (batches are reduced, then merged when the stats are read or
    the buffer grows), so calling :meth:`accumulate` once per utterance is fine.
    """

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError("TreeStats: dim must be >= 1")
        self.dim = int(dim)
        self._codes = np.zeros(0, np.int64)
        self._x = np.zeros((0, 1 + 2 * self.dim))
        self._pending: List[Tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    # ---- accumulation
    def accumulate(self, feats: np.ndarray, left: np.ndarray, center: np.ndarray, right: np.ndarray,
                   state: np.ndarray, weights: Optional[np.ndarray] = None) -> None:
        """Add frames: ``feats`` [T, D] and per-frame context ids (each [T]); ``weights`` [T]
        (default 1) scale each frame's contribution (e.g. posteriors)."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"accumulate: feats must be [T, {self.dim}], got {feats.shape}")
        codes = _encode(left, center, right, state)
        if codes.size != feats.shape[0]:
            raise ValueError(f"accumulate: {codes.size} context entries for {feats.shape[0]} frames")
        w = np.ones(feats.shape[0]) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if w.size != feats.shape[0]:
            raise ValueError("accumulate: weights must have one entry per frame")
        wf = feats * w[:, None]
        x = np.concatenate([w[:, None], wf, wf * feats], axis=1)
        self._add(*_reduce(codes, x))

    def merge(self, other: "TreeStats") -> "TreeStats":
        """Add ``other``'s statistics into this object (e.g. the per-job stats of ``nj`` jobs)."""
        if other.dim != self.dim:
            raise ValueError(f"merge: dims differ ({self.dim} vs {other.dim})")
        other._consolidate()
        self._add(other._codes.copy(), other._x.copy())
        return self

    def __iadd__(self, other: "TreeStats") -> "TreeStats":
        return self.merge(other)

    def _add(self, codes: np.ndarray, x: np.ndarray) -> None:
        if codes.size == 0:
            return
        self._pending.append((codes, x))
        self._pending_rows += codes.size
        if self._pending_rows > max(4 * self._codes.size, 200_000):
            self._consolidate()

    def _consolidate(self) -> None:
        if not self._pending:
            return
        codes = np.concatenate([self._codes] + [c for c, _ in self._pending])
        x = np.concatenate([self._x] + [v for _, v in self._pending])
        self._codes, self._x = _reduce(codes, x)
        self._pending, self._pending_rows = [], 0

    # ---- read access (sorted by packed code, i.e. by (left, center, right, state))
    @property
    def num_contexts(self) -> int:
        """Number of distinct seen context states."""
        self._consolidate()
        return int(self._codes.size)

    @property
    def keys(self) -> np.ndarray:
        """[N, 4] int64: (left, center, right, state) of each seen context state."""
        self._consolidate()
        return _decode(self._codes)

    @property
    def stats(self) -> np.ndarray:
        """[N, 1 + 2D] float64: count, sum (D), sum of squares (D)."""
        self._consolidate()
        return self._x

    @property
    def count(self) -> np.ndarray:
        return self.stats[:, 0]

    @property
    def sum(self) -> np.ndarray:
        return self.stats[:, 1:1 + self.dim]

    @property
    def sumsq(self) -> np.ndarray:
        return self.stats[:, 1 + self.dim:]

    @property
    def total_count(self) -> float:
        return float(self.count.sum())

    # ---- persistence (per-job stats files, summed by the stage)
    def save(self, path: Union[Path, str]) -> None:
        """Write to ``path`` (numpy .npz content) atomically."""
        self._consolidate()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, format=np.array(_FORMAT + "-stats"), dim=np.array(self.dim),
                         codes=self._codes, x=self._x)

    @classmethod
    def load(cls, path: Union[Path, str]) -> "TreeStats":
        """Read a file written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != _FORMAT + "-stats":
                    raise KeyError("format")
                st = cls(int(z["dim"]))
                st._codes, st._x = z["codes"].astype(np.int64), z["x"].astype(np.float64)
        except FileNotFoundError:
            raise Lm2amError(f"tree stats file {path} does not exist; run the stats stage first") from None
        except (OSError, KeyError, ValueError):
            raise Lm2amError(f"{path}: not a tree stats file (corrupt?); delete it and rerun the stats stage") from None
        return st


def frame_contexts(frame_phones: np.ndarray, frame_states: Optional[np.ndarray] = None,
                   segment_starts: Optional[np.ndarray] = None, edge: int = EDGE
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Left and right context phone of every frame, from a frame-level phone alignment.

    A new phone segment starts at frame 0, where the phone id changes, where ``segment_starts``
    is true, or (if ``frame_states`` is given) where the HMM state goes back (a repeated phone,
    e.g. "t t" across words, under a left-to-right topology). Outside the utterance the context is
    ``edge``. Returns ``(left, right)``, each [T] int64; the centre is ``frame_phones`` itself.
    """
    ph = np.asarray(frame_phones, dtype=np.int64).reshape(-1)
    t = ph.size
    if t == 0:
        return ph.copy(), ph.copy()
    start = np.zeros(t, bool)
    start[0] = True
    start[1:] = ph[1:] != ph[:-1]
    if frame_states is not None:
        st = np.asarray(frame_states, dtype=np.int64).reshape(-1)
        if st.size != t:
            raise ValueError("frame_contexts: frame_states must have one entry per frame")
        start[1:] |= st[1:] < st[:-1]
    if segment_starts is not None:
        ss = np.asarray(segment_starts, dtype=bool).reshape(-1)
        if ss.size != t:
            raise ValueError("frame_contexts: segment_starts must have one entry per frame")
        start |= ss
    seg = np.cumsum(start) - 1
    seg_phone = ph[start]
    left = np.r_[edge, seg_phone[:-1]].astype(np.int64)
    right = np.r_[seg_phone[1:], edge].astype(np.int64)
    return left[seg], right[seg]


# --------------------------------------------------------------------------- likelihoods
def _loglik(x: np.ndarray, var_floor: float) -> np.ndarray:
    """ML log-likelihood of the data summarized by rows of ``x`` = [count, sum, sumsq] under its
    own diagonal Gaussian (Kaldi's GaussClusterable::Objf, with an absolute variance floor)."""
    x = np.asarray(x, dtype=np.float64)
    d = (x.shape[-1] - 1) // 2
    n = x[..., 0]
    safe = np.where(n > 0, n, 1.0)
    mean = x[..., 1:1 + d] / safe[..., None]
    var = np.maximum(x[..., 1 + d:] / safe[..., None] - mean * mean, var_floor)
    ll = -0.5 * n * (d * (1.0 + _LOG2PI) + np.log(var).sum(-1))
    return np.where(n > 0, ll, 0.0)


# --------------------------------------------------------------------------- questions
def _phone_table(phones: Sequence[str]) -> Dict[str, int]:
    table: Dict[str, int] = {}
    for i, name in enumerate(phones):
        if name in table:
            raise Lm2amError(f"phone symbol list: {name!r} appears twice (ids {table[name]} and {i}); "
                             "fix phones.txt")
        table[name] = i
    return table


def _phone_id(ref: PhoneRef, phones: Sequence[str], table: Mapping[str, int], what: str) -> int:
    if isinstance(ref, (int, np.integer)):
        if not 0 <= int(ref) < len(phones):
            raise Lm2amError(f"{what}: phone id {ref} is not in the phone list (0..{len(phones) - 1})")
        return int(ref)
    if ref not in table:
        raise Lm2amError(f"{what}: phone {ref!r} is not in the phone list; check phones.txt")
    return table[ref]


def read_questions(path: Union[Path, str], phones: Sequence[str]) -> List[List[int]]:
    """Read phone-set questions: one set per line, phone names or integer ids separated by
    blanks (Kaldi's ``questions.int`` / ``extra_questions.txt``). Blank lines and ``#`` comment
    lines (a line whose first token starts with ``#`` followed by a space) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"questions file {path} does not exist; give an existing file or leave it "
                         "out to derive questions automatically")
    table = _phone_table(phones)
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
    return _dedupe(cand, set(range(num_states)))


def _dedupe(sets: Iterable[Sequence[int]], universe: set) -> List[List[int]]:
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


def _bisect(z: np.ndarray, var_floor: float) -> np.ndarray:
    """Split items (rows of stats ``z``) in two, maximizing the summed Gaussian log-likelihood:
    best cut along the principal direction of the (variance-normalized) means, then greedy
    single-item moves until none improves. Deterministic. Returns a bool side per item."""
    k = z.shape[0]
    if k == 2:
        return np.array([False, True])
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
    obj = _loglik(cum, var_floor) + _loglik(tot - cum, var_floor)
    cut = int(np.argmax(obj)) + 1
    side = np.zeros(k, bool)
    side[order[cut:]] = True
    a, b = z[~side].sum(0), z[side].sum(0)
    for _ in range(100):  # refinement: move one item at a time while it helps
        moved = False
        for i in range(k):
            src, dst = (b, a) if side[i] else (a, b)
            if (side == side[i]).sum() == 1:
                continue
            before = _loglik(np.stack([src, dst]), var_floor).sum()
            after = _loglik(np.stack([src - z[i], dst + z[i]]), var_floor).sum()
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
    return _dedupe(questions, universe)


# --------------------------------------------------------------------------- the tree
@dataclass
class _Node:
    """A question node (``key >= 0``) or a leaf (``key == -1``)."""

    key: int = -1
    values: Tuple[int, ...] = ()  # the "yes" set
    yes: Optional["_Node"] = None
    no: Optional["_Node"] = None
    senone: int = -1
    count: float = 0.0
    gain: float = 0.0


def _leaves(node: _Node) -> Iterable[_Node]:
    stack = [node]
    while stack:
        nd = stack.pop()
        if nd.key < 0:
            yield nd
        else:
            stack.append(nd.no)  # yes first in DFS order
            stack.append(nd.yes)


class ContextTree:
    """A senone tree: ``lookup(left, center, right, state) -> senone id`` for any context.

    Built by :func:`build_tree` or read by :meth:`load`. ``roots`` pairs each root's phone ids
    with its question tree; every phone with a root can be looked up with any context.
    """

    def __init__(self, phones: Sequence[str], roots: Sequence[Tuple[Sequence[int], _Node]],
                 num_states: Mapping[int, int], sil_phone: Optional[int] = None,
                 info: Optional[Mapping[str, object]] = None):
        self.phones: List[str] = list(phones)
        self.roots: List[Tuple[List[int], _Node]] = [(sorted(int(p) for p in ps), nd) for ps, nd in roots]
        self.num_states: Dict[int, int] = {int(k): int(v) for k, v in num_states.items()}
        self.sil_phone = None if sil_phone is None else int(sil_phone)
        self.info: Dict[str, object] = dict(info or {})
        self._compile()

    # ---- compiled arrays for vectorized lookup
    def _compile(self) -> None:
        nph = len(self.phones)
        nodes: List[_Node] = []
        index: Dict[int, int] = {}

        def visit(nd: _Node) -> int:
            # recursion depth = tree depth (tens), far below Python's limit
            if id(nd) in index:
                return index[id(nd)]
            i = len(nodes)
            index[id(nd)] = i
            nodes.append(nd)
            if nd.key >= 0:
                visit(nd.yes)
                visit(nd.no)
            return i

        root_of = np.full(nph, -1, np.int64)
        for ps, nd in self.roots:
            r = visit(nd)
            for p in ps:
                if not 0 <= p < nph:
                    raise ValueError(f"root phone id {p} outside the phone list")
                if root_of[p] >= 0:
                    raise ValueError(f"phone {self.phones[p]} has two roots")
                root_of[p] = r
        senones = sorted({nd.senone for nd in nodes if nd.key < 0})
        if senones != list(range(len(senones))):
            raise ValueError("senone ids must be dense 0..num_leaves-1")
        width = max([nph] + [max(nd.values) + 1 for nd in nodes if nd.key >= 0 and nd.values])
        n = len(nodes)
        self._key = np.array([nd.key for nd in nodes], np.int64)
        self._yes = np.array([index[id(nd.yes)] if nd.key >= 0 else i for i, nd in enumerate(nodes)], np.int64)
        self._no = np.array([index[id(nd.no)] if nd.key >= 0 else i for i, nd in enumerate(nodes)], np.int64)
        self._senone = np.array([nd.senone for nd in nodes], np.int64)
        self._member = np.zeros((n, width), bool)
        for i, nd in enumerate(nodes):
            if nd.key >= 0 and nd.values:
                self._member[i, list(nd.values)] = True
        self._root_of = root_of
        self._num_leaves = len(senones)
        counts = np.zeros(len(senones))
        for nd in nodes:
            if nd.key < 0:
                counts[nd.senone] += nd.count
        self._counts = counts
        sen_phone = np.full(len(senones), -1, np.int64)
        for ps, nd in self.roots:
            for leaf in _leaves(nd):
                if sen_phone[leaf.senone] < 0:
                    sen_phone[leaf.senone] = ps[0]
        self._senone_phone = sen_phone

    @property
    def num_leaves(self) -> int:
        """Number of senones (leaves); senone ids are 0..num_leaves-1."""
        return self._num_leaves

    @property
    def leaf_counts(self) -> np.ndarray:
        """[num_leaves] training frame count (occupancy) of each senone."""
        return self._counts.copy()

    @property
    def senone_to_phone(self) -> np.ndarray:
        """[num_leaves] centre phone id of each senone (the first phone of its root)."""
        return self._senone_phone.copy()

    def lookup(self, left: int, center: int, right: int, state: int) -> int:
        """Senone id of one context state (see the module docstring for the convention)."""
        return int(self.lookup_array(np.array([left]), np.array([center]), np.array([right]),
                                     np.array([state]))[0])

    def lookup_array(self, left: np.ndarray, center: np.ndarray, right: np.ndarray,
                     state: np.ndarray) -> np.ndarray:
        """Vectorized :meth:`lookup` over equally shaped int arrays; returns int64 senone ids."""
        arrs = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (left, center, right, state)))
        shape = arrs[0].shape
        cols = np.stack([a.reshape(-1) for a in arrs])  # [4, T]
        if self.sil_phone is not None:  # utterance edge behaves as silence
            for k in (LEFT, RIGHT):
                cols[k] = np.where(cols[k] == EDGE, self.sil_phone, cols[k])
        c = cols[CENTER]
        bad = (c < 0) | (c >= len(self._root_of))
        cur = np.where(bad, -1, self._root_of[np.clip(c, 0, len(self._root_of) - 1)])
        if (cur < 0).any():
            p = int(c[np.flatnonzero(cur < 0)[0]])
            name = self.phones[p] if 0 <= p < len(self.phones) else "?"
            raise ValueError(f"lookup: centre phone {p} ({name}) has no root in this tree")
        width = self._member.shape[1]
        pos = np.arange(cols.shape[1])
        active = np.flatnonzero(self._key[cur] >= 0)
        while active.size:
            nd = cur[active]
            v = cols[self._key[nd], pos[active]]
            ok = (v >= 0) & (v < width)
            ans = ok & self._member[nd, np.clip(v, 0, width - 1)]
            cur[active] = np.where(ans, self._yes[nd], self._no[nd])
            active = active[self._key[cur[active]] >= 0]
        return self._senone[cur].reshape(shape)

    # ---- persistence
    def to_json(self) -> str:
        """The readable text written by :meth:`save`."""
        name = self.phones

        def node(nd: _Node) -> dict:
            if nd.key < 0:
                return {"senone": nd.senone, "count": nd.count}
            vals = list(nd.values) if nd.key == STATE else [name[v] for v in nd.values]
            return {"ask": KEY_NAMES[nd.key], "in": vals, "gain": nd.gain,
                    "yes": node(nd.yes), "no": node(nd.no)}

        doc = {
            "format": _FORMAT, "version": _VERSION,
            "convention": "senone = lookup(left, center, right, state); state = 0-based HMM state "
                          "(pdf-class); cross-word context is real context; left/right id 0 "
                          "(utterance edge) is treated as sil_phone",
            "num_leaves": self.num_leaves,
            "sil_phone": None if self.sil_phone is None else name[self.sil_phone],
            "info": self.info,
            "phones": self.phones,
            "num_states": {name[p]: n for p, n in sorted(self.num_states.items())},
            "roots": [{"phones": [name[p] for p in ps], "tree": node(nd)} for ps, nd in self.roots],
        }
        out = io.StringIO()
        _dump(doc, out, 0)
        out.write("\n")
        return out.getvalue()

    def save(self, path: Union[Path, str]) -> None:
        """Write the tree as readable JSON to ``path``, atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Union[Path, str]) -> "ContextTree":
        """Read a tree written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise Lm2amError(f"tree file {path} does not exist; run the tree-building stage first")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise Lm2amError(f"{path}: not valid JSON ({e.msg if hasattr(e, 'msg') else e}); "
                             "rebuild the tree") from None
        try:
            return cls.from_dict(doc)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise Lm2amError(f"{path}: not an lm2am senone tree ({e}); rebuild the tree") from None

    @classmethod
    def from_dict(cls, doc: Mapping) -> "ContextTree":
        """Inverse of the JSON document written by :meth:`to_json`."""
        if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
        phones = list(doc["phones"])
        table = _phone_table(phones)

        def node(d: Mapping) -> _Node:
            if "senone" in d:
                return _Node(senone=int(d["senone"]), count=float(d["count"]))
            key = KEY_NAMES.index(d["ask"])
            vals = tuple(int(v) for v in d["in"]) if key == STATE else tuple(table[v] for v in d["in"])
            return _Node(key=key, values=vals, yes=node(d["yes"]), no=node(d["no"]), gain=float(d["gain"]))

        roots = [([table[p] for p in r["phones"]], node(r["tree"])) for r in doc["roots"]]
        sil = doc.get("sil_phone")
        tree = cls(phones, roots, {table[k]: int(v) for k, v in doc["num_states"].items()},
                   None if sil is None else table[sil], doc.get("info") or {})
        if tree.num_leaves != int(doc["num_leaves"]):
            raise ValueError(f"num_leaves says {doc['num_leaves']} but the tree has {tree.num_leaves}")
        return tree

    # ---- Kaldi interop
    def to_kaldi_bytes(self) -> bytes:
        """Kaldi's binary ``ContextDependency`` serialization of this tree (N=3, P=1, without
        the ``\\0B`` header): a ``TE`` table on the centre phone whose entries are ``SE``/``CE``
        trees; keys 0/1/2 = left/centre/right phone, -1 = pdf-class (state). Edge id 0 joins
        every phone set that holds ``sil_phone`` (the convention above)."""
        out = bytearray()

        def token(t: str) -> None:
            out.extend(t.encode() + b" ")

        def int32(v: int, signed: bool = True) -> None:
            out.append(4 if signed else 256 - 4)  # Kaldi's size byte; negative = unsigned
            out.extend(int(v).to_bytes(4, "little", signed=signed))

        def write(nd: Optional[_Node]) -> None:
            if nd is None:
                token("NULL")
            elif nd.key < 0:
                token("CE")
                int32(nd.senone)
            else:
                vals = set(nd.values)
                if nd.key in (LEFT, RIGHT, CENTER) and self.sil_phone is not None and self.sil_phone in vals:
                    vals.add(EDGE)
                token("SE")
                int32(_KALDI_KEY[nd.key])
                vs = sorted(vals)
                out.append(4)  # WriteIntegerVector: element size, count, raw int32s
                out.extend(len(vs).to_bytes(4, "little", signed=True))
                out.extend(np.asarray(vs, dtype="<i4").tobytes())
                token("{")
                write(nd.yes)
                write(nd.no)
                token("}")

        token("ContextDependency")
        int32(3)
        int32(1)
        token("ToPdf")
        token("TE")
        int32(_KALDI_KEY[CENTER])
        int32(len(self.phones), signed=False)
        token("(")
        by_phone: Dict[int, _Node] = {p: nd for ps, nd in self.roots for p in ps}
        for p in range(len(self.phones)):
            write(by_phone.get(p))
        token(")")
        token("EndContextDependency")
        return bytes(out)

    def to_kaldi_context_dependency(self):
        """This tree as a ``kaldi_hmm_gmm.ContextDependency`` (through its pickle state, which is
        Kaldi's binary serialization); its ``write()`` gives a Kaldi ``tree`` file."""
        if "kaldi_hmm_gmm" not in sys.modules and any(
                m in sys.modules for m in ("kaldifst", "kaldi_decoder", "kaldilm")):
            # importing kaldi_hmm_gmm after these hangs forever (see docs/platform.md)
            raise RuntimeError("import kaldi_hmm_gmm before kaldifst/kaldi_decoder/kaldilm "
                               "(the other order hangs); then call this again")
        import kaldi_hmm_gmm

        state = [b - 256 if b > 127 else b for b in self.to_kaldi_bytes()]
        cd = kaldi_hmm_gmm.ContextDependency.__new__(kaldi_hmm_gmm.ContextDependency)
        cd.__setstate__((state,))
        return cd

    @classmethod
    def from_kaldi_bytes(cls, data: bytes, phones: Sequence[str], num_states: Mapping[int, int],
                         sil_phone: Optional[int] = None) -> "ContextTree":
        """Read Kaldi's binary ``ContextDependency`` (N=3, P=1; as from ``to_kaldi_bytes``,
        ``ContextDependency.__getstate__()`` or a binary tree file, with or without the ``\\0B``
        header) into a :class:`ContextTree` that gives the same pdf-id for every context.

        Each phone gets its own root: the Kaldi map specialized to that centre phone. Edge id 0
        keeps Kaldi's own meaning (sets list it explicitly) unless ``sil_phone`` is given. Leaf
        counts are unknown (0).
        """
        data = bytes(b % 256 for b in data) if not isinstance(data, (bytes, bytearray)) else bytes(data)
        r = _KaldiReader(data[2:] if data[:2] == b"\0B" else data)
        r.expect("ContextDependency")
        n, p = r.int32(), r.int32()
        if (n, p) != (3, 1):
            raise Lm2amError(f"Kaldi tree has context width {n}, central position {p}; "
                             "only triphone trees (N=3, P=1) are supported")
        r.expect("ToPdf")
        emap = r.event_map()
        r.expect("EndContextDependency")
        keymap = {0: LEFT, 1: CENTER, 2: RIGHT, -1: STATE}
        roots = []
        for ph in range(1, len(phones)):
            if phones[ph].startswith("#"):
                continue
            nd = _specialize(emap, ph, keymap)
            if nd is not None:
                roots.append(([ph], nd))
        return cls(phones, roots, num_states, sil_phone, {"source": "kaldi"})


# --------------------------------------------------------------------------- Kaldi reader
class _KaldiReader:
    """Minimal reader for Kaldi's binary EventMap serialization."""

    def __init__(self, data: bytes):
        self.d, self.i = data, 0

    def token(self) -> str:
        j = self.d.index(b" ", self.i)
        t = self.d[self.i:j].decode()
        self.i = j + 1
        return t

    def expect(self, t: str) -> None:
        got = self.token()
        if got != t:
            raise Lm2amError(f"Kaldi tree: expected {t!r}, found {got!r} at byte {self.i}")

    def int32(self) -> int:
        size = self.d[self.i]
        signed = size < 128
        v = int.from_bytes(self.d[self.i + 1:self.i + 5], "little", signed=signed)
        self.i += 5
        return v

    def intvec(self) -> List[int]:
        if self.d[self.i] != 4:
            raise Lm2amError("Kaldi tree: expected a vector of int32")
        cnt = int.from_bytes(self.d[self.i + 1:self.i + 5], "little", signed=True)
        start = self.i + 5
        self.i = start + 4 * cnt
        return np.frombuffer(self.d[start:self.i], dtype="<i4").astype(int).tolist()

    def event_map(self):
        t = self.token()
        if t == "NULL":
            return None
        if t == "CE":
            return ("CE", self.int32())
        if t == "SE":
            key = self.int32()
            vals = self.intvec()
            self.expect("{")
            yes, no = self.event_map(), self.event_map()
            self.expect("}")
            return ("SE", key, vals, yes, no)
        if t == "TE":
            key = self.int32()
            size = self.int32()
            self.expect("(")
            table = [self.event_map() for _ in range(size)]
            self.expect(")")
            return ("TE", key, table)
        raise Lm2amError(f"Kaldi tree: unknown EventMap node {t!r}")


def _specialize(emap, center: int, keymap: Mapping[int, int]) -> Optional[_Node]:
    """The Kaldi map with the centre phone fixed, as lm2am nodes (TE tables on other keys become
    chains of single-value questions); None where the map has no answer for this phone."""
    if emap is None:
        return None
    kind = emap[0]
    if kind == "CE":
        return _Node(senone=emap[1])
    if kind == "SE":
        _, key, vals, yes, no = emap
        if key not in keymap:
            raise Lm2amError(f"Kaldi tree: question on unsupported key {key}")
        if keymap[key] == CENTER:
            return _specialize(yes if center in vals else no, center, keymap)
        y, n = _specialize(yes, center, keymap), _specialize(no, center, keymap)
        if y is None or n is None:
            return y or n
        return _Node(key=keymap[key], values=tuple(sorted(vals)), yes=y, no=n)
    _, key, table = emap
    if keymap.get(key) == CENTER:
        return _specialize(table[center], center, keymap) if center < len(table) else None
    if key not in keymap:
        raise Lm2amError(f"Kaldi tree: table on unsupported key {key}")
    entries = [(v, _specialize(t, center, keymap)) for v, t in enumerate(table)]
    entries = [(v, nd) for v, nd in entries if nd is not None]
    if not entries:
        return None
    node = entries[-1][1]  # values outside the table: Kaldi has no answer; take the last entry
    for v, nd in reversed(entries[:-1]):
        node = _Node(key=keymap[key], values=(v,), yes=nd, no=node)
    return node


# --------------------------------------------------------------------------- JSON layout
def _dump(obj, out: io.StringIO, level: int) -> None:
    """Indented JSON with short scalar lists (phone sets) kept on one line."""
    pad = " " * level
    if isinstance(obj, dict):
        if not any(isinstance(v, (dict, list)) for v in obj.values()):
            flat = json.dumps(obj)
            if len(flat) <= 120:  # leaves and other small records on one line
                out.write(flat)
                return
        out.write("{\n")
        items = list(obj.items())
        for i, (k, v) in enumerate(items):
            out.write(f"{pad} {json.dumps(k)}: ")
            _dump(v, out, level + 1)
            out.write(",\n" if i < len(items) - 1 else "\n")
        out.write(pad + "}")
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        out.write("[\n")
        for i, v in enumerate(obj):
            out.write(pad + " ")
            _dump(v, out, level + 1)
            out.write(",\n" if i < len(obj) - 1 else "\n")
        out.write(pad + "]")
    else:
        out.write(json.dumps(obj))


# --------------------------------------------------------------------------- building
def _resolve_sil(sil_phone: Union[PhoneRef, None], phones: Sequence[str], table: Mapping[str, int]) -> Optional[int]:
    if sil_phone is None:
        return None
    if sil_phone == "auto":
        for name in ("SIL", "sil", "<sil>", "SIL_S"):
            if name in table:
                return table[name]
        return None
    return _phone_id(sil_phone, phones, table, "sil_phone")


def build_tree(stats: TreeStats, phones: Sequence[str], num_leaves: int, *,
               questions: Optional[Sequence[Sequence[PhoneRef]]] = None,
               min_count: float = 100.0, min_gain: float = 0.0,
               no_context_phones: Iterable[PhoneRef] = (),
               sil_phone: Union[PhoneRef, None] = "auto",
               num_states: Union[int, Mapping[PhoneRef, int], None] = None,
               roots: Optional[Sequence[Sequence[PhoneRef]]] = None,
               var_floor: float = 0.01, cluster_state: Optional[int] = 1) -> ContextTree:
    """Grow a senone tree from ``stats`` with at most ``num_leaves`` leaves in total.

    Greedy and global (Kaldi's ``build-tree --max-leaves``): the leaf/question pair with the
    largest log-likelihood gain over all roots is split next, until ``num_leaves`` leaves exist,
    no split leaves both sides with at least ``min_count`` frames, or the best gain is at most
    ``min_gain``.

    Args:
        stats: accumulated context-state statistics.
        phones: phone symbol list, ``phones[id] = name`` (phones.txt order, id 0 = ``<eps>``).
        num_leaves: maximum number of senones (the ``--num-leaves`` option).
        questions: phone sets (ids or names) asked about the left/right (and shared-root centre)
            phone; default :func:`cluster_phones` on ``stats``. HMM-state questions are added
            automatically (:func:`state_questions`).
        min_count: minimum frame count on each side of a split.
        min_gain: stop when the best log-likelihood gain is not above this.
        no_context_phones: phones (silence, noise) that get one leaf per HMM state and never
            split on context.
        sil_phone: the silence phone that edge context 0 is mapped to; ``"auto"`` picks a phone
            named SIL/sil/<sil> if any, ``None`` keeps 0 as a context of its own.
        num_states: HMM states per phone (int for all, or a mapping); default: per phone, the
            largest state index in ``stats`` + 1 (the largest over all phones for unseen ones).
        roots: groups of phones sharing one root (Kaldi ``roots.txt`` "shared" lines; the tree may
            then also ask about the centre phone); every other phone gets a root of its own.
            Phone id 0 and names starting with ``#`` never get a root.
        var_floor: absolute variance floor of the Gaussians (Kaldi's default 0.01).
        cluster_state: the HMM state used by the automatic question clustering.
    """
    if num_leaves < 1:
        raise Lm2amError(f"--num-leaves must be >= 1 (got {num_leaves})")
    table = _phone_table(phones)
    nph = len(phones)
    sil = _resolve_sil(sil_phone, phones, table)
    eligible = [i for i, nm in enumerate(phones) if i != EDGE and not nm.startswith("#")]
    if roots is None:
        root_sets = [[p] for p in eligible]
    else:
        root_sets = [sorted({_phone_id(p, phones, table, "roots") for p in r}) for r in roots]
        root_sets = [r for r in root_sets if r]
        flat = [p for r in root_sets for p in r]
        if len(flat) != len(set(flat)):
            raise Lm2amError("roots: a phone appears in two root groups; give each phone one root")
        if EDGE in flat:
            raise Lm2amError("roots: phone id 0 (<eps>) cannot be a centre phone")
        root_sets += [[p] for p in eligible if p not in set(flat)]
    root_sets.sort(key=lambda r: r[0])
    nocontext = {_phone_id(p, phones, table, "no_context_phones") for p in no_context_phones}

    keys = stats.keys.copy()
    x = stats.stats
    if keys.size and keys[:, [LEFT, RIGHT]].max() >= nph:
        raise Lm2amError(f"tree stats use context phone id {int(keys[:, [LEFT, RIGHT]].max())}, beyond the "
                         f"{nph} phones of the phone list; accumulate with the same phones.txt")
    root_index = np.full(nph, -1, np.int64)
    for ri, r in enumerate(root_sets):
        root_index[r] = ri
    if keys.size:
        bad = (keys[:, CENTER] >= nph) | (root_index[np.clip(keys[:, CENTER], 0, nph - 1)] < 0)
        if bad.any():
            p = int(keys[np.flatnonzero(bad)[0], CENTER])
            raise Lm2amError(f"tree stats have centre phone id {p}, which has no root (not in the phone "
                             "list, <eps>, a #disambig symbol, or outside --roots); fix the alignment or roots")
    if sil is not None:  # the edge behaves as silence, for the statistics as for lookup
        for k in (LEFT, RIGHT):
            keys[:, k] = np.where(keys[:, k] == EDGE, sil, keys[:, k])

    # HMM states per phone
    seen_max: Dict[int, int] = {}
    if keys.size:
        for p in np.unique(keys[:, CENTER]):
            seen_max[int(p)] = int(keys[keys[:, CENTER] == p, STATE].max()) + 1
    default_n = max(seen_max.values(), default=3)
    nstates: Dict[int, int] = {}
    for r in root_sets:
        for p in r:
            if isinstance(num_states, int):
                nstates[p] = num_states
            elif num_states is not None and (phones[p] in num_states or p in num_states):
                nstates[p] = int(num_states[phones[p]] if phones[p] in num_states else num_states[p])
            else:
                nstates[p] = seen_max.get(p, default_n)
            if seen_max.get(p, 0) > nstates[p]:
                raise Lm2amError(f"tree stats have HMM state {seen_max[p] - 1} for phone {phones[p]}, "
                                 f"but num_states gives it {nstates[p]} states; fix num_states/topology")

    # questions
    if questions is None:
        questions = cluster_phones(stats, state=cluster_state, var_floor=var_floor)
        qsource = "auto"
    else:
        qsource = "given"
    qsets = [sorted({_phone_id(p, phones, table, "questions") for p in q}) for q in questions]
    pq = _dedupe(qsets, set(range(1, nph)))
    max_states = max(nstates.values(), default=1)
    sq = state_questions(max_states)
    member = {
        LEFT: np.zeros((len(pq), nph), bool),
        STATE: np.zeros((len(sq), max(max_states, 1)), bool),
    }
    for i, q in enumerate(pq):
        member[LEFT][i, q] = True
    for i, q in enumerate(sq):
        member[STATE][i, q] = True
    member[RIGHT] = member[CENTER] = member[LEFT]
    qvals = {LEFT: pq, RIGHT: pq, CENTER: pq, STATE: sq}

    cols = [keys[:, k] for k in range(4)]
    rows_of_root = [np.flatnonzero(root_index[keys[:, CENTER]] == ri) if keys.size else np.zeros(0, np.int64)
                    for ri in range(len(root_sets))]

    def best_split(idx: np.ndarray, allowed: Sequence[int]) -> Optional[Tuple[float, int, int]]:
        if idx.size < 2:
            return None
        xs = x[idx]
        tot = xs.sum(0)
        if tot[0] < 2 * min_count:
            return None
        parent = float(_loglik(tot, var_floor))
        best: Optional[Tuple[float, int, int]] = None
        for key in allowed:
            vals = cols[key][idx]
            order = np.argsort(vals, kind="stable")
            sv = vals[order]
            starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
            if starts.size < 2:
                continue
            uniq = sv[starts]
            per_val = np.add.reduceat(xs[order], starts, axis=0)
            m = member[key]
            inr = uniq < m.shape[1]
            mq = np.zeros((m.shape[0], uniq.size), bool)
            mq[:, inr] = m[:, uniq[inr]]
            nyes = mq.sum(1)
            cand = np.flatnonzero((nyes > 0) & (nyes < uniq.size))
            if cand.size == 0:
                continue
            yes = mq[cand].astype(np.float64) @ per_val
            no = tot - yes
            gain = _loglik(yes, var_floor) + _loglik(no, var_floor) - parent
            gain[(yes[:, 0] < min_count) | (no[:, 0] < min_count)] = -np.inf
            j = int(np.argmax(gain))
            if np.isfinite(gain[j]) and (best is None or gain[j] > best[0]):
                best = (float(gain[j]), key, int(cand[j]))
        return best

    heap: List[Tuple[float, int, _Node, np.ndarray, Tuple[int, ...]]] = []
    seq = 0
    nleaves = 0
    tree_roots: List[Tuple[List[int], _Node]] = []
    for ri, r in enumerate(root_sets):
        idx = rows_of_root[ri]
        n_st = max(nstates[p] for p in r)
        if any(p in nocontext for p in r):
            # one leaf per state: a chain "state == s ?" (Kaldi's "not-shared not-split")
            leaf_rows = [idx[cols[STATE][idx] == s] for s in range(n_st - 1)]
            leaf_rows.append(idx[cols[STATE][idx] >= n_st - 1])
            node = _Node(count=float(x[leaf_rows[-1], 0].sum()))
            for s in range(n_st - 2, -1, -1):
                node = _Node(key=STATE, values=(s,), yes=_Node(count=float(x[leaf_rows[s], 0].sum())), no=node)
            nleaves += n_st
            tree_roots.append((r, node))
            continue
        allowed = [LEFT, RIGHT] + ([CENTER] if len(r) > 1 else []) + ([STATE] if n_st > 1 else [])
        node = _Node(count=float(x[idx, 0].sum()))
        tree_roots.append((r, node))
        nleaves += 1
        bs = best_split(idx, allowed)
        if bs is not None:
            heapq.heappush(heap, (-bs[0], seq, node, idx, tuple(allowed)))
        node.gain = bs[0] if bs else 0.0
        node.key = -1
        node.values = (bs[1], bs[2]) if bs else ()  # stash the pending question
        seq += 1
    if nleaves > num_leaves:
        raise Lm2amError(f"--num-leaves {num_leaves} is below the {nleaves} leaves the roots need "
                         "(one per phone, one per state of no-context phones); raise it")

    while heap and nleaves < num_leaves:
        neg_gain, _, node, idx, allowed = heapq.heappop(heap)
        if -neg_gain <= min_gain:
            break
        key, qi = node.values
        vals = cols[key][idx]
        m = member[key]
        inr = vals < m.shape[1]
        ans = np.zeros(idx.size, bool)
        ans[inr] = m[qi, vals[inr]]
        node.key, node.values = key, tuple(qvals[key][qi])
        children = []
        for side in (ans, ~ans):
            cidx = idx[side]
            child = _Node(count=float(x[cidx, 0].sum()))
            bs = best_split(cidx, allowed)
            if bs is not None:
                child.values = (bs[1], bs[2])
                child.gain = bs[0]
                heapq.heappush(heap, (-bs[0], seq, child, cidx, allowed))
                seq += 1
            children.append(child)
        node.yes, node.no = children
        nleaves += 1
    # leaves still holding a stashed (unused) question: clear it; number leaves depth-first
    senone = 0
    for _, root in tree_roots:
        for leaf in _leaves(root):
            leaf.values, leaf.gain = (), 0.0
            leaf.senone = senone
            senone += 1
    info = {"num_leaves_requested": int(num_leaves), "min_count": float(min_count),
            "min_gain": float(min_gain), "var_floor": float(var_floor), "questions": qsource,
            "num_phone_questions": len(pq), "total_count": float(x[:, 0].sum()) if keys.size else 0.0,
            "num_contexts": int(keys.shape[0])}
    return ContextTree(phones, tree_roots, nstates, sil, info)


@dataclass
class TreeConfig:
    """The ``tree:`` section of a recipe config (see :func:`build_tree` for the meaning)."""

    num_leaves: int = 300  # senones: a few hundred for the demo, 2000-6000 for real corpora
    min_count: float = 100.0
    min_gain: float = 0.0
    questions: Optional[str] = None  # Kaldi questions file (phone names); None: cluster phones
    no_context_phones: Tuple[str, ...] = ("SIL", "SPN")

    def __post_init__(self) -> None:
        if self.num_leaves < 1:
            raise ValueError(f"num_leaves must be >= 1, got {self.num_leaves}")
        self.no_context_phones = tuple(self.no_context_phones)


def tree_from_alignments(items: Iterable[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                         phones: Sequence[str], num_states: Mapping[PhoneRef, int],
                         cfg: TreeConfig) -> Tuple[ContextTree, TreeStats]:
    """Accumulate stats from ``(feats [T,D], frame phones [T], frame HMM states [T])`` items
    (forced alignments) and build the tree; returns ``(tree, stats)``.

    Context follows this module's convention (see the module docstring): cross-word context is
    the neighbouring phone, utterance edges are 0.
    """
    stats: Optional[TreeStats] = None
    for feats, ph, st in items:
        if stats is None:
            stats = TreeStats(feats.shape[1])
        left, right = frame_contexts(ph, st)
        stats.accumulate(feats, left, ph, right, st)
    if stats is None:
        raise Lm2amError("no aligned utterances to build the senone tree from")
    questions = read_questions(cfg.questions, phones) if cfg.questions else None
    present = [p for p in cfg.no_context_phones if p in phones]
    tree = build_tree(stats, phones, cfg.num_leaves, questions=questions, min_count=cfg.min_count,
                      min_gain=cfg.min_gain, no_context_phones=present, num_states=dict(num_states))
    return tree, stats

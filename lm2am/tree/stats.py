"""Tree statistics: one diagonal Gaussian's sufficient statistics per seen context state.

:class:`TreeStats` holds, for every seen context state ``(left, center, right, state)``, the
count, sum and sum of squares of the frames, accumulated from frame-level alignments with
:meth:`TreeStats.accumulate`; :func:`gauss_loglik` is the likelihood the tree building and the
question clustering maximize.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path
from lm2am.tree.context import KEY_NAMES

__all__ = ["TreeStats", "gauss_loglik"]

_FORMAT = "lm2am-senone-tree-stats"
_BITS = 15  # bits per field in a packed context code: ids < 32768
_MAXID = 1 << _BITS
_LOG2PI = math.log(2.0 * math.pi)


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


def gauss_loglik(x: np.ndarray, var_floor: float) -> np.ndarray:
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
                np.savez(f, format=np.array(_FORMAT), dim=np.array(self.dim),
                         codes=self._codes, x=self._x)

    @classmethod
    def load(cls, path: Union[Path, str]) -> "TreeStats":
        """Read a file written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != _FORMAT:
                    raise KeyError("format")
                st = cls(int(z["dim"]))
                st._codes, st._x = z["codes"].astype(np.int64), z["x"].astype(np.float64)
        except FileNotFoundError:
            raise Lm2amError(f"tree stats file {path} does not exist; run the stats stage first") from None
        except (OSError, KeyError, ValueError):
            raise Lm2amError(f"{path}: not a tree stats file (corrupt?); delete it and rerun the stats stage") from None
        return st

"""Reading teacher posteriors back for a batch of cuts, aligned with the AM's output frames.

:func:`load_teacher_posteriors` returns :class:`SparsePosteriors` (top-k indices and
probabilities per frame plus a mask), subsampled with :func:`lm2am.frames.subsample` exactly as
features and targets are; :func:`to_dense` turns them into ``[B, T', V]`` distributions (tests,
label interpolation). The storage layout is described in :mod:`lm2am.lm.posteriors`.

Speed: a :class:`PosteriorReader` parses ``post.scp`` once, keeps one file descriptor per ark
(:mod:`lm2am.ark`; ``os.pread``: no shared file position, safe in forked data-loader workers) and decodes each
cut's matrix with one read and ``np.frombuffer``; each cut's checked runs and frame-to-run map
are cached in the reader (a few bytes per frame), so after the first epoch a batch is two
gathers. :func:`load_teacher_posteriors` caches one reader per directory.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from lm2am.ark import ArkFiles, read_scp
from lm2am.errors import Lm2amError
from lm2am.frames import num_subsampled, subsample
from lm2am.lm.posteriors import FORMAT, VERSION

__all__ = ["SparsePosteriors", "PosteriorReader", "load_teacher_posteriors", "to_dense"]

PathLike = Union[str, Path]
_HEAD = 15  # b"\0BFM " + b"\4" + int32 rows + b"\4" + int32 cols


@dataclass
class SparsePosteriors:
    """Teacher posteriors of a batch: for cut ``b`` and (subsampled) frame ``t`` the
    distribution ``sum_j probs[b, t, j] * onehot(indices[b, t, j])``.

    ``mask`` is False on silence frames and padding (there ``probs`` are 0 and ``indices`` 0,
    so gathers stay in range and any weighted loss term is 0; unused top-k slots likewise).
    """

    indices: torch.Tensor  # int64 [B, T', k]
    probs: torch.Tensor  # float32 [B, T', k]
    mask: torch.Tensor  # bool [B, T']

    def to(self, device: Union[str, torch.device]) -> "SparsePosteriors":
        return SparsePosteriors(self.indices.to(device), self.probs.to(device), self.mask.to(device))


class PosteriorReader:
    """Random access to the teacher posteriors in ``post_dir`` (needs ``post_info.json``).

    ``vocab_size``, if given, must equal the teacher's vocabulary size (the AM head's output
    size), else :class:`Lm2amError`. ``info`` holds ``post_info.json``.
    """

    def __init__(self, post_dir: PathLike, vocab_size: Optional[int] = None):
        self.post_dir = Path(post_dir)
        info_path = self.post_dir / "post_info.json"
        if not info_path.is_file():
            raise Lm2amError(f"{info_path} is missing: the teacher posteriors in {self.post_dir} are "
                             "absent or incomplete; run the posterior stage (steps/compute_posteriors.py)")
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            raise Lm2amError(f"{info_path}: not valid JSON; rerun the posterior stage") from None
        if self.info.get("format") != FORMAT or self.info.get("version") != VERSION:
            raise Lm2amError(f"{info_path}: not lm2am teacher posteriors version {VERSION}; rerun "
                             "the posterior stage")
        self.vocab_size = int(self.info["vocab_size"])
        self.k = int(self.info["top_k"])
        if vocab_size is not None and int(vocab_size) != self.vocab_size:
            raise Lm2amError(f"{info_path}: posteriors are over {self.vocab_size} {self.info['unit']} "
                             f"tokens but the model's head has {vocab_size} outputs; use the "
                             "posteriors of the matching unit/tree or fix the head size")
        self._scp_path = self.post_dir / "post.scp"
        if not self._scp_path.is_file():
            raise Lm2amError(f"{self._scp_path} is missing; rerun the posterior stage (merge step)")
        self._scp = read_scp(self._scp_path, "rerun the posterior stage", key="cut-id")
        # scp paths are relative to the recipe dir; also accept the ark next to the scp
        self._arks = ArkFiles(f"(named in {self._scp_path}) is missing; rerun the posterior stage, "
                              "or run from the directory it ran in", near=self.post_dir)
        self._cache: Dict[Tuple[str, int], Tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}

    def __contains__(self, cut_id: object) -> bool:
        return cut_id in self._scp

    def __len__(self) -> int:
        return len(self._scp)

    def keys(self) -> List[str]:
        return list(self._scp)

    def close(self) -> None:
        """Close the ark files (reopened on the next read)."""
        self._arks.close()

    def read_matrix(self, cut_id: str) -> np.ndarray:
        """The stored ``[runs + 1, 2 + 2k]`` float32 matrix of ``cut_id``."""
        try:
            ark, off = self._scp[cut_id]
        except KeyError:
            raise Lm2amError(f"cut {cut_id} has no teacher posteriors in {self._scp_path}; recompute "
                             "them for this part (or drop the cut)") from None
        fd = self._arks.fd(ark)
        head = os.pread(fd, _HEAD, off)
        where = f"{ark}:{off} (cut {cut_id})"
        if len(head) < _HEAD or head[:5] != b"\0BFM " or head[5] != 4 or head[10] != 4:
            raise Lm2amError(f"{where}: not a Kaldi float matrix (corrupt or truncated ark); rerun "
                             "the posterior stage")
        rows = int.from_bytes(head[6:10], "little", signed=True)
        cols = int.from_bytes(head[11:15], "little", signed=True)
        if rows < 1 or cols != 2 + 2 * self.k:
            raise Lm2amError(f"{where}: matrix is {rows}x{cols}, expected (runs+1)x{2 + 2 * self.k} "
                             f"for top_k={self.k}; rerun the posterior stage")
        data = os.pread(fd, 4 * rows * cols, off + _HEAD)
        if len(data) != 4 * rows * cols:
            raise Lm2amError(f"{where}: ark ends inside the matrix (truncated); rerun the posterior stage")
        return np.frombuffer(data, dtype="<f4").reshape(rows, cols)

    def frames(self, cut_id: str, num_frames: Optional[int] = None
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per frame of ``cut_id``: ``(indices int64 [T, k], probs float32 [T, k], speech bool [T])``
        (silence: index 0, probability 0). ``num_frames`` (the features') must equal ``T``."""
        T = int(self.read_matrix(cut_id)[-1, 0]) if num_frames is None else int(num_frames)
        sp = self.load([cut_id], [T])
        return sp.indices[0].numpy(), sp.probs[0].numpy(), sp.mask[0].numpy()

    def _cut(self, cut_id: str, n: int, subsampling: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indices [T', k] int64, probs [T', k] float32, speech [T'] bool)`` of one cut's
        subsampled frames, checked and cached (silence: index 0, probability 0). The cache holds
        ``12 k + 1`` bytes per subsampled frame, so every epoch after the first reads no file and
        a batch is a few contiguous copies."""
        key = (cut_id, subsampling)
        hit = self._cache.get(key)
        if hit is not None and hit[3] == n:
            return hit[0], hit[1], hit[2]
        m = self.read_matrix(cut_id)
        T, k = int(m[-1, 0]), self.k
        if int(n) != T:
            raise Lm2amError(f"{self._scp[cut_id][0]} (cut {cut_id}): teacher posteriors have {T} frames "
                             f"but the features {n}; recompute targets and posteriors from "
                             "these features")
        r = m.shape[0] - 1
        runs = m[:-1]
        if r:
            se = runs[:, :2].astype(np.int64)
            if se[0, 0] < 0 or se[-1, 1] > T or (se[:, 1] <= se[:, 0]).any() \
                    or (se[1:, 0] < se[:-1, 1]).any():
                raise Lm2amError(f"{self._scp[cut_id][0]} (cut {cut_id}): frame runs out of order or beyond "
                                 f"its {T} frames (corrupt ark); rerun the posterior stage")
            if runs[:, 2:2 + k].max() >= self.vocab_size:
                raise Lm2amError(f"{self.post_dir}: a vocabulary index >= {self.vocab_size} in cut "
                                 f"{cut_id} (corrupt ark, or posteriors of another vocabulary); "
                                 "rerun the posterior stage")
            # frame -> run by +v at run starts, -v at run ends, cumulative sum (runs are disjoint)
            v = np.arange(1, r + 1, dtype=np.int64)
            delta = np.zeros(T + 1, dtype=np.int64)
            delta[se[:, 0]] = v  # starts are distinct, and so are ends
            delta[se[:, 1]] -= v
            rows = subsample(np.cumsum(delta[:T]) - 1, subsampling)
        else:
            rows = np.full(num_subsampled(T, subsampling), -1, dtype=np.int64)
        # per-run tables plus an all-zero row that silence frames point at, gathered once per cut
        idx_table = np.zeros((r + 1, k), dtype=np.int64)
        idx_table[:r] = np.maximum(runs[:, 2:2 + k], 0)  # spare slots (-1) -> 0
        prob_table = np.zeros((r + 1, k), dtype=np.float32)
        prob_table[:r] = runs[:, 2 + k:]
        speech = rows >= 0
        at = np.where(speech, rows, r)
        entry = (idx_table[at], prob_table[at], speech, int(n))
        self._cache[key] = entry
        return entry[0], entry[1], entry[2]

    def load(self, cut_ids: Sequence[str], num_frames: Sequence[int], subsampling: int = 1
             ) -> SparsePosteriors:
        """A padded batch (see :func:`load_teacher_posteriors`)."""
        if len(cut_ids) != len(num_frames):
            raise ValueError(f"{len(cut_ids)} cut ids but {len(num_frames)} frame counts")
        B, k = len(cut_ids), self.k
        Tp = num_subsampled(max(num_frames, default=0), subsampling)
        indices = np.zeros((B, Tp, k), dtype=np.int64)
        probs = np.zeros((B, Tp, k), dtype=np.float32)
        mask = np.zeros((B, Tp), dtype=bool)
        for b, (c, n) in enumerate(zip(cut_ids, num_frames)):
            idx, pr, speech = self._cut(c, int(n), subsampling)
            t = len(speech)
            indices[b, :t] = idx
            probs[b, :t] = pr
            mask[b, :t] = speech
        return SparsePosteriors(torch.from_numpy(indices), torch.from_numpy(probs), torch.from_numpy(mask))


_READERS: Dict[Tuple[str, Optional[int], int], PosteriorReader] = {}


def load_teacher_posteriors(post_dir: PathLike, cut_ids: Sequence[str], num_frames: Sequence[int],
                            subsampling: int = 1, vocab_size: Optional[int] = None
                            ) -> SparsePosteriors:
    """Teacher posteriors of ``cut_ids`` as a padded batch of ``T' = num_subsampled(max T,
    subsampling)`` frames, frames picked by :func:`lm2am.frames.subsample`.

    ``num_frames`` are the cuts' feature frame counts (before subsampling); each must equal the
    stored count. ``vocab_size``: the expected vocabulary (the AM head's size), checked. The
    reader of ``post_dir`` is opened once and cached (per process).
    """
    scp = Path(post_dir) / "post.scp"
    try:  # a recomputed directory gets a fresh reader
        stamp = scp.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = -1
    key = (str(Path(post_dir).resolve()), vocab_size, stamp)
    reader = _READERS.get(key)
    if reader is None:
        reader = _READERS[key] = PosteriorReader(post_dir, vocab_size)
    return reader.load(cut_ids, num_frames, subsampling)


def to_dense(sparse: SparsePosteriors, vocab_size: int) -> torch.Tensor:
    """``[B, T', V]`` float32 distributions (all zero on masked frames)."""
    if sparse.indices.numel() and int(sparse.indices.max()) >= vocab_size:
        raise Lm2amError(f"teacher posterior index {int(sparse.indices.max())} >= vocabulary size "
                         f"{vocab_size}; the posteriors belong to another unit or tree")
    B, T, _ = sparse.indices.shape
    out = torch.zeros(B, T, vocab_size, dtype=sparse.probs.dtype, device=sparse.probs.device)
    out.scatter_add_(2, sparse.indices, sparse.probs * sparse.mask.unsqueeze(-1))
    return out

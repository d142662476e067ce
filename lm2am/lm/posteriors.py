"""Teacher posteriors: each training cut's own token sequence through the teacher, top-k per
token, spread over the token's frames; stored as Kaldi ark/scp, sharded, resumable.

What a frame gets
-----------------
For each cut, the unit's token sequence comes from its frame targets
(:func:`lm2am.lm.tokens.target_tokens`). The teacher scores it (:mod:`lm2am.lm.scoring`:
masked LM with the batched masking scheme, or causal LM), each position's logits become
``softmax(logits / temperature)``, of which the ``top_k`` largest entries are kept and
renormalized to sum to 1. Frame ``t`` gets the distribution of position ``pos[t]`` (the
targets' ``senone_pos`` / ``phone_pos`` / ``subword``); ``pos[t] = -1`` (silence) gets none.

Storage layout (``exp/lm_<unit>/post_<part>/``)
---------------------------------------------
Frames of one token share one distribution, so a distribution is stored once per *run* (a
maximal range of consecutive frames with the same position) rather than once per frame:

* ``post.<J>.ark`` / ``post.<J>.scp`` (job ``J`` = 1..N): per cut (key = cut id) one Kaldi
  binary float32 matrix (``\\0BFM``, what ``copy-matrix`` reads; ``kaldiio.load_scp`` too) of
  shape ``[R + 1, 2 + 2k]``. Row ``r < R`` is one run: ``start, end`` (frames ``[start, end)``),
  then ``k`` vocabulary indices, then their ``k`` probabilities (renormalized top-k, descending;
  where the vocabulary is smaller than ``k`` the spare entries are index ``-1``, probability
  ``0``). The last row is a sentinel ``[T, T, -1 ..., 0 ...]`` recording the cut's frame count
  ``T``. Frames in no run are silence (the loader marks them). Indices are exact in float32
  (< 2^24). Runs are in frame order and never overlap.
* ``post.scp``: all shards' scp lines, C-locale sorted by cut id (written by
  :func:`merge_posteriors`).
* ``post_info.json``: unit, vocabulary size, ``top_k``, temperature, arch, ``mask_spacing``,
  ``mask_span``, counts, bytes and bytes per frame, and the teacher's quality over all speech
  frames (each token weighted by its frames): ``mean_kept_mass`` (of the full distribution at
  the storage temperature, what the top-k keep), ``mean_entropy_stored`` (nats, the stored
  renormalized top-k) and ``mean_entropy_full``; written last, the completion signal the
  loader requires.
* ``.post.<J>.done`` (fingerprint of model, targets and options), ``post.<J>.json`` (shard
  counts), ``storage_report.txt``, ``plots/``.

Size: ``(2 + 2k) * 4`` bytes per run plus ~20 bytes per cut (matrix header, key), i.e. for
``k = 8`` 72 bytes per token against ``4 * V`` bytes per frame for dense float32. Measured on
the demo's train part (k = 8): senone 21.3 bytes/frame (dense: 1200, 56x smaller), phone 7.8
(dense: 200, 26x), subword 4.7 (dense: 2000, 422x); :func:`lm2am.lm.storage_report.storage_report` measures it.

Sharding and resuming
---------------------
Cuts (sorted, C-locale) are split into ``N`` contiguous shards; job ``J`` writes only its
shard, to temporary names renamed at the end (ark first, then scp, then its counts and done
marker). A rerun skips shards whose done marker matches and recomputes the others from
scratch (a killed shard's leftovers are removed); the computation is deterministic for a given
shard (fixed batch composition and order), so the files come out byte-identical given the same
torch build and thread count.
"""
from __future__ import annotations

import glob
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_path, atomic_write_text
from lm2am.lm.scoring import score_sequences
from lm2am.lm.tokens import check_unit, target_spans, target_tokens

log = logging.getLogger(__name__)

__all__ = ["pos_runs", "encode_rows", "topk_posteriors", "topk_with_stats", "shard_cut_ids", "compute_posteriors",
           "merge_posteriors", "add_frame_stats", "STAT_SUMS", "FORMAT", "VERSION"]

FORMAT = "lm2am-teacher-posteriors"
VERSION = 1
CHUNK = 256  # cuts scored together (one set of batches); part of what fixes the output bytes

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------------------------
# Frame layout


def pos_runs(pos: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal non-negative values of a per-frame position array: ``(start, end, pos)``
    arrays (frames ``[start, end)`` have position ``pos``); ``-1`` frames are in no run."""
    pos = np.asarray(pos, dtype=np.int64)
    T = pos.shape[0]
    if T == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    change = np.ones(T, dtype=bool)
    change[1:] = pos[1:] != pos[:-1]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], T]
    keep = pos[starts] >= 0
    return starts[keep], ends[keep], pos[starts][keep]


def topk_posteriors(logits: torch.Tensor, k: int, temperature: float = 1.0
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """``softmax(logits / temperature)`` per row, its ``k`` largest entries renormalized:
    ``(indices int64 [n, k], probs float32 [n, k])``, descending; spare entries (``k > V``)
    are index -1, probability 0."""
    return topk_with_stats(logits, k, temperature)[:2]


def topk_with_stats(logits: torch.Tensor, k: int, temperature: float = 1.0
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`topk_posteriors` plus, per row, the mass the top-k keep of the full
    distribution and the full distribution's entropy (nats), both float64 ``[n]``."""
    n, V = logits.shape
    p = torch.softmax(logits.double() / temperature, dim=-1)
    kk = min(k, V)
    val, idx = torch.topk(p, kk, dim=-1)
    mass = val.sum(-1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    val = val / mass.unsqueeze(-1)
    out_i = np.full((n, k), -1, dtype=np.int64)
    out_p = np.zeros((n, k), dtype=np.float32)
    out_i[:, :kk] = idx.numpy()
    out_p[:, :kk] = val.numpy().astype(np.float32)
    return out_i, out_p, mass.numpy(), entropy.numpy()


def entropy_rows(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of a probability matrix (zeros ignored), float64 ``[n]``."""
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)


def encode_rows(pos: np.ndarray, idx: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The stored matrix of one cut (module docstring): runs of ``pos`` with the top-k
    ``idx``/``probs`` ([num_tokens, k]) of their position, plus the sentinel row."""
    k = idx.shape[1]
    s, e, p = pos_runs(pos)
    if p.size and p.max() >= idx.shape[0]:
        raise ValueError(f"position {int(p.max())} >= the {idx.shape[0]} tokens")
    T = int(np.asarray(pos).shape[0])
    m = np.zeros((len(s) + 1, 2 + 2 * k), dtype=np.float32)
    m[:-1, 0], m[:-1, 1] = s, e
    m[:-1, 2:2 + k] = idx[p]
    m[:-1, 2 + k:] = probs[p]
    m[-1, :2] = T
    m[-1, 2:2 + k] = -1
    return m


# ----------------------------------------------------------------------------------------------
# Computing and writing


def shard_cut_ids(cut_ids: Iterable[str], job: int, num_jobs: int) -> List[str]:
    """Job ``job``'s (1-based) contiguous share of the C-locale sorted ``cut_ids``."""
    if not 1 <= job <= num_jobs:
        raise Lm2amError(f"--job {job} is outside 1..{num_jobs} (--num-jobs)")
    ids = sorted(set(cut_ids), key=str.encode)
    n = len(ids)
    lo, hi = (job - 1) * n // num_jobs, job * n // num_jobs
    return ids[lo:hi]


def _shard_marker(out_dir: Path, job: int, num_jobs: int, model_path: Path, info_path: Path,
                  params: Mapping[str, Any]) -> DoneMarker:
    return DoneMarker(out_dir / f".post.{job}.done", {**params, "job": job, "num_jobs": num_jobs,
                                                        "format": FORMAT, "version": VERSION},
                      inputs=[model_path, info_path])


def _options(meta: Mapping[str, Any], top_k: Optional[int], temperature: Optional[float],
             mask_spacing: Optional[int]) -> Dict[str, Any]:
    cfg = meta["config"]
    k = cfg.top_k if top_k is None else int(top_k)
    t = cfg.temperature if temperature is None else float(temperature)
    s = cfg.mask_spacing if mask_spacing is None else int(mask_spacing)
    if k < 1:
        raise Lm2amError(f"top_k must be >= 1, got {k}")
    if t < 0.1:
        raise Lm2amError(f"temperature must be >= 0.1, got {t}")
    return {"unit": meta["unit"], "vocab_size": meta["vocab_size"], "arch": cfg.arch,
            "top_k": k, "temperature": t, "mask_spacing": s, "mask_span": cfg.mask_span}


def compute_posteriors(model_dir: PathLike, targets_dir: PathLike, part: str, out_dir: PathLike, *,
                       job: int = 1, num_jobs: int = 1, device: Union[str, torch.device] = "cpu",
                       top_k: Optional[int] = None, temperature: Optional[float] = None,
                       mask_spacing: Optional[int] = None, batch_tokens: Optional[int] = None,
                       progress: bool = True) -> Dict[str, Any]:
    """Write shard ``job`` of ``num_jobs`` of the teacher posteriors of ``part``.

    ``model_dir/final.pt`` is the teacher (:func:`lm2am.lm.train.load_lm`); its unit picks the
    targets' token sequences and position arrays (``targets_dir``, :func:`lm2am.targets.
    read_targets`). ``top_k``, ``temperature``, ``mask_spacing``, ``batch_tokens`` default to
    the teacher's config. Skips a shard whose done marker matches. Returns the shard's counts
    (``skipped: True`` when skipped).
    """
    from lm2am.lm.train import load_lm
    from lm2am.targets import read_targets

    model_dir, targets_dir, out_dir = Path(model_dir), Path(targets_dir), Path(out_dir)
    if any(c.isspace() for c in str(out_dir)):
        raise Lm2amError(f"posterior dir {str(out_dir)!r} contains whitespace, which Kaldi scp files "
                         "cannot hold; use a path without spaces")
    model_path = model_dir / "final.pt"
    info_path = targets_dir / f"targets_{part}.json"
    model, meta = load_lm(model_path, device)
    opts = _options(meta, top_k, temperature, mask_spacing)
    unit = check_unit(meta["unit"])
    reader = read_targets(targets_dir, part)
    _check_vocabulary(reader.info, unit, meta["vocab_size"], model_path, info_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = _shard_marker(out_dir, job, num_jobs, model_path, info_path, opts)
    ark = out_dir / f"post.{job}.ark"
    scp = out_dir / f"post.{job}.scp"
    stats_path = out_dir / f"post.{job}.json"
    if marker.is_done() and ark.is_file() and scp.is_file() and stats_path.is_file():
        log.info("posteriors %s job %d/%d: done already, skipping", part, job, num_jobs)
        return {**json.loads(stats_path.read_text()), "skipped": True}
    for stale in glob.glob(str(out_dir / f".post.{job}.*.tmp*")):  # a killed run's leftovers
        Path(stale).unlink()
    if marker.path.exists():
        marker.path.unlink()

    cut_ids = shard_cut_ids(reader, job, num_jobs)
    t0 = time.time()
    with _progress_bar(len(cut_ids), f"{unit} posteriors {part} job {job}", progress) as bar:
        lines, counts = _write_shard(model, reader, cut_ids, unit, opts,
                                     batch_tokens or meta["config"].eval_batch_tokens, ark, device, bar)
    atomic_write_text(scp, "".join(lines))
    counts["bytes"] = ark.stat().st_size
    counts["seconds"] = round(time.time() - t0, 2)
    atomic_write_text(stats_path, json.dumps(counts) + "\n")
    marker.mark()
    log.info("posteriors %s job %d/%d: %d cuts, %d frames, %d tokens in %.1f s (%.0f tokens/s)",
             part, job, num_jobs, counts["cuts"], counts["frames"], counts["tokens"],
             counts["seconds"], counts["tokens"] / max(counts["seconds"], 1e-9))
    return {**counts, "skipped": False}


def _progress_bar(total: int, desc: str, progress: bool):
    """The shard's progress bar (``progress=False``: none)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, mininterval=5, leave=False)


def _check_vocabulary(info: Any, unit: str, vocab_size: int, model_path: Path, info_path: Path) -> None:
    """The teacher's vocabulary must be the targets' (same lang dir and tree)."""
    expected = {"senone": info.num_senones, "phone": info.num_phones,
                "subword": info.num_subwords}[unit]
    if expected is not None and expected != vocab_size:
        raise Lm2amError(f"{model_path}: the {unit} LM has a vocabulary of {vocab_size} but "
                         f"the targets ({info_path}) use {expected}; retrain the LM with the same "
                         "lang dir and tree as the targets")


def _write_shard(model: Any, reader: Any, cut_ids: List[str], unit: str, opts: Mapping[str, Any],
                 batch_tokens: int, ark: Path, device: Union[str, torch.device], bar: Any
                 ) -> Tuple[List[str], Dict[str, int]]:
    """Score the cuts ``CHUNK`` at a time and write their matrices to ``ark`` (atomically);
    returns the scp lines (naming ``ark``) and the counts."""
    from kaldiio.matio import write_array

    k, temp = opts["top_k"], opts["temperature"]
    counts = {"cuts": 0, "frames": 0, "speech_frames": 0, "runs": 0, "tokens": 0}
    sums = dict.fromkeys(STAT_SUMS, 0.0)
    lines: List[str] = []
    with atomic_path(ark) as tmp_ark:
        with open(tmp_ark, "wb") as f:
            for c0 in range(0, len(cut_ids), CHUNK):
                ids = cut_ids[c0:c0 + CHUNK]
                ts = [reader[c] for c in ids]
                tp = [target_tokens(t, unit) for t in ts]
                spans = [target_spans(t, unit, opts["mask_span"]) for t in ts]
                tops = score_sequences(model, [t for t, _ in tp], lambda i, lg: topk_with_stats(lg, k, temp),
                                       spacing=opts["mask_spacing"], batch_tokens=batch_tokens,
                                       device=torch.device(device),
                                       spans=spans if opts["mask_span"] != "token" else None)
                for cid, (toks, pos), top in zip(ids, tp, tops):
                    if top is None:
                        top = (np.zeros((0, k), np.int64), np.zeros((0, k), np.float32), np.zeros(0), np.zeros(0))
                    m = encode_rows(pos, *top[:2])
                    add_frame_stats(sums, pos, top)
                    f.write(cid.encode() + b" ")
                    lines.append(f"{cid} {ark}:{f.tell()}\n")
                    write_array(f, m)
                    counts["cuts"] += 1
                    counts["frames"] += int(len(pos))
                    counts["speech_frames"] += int((np.asarray(pos) >= 0).sum())
                    counts["runs"] += m.shape[0] - 1
                    counts["tokens"] += len(toks)
                bar.update(len(ids))
    return lines, {**counts, **sums}


#: Per-speech-frame sums a shard records (``post.<J>.json``); ``post_info.json`` holds their means.
STAT_SUMS = ("kept_mass_sum", "entropy_stored_sum", "entropy_full_sum")


def add_frame_stats(sums: Dict[str, float], pos: np.ndarray, top: Tuple[np.ndarray, ...]) -> None:
    """Add one cut's per-token kept mass and entropies, each token weighted by its frames."""
    pos = np.asarray(pos)
    w = np.bincount(pos[pos >= 0], minlength=len(top[2])).astype(np.float64)
    sums["kept_mass_sum"] += float((w * top[2]).sum())
    sums["entropy_stored_sum"] += float((w * entropy_rows(top[1])).sum())
    sums["entropy_full_sum"] += float((w * top[3]).sum())


def merge_posteriors(model_dir: PathLike, targets_dir: PathLike, part: str, out_dir: PathLike, *,
                     num_jobs: int, top_k: Optional[int] = None, temperature: Optional[float] = None,
                     mask_spacing: Optional[int] = None) -> Dict[str, Any]:
    """Check that all ``num_jobs`` shards are done (same options), write ``post.scp`` (sorted)
    and ``post_info.json`` (the completion signal). Returns the info."""
    from lm2am.lm.train import load_lm

    model_dir, targets_dir, out_dir = Path(model_dir), Path(targets_dir), Path(out_dir)
    model_path = model_dir / "final.pt"
    _, meta = load_lm(model_path)
    opts = _options(meta, top_k, temperature, mask_spacing)
    info_path = targets_dir / f"targets_{part}.json"
    lines: List[str] = []
    totals = {"cuts": 0, "frames": 0, "speech_frames": 0, "runs": 0, "tokens": 0, "bytes": 0,
              "seconds": 0.0, **dict.fromkeys(STAT_SUMS, 0.0)}
    for j in range(1, num_jobs + 1):
        marker = _shard_marker(out_dir, j, num_jobs, model_path, info_path, opts)
        if not marker.is_done():
            raise Lm2amError(f"{out_dir}: shard {j} of {num_jobs} is missing or stale "
                             f"({marker.path}); run steps/compute_posteriors.py --job {j} "
                             f"--num-jobs {num_jobs} with the same options first")
        lines += (out_dir / f"post.{j}.scp").read_text().splitlines(keepends=True)
        for key, v in json.loads((out_dir / f"post.{j}.json").read_text()).items():
            totals[key] += v
    lines.sort(key=lambda x: x.split(" ", 1)[0].encode())
    info_file = out_dir / "post_info.json"
    scp_text = "".join(lines)
    V = opts["vocab_size"]
    speech = max(totals["speech_frames"], 1)
    means = {"mean_" + key[:-4]: round(totals.pop(key) / speech, 6) for key in STAT_SUMS}
    info = {"format": FORMAT, "version": VERSION, **opts, "part": part, "num_jobs": num_jobs,
            "model": str(model_path), "targets": str(info_path), **totals, **means,
            "bytes_per_frame": round(totals["bytes"] / max(totals["frames"], 1), 2),
            "dense_float32_bytes_per_frame": 4 * V,
            "layout": "per cut float32 matrix [runs+1, 2+2k]: start, end, k indices, k probs; "
                      "last row [T, T, -1.., 0..]; frames in no run are silence"}
    info_text = json.dumps(info, indent=1) + "\n"
    scp_file = out_dir / "post.scp"
    if not (info_file.is_file() and info_file.read_text() == info_text and scp_file.is_file()
            and scp_file.read_text() == scp_text):  # unchanged: keep the files (and their mtimes)
        if info_file.exists():
            info_file.unlink()  # never a completion signal next to a half-written post.scp
        atomic_write_text(scp_file, scp_text)
        atomic_write_text(info_file, info_text)
    log.info("posteriors %s: %d cuts, %d frames (%d speech), %.1f bytes/frame vs %d dense float32 "
             "(%.0fx smaller)", part, totals["cuts"], totals["frames"], totals["speech_frames"],
             info["bytes_per_frame"], 4 * V, 4 * V / max(info["bytes_per_frame"], 1e-9))
    return info


# ----------------------------------------------------------------------------------------------

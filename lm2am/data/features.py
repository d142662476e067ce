"""Features: 80-dim log-mel fbank stored with lilcom, and Kaldi-format global CMVN stats."""
from __future__ import annotations

import os
import shutil
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Tuple

import numpy as np
from tqdm import tqdm

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, save_manifest


@dataclass
class FbankConfig:
    """Log-mel filterbank features (lhotse's Kaldi-compatible Fbank)."""

    num_mel_bins: int = 80
    frame_shift: float = 0.01  # seconds
    frame_length: float = 0.025  # seconds
    dither: float = 0.0  # 0 keeps features bit-identical between runs
    num_jobs: int = 2


def fbank_extractor(cfg: FbankConfig):
    """The lhotse Fbank extractor for ``cfg``."""
    from lhotse import Fbank
    from lhotse import FbankConfig as LhotseFbankConfig

    return Fbank(LhotseFbankConfig(num_filters=cfg.num_mel_bins, frame_shift=cfg.frame_shift,
                                   frame_length=cfg.frame_length, dither=cfg.dither))


def compute_fbank(cuts, part: str, fbank_dir: Path | str, cfg: FbankConfig):
    """Compute and store fbank for ``cuts``; write ``<fbank_dir>/cuts_<part>.jsonl.gz`` last.

    The cut manifest is the completion signal: feature files from a killed run are removed
    and recomputed, never referenced.
    """
    from lhotse import LilcomChunkyWriter

    fbank_dir = Path(fbank_dir)
    storage = fbank_dir / f"feats_{part}"
    if storage.exists():
        shutil.rmtree(storage) if storage.is_dir() else storage.unlink()
    fbank_dir.mkdir(parents=True, exist_ok=True)
    cuts = cuts.compute_and_store_features(
        extractor=fbank_extractor(cfg), storage_path=storage, num_jobs=cfg.num_jobs,
        storage_type=LilcomChunkyWriter, progress_bar=True,
    )
    cuts = cuts.to_eager()
    check_feature_frames(cuts, cfg.frame_shift)
    out = fbank_dir / f"cuts_{part}.jsonl.gz"
    save_manifest(cuts, out)
    return cuts


def _fbank_chunk(job: Tuple[list, str, FbankConfig]) -> list:
    """Worker of :func:`compute_fbank_lazy`: fbank for one chunk of cuts into one archive."""
    import torch
    from lhotse import LilcomChunkyWriter

    cuts, storage_file, cfg = job
    torch.set_num_threads(1)  # one process per core already
    extractor = fbank_extractor(cfg)
    with LilcomChunkyWriter(storage_file) as writer:
        return [c.compute_and_store_features(extractor, writer) for c in cuts]



def _fbank_results(jobs: Iterable[Tuple[list, str, FbankConfig]], num_jobs: int) -> Iterator[list]:
    """Results of :func:`_fbank_chunk` in job order: in process with ``num_jobs <= 1``, else in
    ``num_jobs`` processes with at most two chunks per process in flight."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    if num_jobs <= 1:
        for job in jobs:
            yield _fbank_chunk(job)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
    with ProcessPoolExecutor(num_jobs, mp_context=ctx) as ex:
        pending: deque = deque()
        for job in jobs:
            pending.append(ex.submit(_fbank_chunk, job))
            if len(pending) >= 2 * num_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def compute_fbank_lazy(cuts: Iterable, part: str, fbank_dir: Path | str, cfg: FbankConfig,
                       transform: Optional[Callable[[list], list]] = None, chunk_size: int = 500) -> int:
    """Streaming :func:`compute_fbank` for large parts: memory does not grow with the part.

    ``cuts`` is iterated once (a lazy CutSet, e.g. ``CutSet.from_jsonl_lazy``) in chunks of
    ``chunk_size``; ``transform`` (e.g. the OOV policy) maps each chunk to the cuts to keep.
    ``cfg.num_jobs`` processes compute the chunks, each into its own lilcom archive
    ``<fbank_dir>/feats_<part>/chunk-NNNNNN.lca``, with at most two chunks per process in flight;
    the cuts are written in input order to ``<fbank_dir>/cuts_<part>.jsonl.gz`` (renamed from a
    temp name at the end, so it stays the completion signal). Returns the number of cuts written.
    """
    import itertools

    from lhotse import CutSet

    fbank_dir = Path(fbank_dir)
    storage = fbank_dir / f"feats_{part}"
    if storage.exists():
        shutil.rmtree(storage) if storage.is_dir() else storage.unlink()
    storage.mkdir(parents=True)
    out = fbank_dir / f"cuts_{part}.jsonl.gz"
    tmp = out.with_name(f".tmp{os.getpid()}.{out.name}")
    it = iter(cuts)
    chunks = (list(c) for c in iter(lambda: list(itertools.islice(it, chunk_size)), []))
    if transform is not None:
        chunks = (transform(c) for c in chunks)
    jobs = ((c, str(storage / f"chunk-{i:06d}.lca"), cfg) for i, c in enumerate(chunks) if c)
    n = 0
    try:
        with CutSet.open_writer(tmp) as writer, \
                closing(_fbank_results(jobs, cfg.num_jobs)) as results, \
                tqdm(desc=f"fbank {part}", unit="cut", mininterval=2, disable=None) as bar:
            for done in results:
                check_feature_frames(done, cfg.frame_shift)
                for c in done:
                    writer.write(c)
                n += len(done)
                bar.update(len(done))
        if n == 0:
            raise Lm2amError(f"part '{part}': no cuts to compute features for; check the manifests")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def check_feature_frames(cuts, frame_shift: float) -> None:
    """Every cut's feature frame count matches its duration (the invariant targets rely on)."""
    from lhotse.utils import compute_num_frames

    for c in cuts:
        expected = compute_num_frames(c.duration, frame_shift, c.sampling_rate)
        if c.num_frames != expected:
            raise Lm2amError(f"cut {c.id}: {c.num_frames} feature frames but duration implies {expected}; recompute features")


def _known_len(items: object) -> Optional[int]:
    """``len(items)`` when it is cheap: not for a lazy CutSet (it would read the manifest)."""
    if getattr(items, "is_lazy", False):
        return None
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def compute_global_cmvn(cuts, out_path: Path | str) -> Tuple[np.ndarray, np.ndarray]:
    """Accumulate Kaldi-format global CMVN stats over ``cuts`` and write them with kaldiio.

    Returns (mean, std) per dimension.
    """
    import kaldiio

    total = None
    with tqdm(total=_known_len(cuts), desc="CMVN stats", unit="cut", mininterval=2,
              disable=None) as bar:
        for c in cuts:
            feats = c.load_features().astype(np.float64)
            if total is None:
                total = np.zeros((2, feats.shape[1] + 1))
            total[0, :-1] += feats.sum(0)
            total[1, :-1] += (feats**2).sum(0)
            total[0, -1] += feats.shape[0]
            bar.update()
    if total is None:
        raise Lm2amError("no cuts to compute CMVN stats from; the training part is empty")
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        kaldiio.save_mat(str(tmp), total)
    return cmvn_from_stats(total)


def cmvn_from_stats(stats: np.ndarray, floor: float = 1e-10) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, std) from a Kaldi CMVN stats matrix."""
    count = stats[0, -1]
    mean = stats[0, :-1] / count
    var = np.maximum(stats[1, :-1] / count - mean**2, floor)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def load_global_cmvn(path: Path | str) -> Tuple[np.ndarray, np.ndarray]:
    """Read the stats written by :func:`compute_global_cmvn`; returns (mean, std)."""
    import kaldiio

    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path}: CMVN stats missing; run the features stage")
    return cmvn_from_stats(kaldiio.load_mat(str(path)))


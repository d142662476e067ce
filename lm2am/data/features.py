"""Features: 80-dim log-mel fbank stored with lilcom, and Kaldi-format global CMVN stats."""
from __future__ import annotations

import os
import shutil
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
from tqdm import tqdm

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, save_manifest
from lm2am.config import check_range


@dataclass
class FbankConfig:
    """Log-mel filterbank features (lhotse's Kaldi-compatible Fbank)."""

    num_mel_bins: int = 80
    frame_shift: float = 0.01  # seconds
    frame_length: float = 0.025  # seconds
    dither: float = 0.0  # 0 keeps features bit-identical between runs
    num_jobs: int = 2

    def __post_init__(self) -> None:
        check_range(self, "num_mel_bins", 1, 512)
        check_range(self, "frame_shift", 0, 1, lo_open=True)
        check_range(self, "frame_length", 0, 1, lo_open=True)
        check_range(self, "dither", 0)
        check_range(self, "num_jobs", 1)


def fbank_extractor(cfg: FbankConfig, sampling_rate: int = 16000):
    """The lhotse Fbank extractor for ``cfg`` and audio at ``sampling_rate`` Hz (the data's rate:
    8 kHz telephone data gets 8 kHz filterbanks, not a crash)."""
    from lhotse import Fbank
    from lhotse import FbankConfig as LhotseFbankConfig

    return Fbank(LhotseFbankConfig(num_filters=cfg.num_mel_bins, frame_shift=cfg.frame_shift,
                                   frame_length=cfg.frame_length, dither=cfg.dither,
                                   sampling_rate=sampling_rate))


#: the audio of a cut whose recording lives in a file must hold exactly the manifest's samples
_FIX = ("restore the file, or rerun the manifest stage (stage 3) to re-import the corpus "
        "(with manifests.missing_audio: skip to leave missing recordings out)")


def part_sampling_rate(cuts: Iterable, name: str) -> int:
    """The one sampling rate of ``cuts`` (16000 when empty); Lm2amError if they mix rates."""
    rates: dict = {}
    for c in cuts:
        rates.setdefault(int(c.sampling_rate), c.id)
    if len(rates) > 1:
        (r1, c1), (r2, c2) = sorted(rates.items())[:2]
        raise Lm2amError(f"{name}: cuts at {r1} Hz ({c1}) and {r2} Hz ({c2}) in one part; "
                         "resample the audio to one rate (manifests.sampling_rate)")
    return next(iter(rates), 16000)


def check_cut_audio(cut, cache: Optional[dict] = None) -> None:
    """The audio file(s) of ``cut``'s recording still match the manifest: present, readable,
    same sample rate and sample count. Lm2amError naming the file otherwise (lhotse would drop
    the cut with a warning, or pad audio up to 0.5 s short with silence). Command and URL
    sources are not checked here; :func:`_check_all_kept` catches what they lose."""
    import soundfile as sf

    rec = getattr(cut, "recording", None)
    if rec is None:
        return
    for src in rec.sources:
        if src.type != "file":
            continue
        path = src.source
        key = (path, rec.id)
        if cache is not None and key in cache:
            continue
        where = f"{path}: audio of {rec.id}"
        if not os.path.isfile(path):
            raise Lm2amError(f"{where} is missing; {_FIX}")
        try:
            info = sf.info(path)
            rate, frames = int(info.samplerate), int(info.frames)
        except Exception as e:
            try:  # formats libsndfile cannot read: lhotse's other backends
                from lhotse.audio import info as lhotse_info

                li = lhotse_info(path)
                rate, frames = int(li.samplerate), int(li.frames)
            except Exception:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise Lm2amError(f"{where} is unreadable ({msg[:160]}); {_FIX}") from None
        if not rec.transforms:
            if rate != rec.sampling_rate:
                raise Lm2amError(f"{where} is {rate} Hz but the manifest says {rec.sampling_rate} Hz "
                                 f"(the file changed after the manifests were made); {_FIX}")
            if frames != rec.num_samples:
                raise Lm2amError(f"{where} holds {frames} samples but the manifest says "
                                 f"{rec.num_samples} (the file changed after the manifests were "
                                 f"made); {_FIX}")
        if cache is not None:
            cache[key] = True


def _check_all_kept(cuts_in: list, cuts_out: Iterable, part: str) -> None:
    """lhotse drops a cut whose audio fails to load (with a warning): make that an error that
    names the audio and the reason, so no utterance disappears silently."""
    kept = {c.id for c in cuts_out}
    lost = [c for c in cuts_in if c.id not in kept]
    if not lost:
        return
    c = lost[0]
    srcs = [s.source for s in c.recording.sources] if getattr(c, "recording", None) else [c.id]
    why = "lhotse dropped it"
    try:
        c.load_audio()
    except Exception as e:
        import re

        text = str(e)
        m = re.search(r"^Exception #0 \(.*?\): <class '[\w.]+'>: (.+)$", text, re.M)  # lhotse's
        why = (m.group(1) if m else (text.splitlines() or [type(e).__name__])[0])[:160]
    raise Lm2amError(f"{srcs[0]}: audio of cut {c.id} could not be read ({why}; {len(lost)} of "
                     f"{len(cuts_in)} cuts of {part} affected); {_FIX}")


def load_features(cut, what: str = "features") -> np.ndarray:
    """``cut.load_features()`` with one-line errors: a missing or unreadable feature archive
    names the file and the stage to rerun (instead of a FileNotFoundError traceback)."""
    try:
        return cut.load_features()
    except FileNotFoundError as e:
        path = e.filename or getattr(getattr(cut, "features", None), "storage_path", "?")
        raise Lm2amError(f"{path}: feature archive of cut {cut.id} is missing; rerun the features "
                         "stage (stage 5: steps/compute_fbank.py)") from None
    except Lm2amError:
        raise
    except Exception as e:
        path = getattr(getattr(cut, "features", None), "storage_path", "?")
        msg = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise Lm2amError(f"{path}: features of cut {cut.id} are unreadable ({msg}); rerun the "
                         "features stage (stage 5: steps/compute_fbank.py)") from None


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
    cuts_in = list(cuts)
    cache: dict = {}
    for c in cuts_in:
        check_cut_audio(c, cache)
    rate = part_sampling_rate(cuts_in, f"part '{part}'")
    out_cuts = cuts.compute_and_store_features(
        extractor=fbank_extractor(cfg, rate), storage_path=storage, num_jobs=cfg.num_jobs,
        storage_type=LilcomChunkyWriter, progress_bar=True,
    )
    cuts = out_cuts.to_eager()
    _check_all_kept(cuts_in, cuts, f"part {part}")
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
    cache: dict = {}
    for c in cuts:
        check_cut_audio(c, cache)
    extractor = fbank_extractor(cfg, part_sampling_rate(cuts, storage_file))
    out = []
    with LilcomChunkyWriter(storage_file) as writer:
        for c in cuts:
            try:
                out.append(c.compute_and_store_features(extractor, writer))
            except Exception:
                _check_all_kept([c], [], storage_file)  # raises, naming the audio
                raise
    return out



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
            feats = load_features(c).astype(np.float64)
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


def cut_speaker(cut) -> str:
    """The speaker of a cut (its first supervision's), or the cut id when it names none."""
    sups = getattr(cut, "supervisions", None) or []
    spk = getattr(sups[0], "speaker", None) if sups else None
    return spk or cut.id


def speaker_means(cuts: Iterable) -> Dict[str, np.ndarray]:
    """Mean feature vector of each speaker over all its cuts (``cut_speaker``), as Kaldi's
    ``compute-cmvn-stats --spk2utt``: the per-speaker mean that speaker CMN removes. Uses only
    the features of the part itself (no transcripts), so it is fair on test parts too."""
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, int] = {}
    for c in cuts:
        feats = load_features(c).astype(np.float64)
        spk = cut_speaker(c)
        sums[spk] = sums.get(spk, 0.0) + feats.sum(0)
        counts[spk] = counts.get(spk, 0) + feats.shape[0]
    return {spk: (sums[spk] / max(counts[spk], 1)).astype(np.float32) for spk in sums}


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


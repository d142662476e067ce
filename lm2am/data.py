"""Manifests, features and CMVN: the data stages every recipe shares.

Artifacts (``<manifest-dir>`` is usually ``data/manifests``, ``<fbank-dir>`` ``data/fbank``):

- ``<manifest-dir>/{recordings,supervisions,cuts}_<part>.jsonl.gz``: lhotse manifests, validated.
- ``<fbank-dir>/cuts_<part>.jsonl.gz`` + ``<fbank-dir>/feats_<part>/``: cuts with 80-dim fbank
  stored with lilcom.
- ``<fbank-dir>/global_cmvn.ark``: Kaldi-format global CMVN stats (a 2 x (D+1) matrix: row 0
  the sums and frame count, row 1 the sums of squares), computed on the training part.

Every corpus reaches the manifests through one of two doors: a LibriSpeech-layout directory
(:func:`prepare_manifests`, used by synth-en, the Asterisk set and LibriSpeech) or a Kaldi data
directory (:mod:`lm2am.corpus.kaldi_dir`), and both end in :func:`save_manifests`.
"""
from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, save_manifest

log = logging.getLogger(__name__)


@dataclass
class ManifestConfig:
    """How the manifest stage treats the corpus files."""

    sampling_rate: int = 16000  # every recording must have this rate (no silent resampling)
    missing_audio: str = "fail"  # "fail": stop naming the file; "skip": drop it with a count
    min_duration: float = 0.2  # seconds; shorter recordings are errors (likely truncated)

    def __post_init__(self) -> None:
        if self.missing_audio not in ("fail", "skip"):
            raise ValueError(f"missing_audio must be 'fail' or 'skip', got {self.missing_audio!r}")


@dataclass
class FbankConfig:
    """Log-mel filterbank features (lhotse's Kaldi-compatible Fbank)."""

    num_mel_bins: int = 80
    frame_shift: float = 0.01  # seconds
    frame_length: float = 0.025  # seconds
    dither: float = 0.0  # 0 keeps features bit-identical between runs
    num_jobs: int = 2


# ----------------------------------------------------------------------------------------------
# Manifests


def manifest_paths(out_dir: Path | str, part: str) -> Dict[str, Path]:
    """The three manifest files of ``part`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return {k: out_dir / f"{k}_{part}.jsonl.gz" for k in ("recordings", "supervisions", "cuts")}


def save_manifests(recordings, supervisions, part: str, out_dir: Path | str):
    """Validate recordings + supervisions with lhotse, write them and their cuts atomically.

    Returns the :class:`lhotse.CutSet` (one cut per supervision, trimmed to it).
    """
    from lhotse import CutSet, validate_recordings_and_supervisions

    if len(recordings) == 0:
        raise Lm2amError(f"part '{part}' has no recordings; check the corpus directory or part name")
    try:
        validate_recordings_and_supervisions(recordings, supervisions)
    except AssertionError as e:
        raise Lm2amError(f"part '{part}': lhotse validation failed: {e}") from None
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = cuts.trim_to_supervisions(keep_overlapping=False).to_eager()
    paths = manifest_paths(out_dir, part)
    # cuts last: its presence means the part is complete
    save_manifest(recordings, paths["recordings"])
    save_manifest(supervisions, paths["supervisions"])
    save_manifest(cuts, paths["cuts"])
    return cuts


def _read_trans_file(tf: Path, seen: Dict[str, Path]) -> List[Tuple[str, str, Path]]:
    """(utt, text, audio path) of each line of one ``*.trans.txt``, with one-line errors for
    bad encoding, empty transcripts and ids already in ``seen`` (updated)."""
    try:
        lines = tf.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise Lm2amError(f"{tf}: not valid UTF-8 (byte {e.start}); re-encode the transcript as UTF-8") from None
    entries: List[Tuple[str, str, Path]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        utt = fields[0]
        text = fields[1].strip() if len(fields) > 1 else ""
        if not text:
            raise Lm2amError(f"{tf} line {n}: empty transcript for {utt}; add its text or remove the line")
        if utt in seen:
            raise Lm2amError(f"{tf} line {n}: duplicate utterance id {utt} (also in {seen[utt]}); make ids unique")
        seen[utt] = tf
        entries.append((utt, text, tf.parent / f"{utt}.flac"))
    return entries


def _check_audio(entry: Tuple[str, str, Path], cfg: ManifestConfig) -> Optional[str]:
    """"missing" for an absent file, None for a good one; Lm2amError for a bad one."""
    import soundfile as sf

    utt, _, path = entry
    if not path.is_file():
        return "missing"
    try:
        data, sr = sf.read(str(path), dtype="int16")
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError subclasses
        raise Lm2amError(f"{path}: unreadable audio ({str(e).splitlines()[0]}); re-create or remove {utt}") from None
    if sr != cfg.sampling_rate:
        raise Lm2amError(f"{path}: sample rate {sr} Hz, expected {cfg.sampling_rate}; resample it (sox in.flac -r {cfg.sampling_rate} out.flac) or set manifests.sampling_rate")
    if len(data) < cfg.min_duration * sr:
        raise Lm2amError(f"{path}: only {len(data) / sr:.3f} s of audio (< manifests.min_duration={cfg.min_duration}); truncated? re-create or remove {utt}")
    return None


def _keep_present(entries: List[Tuple[str, str, Path]], cfg: ManifestConfig, ex: ThreadPoolExecutor,
                  stats: Dict[str, int]) -> List[Tuple[str, str, Path]]:
    """Check the audio of ``entries`` in ``ex``'s threads; apply ``cfg.missing_audio``."""
    kept = []
    for entry, status in zip(entries, ex.map(lambda e: _check_audio(e, cfg), entries)):
        if status == "missing":
            if cfg.missing_audio == "fail":
                raise Lm2amError(f"{entry[2]}: audio file missing for {entry[0]}; restore it, or set manifests.missing_audio: skip")
            log.warning("missing audio %s: skipped (manifests.missing_audio=skip)", entry[2])
            stats["missing"] += 1
        else:
            kept.append(entry)
    return kept


def _scan_librispeech_part(part_dir: Path, cfg: ManifestConfig) -> Tuple[List[Tuple[str, str, Path]], Dict[str, int]]:
    """Check every transcript line of a LibriSpeech-layout part before lhotse reads it.

    lhotse only warns about missing audio and crashes deep in a thread on corrupt audio; this
    gives one line naming the file instead.
    """
    trans_files = sorted(part_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise Lm2amError(f"{part_dir}: no *.trans.txt files; is this a LibriSpeech-layout part?")
    entries: List[Tuple[str, str, Path]] = []
    seen: Dict[str, Path] = {}
    for tf in trans_files:
        entries += _read_trans_file(tf, seen)
    stats = {"missing": 0}
    with ThreadPoolExecutor(4) as ex:
        kept = _keep_present(entries, cfg, ex, stats)
    return kept, stats


def prepare_manifests(corpus_dir: Path | str, parts: Sequence[str], out_dir: Path | str,
                      cfg: Optional[ManifestConfig] = None, num_jobs: int = 2) -> Dict[str, object]:
    """LibriSpeech-layout ``corpus_dir`` -> validated manifests for each part in ``out_dir``.

    Uses lhotse's ``prepare_librispeech`` (the one ingestion path for synthetic and real
    corpora) after checking every file. Word alignments (``*.alignment.txt``) are kept.
    Returns ``{part: CutSet}``.
    """
    from lhotse.recipes import prepare_librispeech

    cfg = cfg or ManifestConfig()
    corpus_dir = Path(corpus_dir)
    result = {}
    for part in parts:
        part_dir = corpus_dir / part
        if not part_dir.is_dir():
            raise Lm2amError(f"{part_dir}: corpus part not found; run the corpus stage or fix --parts")
        entries, stats = _scan_librispeech_part(part_dir, cfg)
        manifests = prepare_librispeech(corpus_dir, dataset_parts=[part], num_jobs=num_jobs)
        m = manifests[part]
        recordings, supervisions = m["recordings"], m["supervisions"]
        if len(recordings) != len(entries):
            raise Lm2amError(f"{part_dir}: lhotse read {len(recordings)} recordings, expected {len(entries)}; check the layout <spk>/<chapter>/<spk>-<chapter>-<utt>.flac")
        cuts = save_manifests(recordings, supervisions, part, out_dir)
        log.info("%s: %d utterances, %.2f h, %d speakers, %d missing audio skipped", part, len(cuts),
                 sum(c.duration for c in cuts) / 3600, len({c.supervisions[0].speaker for c in cuts}),
                 stats["missing"])
        result[part] = cuts
    return result


def prepare_manifests_lazy(corpus_dir: Path | str, part: str, out_dir: Path | str,
                           cfg: Optional[ManifestConfig] = None, num_jobs: int = 4) -> Dict[str, float]:
    """Streaming :func:`prepare_manifests` for large corpora (LibriSpeech 960 h): memory does not
    grow with the part.

    One chapter (``*.trans.txt``) at a time: its lines and audio are checked as in
    :func:`prepare_manifests`, lhotse's own LibriSpeech parser (``parse_utterance``, what
    ``prepare_librispeech`` runs per line) makes each Recording/SupervisionSegment, lhotse
    validates the chapter, and recordings, supervisions and cuts (one per utterance, id = utt id,
    as ``trim_to_supervisions`` gives) are appended to the three manifests. Only the set of
    utterance ids (for the duplicate check) grows with the part. Files are written under temp
    names and renamed at the end, cuts last. Returns counts (utterances, hours, speakers, missing).
    """
    from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSet, validate_recordings_and_supervisions
    from lhotse.recipes.librispeech import parse_alignments, parse_utterance

    cfg = cfg or ManifestConfig()
    corpus_dir = Path(corpus_dir)
    part_dir = corpus_dir / part
    if not part_dir.is_dir():
        raise Lm2amError(f"{part_dir}: corpus part not found; fix the corpus path or --parts")
    trans_files = sorted(part_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise Lm2amError(f"{part_dir}: no *.trans.txt files; is this a LibriSpeech-layout part?")
    paths = manifest_paths(out_dir, part)
    tmps = {k: v.with_name(f".tmp{os.getpid()}.{v.name}") for k, v in paths.items()}  # keeps .jsonl.gz
    seen: Dict[str, Path] = {}
    speakers: set = set()
    stats: Dict[str, float] = {"missing": 0, "utterances": 0, "seconds": 0.0}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(max(1, num_jobs)) as ex, \
                RecordingSet.open_writer(tmps["recordings"]) as rec_w, \
                SupervisionSet.open_writer(tmps["supervisions"]) as sup_w, \
                CutSet.open_writer(tmps["cuts"]) as cut_w:
            for tf in trans_files:
                kept = _keep_present(_read_trans_file(tf, seen), cfg, ex, stats)  # type: ignore[arg-type]
                ali_path = tf.with_name(tf.name.replace(".trans.txt", ".alignment.txt"))
                alignments = parse_alignments(ali_path) if ali_path.is_file() else {}
                lines = [f"{utt} {text}" for utt, text, _ in kept]
                pairs = list(ex.map(parse_utterance, [part_dir] * len(lines), lines, [alignments] * len(lines)))
                recs = RecordingSet.from_recordings(r for r, _ in pairs)
                sups = SupervisionSet.from_segments(s for _, s in pairs)
                try:
                    validate_recordings_and_supervisions(recs, sups)
                except AssertionError as e:
                    raise Lm2amError(f"{tf}: lhotse validation failed: {e}") from None
                for rec, sup in pairs:
                    rec_w.write(rec)
                    sup_w.write(sup)
                    cut_w.write(MonoCut(id=sup.id, start=0.0, duration=rec.duration, channel=0,
                                        supervisions=[sup], recording=rec))
                    speakers.add(sup.speaker)
                    stats["utterances"] += 1
                    stats["seconds"] += rec.duration
        if stats["utterances"] == 0:
            raise Lm2amError(f"part '{part}' has no recordings; check the corpus directory or part name")
        for k in ("recordings", "supervisions", "cuts"):  # cuts last: its presence means complete
            os.replace(tmps[k], paths[k])
    finally:
        for t in tmps.values():
            t.unlink(missing_ok=True)
    stats["speakers"] = len(speakers)
    log.info("%s: %d utterances, %.2f h, %d speakers, %d missing audio skipped (streamed)", part,
             stats["utterances"], stats["seconds"] / 3600, len(speakers), stats["missing"])
    return stats


# ----------------------------------------------------------------------------------------------
# Features


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
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

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
        with CutSet.open_writer(tmp) as writer:
            def emit(done: list) -> None:
                nonlocal n
                check_feature_frames(done, cfg.frame_shift)
                for c in done:
                    writer.write(c)
                n += len(done)

            if cfg.num_jobs <= 1:
                for job in jobs:
                    emit(_fbank_chunk(job))
            else:
                ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
                with ProcessPoolExecutor(cfg.num_jobs, mp_context=ctx) as ex:
                    pending: deque = deque()
                    for job in jobs:
                        pending.append(ex.submit(_fbank_chunk, job))
                        if len(pending) >= 2 * cfg.num_jobs:
                            emit(pending.popleft().result())
                    while pending:
                        emit(pending.popleft().result())
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


def compute_global_cmvn(cuts, out_path: Path | str) -> Tuple[np.ndarray, np.ndarray]:
    """Accumulate Kaldi-format global CMVN stats over ``cuts`` and write them with kaldiio.

    Returns (mean, std) per dimension.
    """
    import kaldiio

    total = None
    for c in cuts:
        feats = c.load_features().astype(np.float64)
        if total is None:
            total = np.zeros((2, feats.shape[1] + 1))
        total[0, :-1] += feats.sum(0)
        total[1, :-1] += (feats**2).sum(0)
        total[0, -1] += feats.shape[0]
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


def corpus_summary(cuts_by_part: Dict[str, object]) -> str:
    """A table of hours, utterances, speakers and words per part."""
    rows = [f"{'part':<16}{'utts':>8}{'hours':>8}{'spk':>6}{'words':>9}"]
    for part, cuts in cuts_by_part.items():
        sups = [s for c in cuts for s in c.supervisions]
        rows.append(f"{part:<16}{len(cuts):>8}{sum(c.duration for c in cuts) / 3600:>8.2f}"
                    f"{len({s.speaker for s in sups}):>6}{sum(len(s.text.split()) for s in sups):>9}")
    return "\n".join(rows)

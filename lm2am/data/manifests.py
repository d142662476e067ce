"""Manifests: a LibriSpeech-layout part -> validated lhotse recordings, supervisions and cuts.

Every transcript line and audio file is checked first, so a bad file gets one line naming it
(lhotse only warns about missing audio and crashes deep in a thread on corrupt audio).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from tqdm import tqdm

from lm2am.errors import Lm2amError
from lm2am.io import reject_bom, save_manifest
from lm2am.config import check_range

log = logging.getLogger(__name__)


@dataclass
class ManifestConfig:
    """How the manifest stage treats the corpus files."""

    sampling_rate: int = 16000  # every recording must have this rate (no silent resampling)
    missing_audio: str = "fail"  # "fail": stop naming the file; "skip": drop it with a count
    min_duration: float = 0.2  # seconds; shorter recordings are errors (likely truncated)

    def __post_init__(self) -> None:
        check_range(self, "sampling_rate", 1000, 384000)
        check_range(self, "min_duration", 0)
        if self.missing_audio not in ("fail", "skip"):
            raise ValueError(f"missing_audio must be 'fail' or 'skip', got {self.missing_audio!r}")



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
        lines = reject_bom(tf, tf.read_text(encoding="utf-8")).splitlines()
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
                  stats: Dict[str, int], progress: bool = False) -> List[Tuple[str, str, Path]]:
    """Check the audio of ``entries`` in ``ex``'s threads; apply ``cfg.missing_audio``."""
    kept = []
    statuses = ex.map(lambda e: _check_audio(e, cfg), entries)
    if progress:
        statuses = tqdm(statuses, total=len(entries), desc="check audio", unit="file",
                        mininterval=2, disable=None)
    for entry, status in zip(entries, statuses):
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
        kept = _keep_present(entries, cfg, ex, stats, progress=True)
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
    from lhotse import CutSet, RecordingSet, SupervisionSet

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
    speakers: Set[str] = set()
    stats: Dict[str, float] = {"missing": 0, "utterances": 0, "seconds": 0.0}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(max(1, num_jobs)) as ex, \
                RecordingSet.open_writer(tmps["recordings"]) as rec_w, \
                SupervisionSet.open_writer(tmps["supervisions"]) as sup_w, \
                CutSet.open_writer(tmps["cuts"]) as cut_w:
            for tf in tqdm(trans_files, desc=f"manifests {part}", unit="chapter", mininterval=2,
                           disable=None):
                kept = _keep_present(_read_trans_file(tf, seen), cfg, ex, stats)  # type: ignore[arg-type]
                _write_chapter(tf, part_dir, kept, ex, (rec_w, sup_w, cut_w), speakers, stats)
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


def _write_chapter(tf: Path, part_dir: Path, kept: List[Tuple[str, str, Path]], ex: ThreadPoolExecutor,
                   writers: tuple, speakers: Set[str], stats: Dict[str, float]) -> None:
    """Parse one chapter's kept lines with lhotse's LibriSpeech parser, validate the chapter and
    append its recordings, supervisions and cuts to ``writers``; update ``speakers``, ``stats``."""
    from lhotse import MonoCut, RecordingSet, SupervisionSet, validate_recordings_and_supervisions
    from lhotse.recipes.librispeech import parse_alignments, parse_utterance

    rec_w, sup_w, cut_w = writers
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


def cut_texts(path: Path) -> List[str]:
    """The transcripts of a lhotse cut manifest, one string per cut."""
    from lhotse import CutSet

    if not path.is_file():
        raise Lm2amError(f"{path}: missing; run the manifest/feature stages or fix the option")
    return [" ".join(s.text for s in c.supervisions) for c in CutSet.from_file(path)]

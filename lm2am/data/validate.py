"""Data validation at stage boundaries, like Kaldi's ``utils/validate_data_dir.sh``.

:func:`validate_part` checks what exists of one part and returns a one-line verdict:

- manifests (``<manifest-dir>/{recordings,supervisions,cuts}_<part>.jsonl.gz``): lhotse's own
  validation, unique recording/supervision/cut ids, every supervision inside its recording,
  non-empty transcripts;
- features (``<fbank-dir>/cuts_<part>.jsonl.gz``): every cut has features whose storage exists
  and whose frame count matches its duration (optionally reading every matrix back);
- targets (``<targets-dir>/targets_<part>.json`` + ark/scp): every frame target vector readable
  and its length equal to the feature frames of its cut.

The first problem raises :class:`Lm2amError` naming the file and cut; the stage script turns it
into the usual one-line ``ERROR:``.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from tqdm import tqdm

from lm2am.data.manifests import manifest_paths
from lm2am.errors import Lm2amError

#: a supervision may end this far past its recording (float rounding in manifests)
END_TOLERANCE = 0.01  # seconds


@dataclass
class PartReport:
    """What :func:`validate_part` checked in one part (for the verdict line)."""

    part: str
    checked: List[str] = field(default_factory=list)

    def verdict(self) -> str:
        """``<part>: OK (<what was checked>)``."""
        return f"{self.part}: OK ({'; '.join(self.checked) or 'nothing to check'})"


def _load(path: Path, what: str) -> Any:
    from lhotse import load_manifest

    if not path.is_file():
        raise Lm2amError(f"{path}: {what} missing; run the stage that writes it")
    try:
        return load_manifest(path)
    except Exception as e:  # gzip/json/lhotse errors: all mean the file is damaged
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise Lm2amError(f"{path}: unreadable {what} ({msg[:160]}); rerun the stage that "
                         "writes it") from None


def _lhotse_validate(obj: Any, path: Path, read_data: bool = False) -> None:
    from lhotse.qa import validate

    try:
        validate(obj, read_data=read_data)
    except AssertionError as e:
        msg = str(e).splitlines()[0] if str(e) else "assertion failed"
        raise Lm2amError(f"{path}: lhotse validation failed: {msg[:200]}; rerun the stage "
                         "that writes it") from None


def _unique(ids: List[str], path: Path, what: str) -> None:
    dup = [k for k, n in collections.Counter(ids).items() if n > 1]
    if dup:
        raise Lm2amError(f"{path}: duplicate {what} id {sorted(dup)[0]} ({len(dup)} duplicated); "
                         "make ids unique and rebuild the manifests")


def check_manifests(manifest_dir: Path | str, part: str) -> str:
    """Check the three manifests of ``part``; returns a short summary."""
    paths = manifest_paths(manifest_dir, part)
    recs = _load(paths["recordings"], "recordings manifest")
    sups = _load(paths["supervisions"], "supervisions manifest")
    cuts = _load(paths["cuts"], "cuts manifest")
    _unique([r.id for r in recs], paths["recordings"], "recording")
    _unique([s.id for s in sups], paths["supervisions"], "supervision")
    _unique([c.id for c in cuts], paths["cuts"], "cut")
    from lhotse import validate_recordings_and_supervisions

    try:
        validate_recordings_and_supervisions(recs, sups)
    except AssertionError as e:
        raise Lm2amError(f"{paths['supervisions']}: lhotse validation failed: "
                         f"{str(e).splitlines()[0][:200]}; rebuild the manifests") from None
    durations = {r.id: r.duration for r in recs}
    for s in sups:
        if s.recording_id not in durations:
            raise Lm2amError(f"{paths['supervisions']}: supervision {s.id} names recording "
                             f"{s.recording_id}, which is not in {paths['recordings']}; rebuild "
                             "the manifests")
        if s.start < 0 or s.end > durations[s.recording_id] + END_TOLERANCE:
            raise Lm2amError(f"{paths['supervisions']}: supervision {s.id} [{s.start:.3f}, "
                             f"{s.end:.3f}] s lies outside recording {s.recording_id} "
                             f"({durations[s.recording_id]:.3f} s); fix the segments")
        if not (s.text or "").strip():
            raise Lm2amError(f"{paths['supervisions']}: supervision {s.id} has an empty "
                             "transcript; add its text or remove it")
    _lhotse_validate(cuts, paths["cuts"])
    return f"manifests: {len(recs)} recordings, {len(sups)} supervisions, {len(cuts)} cuts"


def check_features(fbank_dir: Path | str, part: str, read_data: bool = True) -> Dict[str, int]:
    """Check ``<fbank_dir>/cuts_<part>.jsonl.gz``; returns ``cut id -> feature frames``."""
    from lhotse.utils import compute_num_frames

    path = Path(fbank_dir) / f"cuts_{part}.jsonl.gz"
    cuts = _load(path, "feature cuts manifest")
    _unique([c.id for c in cuts], path, "cut")
    frames: Dict[str, int] = {}
    for c in tqdm(cuts, desc=f"check features {part}", unit="cut", mininterval=2, disable=None):
        if not c.has_features:
            raise Lm2amError(f"{path}: cut {c.id} has no features; rerun the features stage")
        storage = Path(c.features.storage_path)
        if not storage.exists():
            raise Lm2amError(f"{path}: features of cut {c.id} are in {storage}, which is missing; "
                             "rerun the features stage")
        expected = compute_num_frames(c.duration, c.frame_shift, c.sampling_rate)
        if c.num_frames != expected:
            raise Lm2amError(f"{path}: cut {c.id} has {c.num_frames} feature frames but its "
                             f"duration {c.duration} s implies {expected}; rerun the features stage")
        if read_data:
            try:
                shape = c.load_features().shape
            except Exception as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise Lm2amError(f"{path}: features of cut {c.id} in {storage} are unreadable "
                                 f"({msg[:160]}); rerun the features stage") from None
            if shape[0] != c.num_frames or shape[1] != c.num_features:
                raise Lm2amError(f"{path}: cut {c.id} stores a {shape[0]}x{shape[1]} matrix but "
                                 f"the manifest says {c.num_frames}x{c.num_features}; rerun the "
                                 "features stage")
        frames[c.id] = c.num_frames
    return frames


def dropped_path(fbank_dir: Path | str, part: str) -> Path:
    """``<fbank_dir>/dropped_<part>.txt``: ids of the manifest's cuts the features stage left
    out on purpose (the lang's OOV policy), one per line; absent when none were."""
    return Path(fbank_dir) / f"dropped_{part}.txt"


def write_dropped(fbank_dir: Path | str, part: str, ids: List[str]) -> None:
    """Record the cuts the OOV policy dropped (or remove a stale list when none were)."""
    from lm2am.io import atomic_write_text

    path = dropped_path(fbank_dir, part)
    if ids:
        atomic_write_text(path, "".join(f"{i}\n" for i in ids))
    elif path.exists():
        path.unlink()


def check_counts(manifest_dir: Path | str, fbank_dir: Path | str, part: str,
                 feature_ids: List[str]) -> int:
    """Every cut of the manifest has features, or is listed as dropped by the OOV policy, and
    every feature cut comes from the manifest: no utterance lost silently. Returns the number
    of cuts dropped on purpose."""
    from lhotse import CutSet

    mpath = manifest_paths(manifest_dir, part)["cuts"]
    fpath = Path(fbank_dir) / f"cuts_{part}.jsonl.gz"
    dpath = dropped_path(fbank_dir, part)
    manifest_ids = [c.id for c in CutSet.from_jsonl_lazy(mpath)]
    dropped = set(dpath.read_text().split()) if dpath.is_file() else set()
    have = set(feature_ids)
    extra = sorted(have - set(manifest_ids))
    if extra:
        raise Lm2amError(f"{fpath}: cut {extra[0]} ({len(extra)} in all) is not in {mpath}; "
                         "rerun the features stage on these manifests")
    lost = [i for i in manifest_ids if i not in have and i not in dropped]
    if lost:
        raise Lm2amError(f"{fpath}: {len(lost)} of the {len(manifest_ids)} cuts of {mpath} have no "
                         f"features (e.g. {lost[0]}) and were not dropped by the OOV policy; rerun "
                         "the features stage (stage 5), which names the audio it cannot read")
    return len(manifest_ids) - len(have)


def check_targets(targets_dir: Path | str, part: str,
                  feature_frames: Optional[Dict[str, int]] = None) -> str:
    """Read every frame target vector of ``part``; lengths must equal the feature frames."""
    from lm2am.targets import read_targets

    reader = read_targets(targets_dir, part)
    missing = 0
    frames = 0
    for cut_id in tqdm(reader, total=len(reader), desc=f"check targets {part}", unit="cut",
                       mininterval=2, disable=None):
        t = reader[cut_id]  # reads and checks every array (arks, offsets, id ranges)
        frames += t.num_frames
        if feature_frames is not None:
            if cut_id not in feature_frames:
                raise Lm2amError(f"{Path(targets_dir) / f'senone_{part}.scp'}: cut {cut_id} has "
                                 "targets but no features; rebuild the targets from these features")
            if t.num_frames != feature_frames[cut_id]:
                raise Lm2amError(f"{Path(targets_dir) / f'senone_{part}.scp'}: cut {cut_id} has "
                                 f"{t.num_frames} target frames but {feature_frames[cut_id]} "
                                 "feature frames; rerun the targets stage")
    if feature_frames is not None:
        missing = sum(1 for c in feature_frames if c not in reader)
    reader.close()
    extra = f", {missing} feature cuts without targets" if missing else ""
    return f"targets: {len(reader)} cuts, {frames} frames{extra}"


def validate_part(part: str, manifest_dir: Optional[Path | str] = None,
                  fbank_dir: Optional[Path | str] = None,
                  targets_dir: Optional[Path | str] = None,
                  read_features: bool = True) -> PartReport:
    """Check the manifests, features and targets of ``part`` (whichever dirs are given)."""
    report = PartReport(part)
    if manifest_dir is not None:
        report.checked.append(check_manifests(manifest_dir, part))
    frames = None
    if fbank_dir is not None:
        frames = check_features(fbank_dir, part, read_data=read_features)
        line = f"features: {len(frames)} cuts, {sum(frames.values())} frames"
        if manifest_dir is not None:
            n = check_counts(manifest_dir, fbank_dir, part, list(frames))
            if n:
                line += f" ({n} cuts dropped by the OOV policy: {dropped_path(fbank_dir, part)})"
        report.checked.append(line)
    if targets_dir is not None:
        report.checked.append(check_targets(targets_dir, part, frames))
    return report

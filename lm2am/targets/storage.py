"""Storing the frame targets of one part: Kaldi ark/scp files, an info file, lhotse custom fields.

Storage (:func:`write_targets`, :func:`read_targets`, :func:`attach_targets`), per ``part``:

* ``<out_dir>/<unit>_<part>.ark/.scp`` for each unit of :data:`FRAME_UNITS` plus
  ``subword_tokens_<part>.ark/.scp``: Kaldi binary int32 vectors (``\\0B``, then ``\\4`` + int32
  length, then ``\\4`` + int32 per element: 5 bytes per frame and unit; :mod:`lm2am.ark`), what
  ``ali-to-pdf`` writes, so ``copy-int-vector ark:senone_train.ark ark,t:-`` prints them;
  byte-identical to ``kaldiio.save_ark`` of ``int32`` vectors, so ``kaldiio.load_scp`` reads them
  too. ``silence`` is stored as 0/1. Keys are cut ids, scp lines C-locale sorted, scp paths are
  the final ark paths as given (relative to the directory the stage runs in, as Kaldi's scp
  files are).
* ``<out_dir>/targets_<part>.json``: frame shift, ``num_senones``, ``num_phones``,
  ``num_subwords``, counts. Written last: it is the completion signal.
* ``<out_dir>/arrays_<part>/<unit>/`` + ``<out_dir>/cuts_<part>.jsonl.gz``: the same arrays as
  lhotse ``TemporalArray`` custom fields (``numpy_files`` storage, lossless, stock lhotse
  reader), so ``cut.load_custom("senone")`` returns the exact ``int32`` array;
  ``cut.custom["subword_tokens"]`` is the token list.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, IO, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from lm2am.ark import ArkFiles, encode_int32_vector, read_int32_vector_at, read_scp
from lm2am.errors import Lm2amError
from lm2am.io import save_manifest
from lm2am.targets.checks import check_targets
from lm2am.targets.rules import FRAME_UNITS, TOKENS, FrameTargets

log = logging.getLogger(__name__)

__all__ = ["TargetsInfo", "TargetsReader", "attach_targets", "read_info", "read_targets", "write_targets"]

_FORMAT = "lm2am-frame-targets"
_VERSION = 1
_NAMES = list(FRAME_UNITS) + [TOKENS]  # the ark/scp files of a part


@dataclass
class TargetsInfo:
    """Contents of ``targets_<part>.json``: what the targets of one part were made for."""

    frame_shift: float
    num_senones: int
    num_phones: int
    num_subwords: Optional[int]
    utterances: int = 0
    frames: int = 0
    silence_frames: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "frame_shift": self.frame_shift,
                "num_senones": self.num_senones, "num_phones": self.num_phones,
                "num_subwords": self.num_subwords, "utterances": self.utterances,
                "frames": self.frames, "silence_frames": self.silence_frames,
                "units": list(FRAME_UNITS) + [TOKENS]}


def _info_path(out_dir: Path, part: str) -> Path:
    return out_dir / f"targets_{part}.json"


def read_info(out_dir: Union[Path, str], part: str) -> TargetsInfo:
    """Read ``<out_dir>/targets_<part>.json`` (the part's completion signal)."""
    path = _info_path(Path(out_dir), part)
    if not path.is_file():
        raise Lm2amError(f"{path} is missing: the targets of {part!r} were not written (or not "
                         "completely); run the targets stage")
    d = json.loads(path.read_text())
    if d.get("format") != _FORMAT or d.get("version") != _VERSION:
        raise Lm2amError(f"{path}: not lm2am frame targets version {_VERSION}; rerun the targets stage")
    return TargetsInfo(frame_shift=d["frame_shift"], num_senones=d["num_senones"],
                       num_phones=d["num_phones"], num_subwords=d["num_subwords"],
                       utterances=d["utterances"], frames=d["frames"],
                       silence_frames=d["silence_frames"])


# ----------------------------------------------------------------------------------------------
# Writing


@dataclass
class _Tally:
    """What the written cuts hold so far (ids seen, largest ids, frame counts)."""

    part: str
    num_senones: Optional[int]
    num_phones: Optional[int]
    num_subwords: Optional[int]
    seen: set = field(default_factory=set)
    max_senone: int = -1
    max_phone: int = -1
    max_sub: int = -1
    frames: int = 0
    silence_frames: int = 0

    def add(self, cut_id: str, t: FrameTargets) -> None:
        """Count and check one cut's targets."""
        if not cut_id or any(c.isspace() for c in cut_id):
            raise Lm2amError(f"cut id {cut_id!r} is empty or contains whitespace, which Kaldi "
                             "ark keys cannot; fix the manifests' cut ids")
        if cut_id in self.seen:
            raise Lm2amError(f"cut {cut_id} appears twice in the targets of {self.part!r}")
        self.seen.add(cut_id)
        T = t.num_frames
        if T:
            self.max_senone = max(self.max_senone, int(t.senone.max()))
            self.max_phone = max(self.max_phone, int(t.phone.max()))
        if t.subword_tokens:
            self.max_sub = max(self.max_sub, max(t.subword_tokens))
        check_targets(cut_id, t, T, self.num_senones if self.num_senones is not None else self.max_senone + 1,
                      self.num_phones if self.num_phones is not None else self.max_phone + 1,
                      self.num_subwords)
        self.frames += T
        self.silence_frames += int(np.count_nonzero(t.silence))

    def info(self, frame_shift: float) -> TargetsInfo:
        return TargetsInfo(
            frame_shift=frame_shift,
            num_senones=self.num_senones if self.num_senones is not None else self.max_senone + 1,
            num_phones=self.num_phones if self.num_phones is not None else self.max_phone + 1,
            num_subwords=(self.num_subwords if self.num_subwords is not None
                          else (self.max_sub + 1 if self.max_sub >= 0 else None)),
            utterances=len(self.seen), frames=self.frames, silence_frames=self.silence_frames)


def _write_arks(items: Iterable[Tuple[str, FrameTargets]], arks: Dict[str, IO[bytes]], out_dir: Path,
                part: str, tally: _Tally) -> Dict[str, List[Tuple[str, str]]]:
    """Append every cut to the ark files; returns the scp lines ``(key, ark:offset)`` per name."""
    scp: Dict[str, List[Tuple[str, str]]] = {n: [] for n in _NAMES}
    for cut_id, t in items:
        tally.add(cut_id, t)
        values = dict(t.arrays())
        values["silence"] = values["silence"].astype(np.int32)
        values[TOKENS] = np.asarray(t.subword_tokens, dtype=np.int32)
        key = cut_id.encode() + b" "
        for n in _NAMES:
            f = arks[n]
            offset = f.tell() + len(key)  # the scp offset points past "<key> "
            f.write(key + encode_int32_vector(values[n]))
            scp[n].append((cut_id, f"{out_dir / f'{n}_{part}.ark'}:{offset}"))
    return scp


def _publish(tmp: Path, out_dir: Path, part: str, scp: Dict[str, List[Tuple[str, str]]],
             info: TargetsInfo, info_path: Path) -> None:
    """Write the scp files, then move arks, scps and (last) the info file into ``out_dir``."""
    for n in _NAMES:
        lines = sorted(scp[n], key=lambda kv: kv[0].encode())  # C-locale (byte) order
        (tmp / f"{n}_{part}.scp").write_text("".join(f"{k} {v}\n" for k, v in lines))
    for n in _NAMES:  # ark before scp: an scp never points at a missing ark
        os.replace(tmp / f"{n}_{part}.ark", out_dir / f"{n}_{part}.ark")
        os.replace(tmp / f"{n}_{part}.scp", out_dir / f"{n}_{part}.scp")
    (tmp / info_path.name).write_text(json.dumps(info.to_dict(), indent=1) + "\n")
    os.replace(tmp / info_path.name, info_path)


def write_targets(targets: Union[Mapping[str, FrameTargets], Iterable[Tuple[str, FrameTargets]]],
                  out_dir: Union[Path, str], part: str, *, num_senones: Optional[int] = None,
                  num_phones: Optional[int] = None, num_subwords: Optional[int] = None,
                  frame_shift: float = 0.01) -> TargetsInfo:
    """Write the targets of one part as Kaldi int-vector ark/scp files (module docstring).

    ``targets`` is a mapping or an iterable of ``(cut_id, FrameTargets)`` (streamed: memory
    stays flat). ``num_senones``/``num_phones`` default to the largest id + 1 seen; pass the
    tree's and phones.txt's numbers so the recorded values are the model's. Every utterance is
    checked with :func:`check_targets`. Files are written in a temporary directory inside
    ``out_dir`` (scp lines already naming the final ark paths) and renamed; the info json comes
    last.
    """
    out_dir = Path(out_dir)
    if any(c.isspace() for c in str(out_dir)):
        raise Lm2amError(f"targets dir {out_dir!r} contains whitespace, which Kaldi scp files cannot "
                         "hold; use a path without spaces")
    out_dir.mkdir(parents=True, exist_ok=True)
    info_path = _info_path(out_dir, part)
    if info_path.exists():
        info_path.unlink()  # an interrupted rewrite must not look complete
    tmp = out_dir / f".targets_{part}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    items = targets.items() if isinstance(targets, Mapping) else targets
    tally = _Tally(part, num_senones, num_phones, num_subwords)
    arks = {n: open(tmp / f"{n}_{part}.ark", "wb") for n in _NAMES}
    try:
        scp = _write_arks(items, arks, out_dir, part, tally)
        for f in arks.values():
            f.close()
        info = tally.info(frame_shift)
        _publish(tmp, out_dir, part, scp, info, info_path)
    except OSError as e:
        if e.errno == 28:  # ENOSPC
            raise Lm2amError(f"disk full while writing targets to {out_dir}; free space and rerun "
                             "the stage") from None
        raise
    finally:
        for f in arks.values():
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("targets %s: %d utterances, %d frames (%.1f%% silence) -> %s", part, info.utterances,
             info.frames, 100.0 * info.silence_frames / max(info.frames, 1), out_dir)
    return info


# ----------------------------------------------------------------------------------------------
# Reading


class TargetsReader(Mapping[str, FrameTargets]):
    """Lazy ``cut_id -> FrameTargets`` over the ark/scp files of one part.

    Each lookup reads the cut's arrays (random access through the scp offsets, ``os.pread``,
    so forked data-loader workers can share a reader) and checks them against the recorded
    ``num_senones``/``num_phones``; ``info`` holds the part's :class:`TargetsInfo`.
    """

    def __init__(self, out_dir: Union[Path, str], part: str, num_senones: Optional[int] = None):
        out_dir = Path(out_dir)
        self.info = read_info(out_dir, part)
        if num_senones is not None and num_senones != self.info.num_senones:
            raise Lm2amError(f"{_info_path(out_dir, part)}: targets were made for "
                             f"{self.info.num_senones} senones but the model has {num_senones}; "
                             "rebuild the targets with the model's tree (or train with that tree)")
        self._scp: Dict[str, Dict[str, Tuple[str, int]]] = {}
        for n in _NAMES:
            self._scp[n] = read_scp(out_dir / f"{n}_{part}.scp", "rerun the targets stage")
        keys = set(self._scp["senone"])
        for n, d in self._scp.items():
            if set(d) != keys:
                odd = sorted(keys.symmetric_difference(d))[0]
                raise Lm2amError(f"{out_dir / f'{n}_{part}.scp'} and senone_{part}.scp list "
                                 f"different cuts (e.g. {odd}); rerun the targets stage")
        self._keys = sorted(keys, key=str.encode)
        self._arks = ArkFiles("(named in an scp file) is missing; rerun the targets stage, from the "
                              "directory it ran in")

    def close(self) -> None:
        """Close the archive files (reopened on the next lookup)."""
        self._arks.close()

    def __getitem__(self, cut_id: str) -> FrameTargets:
        v = {}
        for n, d in self._scp.items():
            path, offset = d[cut_id]
            v[n] = read_int32_vector_at(self._arks.fd(path), offset, f"{path}:{offset} ({cut_id})")
        t = FrameTargets(senone=v["senone"], phone=v["phone"], subword=v["subword"],
                         subword_id=v["subword_id"], phone_pos=v["phone_pos"],
                         senone_pos=v["senone_pos"], silence=v["silence"].astype(bool),
                         subword_tokens=[int(x) for x in v[TOKENS]])
        check_targets(cut_id, t, t.num_frames, self.info.num_senones, self.info.num_phones,
                      self.info.num_subwords)
        return t

    def __contains__(self, cut_id: object) -> bool:
        return cut_id in self._scp["senone"]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def read_targets(out_dir: Union[Path, str], part: str,
                 num_senones: Optional[int] = None) -> TargetsReader:
    """Open the targets of ``part`` written by :func:`write_targets` as a lazy mapping.

    ``num_senones``, if given, must equal the recorded number (the model's), else
    :class:`Lm2amError` with both numbers.
    """
    return TargetsReader(out_dir, part, num_senones)


# ----------------------------------------------------------------------------------------------
# lhotse cuts


def _attach_one(cut: Any, reader: TargetsReader, writers: Dict[str, Any], arrays_dir: Path) -> Any:
    """``cut`` with its checked targets as custom fields (arrays written by ``writers``)."""
    from lhotse.array import seconds_to_frames
    from lhotse.utils import fastcopy

    info = reader.info
    if not cut.has_features:
        raise Lm2amError(f"cut {cut.id} has no features; attach targets to the feature stage's "
                         "cuts (data/fbank/cuts_<part>.jsonl.gz)")
    if abs(cut.frame_shift - info.frame_shift) > 1e-9:
        raise Lm2amError(f"cut {cut.id}: features have frame shift {cut.frame_shift} s but the "
                         f"targets {info.frame_shift} s; realign with the same frame shift")
    t = reader[cut.id]
    check_targets(cut.id, t, cut.num_frames, info.num_senones, info.num_phones, info.num_subwords)
    # lhotse slices a TemporalArray by the cut's duration: that must give all T frames back.
    n = seconds_to_frames(cut.duration, info.frame_shift)
    if n != t.num_frames:
        raise Lm2amError(f"cut {cut.id}: duration {cut.duration} s spans {n} frames of "
                         f"{info.frame_shift} s but it has {t.num_frames} feature frames; "
                         "recompute the features")
    for u, arr in t.arrays().items():
        ta = writers[u].store_array(cut.id, arr, frame_shift=info.frame_shift, temporal_dim=0,
                                    start=cut.start)
        ta = fastcopy(ta, array=fastcopy(ta.array, storage_path=str(arrays_dir / u)))
        cut = cut.with_custom(u, ta)
    return cut.with_custom(TOKENS, list(t.subword_tokens))


def attach_targets(cuts: Any, out_dir: Union[Path, str], part: str, *, missing: str = "error",
                   manifest_path: Optional[Union[Path, str]] = None) -> Any:
    """Attach the targets of ``part`` to ``cuts`` as lhotse custom fields; save the manifest.

    Each unit of :data:`FRAME_UNITS` becomes a ``TemporalArray`` (``numpy_files`` storage under
    ``<out_dir>/arrays_<part>/<unit>/``, frame shift from the targets, start = cut start) and
    ``subword_tokens`` a plain list, so ``cut.load_custom("senone")`` returns the exact array.
    Every cut is checked: it has features, its frame shift is the targets' and its feature
    frame count equals the targets' (:func:`check_targets`). Cuts without targets raise
    :class:`Lm2amError` (``missing="error"``) or are dropped with a log line (``"drop"``).
    The manifest (default ``<out_dir>/cuts_<part>.jsonl.gz``) and the arrays are built under
    temporary names and swapped in at the end, so ``cuts`` may be read from the manifest being
    replaced and a killed run leaves the old pair (or no manifest), never a mixed one.
    Returns the new CutSet (lazy if ``cuts`` was lazy).
    """
    from lhotse import CutSet, NumpyFilesWriter

    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    out_dir = Path(out_dir)
    reader = read_targets(out_dir, part)
    manifest_path = Path(manifest_path) if manifest_path else out_dir / f"cuts_{part}.jsonl.gz"
    arrays_dir = out_dir / f"arrays_{part}"
    # Arrays go to a temp dir (manifest entries already naming the final dir); the old manifest
    # and arrays stay valid until the new ones are complete (the input may be that manifest).
    tmp_arrays = out_dir / f".arrays_{part}.tmp{os.getpid()}"
    shutil.rmtree(tmp_arrays, ignore_errors=True)
    writers = {u: NumpyFilesWriter(tmp_arrays / u) for u in FRAME_UNITS}
    dropped: List[str] = []

    def keep(cut) -> bool:
        if cut.id in reader:
            return True
        if missing == "error":
            raise Lm2amError(f"cut {cut.id} of {part!r} has no frame targets in {out_dir} (its "
                             "alignment failed or it was added later); realign, or drop such cuts")
        dropped.append(cut.id)
        return False

    def attach(cut):
        return _attach_one(cut, reader, writers, arrays_dir)

    tmp_manifest = manifest_path.with_name(f".{part}.tmp{os.getpid()}.jsonl.gz")
    try:
        out = cuts.filter(keep).map(attach)  # eager input: arrays written here
        save_manifest(out, tmp_manifest)  # lazy input: streamed here (arrays written on the way)
        tmp_arrays.mkdir(parents=True, exist_ok=True)  # (no cuts: still an arrays dir)
        if manifest_path.exists():
            manifest_path.unlink()  # never a manifest next to arrays it does not describe
        shutil.rmtree(arrays_dir, ignore_errors=True)
        os.replace(tmp_arrays, arrays_dir)
        os.replace(tmp_manifest, manifest_path)
    finally:
        shutil.rmtree(tmp_arrays, ignore_errors=True)
        if tmp_manifest.exists():
            tmp_manifest.unlink()
    if dropped:
        log.warning("attach_targets %s: dropped %d cuts without targets (first: %s)", part,
                    len(dropped), dropped[0])
    return CutSet.from_jsonl_lazy(manifest_path) if out.is_lazy else out

"""Import a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk``, optional ``segments`` and
``spk2gender``) as lhotse manifests, the second door into the data stages.

Why not just :func:`lhotse.kaldi.load_kaldi_data_dir`: in lhotse 1.33 it needs
``kaldi_native_io`` (not installed) for ``cmd |`` entries in wav.scp, silently drops up to 20 %
of unreadable recordings, lets a duplicate id overwrite the earlier line, trusts the
``sampling_rate`` argument without looking at the audio, and fails with a ``KeyError`` or
``assert`` when the files disagree. Here every file is parsed with line numbers, every problem
is a one-line :class:`Lm2amError` naming the file and line, and lhotse objects are built
directly: file entries become ``file`` sources with absolute paths, pipe entries become lhotse
``command`` sources (lhotse runs the command when the audio is loaded).

Transcripts are kept as the Kaldi recipe normalized them, only upper-cased.
"""
from __future__ import annotations

import io
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lm2am.errors import Lm2amError
from lm2am.io import reject_bom

log = logging.getLogger(__name__)

#: a segment may end this far past the end of its recording (rounding in Kaldi's segments)
SEGMENT_END_TOLERANCE = 0.05  # seconds
PIPE_TIMEOUT = 600  # seconds for one wav.scp command


@dataclass
class _Entry:
    """One line of a Kaldi table: key, the rest of the line, and where it came from."""

    key: str
    value: str
    line: int


@dataclass
class _Audio:
    """What reading one recording's audio found."""

    sampling_rate: int
    num_samples: int
    channels: int


def read_kaldi_table(path: Path, min_fields: int = 2, max_fields: Optional[int] = None,
                     allow_empty_value: bool = False) -> Dict[str, _Entry]:
    """Read ``key value...`` lines of a Kaldi table file, keeping line numbers.

    Raises :class:`Lm2amError` (file and line) on bad UTF-8, a wrong number of fields or a
    duplicate key. Blank lines are skipped. ``allow_empty_value`` admits a bare key (the value
    is then ``""``) so the caller can give a more specific message.
    """
    try:
        lines = reject_bom(path, path.read_text(encoding="utf-8")).splitlines()
    except UnicodeDecodeError as e:
        raise Lm2amError(f"{path}: not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    out: Dict[str, _Entry] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < min_fields and not (allow_empty_value and len(fields) == 1):
            raise Lm2amError(f"{path} line {n}: expected at least {min_fields} fields, got "
                             f"{len(fields)}: {line.strip()[:80]!r}")
        if max_fields is not None and len(fields) > max_fields:
            raise Lm2amError(f"{path} line {n}: expected {max_fields} fields, got {len(fields)}: "
                             f"{line.strip()[:80]!r}")
        key = fields[0]
        if key in out:
            raise Lm2amError(f"{path} line {n}: duplicate id {key} (also on line {out[key].line}); "
                             "make ids unique")
        # the value keeps its inner spacing for wav.scp commands; tables split on whitespace
        value = line.strip()[len(key):].strip()
        out[key] = _Entry(key, value, n)
    return out


def _read_audio_info(rec_id: str, entry: _Entry, wav_scp: Path) -> _Audio:
    """Sample rate, length and channel count of one wav.scp entry (runs pipe commands)."""
    import soundfile as sf

    where = f"{wav_scp} line {entry.line}"
    value = entry.value
    if value.endswith("|"):
        cmd = value[:-1].strip()
        try:
            res = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=PIPE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Lm2amError(f"{where}: command for {rec_id} ran over {PIPE_TIMEOUT} s; "
                             "check it") from None
        if res.returncode != 0 or not res.stdout:
            err = (res.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise Lm2amError(f"{where}: command for {rec_id} failed (exit {res.returncode}: "
                             f"{err[:200]}); fix the command")
        try:
            # read the samples, not the header: a piped WAV header often has no real length
            data, sr = sf.read(io.BytesIO(res.stdout), dtype="int16", always_2d=True)
        except Exception as e:  # soundfile raises LibsndfileError/RuntimeError subclasses
            raise Lm2amError(f"{where}: output of the command for {rec_id} is not audio "
                             f"({str(e).splitlines()[0]}); make it write WAV to stdout "
                             "(e.g. sox ... -t wav -)") from None
        return _Audio(int(sr), int(data.shape[0]), int(data.shape[1]))

    path = Path(value)
    if not path.is_file():
        hint = " (ark offsets are not supported; extract the audio to files)" if ".ark:" in value else ""
        raise Lm2amError(f"{where}: audio file {value} for {rec_id} does not exist{hint}; fix the "
                         f"path (relative paths are resolved from {os.getcwd()})")
    short = _wav_truncated(path)
    if short:
        raise Lm2amError(f"{where}: audio file {value} for {rec_id} is truncated ({short}); "
                         "re-create it or remove the recording")
    try:
        info = sf.info(str(path))
        return _Audio(int(info.samplerate), int(info.frames), int(info.channels))
    except Exception:
        pass
    try:  # formats libsndfile cannot read (e.g. mp3, opus through lhotse's other backends)
        from lhotse.audio import info as lhotse_info

        li = lhotse_info(str(path))
        return _Audio(int(li.samplerate), int(li.frames), int(li.channels))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise Lm2amError(f"{where}: unreadable audio {value} for {rec_id} ({msg[:200]}); "
                         "re-create it or remove the recording") from None


def _wav_truncated(path: Path) -> Optional[str]:
    """For a RIFF/WAVE file whose data chunk announces more bytes than the file holds, say so.

    libsndfile silently reads what is there, so a cut-off copy would pass as a shorter file.
    Streamed headers (size 0 or 0xFFFFFFFF) are not checked.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, n = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"data":
                    have = size - f.tell()
                    if n not in (0, 0xFFFFFFFF) and n > have:
                        return f"its header announces {n} data bytes, the file holds {have}"
                    return None
                f.seek(n + (n & 1), 1)
    except OSError:
        return None


def audio_files(data_dir: Path | str) -> List[Path]:
    """The audio files named by ``data_dir/wav.scp`` (file entries; commands cannot be listed),
    for the importer's done marker: an edited or replaced recording re-runs the import."""
    wav_scp = Path(data_dir) / "wav.scp"
    if not wav_scp.is_file():
        return []
    try:
        table = read_kaldi_table(wav_scp)
    except Lm2amError:
        return []  # the import itself reports it
    return sorted({Path(e.value) for e in table.values() if not e.value.endswith("|")})


def _require(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; a Kaldi data dir needs wav.scp, text and utt2spk "
                         "(segments optional)")
    return path


@dataclass
class _DataDir:
    """The parsed tables of one Kaldi data dir, with their paths for messages."""

    wav_scp: Path
    text_f: Path
    utt2spk_f: Path
    segments_f: Path
    wavs: Dict[str, _Entry]
    texts: Dict[str, _Entry]
    utt2spk: Dict[str, _Entry]
    segments: Optional[Dict[str, _Entry]]
    genders: Dict[str, _Entry]


#: (utterance id, recording id, start, end or None = to the end, segments line or None)
_Utt = Tuple[str, str, float, Optional[float], Optional[int]]


def _read_data_dir(data_dir: Path) -> _DataDir:
    """Read the tables of a Kaldi data dir (segments and spk2gender when present)."""
    if not data_dir.is_dir():
        raise Lm2amError(f"Kaldi data dir {data_dir} does not exist; pass a directory with "
                         "wav.scp, text and utt2spk")
    wav_scp, text_f, utt2spk_f = (_require(data_dir, n) for n in ("wav.scp", "text", "utt2spk"))
    wavs = read_kaldi_table(wav_scp)
    texts = read_kaldi_table(text_f, allow_empty_value=True)
    utt2spk = read_kaldi_table(utt2spk_f, max_fields=2)
    segments_f = data_dir / "segments"
    segments = read_kaldi_table(segments_f, min_fields=4, max_fields=4) if segments_f.is_file() else None
    gender_f = data_dir / "spk2gender"
    genders = read_kaldi_table(gender_f, max_fields=2) if gender_f.is_file() else {}
    return _DataDir(wav_scp, text_f, utt2spk_f, segments_f, wavs, texts, utt2spk, segments, genders)


def _check_utterances(d: _DataDir) -> None:
    """Every transcript has a speaker and audio; every utt2spk line has a transcript."""
    for utt, e in d.texts.items():
        if not e.value:
            raise Lm2amError(f"{d.text_f} line {e.line}: empty transcript for {utt}; add its text or "
                             "remove the utterance (then run utils/fix_data_dir.sh)")
        if utt not in d.utt2spk:
            raise Lm2amError(f"{d.text_f} line {e.line}: utterance {utt} is not in {d.utt2spk_f}; add "
                             "its speaker or remove it (utils/fix_data_dir.sh)")
        if d.segments is not None and utt not in d.segments:
            raise Lm2amError(f"{d.text_f} line {e.line}: utterance {utt} is not in {d.segments_f}; add "
                             "its segment or remove it (utils/fix_data_dir.sh)")
        if d.segments is None and utt not in d.wavs:
            raise Lm2amError(f"{d.text_f} line {e.line}: utterance {utt} is not in {d.wav_scp} (no "
                             "segments file, so utterance ids are recording ids); add it or remove it")
    for utt, e in d.utt2spk.items():
        if utt not in d.texts:
            raise Lm2amError(f"{d.utt2spk_f} line {e.line}: utterance {utt} has no transcript in "
                             f"{d.text_f}; add it or remove the line (utils/fix_data_dir.sh)")


def _parse_segments(d: _DataDir) -> List[_Utt]:
    """The utterances with their times: from segments, or one per recording without it."""
    if d.segments is None:
        return [(utt, utt, 0.0, None, None) for utt in d.texts]
    utts: List[_Utt] = []
    for utt, e in d.segments.items():
        rec, start_s, end_s = e.value.split()
        if utt not in d.texts:
            raise Lm2amError(f"{d.segments_f} line {e.line}: utterance {utt} has no transcript "
                             f"in {d.text_f}; add it or remove the line (utils/fix_data_dir.sh)")
        if rec not in d.wavs:
            raise Lm2amError(f"{d.segments_f} line {e.line}: recording {rec} of {utt} is not in "
                             f"{d.wav_scp}; add it or remove the segment")
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise Lm2amError(f"{d.segments_f} line {e.line}: start/end must be numbers, got "
                             f"{start_s!r} {end_s!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise Lm2amError(f"{d.segments_f} line {e.line}: bad times {start_s} {end_s} for {utt}; "
                             "need 0 <= start < end (or end -1 for the end of the recording)")
        utts.append((utt, rec, start, None if end == -1 else end, e.line))
    return utts


def _make_recording(rec: str, e: _Entry, a: _Audio, wav_scp: Path, sampling_rate: int):
    """Check one recording's audio against what the recipe expects; build its lhotse Recording."""
    from lhotse import AudioSource, Recording

    where = f"{wav_scp} line {e.line}"
    if a.sampling_rate != sampling_rate:
        raise Lm2amError(f"{where}: {rec} is {a.sampling_rate} Hz, expected {sampling_rate}; "
                         f"resample it (e.g. 'sox in.wav -r {sampling_rate} -t wav - |' in wav.scp) "
                         "or pass the matching --sampling-rate")
    if a.channels != 1:
        raise Lm2amError(f"{where}: {rec} has {a.channels} channels; select one in wav.scp "
                         "(e.g. 'sox in.wav -t wav - remix 1 |')")
    if a.num_samples == 0:
        raise Lm2amError(f"{where}: {rec} has no audio samples; re-create it or remove it")
    if e.value.endswith("|"):
        source = AudioSource(type="command", channels=[0], source=e.value[:-1].strip())
    else:
        # absolute, so the manifests work from any directory
        source = AudioSource(type="file", channels=[0], source=str(Path(e.value).resolve()))
    return Recording(id=rec, sources=[source], sampling_rate=a.sampling_rate,
                     num_samples=a.num_samples, duration=a.num_samples / a.sampling_rate)


def _make_supervisions(d: _DataDir, utts: List[_Utt], durations: Dict[str, float]) -> list:
    """One lhotse SupervisionSegment per utterance, sorted by id, times checked against the audio."""
    from lhotse import SupervisionSegment

    sups = []
    for utt, rec, start, end, line in sorted(utts):
        rec_dur = durations[rec]
        if end is None:
            end = rec_dur
        elif end > rec_dur:
            if end > rec_dur + SEGMENT_END_TOLERANCE:
                raise Lm2amError(f"{d.segments_f} line {line}: segment {utt} ends at {end} s, past "
                                 f"the end of {rec} ({rec_dur:.3f} s); fix the segment")
            end = rec_dur  # rounding in the segments file
        if start >= end:
            raise Lm2amError(f"{d.segments_f} line {line}: segment {utt} starts at {start} s, at or "
                             f"after the end of {rec} ({rec_dur:.3f} s); fix the segment")
        spk = d.utt2spk[utt].value
        gender = d.genders[spk].value if spk in d.genders else None
        sups.append(SupervisionSegment(id=utt, recording_id=rec, start=start, duration=end - start,
                                       channel=0, text=" ".join(d.texts[utt].value.split()).upper(),
                                       speaker=spk, gender=gender))
    return sups


def load_kaldi_dir(data_dir: Path | str, sampling_rate: int = 16000, num_jobs: int = 4):
    """Check a Kaldi data dir and return ``(RecordingSet, SupervisionSet)``, sorted by id.

    Every bad input raises :class:`Lm2amError` naming the file and line.
    """
    from lhotse import RecordingSet, SupervisionSet

    d = _read_data_dir(Path(data_dir))
    _check_utterances(d)
    utts = _parse_segments(d)

    used = sorted({u[1] for u in utts})
    unused = len(d.wavs) - len(used)
    if unused:
        log.warning("%s: %d recordings have no utterance; skipped", d.wav_scp, unused)

    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        audio = dict(zip(used, ex.map(lambda r: _read_audio_info(r, d.wavs[r], d.wav_scp), used)))
    recordings = [_make_recording(rec, d.wavs[rec], audio[rec], d.wav_scp, sampling_rate)
                  for rec in used]
    sups = _make_supervisions(d, utts, {r.id: r.duration for r in recordings})
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(sups)


def import_kaldi_data_dir(data_dir: Path | str, part: str, out_dir: Path | str,
                          sampling_rate: int = 16000):
    """Check a Kaldi data dir and write ``out_dir/{recordings,supervisions,cuts}_<part>.jsonl.gz``.

    Returns the :class:`lhotse.CutSet` written (one cut per utterance).
    """
    from lm2am.data import save_manifests

    recordings, supervisions = load_kaldi_dir(data_dir, sampling_rate=sampling_rate)
    cuts = save_manifests(recordings, supervisions, part, out_dir)
    hours = sum(s.duration for s in supervisions) / 3600
    log.info("imported %s as part %s: %d recordings, %d utterances, %d speakers, %.2f h -> %s",
             data_dir, part, len(recordings), len(supervisions),
             len({s.speaker for s in supervisions}), hours, out_dir)
    return cuts

"""Kaldi data-dir import: plain, segments and `sox ... |` pipes, and one-line errors for bad input."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, require_setup
from lm2am.corpus.kaldi_dir import import_kaldi_data_dir, load_kaldi_dir
from lm2am.data import manifest_paths
from lm2am.errors import Lm2amError

SR = 16000


def _wav(path: Path, seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def _data_dir(root: Path, files: Dict[str, str]) -> Path:
    d = root / "data" / "train"
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (d / name).write_text(content)
    return d


def _plain(tmp_path: Path, text: Optional[str] = None, wav_scp: Optional[str] = None) -> Path:
    """Two whole-file utterances of two speakers."""
    a = _wav(tmp_path / "audio" / "a.wav", 1.0)
    b = _wav(tmp_path / "audio" / "b.wav", 1.5, seed=1)
    return _data_dir(tmp_path, {
        "wav.scp": wav_scp if wav_scp is not None else f"spk1-u1 {a}\nspk2-u1 {b}\n",
        "text": text if text is not None else "spk1-u1 hello world\nspk2-u1 good  morning\n",
        "utt2spk": "spk1-u1 spk1\nspk2-u1 spk2\n",
        "spk2gender": "spk1 f\nspk2 m\n",
    })


def test_plain_dir_writes_manifests(tmp_path: Path):
    d = _plain(tmp_path)
    out = tmp_path / "manifests"
    cuts = import_kaldi_data_dir(d, "train-kaldi", out)
    assert all(p.is_file() for p in manifest_paths(out, "train-kaldi").values())
    assert sorted(c.supervisions[0].id for c in cuts) == ["spk1-u1", "spk2-u1"]
    by_id = {c.supervisions[0].id: c for c in cuts}
    s = by_id["spk2-u1"].supervisions[0]
    assert s.text == "GOOD MORNING" and s.speaker == "spk2" and s.gender == "m"
    assert abs(by_id["spk2-u1"].duration - 1.5) < 1e-6
    assert by_id["spk1-u1"].load_audio().shape == (1, SR)


@pytest.mark.filterwarnings("ignore:You requested a subset of a recording")
def test_segments_and_sox_pipe(tmp_path: Path):
    require_setup(shutil.which("sox") is not None, "sox (Debian sox)")
    long = _wav(tmp_path / "audio" / "long.wav", 3.0)
    at8k = _wav(tmp_path / "audio" / "rec8k.wav", 2.0, sr=8000, seed=2)
    d = _data_dir(tmp_path, {
        # rec2 is resampled by a pipe, the usual Kaldi way of fixing rates/formats
        "wav.scp": f"rec1 {long}\nrec2 sox {at8k} -r {SR} -t wav - |\nunused {long}\n",
        "segments": "rec1-000 rec1 0.00 1.20\nrec1-001 rec1 1.20 -1\nrec2-000 rec2 0.5 2.02\n",
        "text": "rec1-000 first part\nrec1-001 second part\nrec2-000 piped <unk> words\n",
        "utt2spk": "rec1-000 s1\nrec1-001 s1\nrec2-000 s2\n",
    })
    recs, sups = load_kaldi_dir(d)
    assert [r.id for r in recs] == ["rec1", "rec2"]  # unused recording skipped
    assert recs["rec2"].sources[0].type == "command" and recs["rec2"].num_samples == 2 * SR
    durs = {s.id: round(s.duration, 3) for s in sups}
    assert durs == {"rec1-000": 1.2, "rec1-001": 1.8, "rec2-000": 1.5}  # 2.02 clipped to 2.0
    cuts = import_kaldi_data_dir(d, "seg", tmp_path / "m")
    piped = [c for c in cuts if c.supervisions[0].id == "rec2-000"][0]
    assert piped.supervisions[0].text == "PIPED <UNK> WORDS"
    assert piped.load_audio().shape == (1, int(1.5 * SR))  # lhotse runs the command itself


@pytest.mark.parametrize("case, file, fragment", [
    ("missing_audio", "wav.scp", "does not exist"),
    ("text_not_in_wav", "text", "is not in"),
    ("text_not_in_utt2spk", "text", "is not in"),
    ("duplicate", "text", "duplicate id spk1-u1"),
    ("empty_transcript", "text", "empty transcript"),
    ("missing_text", "text", "is missing"),
    ("wrong_rate", "wav.scp", "8000 Hz"),
    ("stereo", "wav.scp", "2 channels"),
    ("bad_pipe", "wav.scp", "failed"),
])
def test_bad_input(tmp_path: Path, case: str, file: str, fragment: str):
    d = _plain(tmp_path)
    a = tmp_path / "audio" / "a.wav"
    if case == "missing_audio":
        (d / "wav.scp").write_text(f"spk1-u1 {a}\nspk2-u1 {tmp_path / 'nope.wav'}\n")
    elif case == "text_not_in_wav":
        (d / "wav.scp").write_text(f"spk1-u1 {a}\n")
    elif case == "text_not_in_utt2spk":
        (d / "utt2spk").write_text("spk1-u1 spk1\n")
    elif case == "duplicate":
        (d / "text").write_text("spk1-u1 hello\nspk2-u1 there\nspk1-u1 again\n")
    elif case == "empty_transcript":
        (d / "text").write_text("spk1-u1 hello\nspk2-u1\n")
    elif case == "missing_text":
        (d / "text").unlink()
    elif case == "wrong_rate":
        _wav(a, 1.0, sr=8000)
    elif case == "stereo":
        _wav(a, 1.0, channels=2)
    elif case == "bad_pipe":
        (d / "wav.scp").write_text(f"spk1-u1 {a}\nspk2-u1 sox {tmp_path / 'nope.wav'} -t wav - |\n")
    with pytest.raises(Lm2amError) as e:
        import_kaldi_data_dir(d, "bad", tmp_path / "m")
    msg = str(e.value)
    assert "\n" not in msg and str(d / file) in msg and fragment in msg, msg
    if case in ("missing_audio", "duplicate", "empty_transcript", "bad_pipe"):
        assert " line " in msg  # points at the offending line
    assert not (tmp_path / "m" / "cuts_bad.jsonl.gz").exists()


def test_cli(tmp_path: Path):
    d = _plain(tmp_path)
    out = tmp_path / "manifests"
    cmd = [sys.executable, str(REPO / "local/kaldi-data/import_data_dir.py"), str(d), "k", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert manifest_paths(out, "k")["cuts"].is_file()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert "already done" in r.stdout
    (d / "text").write_text("spk1-u1 hello\nspk2-u1\n")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("ERROR: ") and "empty transcript" in r.stderr

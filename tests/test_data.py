"""Manifests (with bad-input checks), fbank features and global CMVN on a tiny tone corpus."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import soundfile as sf

from conftest import write_librispeech_part
from lm2am.data import (FbankConfig, ManifestConfig, check_feature_frames, compute_fbank,
                        compute_global_cmvn, load_global_cmvn, manifest_paths, prepare_manifests)
from lm2am.errors import Lm2amError


def test_manifests_features_cmvn(tone_corpus: Path, tmp_path: Path):
    out = tmp_path / "manifests"
    cuts = prepare_manifests(tone_corpus, ["train-x", "dev-x"], out)
    assert len(cuts["train-x"]) == 4 and len(cuts["dev-x"]) == 2
    for part in ("train-x", "dev-x"):
        assert all(p.is_file() for p in manifest_paths(out, part).values())
    c = cuts["train-x"][0]
    assert c.supervisions[0].text == "HELLO WORLD" and c.supervisions[0].speaker == "100"
    assert c.sampling_rate == 16000 and abs(c.duration - 1.0) < 1e-6

    fb = compute_fbank(cuts["train-x"], "train-x", tmp_path / "fbank", FbankConfig(num_jobs=1))
    feats = fb[0].load_features()
    assert feats.shape == (100, 80)  # 1 s at 10 ms shift, snip_edges=False
    check_feature_frames(fb, 0.01)
    mean, std = compute_global_cmvn(fb, tmp_path / "fbank/global_cmvn.ark")
    allf = np.concatenate([c.load_features() for c in fb])
    np.testing.assert_allclose(mean, allf.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std, allf.std(0), rtol=1e-3, atol=1e-3)
    m2, s2 = load_global_cmvn(tmp_path / "fbank/global_cmvn.ark")
    np.testing.assert_array_equal(mean, m2)


def test_features_deterministic(tone_corpus: Path, tmp_path: Path):
    cuts = prepare_manifests(tone_corpus, ["dev-x"], tmp_path / "m")["dev-x"]
    a = compute_fbank(cuts, "dev-x", tmp_path / "a", FbankConfig(num_jobs=1))
    b = compute_fbank(cuts, "dev-x", tmp_path / "b", FbankConfig(num_jobs=1))
    for ca, cb in zip(a, b):
        np.testing.assert_array_equal(ca.load_features(), cb.load_features())


def _bad(tone_corpus: Path, tmp_path: Path, cfg: Optional[ManifestConfig] = None):
    with pytest.raises(Lm2amError) as e:
        prepare_manifests(tone_corpus, ["train-x"], tmp_path / "m", cfg or ManifestConfig())
    msg = str(e.value)
    assert "\n" not in msg
    assert not (tmp_path / "m" / "cuts_train-x.jsonl.gz").exists()  # nothing half-written
    return msg


def test_missing_audio_fails_or_skips(tone_corpus: Path, tmp_path: Path):
    victim = tone_corpus / "train-x/100/1/100-1-0001.flac"
    victim.unlink()
    msg = _bad(tone_corpus, tmp_path)
    assert str(victim) in msg and "missing_audio: skip" in msg
    cuts = prepare_manifests(tone_corpus, ["train-x"], tmp_path / "m", ManifestConfig(missing_audio="skip"))
    assert len(cuts["train-x"]) == 3


def test_corrupt_audio(tone_corpus: Path, tmp_path: Path):
    victim = tone_corpus / "train-x/100/1/100-1-0000.flac"
    victim.write_bytes(b"this is not audio at all" * 10)
    msg = _bad(tone_corpus, tmp_path)
    assert str(victim) in msg and "unreadable audio" in msg


def test_truncated_audio(tone_corpus: Path, tmp_path: Path):
    victim = tone_corpus / "train-x/100/1/100-1-0000.flac"
    victim.write_bytes(victim.read_bytes()[:200])
    msg = _bad(tone_corpus, tmp_path)
    assert str(victim) in msg


def test_wrong_sample_rate(tone_corpus: Path, tmp_path: Path):
    victim = tone_corpus / "train-x/101/1/101-1-0000.flac"
    sf.write(victim, np.zeros(8000, dtype=np.float32), 8000)
    msg = _bad(tone_corpus, tmp_path)
    assert str(victim) in msg and "8000 Hz" in msg and "resample" in msg


def test_empty_transcript(tone_corpus: Path, tmp_path: Path):
    tf = tone_corpus / "train-x/101/1/101-1.trans.txt"
    tf.write_text("101-1-0000\n101-1-0001 A DOG RAN\n")
    msg = _bad(tone_corpus, tmp_path)
    assert f"{tf} line 1: empty transcript for 101-1-0000" in msg


def test_non_utf8_transcript(tone_corpus: Path, tmp_path: Path):
    tf = tone_corpus / "train-x/101/1/101-1.trans.txt"
    tf.write_bytes(b"101-1-0000 CAF\xe9\n")
    assert "not valid UTF-8" in _bad(tone_corpus, tmp_path)


def test_duplicate_utterance_id(tmp_path: Path):
    root = tmp_path / "corpus"
    write_librispeech_part(root, "train-x", {"100-1-0000": "HELLO"})
    tf = root / "train-x/100/1/100-1.trans.txt"
    tf.write_text("100-1-0000 HELLO\n100-1-0000 WORLD\n")
    assert "duplicate utterance id 100-1-0000" in _bad(root, tmp_path)


def test_missing_part(tone_corpus: Path, tmp_path: Path):
    with pytest.raises(Lm2amError, match="corpus part not found"):
        prepare_manifests(tone_corpus, ["test-nope"], tmp_path / "m")

"""synth-en: synthesizer back ends, augmentation, corpus layout, determinism, errors."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import yaml

from lm2am.config import load_section
from lm2am.corpus import augment as aug
from lm2am.corpus import voices as V
from lm2am.corpus.voices import base as voice_base
from lm2am.corpus.synth_en import PARTS, SynthConfig, make_corpus
from lm2am.errors import Lm2amError

from conftest import needs_setup, require_setup

REPO = Path(__file__).resolve().parents[1]


def _engines_present() -> bool:
    try:
        for engine, voice in (("flite", "slt"), ("festival", "kal_diphone"), ("espeak", "")):
            V.check_engine(engine, voice)
        aug.check_tools(aug.NOISE_TYPES, True)
    except Lm2amError:
        return False
    return True


TTS = "flite/festival/espeak-ng/sox/hold music (Debian packages)"
needs_tts = needs_setup(_engines_present(), TTS)

TEXT = "THE QUICK BROWN FOX OF THE WOODS JUMPED OVER A LAZY DOG"
ALL_VOICES = ([("flite", v, "") for v in V.FLITE_VOICES]
              + [("festival", v, "") for v in V.FESTIVAL_VOICES]
              + [("espeak", "en-us", "f3"), ("espeak", "en-gb", "klatt4")])


# ---------------------------------------------------------------------------------------------
# Engines

@needs_tts
@pytest.mark.parametrize("engine,voice,variant", ALL_VOICES)
def test_engine_audio_and_timings(engine: str, voice: str, variant: str) -> None:
    spec = V.make_speaker(engine, voice, variant, pitch=1.1, rate=0.95, speed=1.05)
    (res,) = V.synthesize(spec, [TEXT], [7])
    assert res.audio.dtype == np.float32 and res.audio.ndim == 1
    assert 1.0 < res.duration < 10.0
    ends = [e for _, e in res.phones]
    assert all(b >= a for a, b in zip(ends, ends[1:])), "phone ends must not decrease"
    assert abs(ends[-1] - res.duration) < 0.05  # the last phone (silence) ends with the audio
    labels = {p for p, _ in res.phones}
    if engine != "espeak":
        assert res.phone_set == "arpabet"
        assert labels <= V.ARPABET | {"SIL"}, labels - V.ARPABET
        assert res.phones[0][0] == "SIL" and res.phones[-1][0] == "SIL"
    else:
        assert res.phone_set == "espeak"
    assert res.words is not None  # "OF THE" is merged by espeak-ng and split back
    assert [w for w, _ in res.words if w] == TEXT.split()
    assert abs(res.words[-1][1] - res.duration) < 1e-3


@needs_tts
def test_speed_rescales_timings() -> None:
    base = V.make_speaker("flite", "kal16", speed=1.0)
    fast = dataclasses.replace(base, speed=1.1)
    (a,), (b,) = V.synthesize(base, [TEXT], [1]), V.synthesize(fast, [TEXT], [1])
    assert b.duration == pytest.approx(a.duration / 1.1, abs=1e-3)
    for (pa, ea), (pb, eb) in zip(a.phones, b.phones):
        assert pa == pb and eb == pytest.approx(ea / 1.1, abs=2e-3)


@needs_tts
def test_flite_is_reproducible_with_seed() -> None:
    spec = V.make_speaker("flite", "slt")
    x = V.synthesize(spec, [TEXT, TEXT], [5, 5])
    assert np.array_equal(x[0].audio, x[1].audio)


def test_resample_length_and_tone() -> None:
    t = np.arange(22050) / 22050
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = V.resample(x, 22050, 16000, speed=1.0)
    assert len(y) == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 440) <= 1  # 1 s of audio: bin = Hz
    y2 = V.resample(x, 22050, 16000, speed=1.1)  # sox speed: higher and shorter
    assert len(y2) == round(16000 / 1.1)
    assert abs(np.argmax(np.abs(np.fft.rfft(y2))) * 1.1 - 484) < 3


# ---------------------------------------------------------------------------------------------
# Augmentation

def test_noise_mixing_hits_snr_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000)).astype(np.float32)
    for kind in ("white", "pink", "brown"):
        n1 = aug.colored_noise(kind, len(x), np.random.default_rng(3))
        n2 = aug.colored_noise(kind, len(x), np.random.default_rng(3))
        assert np.array_equal(n1, n2)
        y = aug.add_noise(x, n1, 10.0)
        snr = 10 * np.log10(aug.active_power(x) / np.mean((y - x).astype(np.float64) ** 2))
        assert snr == pytest.approx(10.0, abs=0.1)
    loud = aug.normalize_peak(np.array([0.5, -2.0, 1.0], np.float32))
    assert np.max(np.abs(loud)) == pytest.approx(aug.PEAK)
    quiet = np.array([0.1, -0.2], np.float32)
    assert np.array_equal(aug.normalize_peak(quiet), quiet)
    p = aug.draw_params(rng, 0.0, ["babble"], [5, 6], 0.0, ["a", "b", "c", "d", "e", "f", "g"])
    assert p.noise == "babble" and 3 <= len(p.babble) <= 6 and 5 <= p.snr_db <= 6


@needs_tts
def test_reverb_and_music_keep_length() -> None:
    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    y = aug.reverberate(x, aug.Reverb(50, 50, 80, 10))
    assert len(y) == len(x) and not np.array_equal(x, y)
    m1 = aug.music_noise(8000, np.random.default_rng(1))
    m2 = aug.music_noise(8000, np.random.default_rng(1))
    assert len(m1) == 8000 and np.array_equal(m1, m2)


# ---------------------------------------------------------------------------------------------
# Config

def test_config_validation_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dev_voices"):
        SynthConfig(train_voices=["flite:slt"], dev_voices=["flite:slt"])
    with pytest.raises(ValueError, match="test_voices"):
        SynthConfig(test_voices=["espeak:en-us-nyc"])  # espeak only: no majority engine
    with pytest.raises(ValueError, match="train_voices.*unknown flite voice"):
        SynthConfig(train_voices=["flite:nosuch"])
    with pytest.raises(ValueError, match="espeak_share"):
        SynthConfig(espeak_share=0.8)
    with pytest.raises(ValueError, match="snr_range"):
        SynthConfig(snr_range=[20.0, 5.0])
    with pytest.raises(ValueError, match="noise_types"):
        SynthConfig(noise_types=["rain"])
    conf = tmp_path / "c.yaml"
    conf.write_text("corpus:\n  num_train_utts: 5\n  voices_per_split: 3\n")
    with pytest.raises(Lm2amError, match="unknown key 'voices_per_split'"):
        load_section(conf, "corpus", SynthConfig)


# ---------------------------------------------------------------------------------------------
# Missing engines

@pytest.mark.parametrize("engine,voice,attr,value,package", [
    ("flite", "slt", "LIB_DIRS", ("/nonexistent",), "libflite1"),
    ("festival", "kal_diphone", "FESTIVAL_BIN", "festival-not-installed", "festival"),
    ("festival", "ked_diphone", "FESTIVAL_VOICE_DIRS", ("/nonexistent",), "festvox-kdlpc16k"),
    ("espeak", "en-us", "LIB_DIRS", ("/nonexistent",), "libespeak-ng1"),
])
def test_missing_engine_names_package(monkeypatch, engine, voice, attr, value, package) -> None:
    if attr == "FESTIVAL_VOICE_DIRS" and shutil.which(voice_base.FESTIVAL_BIN) is None:
        require_setup(False, "festival")
    monkeypatch.setattr(voice_base, attr, value)
    with pytest.raises(Lm2amError, match=package) as e:
        V.check_engine(engine, voice)
    assert "\n" not in str(e.value)


def test_missing_engine_fails_before_writing(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(voice_base, "LIB_DIRS", ("/nonexistent",))
    with pytest.raises(Lm2amError, match="apt-get install flite"):
        make_corpus(tmp_path / "corpus", SynthConfig())
    assert not (tmp_path / "corpus").exists()
    monkeypatch.undo()
    monkeypatch.setattr(aug, "MUSIC_DIR", str(tmp_path / "nomusic"))
    with pytest.raises(Lm2amError, match="asterisk-moh-opsound-wav"):
        aug.check_tools(["music"], False)


# ---------------------------------------------------------------------------------------------
# A micro corpus, generated twice (in process, and through the command line)

MICRO = dict(num_train_utts=10, num_dev_utts=4, num_test_utts=4, pseudo_speakers_per_voice=1,
             train_voices=["flite:kal16", "festival:kal_diphone", "espeak:en-us"],
             dev_voices=["flite:rms", "espeak:en-gb-x-rp"],
             test_voices=["flite:awb", "espeak:en-us-nyc"],
             espeak_share=0.25, clean_share=0.2, reverb_share=0.5, batch_size=4, nj=2)


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Dict[str, Path]:
    require_setup(_engines_present(), TTS)
    root = tmp_path_factory.mktemp("synth")
    make_corpus(root / "a", SynthConfig(**MICRO))
    conf = root / "micro.yaml"
    conf.write_text(yaml.safe_dump({"corpus": {**MICRO, "nj": 2}}))
    cmd = [sys.executable, str(REPO / "local/synth-en/make_corpus.py"), "--config", str(conf),
           "--nj", "1", str(root / "b")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"a": root / "a", "b": root / "b", "conf": conf, "cmd": cmd, "env": env}


def test_layout_and_lhotse_reads_it(micro) -> None:
    from lhotse.recipes import prepare_librispeech

    root = micro["a"]
    for name in ("speakers.tsv", "stats.txt", "lm_text/lm_text.txt", "lm_text/sources.tsv"):
        assert (root / name).is_file(), name
    manifests = prepare_librispeech(root, dataset_parts=list(PARTS))
    sizes = {"train-synth": 10, "dev-synth": 4, "test-synth": 4}
    for part in PARTS:
        recs, sups = manifests[part]["recordings"], manifests[part]["supervisions"]
        assert len(recs) == sizes[part] == len(sups)
        n_aligned = 0
        for s in sups:
            spk, chap, n = s.id.split("-")
            assert len(n) == 4 and spk.isdigit() and chap.isdigit()
            flac = root / part / spk / chap / f"{s.id}.flac"
            info = sf.info(str(flac))
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
            if s.alignment:
                n_aligned += 1
                items = s.alignment["word"]
                assert [a.symbol for a in items if a.symbol] == s.text.split()
                assert items[-1].end <= s.duration + 1e-6
        assert n_aligned >= sizes[part] - 1  # espeak-ng may leave one without word timings
        # reference phones: one line per utterance, labels and ends of equal count
        lines = [ln for p in (root / part).rglob("*.phones.txt") for ln in p.read_text().splitlines()]
        assert len(lines) == sizes[part]
        for ln in lines:
            _, labels, ends = ln.split()
            assert len(labels.strip('"').split(",")) == len(ends.strip('"').split(","))
        info_rows = (root / part / "utt_info.tsv").read_text().splitlines()
        assert info_rows[0].split("\t")[:4] == ["utt_id", "speaker", "duration", "noise"]
        assert len(info_rows) == sizes[part] + 1
    assert "train-synth" in (root / "stats.txt").read_text()


def test_splits_are_disjoint_by_voice(micro) -> None:
    rows = [ln.split("\t") for ln in (micro["a"] / "speakers.tsv").read_text().splitlines()[1:]]
    voices = {part: {(r[3], r[4]) for r in rows if r[2] == part} for part in PARTS}
    variants = {part: {r[5] for r in rows if r[2] == part and r[3] == "espeak"} for part in PARTS}
    for i, p in enumerate(PARTS):
        for q in PARTS[i + 1:]:
            assert not voices[p] & voices[q] and not variants[p] & variants[q]
    trans = {p: {ln.split(" ", 1)[1] for f in (micro["a"] / p).rglob("*.trans.txt")
                 for ln in f.read_text().splitlines()} for p in PARTS}
    assert not trans["train-synth"] & (trans["dev-synth"] | trans["test-synth"])
    lm = set((micro["a"] / "lm_text/lm_text.txt").read_text().splitlines())
    assert not lm & (trans["train-synth"] | trans["dev-synth"] | trans["test-synth"])


def _digest(root: Path, pattern: str) -> Dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern))}


def test_same_seed_same_corpus(micro) -> None:
    a, b = micro["a"], micro["b"]
    for pattern in ("*.trans.txt", "*.alignment.txt", "*.phones.txt", "utt_info.tsv",
                    "speakers.tsv", "lm_text.txt"):
        da, db = _digest(a, pattern), _digest(b, pattern)
        assert da and da == db, pattern
    # The engines are deterministic with per-utterance seeds and fixed batches: audio too,
    # even with a different number of processes (nj 2 vs 1).
    assert _digest(a, "*.flac") == _digest(b, "*.flac")


def test_rerun_is_noop_and_resumes(micro) -> None:
    proc = subprocess.run(micro["cmd"], capture_output=True, text=True, env=micro["env"])
    assert proc.returncode == 0 and "skipping" in proc.stderr
    root = micro["a"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}
    # Simulate a run killed while building dev: no marker, a stale temp dir.
    (root / ".dev-synth.done").unlink()
    (root / ".dev-synth.tmp999").mkdir()
    make_corpus(root, SynthConfig(**MICRO))
    assert not (root / ".dev-synth.tmp999").exists()
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}
    assert before.keys() == after.keys()
    changed = {p.relative_to(root).parts[0] for p in before if before[p] != after[p]}
    assert changed == {"dev-synth"}


def test_cli_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("corpus:\n  espeak_share: 0.9\n")
    proc = subprocess.run([sys.executable, str(REPO / "local/synth-en/make_corpus.py"),
                           "--config", str(conf), str(tmp_path / "c")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(err) == 1 and "espeak_share" in err[0]

"""End to end: the synth-en recipe's data and lang stages on conf/tiny.yaml, in a scratch copy
of the recipe directory (links to steps/utils/local/path.sh as in the repo)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

RECIPE = REPO / "egs/synth-en/s5"
LAST_DATA_STAGE = 6


def make_recipe_copy(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(RECIPE / name, dst / name)
    shutil.copytree(RECIPE / "conf", dst / "conf")
    for link in ("steps", "utils", "local", "path.sh"):
        os.symlink(REPO / link, dst / link)
    return dst


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory) -> Path:
    recipe = make_recipe_copy(tmp_path_factory.mktemp("e2e") / "s5")
    r = run(recipe, "--config", "conf/tiny.yaml", "--stage", "0", "--stop-stage", str(LAST_DATA_STAGE))
    assert r.returncode == 0, f"recipe failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    (recipe / "first_run.out").write_text(r.stdout + r.stderr)
    return recipe


def test_recipe_outputs(tiny_recipe: Path, monkeypatch):
    from lhotse import CutSet

    monkeypatch.chdir(tiny_recipe)  # manifests hold recipe-relative paths, as in Kaldi/icefall

    for part in ("train-synth", "dev-synth", "test-synth", "test-asterisk"):
        cuts = CutSet.from_file(tiny_recipe / f"data/fbank/cuts_{part}.jsonl.gz")
        assert len(cuts) > 0
        c = cuts[0]
        assert c.has_features and c.num_features == 80
        assert c.load_features().shape[0] == c.num_frames
    train = CutSet.from_file(tiny_recipe / "data/manifests/cuts_train-synth.jsonl.gz")
    dev = CutSet.from_file(tiny_recipe / "data/manifests/cuts_dev-synth.jsonl.gz")
    # split by voice: no speaker of dev appears in train
    assert not ({c.supervisions[0].speaker for c in train} & {c.supervisions[0].speaker for c in dev})
    lang = tiny_recipe / "data/lang"
    for f in ("lexicon.txt", "words.txt", "phones.txt", "bpe.model", "oov_report.txt"):
        assert (lang / f).is_file(), f
    assert (tiny_recipe / "data/fbank/global_cmvn.ark").is_file()
    summary = (tiny_recipe / "data/fbank/summary.txt").read_text()
    assert "train-synth" in summary and "test-asterisk" in summary
    out = (tiny_recipe / "first_run.out").read_text()
    assert "Stage 6" in out and "hours" in out
    logs = list((tiny_recipe / "data/fbank/log").glob("fbank.*.log"))
    assert logs and all("# Ended (code 0)" in p.read_text() for p in logs)


def test_rerun_is_a_noop(tiny_recipe: Path):
    before = {p: p.stat().st_mtime_ns for p in (tiny_recipe / "data").rglob("*.jsonl.gz")}
    r = run(tiny_recipe, "--config", "conf/tiny.yaml", "--stage", "1", "--stop-stage", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in (tiny_recipe / "data").rglob("*.jsonl.gz")}
    assert before == after
    assert "skipping" in r.stdout + r.stderr


def test_bad_option(tiny_recipe: Path):
    r = run(tiny_recipe, "--stgae", "3")
    assert r.returncode != 0
    assert "invalid option --stgae" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_config_key(tiny_recipe: Path):
    bad = tiny_recipe / "conf/bad.yaml"
    bad.write_text("features:\n  num_mel_binz: 40\n")
    r = run(tiny_recipe, "--config", "conf/bad.yaml", "--stage", "0", "--stop-stage", "0")
    assert r.returncode != 0
    assert "ERROR: conf/bad.yaml: features: unknown key 'num_mel_binz'" in r.stderr


def test_help(tiny_recipe: Path):
    r = run(tiny_recipe, "--help")
    assert r.returncode == 0 and "--stop-stage" in r.stdout and "Stages:" in r.stdout

"""The LibriSpeech recipe (egs/librispeech/s5) on a tiny fake LibriSpeech copy in the real layout
(local/librispeech/make_fake_corpus.py: flite speech, SPEAKERS.TXT etc.), end to end through the
shared driver (steps/run_hybrid.sh): data, lang, features, alignment, senone tree, frame targets,
a CE AM, decoding and exp/RESULTS.md; plus the streamed (--lazy) data stages against the
in-memory ones. The teacher stages (12-13) and the distilled systems, the same driver code on any
corpus, are the synth-en recipe test's (tests/test_recipe.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

RECIPE = REPO / "egs/librispeech/s5"
PY = sys.executable
PARTS = ("train-clean-5", "dev-clean-2", "test-clean")   # train, dev, test
SIZES = {"train-clean-5": 48, "dev-clean-2": 16, "test-clean": 8}
SYSTEMS = "ce"   # CE needs no teachers: stages 12-13 are skipped (CI time)
STAGES = ((1, 11), (14, 17))   # the fixture's run.sh calls


def make_recipe_copy(dst: Path) -> Path:
    """A scratch copy of the recipe (links to steps/utils/local/path.sh and the systems, as in the repo)."""
    dst.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(RECIPE / name, dst / name)
    shutil.copytree(RECIPE / "conf", dst / "conf", symlinks=False)
    for link in ("steps", "utils", "local", "path.sh"):
        os.symlink(REPO / link, dst / link)
    return dst


def make_fake(out: Path, parts: str, lm_sentences: int = 0) -> Path:
    r = subprocess.run([PY, str(REPO / "local/librispeech/make_fake_corpus.py"), "--parts", parts,
                        "--lm-sentences", str(lm_sentences), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "LibriSpeech"


def run_recipe(recipe: Path, ls_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", "--config", "conf/fake.yaml", "--librispeech-dir", str(ls_dir),
                           "--parts", " ".join(PARTS), "--train-part", PARTS[0], "--dev-part", PARTS[1],
                           "--nj", "1", *args], cwd=recipe, capture_output=True, text=True)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("librispeech")
    ls_dir = make_fake(tmp / "download", ",".join(f"{p}:{n}" for p, n in SIZES.items()), lm_sentences=300)
    recipe = make_recipe_copy(tmp / "s5")
    out = ""
    for first, last in STAGES:
        r = run_recipe(recipe, ls_dir, "--stage", str(first), "--stop-stage", str(last), "--am-systems", SYSTEMS)
        assert r.returncode == 0, f"recipe failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        out += r.stdout + r.stderr
    return recipe, ls_dir, out


def test_fake_layout(fake_run):
    _, ls_dir, _ = fake_run
    for f in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "README.TXT", "LICENSE.TXT"):
        assert (ls_dir / f).is_file(), f
    flacs = sorted((ls_dir / PARTS[0]).glob("*/*/*.flac"))
    assert len(flacs) == 48
    spk, chap, _ = flacs[0].stem.split("-")
    assert flacs[0].parent == ls_dir / PARTS[0] / spk / chap
    assert (flacs[0].parent / f"{spk}-{chap}.trans.txt").is_file()


def test_recipe_targets(fake_run, monkeypatch):
    from lhotse import CutSet

    from lm2am.targets import read_info
    from lm2am.tree import ContextTree

    recipe, ls_dir, out = fake_run
    monkeypatch.chdir(recipe)
    assert "librispeech-lm-norm.txt" in out  # stage 2 used the LM text found next to the corpus
    tree = ContextTree.load("exp/tree/tree.json")
    assert tree.num_leaves == 60
    for part in PARTS:
        manifest = CutSet.from_file(f"data/manifests/cuts_{part}.jsonl.gz")
        assert str(manifest[0].recording.sources[0].source).startswith(str(ls_dir / part))
        info = read_info("data/targets", part)
        assert info.num_senones == tree.num_leaves
        for unit in ("senone", "phone", "subword"):
            assert (recipe / f"data/targets/{unit}_{part}.scp").is_file()
        tg = CutSet.from_file(f"data/targets/cuts_{part}.jsonl.gz")
        assert len(tg) == len(manifest) == SIZES[part]
        for c in tg:
            senone = c.load_custom("senone")
            assert len(senone) == c.num_frames == c.load_features().shape[0]
            assert 0 <= senone.min() and senone.max() < tree.num_leaves
    assert (recipe / "data/fbank/global_cmvn.ark").is_file()


def test_recipe_decodes_and_writes_results(fake_run):
    """Stages 14-17 as in synth-en: every system decodes dev (scale sweep) and the test part at the
    dev-best scale; the decoder cross-check and exp/RESULTS.md with a row per system."""
    recipe, _, out = fake_run
    exp = recipe / "exp"
    for system in SYSTEMS.split():
        d = exp / f"am_{system}/seed1"
        best = float((d / f"decode_{PARTS[1]}/best_scale").read_text())
        for part in PARTS[1:]:
            lines = (d / f"decode_{part}/wer-{part}").read_text().splitlines()
            assert 0.0 <= float(lines[0].split()[1]) <= 200.0, lines[0]
        info = json.loads((d / f"decode_{PARTS[2]}/decode_info.json").read_text())
        assert info["config"]["acoustic_scale"] == best  # test decoded at the dev-best scale
    md = (exp / "RESULTS.md").read_text()
    for system in SYSTEMS.split():
        assert any(line.startswith(f"| {system} |") for line in md.splitlines()), md
    assert f"dev `{PARTS[1]}`, test `{PARTS[2]}`" in md
    assert (exp / f"compare_decoders_{PARTS[1]}/compare_decoders.md").is_file()
    assert "Done (stages 1..11)" in out and "Done (stages 14..17)" in out
    assert not (exp / "lm_senone").exists()  # CE trained and decoded without the teacher stages


def test_stage0_names_missing_part(fake_run, tmp_path):
    _, ls_dir, _ = fake_run
    recipe = make_recipe_copy(tmp_path / "s5")
    r = subprocess.run(["./run.sh", "--config", "conf/fake.yaml", "--librispeech-dir", str(ls_dir),
                        "--parts", "train-clean-100 dev-clean", "--train-part", "train-clean-100",
                        "--dev-part", "dev-clean", "--stop-stage", "0"], cwd=recipe, capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{ls_dir}/train-clean-100 not found" in r.stderr


def test_lm_text_falls_back_to_transcripts(fake_run, tmp_path):
    recipe, _, _ = fake_run
    out = tmp_path / "lm_text.txt"
    r = subprocess.run([PY, str(REPO / "local/librispeech/prepare_lm_text.py"), "--lm-norm", str(tmp_path / "absent.txt"),
                        "--manifests", str(recipe / "data/manifests"), "--train-part", PARTS[0], str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "not found" in r.stderr and "training transcripts" in r.stderr
    assert len(out.read_text().splitlines()) == 48


def test_lazy_data_stages_match_eager(fake_run, tmp_path, monkeypatch):
    """steps/make_manifests.py and steps/compute_fbank.py with and without --lazy: same cuts, same features."""
    import numpy as np
    from lhotse import CutSet

    _, ls_dir, _ = fake_run
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{REPO / 'steps'}:{os.environ['PATH']}"}
    for flag, name in (([], "eager"), (["--lazy"], "lazy")):
        for cmd in (["make_manifests.py", *flag, "--parts", PARTS[1], str(ls_dir), f"{name}/manifests"],
                    ["compute_fbank.py", *flag, "--parts", PARTS[1], f"{name}/manifests", f"{name}/fbank"]):
            r = subprocess.run([PY, str(REPO / "steps" / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env)
            assert r.returncode == 0, r.stderr[-2000:]
    eager = {c.id: c for c in CutSet.from_file(f"eager/manifests/cuts_{PARTS[1]}.jsonl.gz")}
    lazy = {c.id: c for c in CutSet.from_file(f"lazy/manifests/cuts_{PARTS[1]}.jsonl.gz")}
    assert {k: c.to_dict() for k, c in eager.items()} == {k: c.to_dict() for k, c in lazy.items()}
    fe = {c.id: c for c in CutSet.from_file(f"eager/fbank/cuts_{PARTS[1]}.jsonl.gz")}
    fl = {c.id: c for c in CutSet.from_file(f"lazy/fbank/cuts_{PARTS[1]}.jsonl.gz")}
    assert fe.keys() == fl.keys() and len(fl) == 16
    for k in fe:
        assert fe[k].supervisions[0].text == fl[k].supervisions[0].text
        np.testing.assert_allclose(fe[k].load_features(), fl[k].load_features(), atol=1e-4)

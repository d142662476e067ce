"""Shared fixtures: a tiny LibriSpeech-layout corpus made from synthetic tones (no TTS needed)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

# kaldi_hmm_gmm must be imported before kaldifst/kaldi_decoder/kaldilm (which lhotse or other
# tests may pull in), or the process hangs; importing it first keeps the Kaldi tests running.
import kaldi_hmm_gmm  # noqa: F401
import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SYNTH_RECIPE = REPO / "egs/synth-en/s5"
#: last stage of the shared tiny recipe build (data, lang, features, alignment, tree, targets, graph)
TINY_LAST_STAGE = 11


def make_recipe_copy(dst: Path, recipe: Path = SYNTH_RECIPE) -> Path:
    """A scratch copy of a recipe dir: run.sh, cmd.sh and conf/ copied, steps/utils/local/path.sh
    linked to the repo as in egs/."""
    dst.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(recipe / name, dst / name)
    shutil.copytree(recipe / "conf", dst / "conf", symlinks=True)
    for link in ("steps", "utils", "local", "path.sh"):
        os.symlink(REPO / link, dst / link)
    return dst


def oracle_loglikes(part: str, targets_dir: str = "data/targets") -> Dict[str, np.ndarray]:
    """Near-one-hot log-likelihoods of each cut's own target senones (0.9 on the target, the rest
    shared): what a perfect AM would give; checks graph, decoder and scoring without training."""
    from lm2am.targets import read_info, read_targets

    num = read_info(targets_dir, part).num_senones
    mats = {}
    for utt, t in read_targets(targets_dir, part).items():
        m = np.full((t.num_frames, num), np.log(0.1 / num), dtype=np.float32)
        m[np.arange(t.num_frames), t.senone] = np.log(0.9)
        mats[utt] = m
    return mats


def run_recipe(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    """``./run.sh ARGS`` in ``recipe``, output captured."""
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """Stages 0-11 of the synth-en recipe on conf/tiny.yaml, built once per test session and
    shared by every test file (minutes). ``LM2AM_TINY_RECIPE=<dir>`` reuses a copy that already
    ran them (for iterating on one test)."""
    given = os.environ.get("LM2AM_TINY_RECIPE")
    if given:
        return Path(given)
    recipe = make_recipe_copy(tmp_path_factory.mktemp("e2e") / "s5")
    r = run_recipe(recipe, "--config", "conf/tiny.yaml", "--stage", "0", "--stop-stage", str(TINY_LAST_STAGE))
    assert r.returncode == 0, f"recipe failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    (recipe / "first_run.out").write_text(r.stdout + r.stderr)
    return recipe


def write_librispeech_part(root: Path, part: str, utts: Dict[str, str], sr: int = 16000,
                           seconds: float = 1.0, seed: int = 0) -> List[Path]:
    """Write ``utts`` (utt id ``spk-chap-NNNN`` -> text) as FLAC + trans.txt under root/part."""
    rng = np.random.default_rng(seed)
    by_chapter: Dict[Path, List[str]] = {}
    paths = []
    for utt, text in sorted(utts.items()):
        spk, chap, _ = utt.split("-")
        d = root / part / spk / chap
        d.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(sr * seconds)) / sr
        audio = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(t.size)
        p = d / f"{utt}.flac"
        sf.write(p, audio.astype(np.float32), sr)
        paths.append(p)
        by_chapter.setdefault(d / f"{spk}-{chap}.trans.txt", []).append(f"{utt} {text}")
    for tf, lines in by_chapter.items():
        tf.write_text("\n".join(lines) + "\n")
    return paths


@pytest.fixture
def tone_corpus(tmp_path: Path) -> Path:
    """corpus/ with parts train-x (4 utts, 2 speakers) and dev-x (2 utts)."""
    root = tmp_path / "corpus"
    write_librispeech_part(root, "train-x", {"100-1-0000": "HELLO WORLD", "100-1-0001": "GOOD MORNING",
                                              "101-1-0000": "THE CAT SAT", "101-1-0001": "A DOG RAN"})
    write_librispeech_part(root, "dev-x", {"200-1-0000": "HELLO THERE", "200-1-0001": "THE DOG SAT"}, seed=1)
    return root

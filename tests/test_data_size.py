"""The data-size curve: the training subset of train.max_hours (lm2am/am/subset.py, its priors
and train_data.json in training), the report (lm2am/report/data_size.py,
steps/data_size_report.py) and the recipe option --data-sizes (check, stage 14 commands)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_recipe_copy
from lm2am.am.subset import select_hours, size_tag, subset_rank
from lm2am.errors import Lm2amError
from test_am import NUM_SENONES, TINY_MODEL, data, tiny_train  # noqa: F401 (data: the module fixture)


def fake_cuts(n: int = 200, seed: int = 0):
    """``n`` cuts of 1-20 s, no audio (only ids and durations matter to the subset)."""
    from lhotse import CutSet, MonoCut

    rng = random.Random(seed)
    return CutSet.from_cuts(MonoCut(id=f"utt{i:04d}", start=0.0, duration=round(rng.uniform(1, 20), 2), channel=0)
                            for i in range(n))


def ids(subset) -> list:
    return [c.id for c in subset.cuts]


# --------------------------------------------------------------------------- the subset


def test_subsets_nest_fit_the_budget_and_null_takes_all():
    from lhotse import CutSet

    cuts = fake_cuts()
    total_h = sum(c.duration for c in cuts) / 3600
    subsets = [select_hours(cuts, h) for h in (0.1, 0.25, 0.5)]
    for small, big in zip(subsets, subsets[1:]):
        assert set(ids(small)) < set(ids(big))  # nested, strictly growing
    ranked = sorted(cuts, key=lambda c: subset_rank(c.id))
    for s in subsets:
        secs = sum(c.duration for c in s.cuts)
        assert secs <= s.max_hours * 3600 and s.hours == pytest.approx(secs / 3600)
        assert secs + ranked[s.utterances].duration > s.max_hours * 3600  # the longest prefix that fits
        assert s.utterances == len(s.cuts) and s.part_utterances == len(cuts)
        assert ids(s) == [c.id for c in cuts if c.id in set(ids(s))]  # the part's own order
    everything = select_hours(cuts, None)
    assert ids(everything) == ids(cuts) and everything.hours == pytest.approx(total_h)
    assert ids(select_hours(cuts, 10 * total_h)) == ids(cuts)  # a budget over the part: all of it
    # the same utterances whatever the order of the part (no training seed in the choice)
    shuffled = list(cuts)
    random.Random(5).shuffle(shuffled)
    assert set(ids(select_hours(CutSet.from_cuts(shuffled), 0.25))) == set(ids(subsets[1]))
    with pytest.raises(Lm2amError, match="max_hours 0.0001: shorter than the first utterance"):
        select_hours(cuts, 0.0001)
    assert size_tag(0.5) == "h0.5" and size_tag(1.0) == "h1"


def test_max_hours_is_checked_and_overridable(tmp_path: Path):
    from lm2am.am.config import TrainConfig, load_system_file
    from lm2am.config import from_dict

    with pytest.raises(Lm2amError, match="max_hours"):
        from_dict(TrainConfig, {"max_hours": 0}, "c.yaml: am.train")
    sysf = tmp_path / "ce.yaml"
    sysf.write_text("system: {name: ce}\n")
    assert load_system_file(sysf)[2].max_hours is None
    assert load_system_file(sysf, overrides={"train": {"max_hours": 0.5}})[2].max_hours == 0.5


def test_training_uses_the_subset_and_its_priors(data, tmp_path):  # noqa: F811
    """Two seeds at one size train on the same utterances (train_data.json, priors); the priors
    are the subset's counts, not the whole part's."""
    from lm2am.am.config import SystemConfig, make_model_config
    from lm2am.am.data import load_cuts
    from lm2am.am.priors import count_priors
    from lm2am.am.train import train_system

    _, paths, _ = data
    part = load_cuts(paths, "train")
    hours = 0.5 * sum(c.duration for c in part) / 3600
    sub = select_hours(part, hours)
    assert 0 < sub.utterances < len(part)
    model, system = make_model_config(TINY_MODEL), SystemConfig(name="ce")
    for seed in (3, 4):
        train_system(system, model, tiny_train(epochs=1, valid=False, seed=seed, max_hours=hours), paths,
                     tmp_path / f"seed{seed}")
    info = [json.loads((tmp_path / f"seed{s}/train_data.json").read_text()) for s in (3, 4)]
    assert info[0] == info[1]
    assert info[0]["utterances"] == sub.utterances and info[0]["hours"] == pytest.approx(sub.hours)
    assert info[0]["part_utterances"] == len(part) and info[0]["max_hours"] == hours
    pri = [np.load(tmp_path / f"seed{s}/priors.npy") for s in (3, 4)]
    np.testing.assert_allclose(pri[0], count_priors(sub.cuts, NUM_SENONES), atol=1e-6)
    np.testing.assert_array_equal(pri[0], pri[1])
    assert not np.allclose(pri[0], count_priors(part, NUM_SENONES), atol=1e-4)
    assert f"{sub.utterances} of {len(part)} utterances" in (tmp_path / "seed3/log/train.log").read_text()


# --------------------------------------------------------------------------- the report

DEV, TEST = "dev", "test"


def fake_run(d: Path, dev: float, test: float, hours: float | None = None) -> None:
    """A decoded seed: decode_<part>/wer-<part> (dev: best_scale, scales.txt), train_data.json."""
    for part, w in ((DEV, dev), (TEST, test)):
        dd = d / f"decode_{part}"
        dd.mkdir(parents=True)
        (dd / f"wer-{part}").write_text(f"%WER {w:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n")
    (d / f"decode_{DEV}/best_scale").write_text("0.1\n")
    (d / f"decode_{DEV}/scales.txt").write_text(f"0.1 %WER {dev:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n")
    if hours is not None:
        (d / "train_data.json").write_text(json.dumps({"hours": hours}))


def fake_exp(exp: Path) -> None:
    """ce and hier at 0.5 h, 1 h and the whole part, seeds 1-2 (hier at 1 h: seed 2 missing)."""
    test = {"ce_h0.5": (40, 44), "hier_h0.5": (30, 32), "ce_h1": (30, 30), "hier_h1": (27, None),
            "ce": (20, 22), "hier": (20, 20)}
    hours = {"h0.5": 0.49, "h1": 0.98}
    for name, wers in test.items():
        for seed, w in zip((1, 2), wers):
            if w is not None:
                fake_run(exp / f"am_{name}/seed{seed}", w + 10, w, hours.get(name.rpartition("_")[2]))


def md_row(md: str, *first: str) -> list:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first} in\n{md}")


def test_report_means_stds_and_plot(tmp_path: Path):
    from lm2am.report.data_size import write_data_size

    exp = tmp_path / "exp"
    fake_exp(exp)
    points = write_data_size(exp, [("ce", ["1", "2"]), ("hier", ["1", "2"])], [1, 0.5], DEV, [TEST], full_hours=2.4)
    assert [(p.system, p.size, p.hours) for p in points] == [
        ("ce", 0.5, 0.49), ("hier", 0.5, 0.49), ("ce", 1, 0.98), ("hier", 1, 0.98), ("ce", None, 2.4),
        ("hier", None, 2.4)]  # sizes ascending, then the whole part; hours as trained
    md = (exp / "data_size.md").read_text()
    header = md_row(md, "size")
    assert header == ["size", "hours", "system", "seeds", "dev WER", "test WER", "rel. vs ce"]
    assert md_row(md, "0.5 h", "0.49", "ce") == ["0.5 h", "0.49", "ce", "2", "52.00 ± 2.83", "42.00 ± 2.83", "baseline"]
    assert md_row(md, "0.5 h", "0.49", "hier")[4:] == ["41.00 ± 1.41", "31.00 ± 1.41", f"{100 * (31 - 42) / 42:+.1f}%"]
    assert md_row(md, "1 h", "0.98", "hier")[3:6] == ["1 of 2", "37.00 (1/2)", "27.00 (1/2)"]
    assert md_row(md, "all", "2.40", "hier")[5:] == ["20.00 ± 0.00", f"{100 * (20 - 21) / 21:+.1f}%"]
    assert "am_hier_h1/seed2" in md and "**Incomplete**" in md
    png = exp / "plots/data_size.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    assert "![WER vs training hours](plots/data_size.png)" in md


def test_report_script(tmp_path: Path):
    exp = tmp_path / "exp"
    fake_exp(exp)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "steps/data_size_report.py"), "--dev-part", DEV, "--test-parts",
                        TEST, "--sizes", "0.5 1", "exp", "ce:1,2", "hier:1,2"], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert md_row(r.stdout, "all", "–", "ce")[5] == "21.00 ± 1.41"  # no train cuts, no train_data.json
    assert (exp / "plots/data_size.png").is_file()
    r = subprocess.run([sys.executable, str(REPO / "steps/data_size_report.py"), "--sizes", "0.5 x", "exp", "ce"],
                       cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--sizes '0.5 x'" in r.stderr


# --------------------------------------------------------------------------- the recipe option


def run_sh(rc: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["./run.sh", *args], cwd=rc, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("sizes, message", [
    ("0.5 abc", "--data-sizes: 'abc' is not a number of hours"),
    ("0", "--data-sizes: '0' is not a number of hours"),
    ("-1", "--data-sizes: '-1' is not a number of hours"),
    ("1 1.0", "--data-sizes: 1 given twice"),
])
def test_bad_data_sizes_stop_at_the_option_check(tmp_path: Path, sizes: str, message: str):
    rc = make_recipe_copy(tmp_path / "s5")
    r = run_sh(rc, "--data-sizes", sizes, "--stage", "0", "--stop-stage", "0")
    assert r.returncode != 0
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (rc / "exp").exists() and not (rc / "data").exists()


def test_data_sizes_with_a_sweep_is_an_error(tmp_path: Path):
    rc = make_recipe_copy(tmp_path / "s5")
    r = run_sh(rc, "--data-sizes", "0.5", "--sweep", "conf/sweeps/kd.yaml", "--stage", "0", "--stop-stage", "0")
    assert r.returncode != 0 and "--data-sizes" in r.stderr and "--sweep" in r.stderr
    assert not (rc / "exp").exists()


def test_stage_14_trains_every_system_seed_and_size(tmp_path: Path):
    """Stage 14 with a recording job runner: each system with its own seeds at each size
    (canonical hours), into exp/am_<system>_h<hours>/seed<k> with --max-hours, beside the full runs."""
    rc = make_recipe_copy(tmp_path / "s5")
    stub = rc / "record.sh"
    stub.write_text('#!/bin/bash\necho "$*" >> "$(dirname "$0")/commands.txt"\n')
    stub.chmod(0o755)
    (rc / "cmd.sh").write_text(f'export train_cmd={stub}\nexport decode_cmd={stub}\nexport cuda_cmd="{stub} --gpu 1"\n')
    r = run_sh(rc, "--stage", "14", "--stop-stage", "14", "--am-systems", "ce hier", "--seeds", "1",
               "--extra-seeds", "2", "--extra-seed-systems", "hier", "--data-sizes", "1.0 0.50")
    assert r.returncode == 0, r.stderr
    cmds = (rc / "commands.txt").read_text().splitlines()
    got = set()
    for c in cmds:
        f = c.split()
        exp_dir = f[f.index("--exp-dir") + 1]
        hours = f[f.index("--max-hours") + 1] if "--max-hours" in f else None
        system = Path(f[f.index("--system") + 1]).stem
        assert f[f.index("--seed") + 1] == exp_dir.rpartition("seed")[2]
        got.add((exp_dir, system, hours))
    seeds = {"ce": (1,), "hier": (1, 2)}
    want = {(f"exp/am_{s}/seed{k}", s, None) for s in seeds for k in seeds[s]}
    want |= {(f"exp/am_{s}_h{h}/seed{k}", s, h) for s in seeds for k in seeds[s] for h in ("0.5", "1")}
    assert got == want and len(cmds) == len(want)

"""lm2am/am/sweep.py (a sweep YAML -> system files), lm2am/report/sweep.py (dev table, picks) and
their scripts steps/expand_sweep.py, steps/sweep_table.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SYNTH_RECIPE
from lm2am.am.config import load_system_file
from lm2am.am.sweep import GENERATED, load_sweep, variant_name, write_variants
from lm2am.errors import Lm2amError
from lm2am.report.sweep import pick_per_family, write_sweep_table

HIER = {"system": {"name": "hier", "main_loss": "ce", "heads": [
    {"unit": "monophone", "layer": 2, "weight": 0.3, "temperature": 2.0, "loss": "kd"},
    {"unit": "senone", "layer": 4, "weight": 0.3, "temperature": 2.0, "loss": "kd"}]}}
INTERP = {"system": {"name": "interp_0.1", "main_loss": "interpolation", "interp_lambda": 0.1}}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """conf/systems/{hier,interp_0.1}.yaml and an empty conf/sweeps/."""
    c = tmp_path / "conf"
    (c / "systems").mkdir(parents=True)
    (c / "sweeps").mkdir()
    (c / "systems/hier.yaml").write_text(yaml.safe_dump(HIER))
    (c / "systems/interp_0.1.yaml").write_text(yaml.safe_dump(INTERP))
    return c


def sweep_file(conf: Path, text: str, name: str = "kd.yaml") -> Path:
    p = conf / "sweeps" / name
    p.write_text(textwrap.dedent(text))
    return p


def test_grid_is_the_product_in_order(conf: Path):
    s = load_sweep(sweep_file(conf, """
        families:
          hier:
            base: hier
            grid:
              heads.*.weight: [0.1, 1]
              heads.*.temperature: [1.0, 4.0]
          interp:
            base: interp_0.1
            grid: {interp_lambda: [0.05, 0.5]}
        """))
    assert s.name == "kd" and s.families == ["hier", "interp"]
    assert [v.name for v in s.variants] == ["hier_w0.1_T1", "hier_w0.1_T4", "hier_w1_T1", "hier_w1_T4",
                                            "interp_lam0.05", "interp_lam0.5"]
    v = s.variants[1]
    assert [(h["weight"], h["temperature"]) for h in v.data["system"]["heads"]] == [(0.1, 4.0), (0.1, 4.0)]
    assert [h["layer"] for h in v.data["system"]["heads"]] == [2, 4]  # the base's, not swept
    assert v.data["system"]["name"] == "hier_w0.1_T4"
    assert s.variants[-1].data["system"]["interp_lambda"] == 0.5
    assert HIER["system"]["heads"][0]["weight"] == 0.3  # the base is not modified


def test_list_per_head_keys_overrides_and_names(conf: Path):
    s = load_sweep(sweep_file(conf, """
        name: layers
        families:
          hier:
            base: hier
            list:
              - {heads.senone.layer: -1, heads.monophone.loss: kd+ce}
              - {train.epochs: 3, model.hidden_dim: 64, name: hier_small}
        """))
    a, b = s.variants
    assert a.name == "hier_senone-L-1_monophone-kdce"
    heads = {h["unit"]: h for h in a.data["system"]["heads"]}
    assert heads["senone"]["layer"] == -1 and heads["monophone"]["layer"] == 2
    assert heads["monophone"]["loss"] == "kd+ce" and heads["senone"]["loss"] == "kd"
    assert b.name == "hier_small" and b.data["train"] == {"epochs": 3} and b.data["model"] == {"hidden_dim": 64}
    assert variant_name("x", {"heads.*.loss": "kd", "train.augment.vtlp": [0.9, 1.1]}) == "x_kd_vtlp0.9-1.1"


@pytest.mark.parametrize("body, match", [
    ("grid: {heads.*.weigth: [0.1]}", "unknown key 'weigth'"),
    ("grid: {interp_lamda: [0.1]}", "unknown key 'interp_lamda'"),
    ("list: [{model.hidden_dimm: 3}]", "unknown key 'hidden_dimm'"),
    ("list: [{heads.subword.weight: 1}]", "no head 'subword'"),
    ("list: [{heads.*.temperature: 0}]", "temperature must be > 0"),
    ("list: [{heads.senone.layer: 9}]", "layer 9 does not exist"),
    ("gird: {heads.*.weight: [1]}", "unknown key 'gird'"),
    ("grid: {heads.*.weight: 0.3}", "non-empty list"),
])
def test_bad_keys_are_one_line_errors_naming_the_file(conf: Path, body: str, match: str):
    p = sweep_file(conf, f"families:\n  hier:\n    base: hier\n    {body}\n")
    with pytest.raises(Lm2amError, match=match) as e:
        load_sweep(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("families", [
    # a list entry named like a grid variant
    "hier: {base: hier, grid: {heads.*.weight: [0.1]}, list: [{heads.*.weight: 1, name: hier_w0.1}]}",
    # the same settings twice
    "hier: {base: hier, list: [{heads.*.weight: 1}, {heads.*.weight: 1}]}",
    # two families with one generated name
    "a: {base: hier, list: [{name: same}]}\n  b: {base: interp_0.1, list: [{name: same}]}",
])
def test_name_collisions_are_rejected(conf: Path, families: str):
    with pytest.raises(Lm2amError, match="two variants are named"):
        load_sweep(sweep_file(conf, f"families:\n  {families}\n"))


def test_written_files_load_as_systems(conf: Path):
    s = load_sweep(sweep_file(conf, "families:\n  hier: {base: hier, grid: {heads.*.weight: [0.1, 1]}}\n"))
    paths = write_variants(s, conf / "systems")
    assert [p.name for p in paths] == ["hier_w0.1.yaml", "hier_w1.yaml"]
    assert paths[0].read_text().startswith(GENERATED)
    system, _, _ = load_system_file(paths[1])
    assert system.name == "hier_w1" and [h.weight for h in system.heads] == [1.0, 1.0]
    write_variants(s, conf / "systems")  # its own files may be rewritten
    (conf / "systems/hier_w1.yaml").write_text(yaml.safe_dump(HIER))  # now hand-written
    with pytest.raises(Lm2amError, match="would overwrite the hand-written"):
        write_variants(s, conf / "systems")


def test_the_recipe_sweep_expands_against_the_demo_config():
    s = load_sweep(SYNTH_RECIPE / "conf/sweeps/kd.yaml", recipe_config=SYNTH_RECIPE / "conf/demo.yaml")
    names = [v.name for v in s.variants]
    assert len(names) == len(set(names)) == 16 and s.families == ["hier", "interp"]
    assert "hier_w0.3_T2" in names and "interp_lam0.05" in names and "interp_lam0.5" in names


def test_the_demo_preset_is_the_sweep_picks_as_the_sweep_writes_them(tmp_path: Path):
    """The demo preset's KD systems are committed sweep variants: the files must be exactly what
    expand_sweep writes today (a changed sweep or base system would make them stale), and every
    name of both presets must have a system file."""
    driver = (REPO / "steps/run_hybrid.sh").read_text()
    presets = {}
    for name in ("paper", "demo"):
        line = next(ln for ln in driver.splitlines() if ln.strip().startswith(f"{name}) echo"))
        presets[name] = line.split('"')[1].split()
    assert presets["demo"][0] == "ce" and len(presets["demo"]) == 3
    systems = SYNTH_RECIPE / "conf/systems"
    for name in presets["paper"] + presets["demo"]:
        assert (systems / f"{name}.yaml").is_file(), name
    s = load_sweep(SYNTH_RECIPE / "conf/sweeps/kd.yaml", recipe_config=SYNTH_RECIPE / "conf/demo.yaml")
    out = tmp_path / "systems"
    write_variants(s, out)
    for name in presets["demo"][1:]:
        committed = (systems / f"{name}.yaml").read_text()
        assert committed.startswith(GENERATED), name
        body = committed.split("\n", 1)[1]  # the header names the sweep path as it was given
        assert body == (out / f"{name}.yaml").read_text().split("\n", 1)[1], f"{name}.yaml is stale"


def fake_dev(run: Path, dev: str, wer: float, scale: float = 0.1) -> None:
    """decode_<dev>/ with a scale sweep, as stage 16 writes it."""
    d = run / f"decode_{dev}"
    d.mkdir(parents=True)
    (d / f"wer-{dev}").write_text(f"%WER {wer + 5:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n")  # lattice scale
    (d / "best_scale").write_text(f"{scale:g}\n")
    (d / "scales.txt").write_text(f"{scale:g} %WER {wer:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n")


def test_pick_is_the_dev_minimum(tmp_path: Path, conf: Path):
    assert pick_per_family([("a", "a1", 30.0), ("a", "a2", 20.0), ("a", "a3", 20.0), ("b", "b1", float("nan"))]) \
        == {"a": "a2"}  # tie: the first listed; no complete result: no pick
    s = load_sweep(sweep_file(conf, """
        families:
          hier: {base: hier, grid: {heads.*.weight: [0.1, 0.3, 1]}}
          interp: {base: interp_0.1, grid: {interp_lambda: [0.05, 0.5]}}
        """))
    exp = tmp_path / "exp"
    dev = {"hier_w0.1": (30, 32), "hier_w0.3": (25, 27), "hier_w1": (10, None),  # w1: seed 2 missing
           "interp_lam0.05": (40, 40), "interp_lam0.5": (41, 38)}
    for name, wers in dev.items():
        for seed, w in zip(("1", "2"), wers):
            if w is not None:
                fake_dev(exp / f"am_{name}/seed{seed}", "dev", w)
    picks = write_sweep_table(exp, s, ["1", "2"], "dev")
    assert picks == {"hier": "hier_w0.3", "interp": "interp_lam0.5"}  # 26 < 31; 39.5 < 40
    assert (exp / "sweep_kd/picks.txt").read_text() == "hier_w0.3 interp_lam0.5\n"
    md = (exp / "sweep_kd/dev_table.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| hier | hier_w0.3 |"))
    assert "26.00 ± 1.41" in row and row.endswith("**pick** |")  # the dev-best scale's WER, not the lattice's
    assert "10.00 (1/2)" in md and "am_hier_w1/seed2" in md  # incomplete: shown, listed, not picked


def _py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_scripts(tmp_path: Path, conf: Path):
    sweep_file(conf, "families:\n  interp: {base: interp_0.1, grid: {interp_lambda: [0.05, 0.2]}}\n")
    r = _py(str(REPO / "steps/expand_sweep.py"), "conf/sweeps/kd.yaml", "conf/systems", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["interp_lam0.05", "interp_lam0.2"]
    assert (conf / "systems/interp_lam0.2.yaml").is_file()
    fake_dev(tmp_path / "exp/am_interp_lam0.2/seed1", "dev-synth", 12.5)
    r = _py(str(REPO / "steps/sweep_table.py"), "--seeds", "1", "conf/sweeps/kd.yaml", "exp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exp/sweep_kd/picks.txt").read_text().split() == ["interp_lam0.2"]
    sweep_file(conf, "families:\n  interp: {base: interp_0.1, grid: {lambda: [0.05]}}\n")
    r = _py(str(REPO / "steps/expand_sweep.py"), "conf/sweeps/kd.yaml", "conf/systems", cwd=tmp_path)
    assert r.returncode != 0 and "unknown key 'lambda'" in r.stderr and "conf/sweeps/kd.yaml" in r.stderr


def test_recipe_hook(tmp_path: Path):
    """run.sh --sweep: a bad sweep stops before any work; stage 17 writes the dev table, not RESULTS.md."""
    from conftest import make_recipe_copy

    rc = make_recipe_copy(tmp_path / "s5")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (rc / "conf/sweeps/bad.yaml").write_text("families:\n  interp: {base: interp_0.1, grid: {lambda: [0.1]}}\n")
    r = subprocess.run(["./run.sh", "--sweep", "conf/sweeps/bad.yaml", "--stage", "0", "--stop-stage", "0"],
                       cwd=rc, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "unknown key 'lambda'" in r.stderr
    assert not (rc / "exp").exists()  # stopped at the option check
    (rc / "conf/sweeps/mini.yaml").write_text(
        "families:\n  interp: {base: interp_0.1, grid: {interp_lambda: [0.05, 0.2]}}\n")
    fake_dev(rc / "exp/am_interp_lam0.05/seed1", "dev-synth", 30.0)
    fake_dev(rc / "exp/am_interp_lam0.2/seed1", "dev-synth", 20.0)
    r = subprocess.run(["./run.sh", "--sweep", "conf/sweeps/mini.yaml", "--stage", "17", "--stop-stage", "17",
                        "--seeds", "1"], cwd=rc, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (rc / "conf/systems/interp_lam0.05.yaml").is_file()
    assert (rc / "exp/sweep_mini/picks.txt").read_text() == "interp_lam0.2\n"
    assert not (rc / "exp/RESULTS.md").exists()

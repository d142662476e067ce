"""The benchmark suite (bench/, issue 8): the runner's quick pass produces every row, each figure
finite (and positive, slopes aside), the posterior storage figures exactly the size the stored
layout gives; the GPU script runs on CPU without k2, lhotse or kaldiio."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import Row, fmt, loglog_slope  # noqa: E402
from bench.run_all import BENCHMARKS, table  # noqa: E402

# Runs a script with k2, lhotse and kaldiio unimportable (the GPU machine has none of them).
_BLOCKED = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("k2", "lhotse", "kaldiio", "kaldifst", "kaldi_hmm_gmm"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_loglog_slope_and_table():
    assert loglog_slope([1, 2, 4], [3.0, 6.0, 12.0]) == pytest.approx(1.0)
    assert loglog_slope([1, 2, 4], [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    r = Row("b", "f", 2.0, "ms", 4.0, "base", target="<= 1", met=True)
    assert r.ratio == pytest.approx(0.5)
    t = table([r, Row("b", "g", float("nan"), note="x")])
    assert t.count("\n") == 4 and "| yes |" in t


def test_gpu_train_runs_on_cpu_without_k2_lhotse_kaldiio(tmp_path):
    out = tmp_path / "gpu.md"
    r = subprocess.run([sys.executable, "-c", _BLOCKED, str(REPO / "bench" / "gpu_train.py"), "--device", "cpu",
                        "--tiny", "--batch", "2", "--frames", "60", "--steps", "1", "--warmup", "0",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    assert "| ce | fp32 |" in text and "| hier | fp32 |" in text
    assert text in r.stdout


@pytest.mark.slow
def test_run_all_quick_has_every_row(tiny_trained, tmp_path):
    """bench/run_all.py --quick on the test session's tiny recipe after its teacher stages and
    AMs (conftest's tiny_trained, stages 0-15, shared with tests/test_recipe.py)."""
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "LM2AM_BENCH_TINY": str(tiny_trained)}
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=3600, env=env)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    text = out.read_text()
    assert "Machine:" in text and "cores" in text
    for bench in ("train step (CPU)", "posterior storage", "posterior read", "posterior precompute",
                  "decoding", "aligner", "scaling"):
        assert f"| {bench} |" in text, bench
    for fig in ("ce: ms/step", "interp_0.1: ms/step", "aux_senone: ms/step", "hier: ms/step",
                "hier: data-loading share", "senone: bytes/frame", "features alone", "3 units (hier)",
                "batched masking", "RTF, search only", "k2 search time / Kaldi FasterDecoder's", "Viterbi alignment",
                "flat-start training, one epoch", "alignment: time exponent",
                "posterior precompute: time exponent"):
        assert fig in text, fig
    assert "FAILED" not in text
    assert len(BENCHMARKS) == 7 and "suite" in BENCHMARKS  # suite (make test) is not run in --quick
    rows = table_rows(text)
    assert len(rows) >= 20
    for r in rows:  # every figure measured: finite; positive unless it is a log-log slope
        value = number(r["value"])
        assert math.isfinite(value), r
        assert value > 0 or "exponent" in r["figure"], r
        if r["ratio"]:
            assert math.isfinite(number(r["ratio"])) and number(r["ratio"]) > 0, r
    storage = {r["figure"].split(":")[0]: r for r in rows if r["bench"] == "posterior storage"}
    assert sorted(storage) == ["monophone", "senone", "subword"]
    for unit, r in storage.items():  # deterministic: the stored layout's exact size
        bpf, dense = stored_bytes_per_frame(tiny_trained, unit)
        assert (r["value"], r["ratio"]) == (fmt(bpf), fmt(bpf / dense)), r
        assert r["baseline"].startswith(fmt(dense) + " ") and r["met"] == ("yes" if dense / bpf >= 10 else "**no**"), r


def table_rows(text: str) -> List[Dict[str, str]]:
    """The rows of the main results table of bench/RESULTS.md (its columns by name)."""
    lines = text.splitlines()
    head = lines.index("| benchmark | figure | value | unit | baseline (same run) | ratio | target | met | notes |")
    keys = ["bench", "figure", "value", "unit", "baseline", "ratio", "target", "met", "notes"]
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("| "):
            break
        rows.append(dict(zip(keys, (c.strip() for c in line.strip("|").split(" | ")))))
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def stored_bytes_per_frame(recipe: Path, unit: str) -> Tuple[float, float]:
    """Bytes per frame of a unit's stored train posteriors, derived from the layout of
    lm2am/lm/posteriors.py (per cut: key, space, 15-byte Kaldi matrix header, one float32 row of
    2 + 2k per run of the targets' token positions plus a sentinel row), and dense float32's 4 V."""
    from lm2am.lm.tokens import target_tokens
    from lm2am.targets import read_targets

    d = recipe / "exp" / f"lm_{unit}" / "post_train-synth"
    info = json.loads((d / "post_info.json").read_text())
    k = int(info["top_k"])
    cwd = os.getcwd()
    os.chdir(recipe)  # the targets' scp files hold recipe-relative paths
    try:
        targets = read_targets(Path("data/targets"), "train-synth")
        size = frames = 0
        for line in (d / "post.scp").read_text().splitlines():
            cut = line.split()[0]
            pos = np.asarray(target_tokens(targets[cut], info["unit"])[1])
            runs = int(((pos >= 0) & np.r_[True, pos[1:] != pos[:-1]]).sum())
            size += len(cut) + 1 + 15 + (runs + 1) * (2 + 2 * k) * 4
            frames += len(pos)
    finally:
        os.chdir(cwd)
    assert size == sum(p.stat().st_size for p in d.glob("post.*.ark")) == int(info["bytes"])
    assert frames == int(info["frames"])
    return size / frames, 4.0 * int(info["vocab_size"])

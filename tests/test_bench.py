"""The benchmark suite (bench/, issue 8): the runner's quick pass produces every row, and the GPU
script runs on CPU without k2, lhotse or kaldiio."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import Row, loglog_slope  # noqa: E402
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
def test_run_all_quick_has_every_row(tiny_recipe, tmp_path):
    """bench/run_all.py --quick on the test session's tiny recipe (conftest), after its teacher
    stages and the CE AM (stages 12-14, shared with tests/test_recipe.py through done markers)."""
    r = subprocess.run(["./run.sh", "--config", "conf/tiny.yaml", "--stage", "12", "--stop-stage", "14",
                        "--am-systems", "ce", "--extra-seeds", ""], cwd=tiny_recipe, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "LM2AM_BENCH_TINY": str(tiny_recipe)}
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
                "batched masking", "RTF, search only", "Viterbi alignment", "alignment: time exponent",
                "posterior precompute: time exponent"):
        assert fig in text, fig
    assert "FAILED" not in text
    assert len(BENCHMARKS) == 6

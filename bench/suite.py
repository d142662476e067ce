"""Benchmark 7: the wall time of ``make test`` (the tiny recipe plus the whole suite) on this machine.

``make test`` is run as CI runs it (``.ci/run``: the README's test command, in this checkout,
with its existing ``.venv``; the Makefile's setup step is then a no-op), in a child process.
Target: at most 10 minutes on 2 cores. Skipped with ``--quick``: the quick pass runs inside the
suite itself (tests/test_bench.py).
"""
from __future__ import annotations

import re
from typing import List

from bench.common import REPO, Context, Row, measured_run

TARGET_SECONDS = 600.0


def run(ctx: Context) -> List[Row]:
    if ctx.quick:
        return []
    r = measured_run(["make", "test"], cwd=REPO, log=ctx.scratch / "make_test.log")
    tail = r["output"].strip().splitlines()
    summary = next((ln for ln in reversed(tail) if re.search(r"\d+ passed", ln)), "no pytest summary")
    return [Row("suite", "make test wall time (tiny recipe + every test, 2 pytest-xdist workers)", r["seconds"], "s",
                target="<= 600 s on 2 cores", met=r["seconds"] <= TARGET_SECONDS,
                note=f"{summary.strip('= ')}; CPU {r['cpu_seconds']:.0f} s of the process tree; "
                     f"peak RSS of one process {r['max_rss_mib']:.0f} MiB")]

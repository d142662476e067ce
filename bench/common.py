"""Shared pieces of the benchmark suite: the cached tiny dataset, rows, timers, child processes.

Every benchmark module has ``run(ctx) -> List[Row]``; :mod:`bench.run_all` composes them. A
:class:`Row` is one figure *and its baseline measured in the same run*, so the ratio holds on
a noisy, shared machine even when the absolute numbers do not.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs" / "synth-en" / "s5"
CACHE = REPO / "bench" / ".cache"
TINY = CACHE / "tiny" / "s5"
PY = sys.executable
#: what the cached recipe copy must have run: stages 0-13, then stage 14 for the CE system
#: (the decoding benchmark needs one trained AM); bump to rebuild.
DATASET_VERSION = 2  # 2: conf/tiny.yaml of issue 19 (WordNet LM pool: a smaller graph; teacher LM settings)


@dataclass
class Row:
    """One figure of the results table.

    ``value`` is the measured figure, ``baseline`` what it is compared with (measured in the
    same run), ``ratio`` = value / baseline unless given. ``target`` is a human-readable
    condition and ``met`` whether it holds (None: no target).
    """

    bench: str
    figure: str
    value: float
    unit: str = ""
    baseline: Optional[float] = None
    baseline_name: str = ""
    ratio: Optional[float] = None
    target: str = ""
    met: Optional[bool] = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline not in (None, 0):
            self.ratio = self.value / self.baseline

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """What every benchmark gets: the recipe copy, the mode, where to put scratch files."""

    recipe: Path
    quick: bool = False
    scratch: Path = CACHE / "scratch"
    demo_graph: Optional[Path] = None
    demo_am: Optional[Path] = None
    demo_config: Optional[Path] = None
    profiles: Dict[str, str] = field(default_factory=dict)  # bench -> profile text for RESULTS.md
    notes: List[str] = field(default_factory=list)


def fmt(x: Optional[float], digits: int = 3) -> str:
    """A compact number: 3 significant digits, thousands separators for large ones."""
    if x is None:
        return ""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


@contextlib.contextmanager
def in_dir(path: Path) -> Iterator[None]:
    """chdir for the block: manifests and scp files hold recipe-relative paths (Kaldi style)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class Timer:
    """Accumulating wall-clock timer: ``with t: ...`` adds the block's duration."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.total += time.perf_counter() - self._t0
        self.count += 1


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the exponent of ``y ~ x^a``."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-12)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den if den else float("nan")


def measured_run(cmd: Sequence[str], cwd: Path, env: Optional[Dict[str, str]] = None,
                 log: Optional[Path] = None) -> Dict[str, float]:
    """Run ``cmd`` in a fresh child and return its wall time, CPU time and peak memory.

    CPU time (user + system of the whole process tree) is what to compare across sizes on a
    shared machine: the wall time of the same work varies several-fold with other load.

    The peak is the largest resident set of any process in the command's tree (``ru_maxrss``
    of the waited-for descendants of a wrapper process started just for this command, so
    earlier commands do not count), in MiB.
    """
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t0 = time.perf_counter()\n"
               "rc = subprocess.call(sys.argv[1:])\n"
               "dt = time.perf_counter() - t0\n"
               "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "print(json.dumps({'rc': rc, 'seconds': dt, 'cpu_seconds': ru.ru_utime + ru.ru_stime,\n"
               "                  'max_rss_mib': ru.ru_maxrss / 1024}), file=sys.stderr)\n")
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([PY, "-c", wrapper, *cmd], cwd=cwd, env=full_env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out)
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    try:
        res = json.loads(last)
    except json.JSONDecodeError:
        raise RuntimeError(f"measured_run: no result from {' '.join(cmd)}:\n{out[-2000:]}") from None
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {cwd}) failed with exit code {res['rc']}:\n{out[-3000:]}")
    res["output"] = p.stdout
    return res


def self_peak_rss_mib() -> float:
    """Peak resident set of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_recipe_copy(dst: Path, config_text: Optional[str] = None) -> Path:
    """A runnable copy of the synth-en recipe (as tests/test_recipe.py makes): run.sh, cmd.sh and
    conf/ copied, steps/utils/local/path.sh linked. ``config_text`` goes to conf/bench.yaml."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(RECIPE / name, dst / name)
    if (dst / "conf").exists():
        shutil.rmtree(dst / "conf")
    shutil.copytree(RECIPE / "conf", dst / "conf")
    for link in ("steps", "utils", "local", "path.sh"):
        if not (dst / link).is_symlink():
            os.symlink(REPO / link, dst / link)
    if config_text is not None:
        (dst / "conf" / "bench.yaml").write_text(config_text)
    return dst


def ensure_tiny_dataset(progress: Callable[[str], None] = print) -> Path:
    """The tiny recipe run once (stages 0-13, plus the CE AM of stage 14), cached in
    ``bench/.cache/tiny/s5``; rebuilt only when missing or incomplete. ``LM2AM_BENCH_TINY=<dir>``
    uses a tiny recipe copy that already ran those stages instead (the test suite's)."""
    given = os.environ.get("LM2AM_BENCH_TINY")
    if given:
        return Path(given)
    marker = TINY / ".bench_dataset"
    if marker.is_file() and marker.read_text().strip() == str(DATASET_VERSION):
        return TINY
    progress(f"building the tiny dataset in {TINY} (the tiny recipe, stages 0-14 for ce; ~6-10 min "
             "on 2 cores, once)")
    make_recipe_copy(TINY)
    log = TINY / "bench_build.log"
    with open(log, "a") as f:
        for args in (["--stop-stage", "13"], ["--stage", "14", "--stop-stage", "14"]):
            r = subprocess.run(["./run.sh", "--config", "conf/tiny.yaml", "--am-systems", "ce", *args],
                               cwd=TINY, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError(f"building the tiny dataset failed; see {log}")
    marker.write_text(f"{DATASET_VERSION}\n")
    return TINY


def machine_info() -> Dict[str, str]:
    """CPU model, cores, load, library versions, date: the header of RESULTS.md."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads()),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load": load}

"""What the recipe's results table (:mod:`lm2am.report.tables`) reads: one row per system.

One row per system, in the order given (the recipe passes ``$am_systems``, CE first), each
from the decode directories of its seeds (``exp/am_<system>/seed<k>/decode_<part>/``, written
by stage 16 with steps/decode.py):

* WER of the dev part (at the dev-best acoustic scale: ``scales.txt``, ``best_scale``) and of
  every test part (``wer-<part>``'s first line, Kaldi's ``%WER x [ ... ]``) as mean ± sample
  standard deviation over the seeds;
* relative change of each test WER against the baseline row (``(row - base) / base`` of the
  means; negative = fewer errors);
* the dev-best acoustic scale of each seed (``decode_<dev>/best_scale``);
* the main output's dev frame accuracy (``eval_<dev>.json`` of stage 15), when present;
* real-time factors pooled over the seeds' decoded parts: the AM forward pass
  (``decode_<part>/loglikes.json``) and the graph search (``decode_<part>/decode_info.json``).

More rows (e.g. a GMM baseline) come from any directory with the same layout, either
``<dir>/decode_<part>/`` (one run) or ``<dir>/seed*/decode_<part>/`` (:func:`extra_row`); a
missing column value shows as ``–``.

Missing results (a seed not decoded, a part missing) never silently shift a mean: each cell
says how many seeds it averages when that is fewer than the row's seeds, and the notes below the
table list every missing file with the stage that writes it (``strict`` makes it an error).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError

__all__ = ["RunResult", "Row", "read_wer", "read_scales", "read_run", "system_row", "extra_row", "mean_std",
           "relative_change", "parse_system_spec"]

_WER = re.compile(r"^%WER\s+([0-9.]+|inf|nan)\s")


@dataclass
class RunResult:
    """One trained model (a system's seed, or an extra row's directory) and what it has."""

    name: str                     # seed label ("1") or the directory name
    dir: Path
    wer: Dict[str, float] = field(default_factory=dict)      # part -> WER (%)
    best_scale: Optional[float] = None
    frame_acc: Optional[float] = None                         # dev main-output accuracy (%)
    am_seconds: float = 0.0
    search_seconds: float = 0.0
    audio_seconds: float = 0.0                                # of the searched parts
    am_audio_seconds: float = 0.0
    missing: List[str] = field(default_factory=list)          # messages


@dataclass
class Row:
    """One line of the table."""

    name: str
    runs: List[RunResult]
    expected: int                 # seeds asked for (runs with no decode dir at all included)

    def values(self, part: str) -> List[float]:
        return [r.wer[part] for r in self.runs if part in r.wer]

    @property
    def missing(self) -> List[str]:
        return [m for r in self.runs for m in r.missing]


def read_wer(decode_dir: Path | str, part: str) -> Optional[float]:
    """The WER (%) on the first line of ``<decode_dir>/wer-<part>``; None when the file is missing."""
    p = Path(decode_dir) / f"wer-{part}"
    if not p.is_file():
        return None
    first = (p.read_text().splitlines() or [""])[0]
    m = _WER.match(first)
    if not m:
        raise Lm2amError(f"{p}: first line {first!r} is not a '%WER x [ ... ]' line; rerun the decoding")
    return float(m.group(1))


def read_scales(path: Path | str) -> Dict[float, float]:
    """``scale -> WER`` from a dev sweep's ``scales.txt`` (``<scale> %WER x [ ... ]`` lines);
    empty when the file is missing."""
    p = Path(path)
    out: Dict[float, float] = {}
    if not p.is_file():
        return out
    for n, line in enumerate(p.read_text().splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 3 or f[1] != "%WER":
            raise Lm2amError(f"{p} line {n}: expected '<scale> %WER x [ ... ]', got {line!r}; rerun the dev decoding")
        out[float(f[0])] = float(f[2])
    return out


def _json(p: Path) -> Optional[dict]:
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        raise Lm2amError(f"{p}: not valid JSON; rerun the stage that writes it") from None


def read_run(name: str, run_dir: Path | str, dev_part: str, test_parts: Sequence[str],
             what: str = "") -> RunResult:
    """Everything :class:`RunResult` holds for one model directory; missing WER files are
    recorded in ``missing`` (``what`` names the run in those messages, e.g. ``ce seed 2``)."""
    run_dir = Path(run_dir)
    r = RunResult(name, run_dir)
    what = what or str(run_dir)
    for part in [dev_part, *test_parts]:
        dd = run_dir / f"decode_{part}"
        w = read_wer(dd, part)
        if w is None:
            r.missing.append(f"{dd}/wer-{part} ({what}: not decoded; run stage 16)")
            continue
        r.wer[part] = w
        info = _json(dd / "decode_info.json")
        if info and info.get("audio_seconds"):
            r.search_seconds += float(info.get("decode_seconds", 0.0))
            r.audio_seconds += float(info["audio_seconds"])
        ll = _json(dd / "loglikes.json")
        if ll and ll.get("audio_seconds"):
            r.am_seconds += float(ll.get("seconds", 0.0))
            r.am_audio_seconds += float(ll["audio_seconds"])
    bs = run_dir / f"decode_{dev_part}" / "best_scale"
    if bs.is_file():
        try:
            r.best_scale = float(bs.read_text().split()[0])
        except (ValueError, IndexError):
            raise Lm2amError(f"{bs}: expected a number; rerun the dev decoding") from None
        # wer-<dev> is at the lattice scale; the row reports dev at the scale it chose
        by_scale = read_scales(run_dir / f"decode_{dev_part}" / "scales.txt")
        for s, w in by_scale.items():
            if math.isclose(s, r.best_scale, rel_tol=1e-6) and dev_part in r.wer:
                r.wer[dev_part] = w
    ev = _json(run_dir / f"eval_{dev_part}.json")
    if ev and "main_acc" in ev:
        r.frame_acc = 100.0 * float(ev["main_acc"])
    return r


def _seed_dirs(d: Path) -> List[Path]:
    """The ``seed*`` directories of ``d`` in numeric order (seed2 before seed10)."""
    return sorted((p for p in d.glob("seed*") if p.is_dir()), key=lambda p: (len(p.name), p.name))


def system_row(exp_dir: Path | str, system: str, seeds: Optional[Sequence[str]], dev_part: str,
               test_parts: Sequence[str]) -> Row:
    """The row of ``exp/am_<system>/seed<k>`` for each of ``seeds`` (None: every ``seed*`` dir
    there is). A seed without a directory counts as missing."""
    base = Path(exp_dir) / f"am_{system}"
    if seeds is None:
        seeds = [p.name[4:] for p in _seed_dirs(base)]
    runs = []
    for s in seeds:
        d = base / f"seed{s}"
        if not d.is_dir():
            runs.append(RunResult(str(s), d, missing=[f"{d} ({system} seed {s}: not trained; run stages 14-16)"]))
            continue
        runs.append(read_run(str(s), d, dev_part, test_parts, f"{system} seed {s}"))
    if not runs:
        runs.append(RunResult("-", base, missing=[f"{base}/seed* ({system}: no seeds trained; run stages 14-16)"]))
    return Row(system, runs, len(runs))


def extra_row(name: str, run_dir: Path | str, dev_part: str, test_parts: Sequence[str]) -> Row:
    """A row from another model family with the same decode layout: ``<run_dir>/decode_<part>/``
    (one run) or ``<run_dir>/seed*/decode_<part>/`` (several)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise Lm2amError(f"--extra-row {name}={run_dir}: no such directory")
    seed_dirs = _seed_dirs(run_dir)
    if seed_dirs and not any(run_dir.glob("decode_*")):
        runs = [read_run(p.name[4:], p, dev_part, test_parts, f"{name} {p.name}") for p in seed_dirs]
    else:
        runs = [read_run(run_dir.name, run_dir, dev_part, test_parts, name)]
    return Row(name, runs, len(runs))


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count; NaN mean for none."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return math.nan, math.nan, 0
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


def relative_change(value: float, base: float) -> Optional[float]:
    """``100 * (value - base) / base`` (percent); None when undefined (no values, base 0)."""
    if math.isnan(value) or math.isnan(base) or base == 0:
        return None
    return 100.0 * (value - base) / base


def parse_system_spec(spec: str) -> Tuple[str, Optional[List[str]]]:
    """``SYSTEM`` or ``SYSTEM:SEED,SEED,...`` (the report scripts' arguments) -> ``(name, seeds)``;
    no seeds: None (every ``seed*`` dir there is)."""
    name, _, seeds = spec.partition(":")
    if not name or (":" in spec and not seeds.strip(",")):
        raise Lm2amError(f"system {spec!r}: expected SYSTEM or SYSTEM:SEED,SEED,...")
    return name, [s for s in seeds.split(",") if s] if seeds else None

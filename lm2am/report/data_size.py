"""The data-size curve (``run.sh --data-sizes``): WER against training hours, per system.

Each system of ``--am-systems`` is also trained on nested subsets of the training part
(``train.max_hours``, :mod:`lm2am.am.subset`), with the same teachers, into
``exp/am_<system>_h<hours>/seed<k>``; the full-size point is the normal run's
``exp/am_<system>/seed<k>``. All are decoded like any system (stage 16), and each point reads
its seeds' decode directories as RESULTS.md does (:func:`lm2am.report.results.system_row`).

* ``exp/data_size.md``: one row per size and system: WER of the dev part (at the dev-best
  scale) and of each test part as mean ± sample std over the seeds, and the relative change
  of each test WER against the baseline system trained on the same data (where knowledge from
  text helps most);
* ``exp/plots/data_size.png``: WER against training hours (log scale), one panel per part,
  one line per system, error bars = seed std.

The hours of a point are those its runs trained on (``train_data.json`` of training); for
runs without it, the nominal size (the whole part: ``full_hours``, else unknown and not plotted).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lm2am.am.subset import size_tag
from lm2am.errors import Lm2amError
from lm2am.io import write_if_changed
from lm2am.report.results import Row, mean_std, relative_change, system_row
from lm2am.report.tables import wer_cell

log = logging.getLogger(__name__)

__all__ = ["SizePoint", "data_size_points", "data_size_markdown", "write_data_size"]


@dataclass
class SizePoint:
    """One system at one training-data size."""

    system: str
    size: Optional[float]     # train.max_hours; None = the whole training part
    hours: float              # hours trained on (NaN: unknown)
    row: Row


def _trained_hours(row: Row, nominal: Optional[float]) -> float:
    """Mean ``hours`` of the runs' ``train_data.json`` files, else ``nominal`` (else NaN)."""
    hours = []
    for r in row.runs:
        f = r.dir / "train_data.json"
        if f.is_file():
            try:
                hours.append(float(json.loads(f.read_text())["hours"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise Lm2amError(f"{f}: expected JSON with 'hours'; rerun the training (stage 14)") from None
    if hours:
        return sum(hours) / len(hours)
    return math.nan if nominal is None else float(nominal)


def data_size_points(exp_dir: Path | str, systems: Sequence[Tuple[str, Optional[Sequence[str]]]],
                     sizes: Sequence[float], dev_part: str, test_parts: Sequence[str],
                     full_hours: Optional[float] = None) -> List[SizePoint]:
    """Every (size, system) point, sizes ascending and then the whole part, systems in order;
    ``systems``: ``(system, seeds)``, the seeds of the system at every size (None: every
    ``seed*`` dir there is)."""
    if not systems:
        raise Lm2amError("no systems given; pass the systems of --am-systems (e.g. 'ce hier')")
    bad = [s for s in sizes if not s > 0]
    if bad:
        raise Lm2amError(f"data size {bad[0]!r}: expected hours > 0")
    points = []
    for size in [*sorted(set(sizes)), None]:
        for sys, seeds in systems:
            name = sys if size is None else f"{sys}_{size_tag(size)}"
            row = system_row(exp_dir, name, seeds, dev_part, test_parts)
            points.append(SizePoint(sys, size, _trained_hours(row, full_hours if size is None else size), row))
    return points


def data_size_markdown(points: Sequence[SizePoint], dev_part: str, test_parts: Sequence[str],
                       baseline: Optional[str] = None, plot: Optional[str] = None,
                       train_part: str = "") -> str:
    """The Markdown of ``exp/data_size.md`` (relative changes vs ``baseline``, default ``ce``
    when it is one of the systems, else the first)."""
    systems = list(dict.fromkeys(p.system for p in points))
    baseline = baseline or ("ce" if "ce" in systems else systems[0])
    if baseline not in systems:
        raise Lm2amError(f"baseline {baseline!r} is not one of the systems ({', '.join(systems)})")
    part = f"`{train_part}`" if train_part else "the training part"
    lines = ["# Data-size curve", "",
             f"Each system trained on nested subsets of {part} (`train.max_hours`: the same utterances for every "
             "system and seed, the smaller subsets inside the larger) with the same teachers; `all` is the full "
             f"run. WER (%): mean ± sample std over seeds (dev at each model's dev-best scale); relative change: "
             f"`(row − {baseline}) / {baseline}` at the same size (negative = fewer errors).", ""]
    cols = ["size", "hours", "system", "seeds", f"{dev_part} WER"]
    for t in test_parts:
        cols += [f"{t} WER", f"rel. vs {baseline}"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    base_of = {p.size: p.row for p in points if p.system == baseline}
    for p in points:
        r = p.row
        complete = sum(1 for x in r.runs if all(q in x.wer for q in [dev_part, *test_parts]))
        cells = ["all" if p.size is None else f"{p.size:g} h", "–" if math.isnan(p.hours) else f"{p.hours:.2f}",
                 p.system, f"{complete}" if complete == r.expected else f"{complete} of {r.expected}",
                 wer_cell(r.values(dev_part), r.expected)]
        for t in test_parts:
            cells.append(wer_cell(r.values(t), r.expected))
            if p.system == baseline:
                cells.append("baseline")
            else:
                base = base_of.get(p.size)
                rel = None if base is None else relative_change(mean_std(r.values(t))[0], mean_std(base.values(t))[0])
                cells.append("–" if rel is None else f"{rel:+.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![WER vs training hours]({plot})"]
    missing = [m for p in points for m in p.row.missing]
    if missing:
        lines += ["", f"**Incomplete**: {len(missing)} result(s) missing; the cells above average only the "
                  "seeds that have them (`(n/N)`):", ""] + [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n"


def write_data_size(exp_dir: Path | str, systems: Sequence[Tuple[str, Optional[Sequence[str]]]],
                    sizes: Sequence[float], dev_part: str, test_parts: Sequence[str],
                    full_hours: Optional[float] = None, baseline: Optional[str] = None,
                    out_md: Optional[Path | str] = None, plot_path: Optional[Path | str] = None,
                    train_part: str = "") -> List[SizePoint]:
    """Write ``data_size.md`` (default ``<exp_dir>/data_size.md``) and the curve (default
    ``<exp_dir>/plots/data_size.png``); returns the points."""
    from lm2am.report.plots import plot_data_size

    exp_dir = Path(exp_dir)
    points = data_size_points(exp_dir, systems, sizes, dev_part, test_parts, full_hours)
    out_md = Path(out_md) if out_md else exp_dir / "data_size.md"
    plot_path = Path(plot_path) if plot_path else exp_dir / "plots" / "data_size.png"
    series: Dict[str, List[Tuple[float, Row]]] = {}
    for p in points:
        series.setdefault(p.system, []).append((p.hours, p.row))
    plot_data_size(series, [dev_part, *test_parts], plot_path)
    try:
        rel_plot = str(plot_path.resolve().relative_to(out_md.parent.resolve()))
    except ValueError:
        rel_plot = str(plot_path.resolve())
    write_if_changed(out_md, data_size_markdown(points, dev_part, test_parts, baseline, rel_plot, train_part))
    for m in (m for p in points for m in p.row.missing):
        log.warning("missing: %s", m)
    log.info("%s: %d points; %s", out_md, len(points), plot_path)
    return points

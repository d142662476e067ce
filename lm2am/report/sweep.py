"""The dev table of a sweep (``exp/sweep_<name>/dev_table.md``) and the pick per family.

Each variant's row reads its decode directories like RESULTS.md does
(:func:`lm2am.report.results.system_row`: dev WER at each seed's dev-best acoustic scale). The
pick of a family is the variant with the lowest mean dev WER over the seeds asked for, among
the variants that have every seed decoded (a tie goes to the variant listed first); test
parts are never looked at. ``picks.txt`` holds the picks on one line, for ``--am-systems``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from lm2am.am.sweep import Sweep
from lm2am.io import write_if_changed
from lm2am.report.results import mean_std, system_row

log = logging.getLogger(__name__)

__all__ = ["pick_per_family", "sweep_table", "write_sweep_table"]


def pick_per_family(results: Sequence[Tuple[str, str, float]]) -> Dict[str, str]:
    """``family -> variant`` with the lowest WER from ``(family, variant, WER)`` in listed
    order (NaN: no complete result, never picked; a family without one has no pick)."""
    picks: Dict[str, Tuple[str, float]] = {}
    for family, variant, wer in results:
        if math.isnan(wer):
            continue
        if family not in picks or wer < picks[family][1]:
            picks[family] = (variant, wer)
    return {f: v for f, (v, _) in picks.items()}


def sweep_table(exp_dir: Path | str, sweep: Sweep, seeds: Optional[Sequence[str]], dev_part: str
                ) -> Tuple[str, Dict[str, str]]:
    """The Markdown dev table and the picks (``family -> variant``)."""
    results: List[Tuple[str, str, float]] = []
    lines = [f"# Sweep {sweep.name}: dev WER per variant", "",
             f"From `{sweep.path}`; WER (%) on `{dev_part}` at each seed's dev-best acoustic scale, mean ± "
             "sample std over seeds. Pick per family: the lowest mean dev WER among the variants with every "
             "seed decoded. Test parts are decoded only with the picks.", "",
             "| family | variant | settings | seeds | dev WER | dev-best scale | pick |", "|---|---|---|---|---|---|---|"]
    cells: List[List[str]] = []
    missing: List[str] = []
    for v in sweep.variants:
        row = system_row(exp_dir, v.name, seeds, dev_part, [])
        vals = row.values(dev_part)
        m, s, n = mean_std(vals)
        complete = n == row.expected and n > 0
        results.append((v.family, v.name, m if complete else math.nan))
        missing += row.missing
        wer = "–" if n == 0 else f"{m:.2f}" + (f" ± {s:.2f}" if n > 1 else "") + (
            f" ({n}/{row.expected})" if n < row.expected else "")
        scales = sorted({r.best_scale for r in row.runs if r.best_scale is not None})
        settings = ", ".join(f"`{k}: {val}`" for k, val in v.settings.items())
        cells.append([v.family, v.name, settings, str(row.expected), wer, ", ".join(f"{x:g}" for x in scales) or "–"])
    picks = pick_per_family(results)
    for c in cells:
        lines.append("| " + " | ".join(c + ["**pick**" if picks.get(c[0]) == c[1] else ""]) + " |")
    no_pick = [f for f in sweep.families if f not in picks]
    lines += ["", "Picks: " + (", ".join(f"{f}: `{v}`" for f, v in picks.items()) or "none yet")]
    if no_pick:
        lines.append(f"No pick (no variant with every seed decoded): {', '.join(no_pick)}.")
    if missing:
        lines += ["", "Missing:", ""] + [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n", picks


def write_sweep_table(exp_dir: Path | str, sweep: Sweep, seeds: Optional[Sequence[str]], dev_part: str,
                      out_dir: Optional[Path | str] = None) -> Mapping[str, str]:
    """Write ``dev_table.md`` and ``picks.txt`` into ``out_dir`` (default
    ``<exp_dir>/sweep_<name>``); returns the picks."""
    out = Path(out_dir) if out_dir else Path(exp_dir) / f"sweep_{sweep.name}"
    out.mkdir(parents=True, exist_ok=True)
    text, picks = sweep_table(exp_dir, sweep, seeds, dev_part)
    write_if_changed(out / "dev_table.md", text)
    write_if_changed(out / "picks.txt", " ".join(picks.values()) + "\n")
    log.info("%s: picks %s", out / "dev_table.md", picks or "none")
    return picks

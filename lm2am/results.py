"""The recipe's results table: ``exp/RESULTS.md`` and ``exp/plots/wer_systems.png``.

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
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["RunResult", "Row", "read_wer", "read_scales", "read_run", "system_row", "extra_row", "mean_std",
           "relative_change", "results_markdown", "plot_wer", "make_results"]

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


def system_row(exp_dir: Path | str, system: str, seeds: Optional[Sequence[str]], dev_part: str,
               test_parts: Sequence[str]) -> Row:
    """The row of ``exp/am_<system>/seed<k>`` for each of ``seeds`` (None: every ``seed*`` dir
    there is). A seed without a directory counts as missing."""
    base = Path(exp_dir) / f"am_{system}"
    if seeds is None:
        found = sorted((p for p in base.glob("seed*") if p.is_dir()),
                       key=lambda p: (len(p.name), p.name))
        seeds = [p.name[4:] for p in found]
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
    seed_dirs = sorted((p for p in run_dir.glob("seed*") if p.is_dir()), key=lambda p: (len(p.name), p.name))
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


def _cell(values: Sequence[float], expected: int, digits: int = 2) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "–"
    txt = f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if n > 1 else "")
    return txt + (f" ({n}/{expected})" if n < expected else "")


def _pooled(num: float, den: float) -> str:
    return f"{num / den:.3f}" if den > 0 else "–"


def results_markdown(rows: Sequence[Row], dev_part: str, test_parts: Sequence[str],
                     baseline: Optional[str] = None, header: Sequence[str] = (),
                     plot: Optional[str] = None) -> str:
    """The Markdown report: ``header`` lines, the table, the plot link and the notes."""
    base = next((r for r in rows if r.name == baseline), None) if baseline else None
    cols = ["system", "seeds", f"{dev_part} WER"]
    for p in test_parts:
        cols += [f"{p} WER"] + ([f"rel. vs {baseline}"] if base is not None else [])
    cols += [f"{dev_part} frame acc. (%)", "dev-best scale", "AM RTF", "search RTF"]
    lines = list(header) + ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        complete = sum(1 for x in r.runs if all(p in x.wer for p in [dev_part, *test_parts]))
        seeds = f"{complete}" if complete == r.expected else f"{complete} of {r.expected}"
        cells = [r.name, seeds, _cell(r.values(dev_part), r.expected)]
        for p in test_parts:
            cells.append(_cell(r.values(p), r.expected))
            if base is not None:
                if r is base:
                    cells.append("baseline")
                else:
                    rel = relative_change(mean_std(r.values(p))[0], mean_std(base.values(p))[0])
                    cells.append("–" if rel is None else f"{rel:+.1f}%")
        accs = [x.frame_acc for x in r.runs if x.frame_acc is not None]
        cells.append(_cell(accs, r.expected) if accs else "–")
        scales = sorted({x.best_scale for x in r.runs if x.best_scale is not None})
        cells.append(", ".join(f"{s:g}" for s in scales) if scales else "–")
        cells.append(_pooled(sum(x.am_seconds for x in r.runs), sum(x.am_audio_seconds for x in r.runs)))
        cells.append(_pooled(sum(x.search_seconds for x in r.runs), sum(x.audio_seconds for x in r.runs)))
        lines.append("| " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![WER per system]({plot})"]
    missing = [m for r in rows for m in r.missing]
    if missing:
        lines += ["", f"**Incomplete**: {len(missing)} result(s) missing; the cells above average only "
                  "the seeds that have them (`(n/N)`):", ""] + [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n"


def plot_wer(rows: Sequence[Row], parts: Sequence[str], path: Path | str, title: str = "") -> None:
    """Grouped bar chart: one group per row, one bar per part (mean WER, error bar = std)."""
    from lm2am.plots import _pyplot, _save

    plt = _pyplot()
    n_rows, n_parts = len(rows), len(parts)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * n_rows * max(1, n_parts) / 2 + 2), 4.2))
    width = 0.8 / max(1, n_parts)
    x = np.arange(n_rows)
    for j, p in enumerate(parts):
        stats = [mean_std(r.values(p)) for r in rows]
        means = np.array([0.0 if n == 0 else m for m, _, n in stats])
        stds = np.array([0.0 if n < 2 else s for _, s, n in stats])
        bars = ax.bar(x + (j - (n_parts - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=p)
        for b, (_, _, n) in zip(bars, stats):
            if n == 0:
                ax.text(b.get_x() + b.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([r.name for r in rows], rotation=30, ha="right")
    ax.set_ylabel("WER (%)")
    ax.set_title(title or "WER per system (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def make_results(exp_dir: Path | str, systems: Sequence[Tuple[str, Optional[Sequence[str]]]],
                 dev_part: str, test_parts: Sequence[str],
                 extra_rows: Sequence[Tuple[str, Path | str]] = (), baseline: Optional[str] = None,
                 out_md: Optional[Path | str] = None, plot_path: Optional[Path | str] = None,
                 header_notes: Sequence[str] = (), strict: bool = False,
                 sections: Sequence[Path | str] = ()) -> List[Row]:
    """Collect every row, write ``RESULTS.md`` (default ``<exp_dir>/RESULTS.md``) and the bar
    chart (default ``<exp_dir>/plots/wer_systems.png``); returns the rows.

    Args:
        systems: ``(system, seeds)`` in table order; ``seeds=None`` takes every ``seed*`` dir.
        extra_rows: ``(name, dir)`` rows appended after the systems (:func:`extra_row`).
        baseline: row the relative changes refer to (default: ``ce`` if present, else the first).
        header_notes: lines placed under the title (config, seeds, scale choice).
        strict: a missing result is an error instead of a note.
        sections: Markdown files appended after the table (e.g. the aligner comparison and the
            two-decoder cross-check); a missing one is noted, not an error.
    """
    exp_dir = Path(exp_dir)
    if not systems and not extra_rows:
        raise Lm2amError("no systems given; pass system names (e.g. 'ce hier')")
    rows = [system_row(exp_dir, s, seeds, dev_part, test_parts) for s, seeds in systems]
    rows += [extra_row(n, d, dev_part, test_parts) for n, d in extra_rows]
    names = [r.name for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise Lm2amError(f"row {dup[0]!r} appears twice; give each system/extra row one name")
    if baseline is None:
        baseline = "ce" if "ce" in names else names[0]
    elif baseline not in names:
        raise Lm2amError(f"--baseline {baseline}: not one of the rows ({', '.join(names)})")
    missing = [m for r in rows for m in r.missing]
    if missing:
        if strict:
            raise Lm2amError(f"{len(missing)} result(s) missing, e.g. {missing[0]}")
        for m in missing:
            log.warning("missing: %s", m)
    out_md = Path(out_md) if out_md else exp_dir / "RESULTS.md"
    plot_path = Path(plot_path) if plot_path else exp_dir / "plots" / "wer_systems.png"
    parts = [dev_part, *test_parts]
    plot_wer(rows, parts, plot_path)
    try:
        rel_plot = str(plot_path.resolve().relative_to(out_md.parent.resolve()))
    except ValueError:
        rel_plot = str(plot_path.resolve())
    header = ["# Results", "", *header_notes, "",
              f"WER (%) per part (dev: at the dev-best scale): mean ± sample standard deviation over seeds (`(n/N)`: only n of N seeds "
              f"have it). Relative change: `(row − {baseline}) / {baseline}` of the mean test WER "
              "(negative = fewer errors). Frame accuracy: main output on the dev part (stage 15). RTF: "
              "wall time / audio duration of the AM forward pass and of the graph search, pooled "
              f"over seeds and parts. Written {time.strftime('%Y-%m-%d %H:%M')} by steps/make_results.py."]
    text = results_markdown(rows, dev_part, test_parts, baseline, header, rel_plot)
    for sec in sections:
        sec = Path(sec)
        if not sec.is_file():
            log.warning("section %s does not exist (yet); not in %s", sec, out_md)
            continue
        # demote the section's headings one level: they sit under "# Results"
        body = "\n".join("#" + ln if ln.startswith("#") else ln for ln in sec.read_text().splitlines())
        text = text.rstrip("\n") + f"\n\n{body}\n\n_(from `{sec}`)_\n"
    atomic_write_text(out_md, text)
    log.info("%s: %d rows; %s", out_md, len(rows), plot_path)
    return rows

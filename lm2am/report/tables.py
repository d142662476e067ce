"""The recipe's results table: ``exp/RESULTS.md`` and ``exp/plots/wer_systems.png``.

The rows come from :mod:`lm2am.report.results` (what each cell means is described there); the
bar chart from :func:`lm2am.report.plots.plot_wer`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from lm2am.errors import Lm2amError
from lm2am.io import write_if_changed
from lm2am.report.results import Row, extra_row, mean_std, relative_change, system_row
from lm2am.report.teachers import teachers_markdown

log = logging.getLogger(__name__)

__all__ = ["results_markdown", "make_results", "wer_cell"]


def wer_cell(values: Sequence[float], expected: int, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` (``(n/N)`` when fewer than ``expected``; ``–`` for none)."""
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
        cells = [r.name, seeds, wer_cell(r.values(dev_part), r.expected)]
        for p in test_parts:
            cells.append(wer_cell(r.values(p), r.expected))
            if base is not None:
                if r is base:
                    cells.append("baseline")
                else:
                    rel = relative_change(mean_std(r.values(p))[0], mean_std(base.values(p))[0])
                    cells.append("–" if rel is None else f"{rel:+.1f}%")
        accs = [x.frame_acc for x in r.runs if x.frame_acc is not None]
        cells.append(wer_cell(accs, r.expected) if accs else "–")
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

def _collect_rows(exp_dir: Path, systems: Sequence[Tuple[str, Optional[Sequence[str]]]], dev_part: str,
                  test_parts: Sequence[str], extra_rows: Sequence[Tuple[str, Path | str]],
                  baseline: Optional[str], strict: bool) -> Tuple[List[Row], str]:
    """Every row and the baseline's name, checked (unique names, a known baseline, missing results)."""
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
    return rows, baseline


def _header(header_notes: Sequence[str], baseline: str) -> List[str]:
    return ["# Results", "", *header_notes, "",
            f"WER (%) per part (dev: at the dev-best scale): mean ± sample standard deviation over seeds (`(n/N)`: only n of N seeds "
            f"have it). Relative change: `(row − {baseline}) / {baseline}` of the mean test WER "
            "(negative = fewer errors). Frame accuracy: main output on the dev part (stage 15). RTF: "
            "wall time / audio duration of the AM forward pass and of the graph search, pooled "
            f"over seeds and parts. Written {time.strftime('%Y-%m-%d %H:%M')} by steps/make_results.py."]


def _append_sections(text: str, sections: Sequence[Path | str], out_md: Path) -> str:
    """``text`` with each existing section file appended, its headings demoted one level."""
    for sec in sections:
        sec = Path(sec)
        if not sec.is_file():
            log.warning("section %s does not exist (yet); not in %s", sec, out_md)
            continue
        # demote the section's headings one level: they sit under "# Results"
        body = "\n".join("#" + ln if ln.startswith("#") else ln for ln in sec.read_text().splitlines())
        text = text.rstrip("\n") + f"\n\n{body}\n\n_(from `{sec}`)_\n"
    return text


def make_results(exp_dir: Path | str, systems: Sequence[Tuple[str, Optional[Sequence[str]]]],
                 dev_part: str, test_parts: Sequence[str],
                 extra_rows: Sequence[Tuple[str, Path | str]] = (), baseline: Optional[str] = None,
                 out_md: Optional[Path | str] = None, plot_path: Optional[Path | str] = None,
                 header_notes: Sequence[str] = (), strict: bool = False,
                 sections: Sequence[Path | str] = (), significance: bool = False,
                 significance_dir: Optional[Path | str] = None) -> List[Row]:
    """Collect every row, write ``RESULTS.md`` (default ``<exp_dir>/RESULTS.md``) and the bar
    chart (default ``<exp_dir>/plots/wer_systems.png``); returns the rows.

    Args:
        systems: ``(system, seeds)`` in table order; ``seeds=None`` takes every ``seed*`` dir.
        extra_rows: ``(name, dir)`` rows appended after the systems (:func:`~lm2am.report.results.extra_row`).
        baseline: row the relative changes refer to (default: ``ce`` if present, else the first).
        header_notes: lines placed under the title (config, seeds, scale choice).
        strict: a missing result is an error instead of a note.
        sections: Markdown files appended after the table and the "Teacher LMs" section
            (:mod:`~lm2am.report.teachers`, from ``exp_dir/lm_*``) (e.g. the aligner comparison and the
            two-decoder cross-check); a missing one is noted, not an error.
        significance: add the section of :func:`~lm2am.report.significance.significance_section`
            (needs NIST sctk as soon as a pair has decoded trn files), its sc_stats reports in
            ``significance_dir`` (default ``<exp_dir>/significance``).
    """
    from lm2am.report.plots import plot_wer

    exp_dir = Path(exp_dir)
    rows, baseline = _collect_rows(exp_dir, systems, dev_part, test_parts, extra_rows, baseline, strict)
    out_md = Path(out_md) if out_md else exp_dir / "RESULTS.md"
    plot_path = Path(plot_path) if plot_path else exp_dir / "plots" / "wer_systems.png"
    parts = [dev_part, *test_parts]
    plot_wer(rows, parts, plot_path)
    try:
        rel_plot = str(plot_path.resolve().relative_to(out_md.parent.resolve()))
    except ValueError:
        rel_plot = str(plot_path.resolve())
    text = results_markdown(rows, dev_part, test_parts, baseline, _header(header_notes, baseline), rel_plot)
    if significance:
        from lm2am.report.significance import significance_section

        sig_dir = Path(significance_dir) if significance_dir else exp_dir / "significance"
        text += "\n" + significance_section(rows, baseline, dev_part, test_parts, sig_dir)
    teachers = teachers_markdown(exp_dir)  # the teachers' quality beside the AM results
    if teachers:
        text += "\n" + teachers
    text = _append_sections(text, sections, out_md)
    write_if_changed(out_md, text)
    log.info("%s: %d rows; %s", out_md, len(rows), plot_path)
    return rows

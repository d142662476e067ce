"""Significance of each system against the baseline, and a 95 % interval on each WER (RESULTS.md).

**Matched pairs** (NIST sctk, the verified commands of the evaluation notes): for one pair of
hypothesis files on the same references, sclite writes one SGML alignment per system and
``sc_stats`` runs the matched-pairs sentence-segment test (MAPSSWE, ``MP``), the sign test
(``SI``) and the Wilcoxon signed-rank test (``WI``), the last two over speakers (the id's prefix
before the first ``-``)::

    sctk sclite -r ref.trn trn -h a.trn trn A -h b.trn trn B -i rm -o sgml -O dir
    cat dir/a.trn.sgml dir/b.trn.sgml | sctk sc_stats -p -t mapsswe sign wilc -u -g grange2 -n stats -O dir

:func:`parse_unified` reads ``stats.stats.unified``: per test the system with fewer errors at
p = 0.05 (``~``: no significant difference) and the minimum p sc_stats prints (3 decimals;
``<0.001`` is kept as printed and read as 0.001). Every test is two-sided.

**Seeds are never pooled**: seed k of a system is tested against seed k of the baseline (a
row with a single run, e.g. the GMM, against every baseline seed); the table lists each pair's
p-value and counts the pairs in which each side is significantly better.

**Interval**: a percentile bootstrap over utterances (:func:`bootstrap_interval`; 1000
resamples, seed 0, deterministic): each resample draws the part's utterances with replacement,
the same draw for every seed of the row, and takes the mean over seeds of
``errors / reference words`` (unit-cost alignment, the table's WER). It measures how much the
WER depends on which utterances were tested, not the seed spread (the table's ``± std``).
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.decode.score import compute_wer, read_trn, require_sctk
from lm2am.errors import Lm2amError
from lm2am.io import write_if_changed
from lm2am.report.results import Row, RunResult

log = logging.getLogger(__name__)

__all__ = ["TestOutcome", "parse_unified", "compare_pair", "utterance_errors", "bootstrap_interval",
           "decoded_trns", "significance_section"]

TEST_NAMES = {"MP": "MAPSSWE", "SI": "sign", "WI": "Wilcoxon"}
ALPHA = 0.05  # sc_stats' fixed level for the winner column


@dataclass(frozen=True)
class TestOutcome:
    """One sc_stats test of one pair of systems."""

    test: str                 # MP, SI or WI
    winner: Optional[str]     # label of the system with fewer errors at p = 0.05; None: no difference
    p_text: str               # the minimum p as printed ("0.125", "<0.001")

    @property
    def p(self) -> float:
        """The p-value as a number (``<0.001`` reads as 0.001, an upper bound)."""
        return float(self.p_text.lstrip("<"))


# ----------------------------------------------------------------------------- sc_stats
def parse_unified(text: str) -> Dict[Tuple[str, str, str], TestOutcome]:
    """``(row system, column system, test) -> outcome`` from sc_stats' unified report
    (``-u``): the upper triangle of its comparison matrix, one cell per pair and test."""
    header: Optional[List[str]] = None
    out: Dict[Tuple[str, str, str], TestOutcome] = {}
    row_label = ""
    for line in text.splitlines():
        parts = line.strip().split("||")
        if len(parts) != 3:
            continue
        test = parts[0].strip("| ").strip()
        cells = [c.strip() for c in parts[1].split("|")]
        if test == "Test" and header is None:
            header = cells[1:]
            continue
        if header is None or test not in TEST_NAMES:
            continue
        row_label = cells[0] or row_label
        for col, cell in zip(header, cells[1:]):
            f = cell.split()
            if not f:
                continue
            if len(f) < 2 or not re.fullmatch(r"<?[0-9.]+", f[1]):
                raise Lm2amError(f"cannot parse sc_stats cell {cell!r} in line {line.strip()!r}")
            out[(row_label, col, test)] = TestOutcome(test, None if f[0] == "~" else f[0], f[1])
    if header is None:
        raise Lm2amError("sc_stats report has no comparison matrix (no 'Test || ...' header line)")
    return out


def _check_label(label: str) -> None:
    if not label or any(c.isspace() or c in "|()" for c in label):
        raise Lm2amError(f"system label {label!r} cannot go into an sctk report (no spaces, '|' or parentheses)")


def compare_pair(ref_trn: Path | str, trn_a: Path | str, trn_b: Path | str, label_a: str, label_b: str,
                 report: Optional[Path | str] = None, sctk: str = "sctk") -> Dict[str, TestOutcome]:
    """MAPSSWE, sign and Wilcoxon tests of hypotheses ``trn_a`` vs ``trn_b`` (sclite ``trn``
    files on the references ``ref_trn``) with NIST sctk; returns ``test -> outcome`` (winners
    named by ``label_a`` / ``label_b``). ``report``: where to keep sc_stats' unified report."""
    exe = require_sctk(sctk)
    for lab in (label_a, label_b):
        _check_label(lab)
    if label_a == label_b:
        raise Lm2amError(f"compare_pair: both systems are labelled {label_a!r}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # the SGML files are named after the hyp files: copies with distinct names
        shutil.copyfile(trn_a, d / "a.trn")
        shutil.copyfile(trn_b, d / "b.trn")
        shutil.copyfile(ref_trn, d / "ref.trn")
        sc = subprocess.run([exe, "sclite", "-r", "ref.trn", "trn", "-h", "a.trn", "trn", label_a,
                             "-h", "b.trn", "trn", label_b, "-i", "rm", "-o", "sgml", "-O", "."],
                            capture_output=True, text=True, cwd=d)
        sgml = [d / "a.trn.sgml", d / "b.trn.sgml"]
        if sc.returncode != 0 or not all(p.is_file() for p in sgml):
            tail = " | ".join((sc.stderr or sc.stdout).strip().splitlines()[-3:])
            raise Lm2amError(f"sclite failed on {trn_a} / {trn_b} (exit {sc.returncode}): {tail}")
        st = subprocess.run([exe, "sc_stats", "-p", "-t", "mapsswe", "sign", "wilc", "-u", "-g", "grange2",
                             "-n", "stats", "-O", "."], input="".join(p.read_text() for p in sgml),
                            capture_output=True, text=True, cwd=d)
        unified = d / "stats.stats.unified"
        if st.returncode != 0 or not unified.is_file():
            tail = " | ".join((st.stderr or st.stdout).strip().splitlines()[-3:])
            raise Lm2amError(f"sc_stats failed on {trn_a} / {trn_b} (exit {st.returncode}): {tail}")
        text = unified.read_text()
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        write_if_changed(report, text)
    cells = parse_unified(text)
    out = {t: cells.get((label_a, label_b, t)) for t in TEST_NAMES}
    missing = [t for t, o in out.items() if o is None]
    if missing:
        raise Lm2amError(f"sc_stats report for {label_a} vs {label_b} has no {TEST_NAMES[missing[0]]} result")
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------- intervals
def utterance_errors(ref_trn: Path | str, hyp_trn: Path | str) -> Dict[str, Tuple[int, int]]:
    """``utt -> (errors, reference words)`` of a decode directory's trn files (unit-cost
    alignment: the same count as ``wer-<part>``)."""
    stats = compute_wer(read_trn(ref_trn), read_trn(hyp_trn))
    return {u.utt: (u.errors, u.ref_len) for u in stats.utts}


def bootstrap_interval(errors: np.ndarray, words: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval (percent) of the mean WER over runs.

    Args:
        errors: ``[runs, utterances]`` error counts (the runs share the utterances).
        words: ``[utterances]`` reference word counts.
        n_boot, seed: resamples and the seed of their draw (deterministic).
        level: coverage, e.g. 0.95.
    """
    errors = np.atleast_2d(np.asarray(errors, dtype=np.int64))
    words = np.asarray(words, dtype=np.int64)
    if errors.shape[1] != words.size or words.size == 0:
        raise Lm2amError(f"bootstrap_interval: {errors.shape[1]} error columns for {words.size} utterances")
    rng = np.random.default_rng(seed)
    # resample counts per utterance: the same draw for every run (they were tested on the same audio)
    counts = rng.multinomial(words.size, np.full(words.size, 1.0 / words.size), size=n_boot)  # [boot, utts]
    den = counts @ words
    wer = 100.0 * (counts @ errors.T) / np.maximum(den, 1)[:, None]  # [boot, runs]
    lo, hi = np.percentile(wer.mean(axis=1), [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def decoded_trns(run: RunResult, part: str, dev_part: str) -> Optional[Tuple[Path, Path]]:
    """``(ref.trn, hyp.trn)`` of one run's decoded part, the dev part at its dev-best scale
    (``decode_<dev>/scale_<s>/`` unless that scale is the lattice scale); None when missing."""
    dd = run.dir / f"decode_{part}"
    if part == dev_part and run.best_scale is not None and (dd / f"scale_{run.best_scale:g}").is_dir():
        dd = dd / f"scale_{run.best_scale:g}"
    ref, hyp = dd / "ref.trn", dd / "hyp.trn"
    return (ref, hyp) if ref.is_file() and hyp.is_file() else None


# ----------------------------------------------------------------------------- the section
@dataclass
class _PartResult:
    interval: Optional[Tuple[float, float]] = None
    point: Optional[float] = None
    runs: int = 0
    pairs: List[Tuple[str, Dict[str, TestOutcome]]] = field(default_factory=list)  # (baseline seed, tests)


def _pairs(base: Row, row: Row) -> List[Tuple[RunResult, RunResult]]:
    """Seed k with the baseline's seed k; a single-run row (e.g. the GMM) with every baseline seed."""
    by_name = {r.name: r for r in base.runs}
    matched = [(by_name[r.name], r) for r in row.runs if r.name in by_name]
    if not matched and len(row.runs) == 1:
        matched = [(b, row.runs[0]) for b in base.runs]
    return matched


def _interval(row: Row, part: str, dev_part: str, notes: List[str]) -> _PartResult:
    res = _PartResult()
    per_run = []
    for run in row.runs:
        trns = decoded_trns(run, part, dev_part)
        if trns is None:
            what = row.name if len(row.runs) == 1 else f"{row.name} seed {run.name}"
            notes.append(f"{what} {part}: no ref.trn/hyp.trn in {run.dir}/decode_{part} (run stage 16)")
            continue
        per_run.append(utterance_errors(*trns))
    if not per_run:
        return res
    utts = sorted(per_run[0])
    if any(sorted(e) != utts for e in per_run[1:]):
        notes.append(f"{row.name} {part}: the seeds were decoded on different utterances; no interval")
        return res
    errors = np.array([[e[u][0] for u in utts] for e in per_run])
    words = np.array([per_run[0][u][1] for u in utts])
    res.runs = len(per_run)
    res.point = float(np.mean(100.0 * errors.sum(axis=1) / max(words.sum(), 1)))
    res.interval = bootstrap_interval(errors, words)
    return res


def _fmt_outcome(o: TestOutcome) -> str:
    return o.p_text + (f" {o.winner}" if o.winner else "")


def significance_section(rows: Sequence[Row], baseline: str, dev_part: str, test_parts: Sequence[str],
                         report_dir: Path | str, sctk: str = "sctk") -> str:
    """The Markdown section of RESULTS.md: per row and part the WER's 95 % interval and, on
    the test parts, each seed pair's MAPSSWE, sign and Wilcoxon result against ``baseline``
    (sc_stats' reports kept as ``<report_dir>/<part>/<row>.<seed>.unified``)."""
    base = next((r for r in rows if r.name == baseline), None)
    if base is None:
        raise Lm2amError(f"significance: baseline {baseline!r} is not one of the rows")
    report_dir = Path(report_dir)
    notes: List[str] = []
    lines = [f"## Significance vs {baseline}", "",
             "WER: mean over the row's seeds with a 95 % percentile-bootstrap interval over utterances "
             "(1000 resamples, seed 0; the same draw for every seed). Tests: NIST sctk `sc_stats` on seed k "
             f"vs {baseline} seed k (a single-run row against every {baseline} seed), never pooled; per pair "
             f"`seed: p` and the system with fewer errors when p < {ALPHA}. MAPSSWE is over utterance "
             "segments; sign and Wilcoxon are over speakers (little power with few speakers). The dev part "
             "chose the acoustic scale and is not tested.", "",
             "| system | part | WER [95 % CI] | MAPSSWE p per seed | MAPSSWE: fewer errors (pairs) | "
             "sign / Wilcoxon p per seed |", "|---|---|---|---|---|---|"]
    for row in rows:
        for part in [dev_part, *test_parts]:
            pr = _interval(row, part, dev_part, notes)
            ci = "–" if pr.interval is None else (
                f"{pr.point:.2f} [{pr.interval[0]:.2f}, {pr.interval[1]:.2f}]"
                + (f" ({pr.runs}/{len(row.runs)})" if pr.runs < len(row.runs) else ""))
            if row is base or part == dev_part:
                lines.append(f"| {row.name} | {part} | {ci} | {'baseline' if row is base else '–'} | – | – |")
                continue
            for b, r in _pairs(base, row):
                tb, tr = decoded_trns(b, part, dev_part), decoded_trns(r, part, dev_part)
                if tb is None or tr is None:
                    continue  # noted by _interval
                if read_trn(tb[0]) != read_trn(tr[0]):
                    notes.append(f"{row.name} {r.name} {part}: references differ from {baseline} {b.name}'s; not tested")
                    continue
                rep = report_dir / part / f"{row.name}.{b.name}.unified"
                pr.pairs.append((b.name, compare_pair(tb[0], tb[1], tr[1], baseline, row.name, rep, sctk)))
            if not pr.pairs:
                lines.append(f"| {row.name} | {part} | {ci} | – | – | – |")
                continue
            mp = "; ".join(f"{s}: {_fmt_outcome(t['MP'])}" for s, t in pr.pairs)
            wins = [t["MP"].winner for _, t in pr.pairs]
            n = len(wins)
            verdict = (f"{row.name} {wins.count(row.name)}/{n}, {baseline} {wins.count(baseline)}/{n}, "
                       f"n.s. {wins.count(None)}/{n}")
            sw = "; ".join(f"{s}: {_fmt_outcome(t['SI'])} / {_fmt_outcome(t['WI'])}" for s, t in pr.pairs)
            lines.append(f"| {row.name} | {part} | {ci} | {mp} | {verdict} | {sw} |")
    if notes:
        lines += ["", "Missing (no interval or test):", ""] + [f"- {m}" for m in notes]
    return "\n".join(lines) + "\n"

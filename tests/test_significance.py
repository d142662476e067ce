"""lm2am/report/significance.py: NIST sctk's matched-pairs tests parsed as sc_stats prints them,
the bootstrap interval and the RESULTS.md section on fabricated decode directories."""
from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from lm2am.decode.score import sclite_available, write_trn
from lm2am.errors import Lm2amError
from lm2am.report.significance import bootstrap_interval, compare_pair, parse_unified
from lm2am.report.tables import make_results

needs_sctk = pytest.mark.skipif(not sclite_available(),
                                reason="NIST sctk is not installed (apt-get install sctk; utils/setup_env.sh does)")
VOCAB = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()


def make_set(seed: int = 0, speakers: int = 12, utts: int = 10):
    """References and two systems: ``good`` has 0-2 errors per utterance, ``bad`` 1-4."""
    rng = random.Random(seed)
    refs: Dict[str, List[str]] = {}
    good: Dict[str, List[str]] = {}
    bad: Dict[str, List[str]] = {}
    for s in range(speakers):
        for u in range(utts):
            utt = f"spk{s:02d}-utt{u:03d}"
            ref = [rng.choice(VOCAB) for _ in range(8)]
            g, b = list(ref), list(ref)
            for i in range(rng.randint(0, 2)):
                g[i] = "xray"
            for i in range(rng.randint(1, 4)):
                b[i] = "yankee"
            refs[utt], good[utt], bad[utt] = ref, g, b
    return refs, good, bad


@pytest.fixture
def trns(tmp_path: Path) -> Path:
    refs, good, bad = make_set()
    write_trn(refs, tmp_path / "ref.trn")
    write_trn(good, tmp_path / "good.trn")
    write_trn(bad, tmp_path / "bad.trn")
    return tmp_path


def sc_stats_itself(d: Path, a: str, b: str, la: str, lb: str) -> str:
    """The unified report of the commands in docs/evaluation.md, run by hand."""
    out = d / f"out_{la}_{lb}"
    out.mkdir()
    subprocess.run(f"sctk sclite -r ref.trn trn -h {a} trn {la} -h {b} trn {lb} -i rm -o sgml -O {out.name} "
                   f"&& cat {out.name}/{a}.sgml {out.name}/{b}.sgml | sctk sc_stats -p -t mapsswe sign wilc "
                   f"-u -g grange2 -n stats -O {out.name}", shell=True, cwd=d, check=True, capture_output=True)
    return (out / "stats.stats.unified").read_text()


def printed_cell(report: str, test: str) -> str:
    """The first non-empty result cell of the line of ``test`` (upper triangle), words joined."""
    line = next(x for x in report.splitlines() if re.match(rf"^\|\s*{test}\s*\|\|", x))
    cells = [c.strip() for c in line.split("||")[1].split("|")]
    return next(c for c in cells[1:] if c)


@needs_sctk
def test_winner_and_p_as_sc_stats_prints_them(trns: Path):
    res = compare_pair(trns / "ref.trn", trns / "good.trn", trns / "bad.trn", "ce", "hier",
                       report=trns / "kept.unified")
    assert res["MP"].winner == "ce" and res["MP"].p < 0.05  # the fixture's clear difference
    printed = sc_stats_itself(trns, "good.trn", "bad.trn", "ce", "hier")
    assert (trns / "kept.unified").read_text() == printed
    for test in ("MP", "SI", "WI"):
        words = printed_cell(printed, test).split()
        assert words[0] == (res[test].winner or "~") and words[1] == res[test].p_text


@needs_sctk
def test_swapping_the_systems_swaps_the_winner(trns: Path):
    ab = compare_pair(trns / "ref.trn", trns / "good.trn", trns / "bad.trn", "ce", "hier")
    ba = compare_pair(trns / "ref.trn", trns / "bad.trn", trns / "good.trn", "ce", "hier")
    assert ab["MP"].winner == "ce" and ba["MP"].winner == "hier"
    assert ab["MP"].p_text == ba["MP"].p_text  # two-sided


@needs_sctk
def test_identical_systems_differ_nowhere(trns: Path):
    res = compare_pair(trns / "ref.trn", trns / "bad.trn", trns / "bad.trn", "ce", "hier")
    assert all(o.winner is None for o in res.values())
    assert res["MP"].p >= 0.05


def test_missing_sctk_names_the_fix(trns: Path):
    with pytest.raises(Lm2amError, match="apt-get install sctk"):
        compare_pair(trns / "ref.trn", trns / "good.trn", trns / "bad.trn", "ce", "hier", sctk="no-such-sctk")


def test_parse_unified_rejects_a_report_without_matrix():
    with pytest.raises(Lm2amError, match="no comparison matrix"):
        parse_unified("sc_stats: nothing here\n")


def test_bootstrap_interval():
    rng = np.random.default_rng(1)
    words = rng.integers(5, 15, size=200)
    errors = rng.binomial(words, 0.3)[None, :]
    wer = 100.0 * errors.sum() / words.sum()
    lo, hi = bootstrap_interval(errors, words)
    assert lo < wer < hi and hi - lo < 10
    assert bootstrap_interval(errors, words) == (lo, hi)  # seeded
    lo4, hi4 = bootstrap_interval(np.tile(errors, 4), np.tile(words, 4))
    assert hi4 - lo4 < (hi - lo) * 0.7  # 4x the utterances: about half the width
    # two runs: the interval of their mean WER
    other = np.minimum(errors + 2, words)
    lo2, hi2 = bootstrap_interval(np.vstack([errors, other]), words)
    mean = (wer + 100.0 * other.sum() / words.sum()) / 2
    assert lo2 < mean < hi2 and lo2 > hi  # the second run has more errors
    # no variation between utterances: no width
    assert bootstrap_interval(np.full((1, 50), 2), np.full(50, 10)) == pytest.approx((20.0, 20.0))


def fake_decode(run: Path, part: str, refs, hyps) -> None:
    """decode_<part>/ as stage 16 writes it (wer line, trn files)."""
    from lm2am.decode.score import score_set

    score_set(refs, hyps, run / f"decode_{part}", part, use_sclite=False)


@needs_sctk
def test_results_section(tmp_path: Path):
    refs, good, bad = make_set()
    exp = tmp_path / "exp"
    for seed in ("1", "2"):
        for part in ("dev", "test"):
            fake_decode(exp / f"am_ce/seed{seed}", part, refs, bad)
            fake_decode(exp / f"am_hier/seed{seed}", part, refs, good if seed == "1" else bad)
    fake_decode(tmp_path / "gmm", "test", refs, good)
    make_results(exp, [("ce", ["1", "2"]), ("hier", ["1", "2"])], "dev", ["test"],
                 extra_rows=[("gmm", tmp_path / "gmm")], significance=True)
    md = (exp / "RESULTS.md").read_text()
    assert "## Significance vs ce" in md
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): [c.strip() for c in ln.strip("|").split("|")]
            for ln in md.splitlines() if ln.startswith("| ") and "WER" not in ln}
    hier = rows[("hier", "test")]
    # seed 1 (good vs bad) differs, seed 2 (bad vs bad) does not: per seed, nothing pooled
    assert re.fullmatch(r"1: (<0\.001|0\.0[0-4]\d) hier; 2: 1\.000", hier[3]), hier[3]
    assert hier[4] == "hier 1/2, ce 0/2, n.s. 1/2"
    gmm = rows[("gmm", "test")]
    assert gmm[4] == "gmm 2/2, ce 0/2, n.s. 0/2"  # one run vs each ce seed
    assert rows[("ce", "test")][3] == "baseline"
    assert rows[("hier", "dev")][3] == "–"  # dev chose the scale: not tested
    wer = float(hier[2].split()[0])
    lo, hi = (float(x) for x in re.findall(r"\[(\S+), (\S+)\]", hier[2])[0])
    assert lo < wer < hi
    assert "gmm dev: no ref.trn/hyp.trn" in md  # the GMM was not decoded on dev: said, not hidden
    assert (exp / "significance/test/hier.1.unified").is_file()

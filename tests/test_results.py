"""lm2am/report/results.py and tables.py (exp/RESULTS.md) on fabricated decode directories, steps/make_results.py and
steps/fingerprint.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from lm2am.errors import Lm2amError
from lm2am.report.results import mean_std, read_scales, relative_change
from lm2am.report.tables import make_results

DEV, TESTS = "dev", ["test", "real"]


def fake_run(d: Path, wers: dict, best_scale: float = 0.1, acc: float | None = 0.5,
             sweep: dict | None = None) -> None:
    """A decode layout as stage 16 writes it: decode_<part>/wer-<part> (+ infos, dev sweep)."""
    for part, w in wers.items():
        dd = d / f"decode_{part}"
        dd.mkdir(parents=True)
        (dd / f"wer-{part}").write_text(f"%WER {w:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n%SER 10.00 [ 1 / 10 ]\n")
        (dd / "decode_info.json").write_text(json.dumps({"audio_seconds": 100.0, "decode_seconds": 20.0}))
        (dd / "loglikes.json").write_text(json.dumps({"audio_seconds": 100.0, "seconds": 2.0}))
        if part == DEV:
            (dd / "best_scale").write_text(f"{best_scale:g}\n")
            sw = sweep or {best_scale: w}
            (dd / "scales.txt").write_text("".join(f"{s:g} %WER {x:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\n"
                                                   for s, x in sorted(sw.items())))
    if acc is not None:
        (d / f"eval_{DEV}.json").write_text(json.dumps({"main_acc": acc}))


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    e = tmp_path / "exp"
    # ce: 3 seeds; test WERs 10, 12, 14 -> 12.00 ± 2.00
    for k, (dev, test, real) in enumerate([(20, 10, 40), (22, 12, 42), (24, 14, 44)], 1):
        fake_run(e / f"am_ce/seed{k}", {DEV: dev, "test": test, "real": real}, acc=0.5 + 0.01 * k)
    # hier: seeds 1, 2 decoded, seed 3 trained but never decoded; test 9, 9 -> -25 % vs ce
    fake_run(e / "am_hier/seed1", {DEV: 18, "test": 9, "real": 30}, best_scale=0.14,
             sweep={0.1: 25.0, 0.14: 18.0, 0.2: 19.0})
    fake_run(e / "am_hier/seed2", {DEV: 18, "test": 9, "real": 30}, best_scale=0.2)
    (e / "am_hier/seed3").mkdir(parents=True)
    # a GMM-like extra row: decode dirs directly in the directory, no frame accuracy
    fake_run(tmp_path / "gmm", {DEV: 30, "test": 15, "real": 60}, acc=None)
    return e


def table_row(md: str, name: str) -> list:
    line = next(x for x in md.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_mean_std_and_relative_change():
    assert mean_std([10, 12, 14]) == (12.0, 2.0, 3)  # sample std (ddof 1)
    assert mean_std([7.5]) == (7.5, 0.0, 1)
    m, s, n = mean_std([])
    assert n == 0 and m != m
    assert relative_change(9.0, 12.0) == pytest.approx(-25.0)
    assert relative_change(9.0, 0.0) is None


def test_results_table(exp: Path, tmp_path: Path):
    rows = make_results(exp, [("ce", ["1", "2", "3"]), ("hier", ["1", "2", "3"])], DEV, TESTS,
                        extra_rows=[("gmm", tmp_path / "gmm")], header_notes=["- Config: `x.yaml`."])
    assert [r.name for r in rows] == ["ce", "hier", "gmm"]
    md = (exp / "RESULTS.md").read_text()
    assert md.startswith("# Results") and "- Config: `x.yaml`." in md
    header = table_row(md, "system")
    assert header[:7] == ["system", "seeds", "dev WER", "test WER", "rel. vs ce", "real WER", "rel. vs ce"]
    ce = dict(zip(header, table_row(md, "ce")))
    assert ce["seeds"] == "3"
    assert ce["dev WER"] == "22.00 ± 2.00" and ce["test WER"] == "12.00 ± 2.00" and ce["real WER"] == "42.00 ± 2.00"
    assert table_row(md, "ce")[4] == table_row(md, "ce")[6] == "baseline"
    assert ce["dev frame acc. (%)"] == "52.00 ± 1.00"
    assert ce["AM RTF"] == "0.020" and ce["search RTF"] == "0.200"
    hier = table_row(md, "hier")
    # seed 3 was never decoded: 2 of 3 seeds, each cell says so, and a note names the file
    assert hier[1] == "2 of 3"
    assert hier[2] == "18.00 ± 0.00 (2/3)"  # dev at the dev-best scale (scales.txt), not wer-dev
    assert hier[3] == "9.00 ± 0.00 (2/3)" and hier[4] == "-25.0%"
    assert hier[6] == f"{100 * (30 - 42) / 42:+.1f}%"
    assert table_row(md, "hier")[header.index("dev-best scale")] == "0.14, 0.2"
    gmm = table_row(md, "gmm")
    assert gmm[3] == "15.00" and gmm[4] == "+25.0%" and gmm[header.index("dev frame acc. (%)")] == "–"
    assert "**Incomplete**" in md and "am_hier/seed3/decode_dev/wer-dev (hier seed 3: not decoded; run stage 16)" in md
    png = exp / "plots/wer_systems.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "![WER per system](plots/wer_systems.png)" in md


def test_missing_results(exp: Path):
    with pytest.raises(Lm2amError, match="hier seed 3: not decoded"):
        make_results(exp, [("ce", None), ("hier", None)], DEV, TESTS, strict=True)
    rows = make_results(exp, [("ce", ["1", "4"])], DEV, TESTS)
    assert "not trained" in rows[0].missing[0] and "am_ce/seed4" in rows[0].missing[0]
    md = (exp / "RESULTS.md").read_text()
    assert table_row(md, "ce")[2] == "20.00 (1/2)"
    rows = make_results(exp, [("nosuch", None), ("ce", None)], DEV, TESTS)
    assert "nosuch: no seeds trained" in rows[0].missing[0]
    assert table_row((exp / "RESULTS.md").read_text(), "nosuch")[3] == "–"
    with pytest.raises(Lm2amError, match="--baseline x"):
        make_results(exp, [("ce", None)], DEV, TESTS, baseline="x")
    bad = exp / "am_ce/seed1/decode_test/wer-test"
    bad.write_text("garbage\n")
    with pytest.raises(Lm2amError, match="wer-test: first line"):
        make_results(exp, [("ce", None)], DEV, TESTS)


def test_read_scales(tmp_path: Path):
    p = tmp_path / "scales.txt"
    p.write_text("0.05 %WER 30.00 [ 3 / 10, 0 ins, 0 del, 3 sub ]\n0.1 %WER 20.00 [ 2 / 10, 0 ins, 0 del, 2 sub ]\n")
    assert read_scales(p) == {0.05: 30.0, 0.1: 20.0}
    assert read_scales(tmp_path / "none") == {}


def _py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


def test_make_results_cli(exp: Path, tmp_path: Path):
    r = _py(str(REPO / "steps/make_results.py"), "--config", "conf/x.yaml", "--dev-part", DEV, "--test-parts",
            "test real", "--scales", "0.1 0.14 0.2", "--extra-row", f"gmm={tmp_path / 'gmm'}", "exp",
            "ce:1,2,3", "hier:1,2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    md = (exp / "RESULTS.md").read_text()
    assert "swept over 0.1, 0.14, 0.2" in md and "ce: 1, 2, 3; hier: 1, 2" in md
    assert table_row(md, "hier")[1] == "2" and "Incomplete" not in md
    r = _py(str(REPO / "steps/make_results.py"), "--extra-row", "gmm", "exp", "ce", cwd=tmp_path)
    assert r.returncode == 1 and "ERROR: --extra-row 'gmm': expected NAME=DIR" in r.stderr


def test_fingerprint_cli(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("decode:\n  search_beam: 10.0\ngraph:\n  lm: {order: 2}\n")
    f = tmp_path / "model.pt"
    f.write_text("x")

    def fp(*extra: str) -> str:
        r = _py(str(REPO / "steps/fingerprint.py"), "--config", str(cfg), "--section", "decode", *extra, str(f),
                cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    a = fp("--param", "--scales 0.1")
    assert a == fp("--param", "--scales 0.1") and len(a) == 16
    assert a != fp("--param", "--scales 0.2")
    cfg.write_text("decode:\n  search_beam: 12.0\ngraph:\n  lm: {order: 2}\n")
    b = fp("--param", "--scales 0.1")
    assert b != a
    cfg.write_text("decode:\n  search_beam: 12.0\ngraph:\n  lm: {order: 3}\n")  # other sections: no effect
    assert fp("--param", "--scales 0.1") == b
    f.write_text("xy")
    assert fp("--param", "--scales 0.1") != b


def test_wer_breakdown_by_condition_and_voice(tmp_path):
    """Each group's WER is that of its own utterances; the dev-best scale's hyps are scored."""
    from lm2am.decode.score import write_trn
    from lm2am.report.breakdown import breakdown_table, synth_en_groups, wer_by_group

    corpus = tmp_path / "corpus"
    (corpus / "dev").mkdir(parents=True)
    (corpus / "speakers.tsv").write_text("speaker\tchapter\tpart\tengine\tvoice\n"
                                         "1\t1\tdev\tflite\tawb\n2\t2\tdev\tespeak\ten-us\n")
    (corpus / "dev" / "utt_info.tsv").write_text(
        "utt_id\tspeaker\tduration\tnoise\tsnr\treverb\n"
        "1-1-0\t1\t1.0\tnone\t-\t-\n1-1-1\t1\t1.0\tpink\t10.0\t-\n2-2-0\t2\t1.0\twhite\t5.0\trev1\n")
    refs = {"1-1-0": "a b c d", "1-1-1": "a b", "2-2-0": "x y"}
    d = tmp_path / "decode_dev"
    (d / "scale_0.2").mkdir(parents=True)
    write_trn(refs, d / "ref.trn")
    write_trn({u: "" for u in refs}, d / "hyp.trn")  # the lattice-scale hyps: all wrong
    write_trn(refs, d / "scale_0.2" / "ref.trn")
    write_trn({"1-1-0": "a b c d", "1-1-1": "a q", "2-2-0": ""}, d / "scale_0.2" / "hyp.trn")
    (d / "best_scale").write_text("0.2\n")
    groups = synth_en_groups(corpus, "dev")
    assert groups == {"clean": ["1-1-0"], "flite:awb": ["1-1-0", "1-1-1"], "noisy": ["1-1-1"],
                      "reverberant": ["2-2-0"], "espeak:en-us": ["2-2-0"]}
    w = {g: s.wer for g, s in wer_by_group(d, groups).items()}
    assert w == {"all": 100 * 3 / 8, "clean": 0.0, "noisy": 50.0, "reverberant": 100.0,
                 "flite:awb": 100 * 1 / 6, "espeak:en-us": 100.0}
    table = breakdown_table({"ce": wer_by_group(d, groups)})
    assert "| ce | 37.50 | 0.00 | 50.00 | 100.00 | 100.00 | 16.67 |" in table


def test_teacher_section(exp: Path):
    """RESULTS.md shows each teacher's perplexity vs unigram and its posteriors' kept mass and
    entropies, one row per posterior part; a teacher without posteriors still has its row."""
    sen = exp / "lm_senone"
    (sen / "post_train").mkdir(parents=True)
    (sen / "report.json").write_text(json.dumps({"arch": "masked", "mask_span": "phone", "dev_perplexity": 6.0,
                                                 "unigram_dev_perplexity": 24.0}))
    (sen / "post_train/post_info.json").write_text(json.dumps(
        {"top_k": 8, "temperature": 2.0, "mean_kept_mass": 0.8125, "mean_entropy_stored": 1.25,
         "mean_entropy_full": 1.5}))
    (exp / "lm_subword").mkdir()
    (exp / "lm_subword/report.json").write_text(json.dumps({"arch": "causal", "dev_perplexity": 50.0,
                                                            "unigram_dev_perplexity": 100.0}))
    (exp / "lm_phone_unfinished").mkdir()  # no report.json: no row
    make_results(exp, [("ce", None)], DEV, TESTS)
    md = (exp / "RESULTS.md").read_text()
    assert "## Teacher LMs" in md and "lm_phone_unfinished" not in md and "| phone_unfinished |" not in md
    header = table_row(md, "teacher")
    sen_row = dict(zip(header, table_row(md, "senone")))
    assert sen_row == {"teacher": "senone", "masking": "masked, phone", "dev ppl": "6.00", "unigram ppl": "24.00",
                       "ppl / unigram": "0.250", "part": "train", "T": "2.00", "k": "8", "kept mass": "0.812",
                       "entropy stored": "1.250", "entropy full": "1.500"}
    sub_row = dict(zip(header, table_row(md, "subword")))
    assert sub_row["masking"] == "causal" and sub_row["part"] == "–" and sub_row["kept mass"] == "–"

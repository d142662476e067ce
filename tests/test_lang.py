"""Tests of the lang stage (lm2am/lang/, steps/prepare_lang.py)."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lm2am.config import from_dict
from lm2am.errors import Lm2amError
from lm2am.lang import (LangConfig, add_disambig, apply_oov_policy, cmudict_prons, g2p_flite,
                        prepare_lang, read_lexicon, read_symbols, train_bpe)

from conftest import needs_setup

REPO = Path(__file__).resolve().parents[1]
needs_t2p = needs_setup(shutil.which("t2p") is not None, "flite's t2p (Debian flite)")

AM = {
    "train-synth": ["HELLO WORLD", "THE CAT SAT ON THE MAT", "BLORPTASTIC ZIBBLES ARE READ"],
    "dev-synth": ["HELLO THERE", "<NOISE> RED REED"],
}
_WORDS = ("THE A CAT DOG SAT RAN ON UNDER MAT TABLE HOUSE GREEN RED BLUE BIG SMALL QUICKLY SLOWLY "
          "MAN WOMAN CHILD SAW HEARD WENT TO FROM GARDEN RIVER MOUNTAIN LIGHT DARK NIGHT DAY "
          "MORNING EVENING FLORBIT").split()


def _lm_text(path: Path, n: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    """A lang dir built once from AM + a small synthetic LM text (g2p on when t2p exists)."""
    tmp = tmp_path_factory.mktemp("lang")
    g2p = "flite" if shutil.which("t2p") else "none"
    cfg = LangConfig(bpe_vocab_size=60, g2p=g2p)
    report = prepare_lang(tmp / "lang", AM, _lm_text(tmp / "lm.txt"), cfg)
    return tmp / "lang", report, cfg


def test_cmudict_prons_and_stress():
    assert cmudict_prons("hello", LangConfig()) == [("HH", "AH", "L", "OW")]
    assert cmudict_prons("HELLO", LangConfig(remove_stress=False, max_prons_per_word=3)) == [
        ("HH", "AH0", "L", "OW1"), ("HH", "EH0", "L", "OW1")]
    # READ has two variants: both kept when asked, the first (CMUdict order) otherwise
    assert len(cmudict_prons("READ", LangConfig(max_prons_per_word=2))) == 2
    assert cmudict_prons("NOTAWORDXYZ", LangConfig()) == []


def test_lexicon_content(lang):
    lang_dir, report, _ = lang
    lex = read_lexicon(lang_dir)
    assert lex["HELLO"] == [("HH", "AH", "L", "OW")]
    assert lex["<UNK>"] == [("SPN",)]
    assert "FLORBIT" in lex or report.still_oov.get("FLORBIT")  # LM-only words are covered too
    lines = (lang_dir / "lexicon.txt").read_text().splitlines()
    assert lines == sorted(lines)  # C-locale order
    phones = {p for prons in lex.values() for pron in prons for p in pron}
    assert not any(ch.isdigit() for p in phones for ch in p)  # stress removed
    nonsil = (lang_dir / "nonsilence_phones.txt").read_text().split()
    assert len(nonsil) == 39 and phones <= set(nonsil) | {"SPN"}
    assert (lang_dir / "silence_phones.txt").read_text().split() == ["SIL", "SPN"]
    assert (lang_dir / "optional_silence.txt").read_text().strip() == "SIL"
    assert (lang_dir / "oov.txt").read_text().strip() == "<UNK>"
    assert "<NOISE>" not in lex and report.still_oov["<NOISE>"] == 1


@needs_t2p
def test_t2p_fallback(lang):
    lang_dir, report, _ = lang
    lex = read_lexicon(lang_dir)
    nonsil = set((lang_dir / "nonsilence_phones.txt").read_text().split())
    for word in ("BLORPTASTIC", "ZIBBLES", "FLORBIT"):
        assert word in report.g2p and lex[word] == [report.g2p[word]]
        assert set(lex[word][0]) <= nonsil
    assert lex["BLORPTASTIC"][0][:3] == ("B", "L", "AO")
    assert report.unmapped_g2p_phones == {}
    rows = {s.name: s for s in report.splits}
    assert rows["train-synth"].oov_tokens == 2 and rows["train-synth"].g2p_words == 2
    assert rows["dev-synth"].still_oov_words == 1  # <NOISE>: not pronounceable, stays OOV
    report_text = (lang_dir / "oov_report.txt").read_text()
    assert "BLORPTASTIC B L AO" in report_text and "<NOISE> 1" in report_text


@needs_t2p
def test_g2p_flite_stress_and_schwa():
    prons, unmapped = g2p_flite(["ZIBBLES", "HELLO"], remove_stress=False)
    assert not unmapped
    assert prons["HELLO"] == ("HH", "AH0", "L", "OW1")  # flite 'ax' -> AH0, 'ow1' kept
    assert all(p[-1] in "012" for p in prons["ZIBBLES"] if p.rstrip("012") in {"IH", "AH", "IY"})


def test_g2p_none_leaves_oov(tmp_path):
    report = prepare_lang(tmp_path / "lang", {"train": ["HELLO BLORPTASTIC"]}, _lm_text(tmp_path / "lm.txt"),
                          LangConfig(g2p="none", bpe_vocab_size=60))
    assert report.g2p == {} and report.still_oov["BLORPTASTIC"] == 1
    assert "BLORPTASTIC" not in read_lexicon(tmp_path / "lang")


def test_t2p_missing_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no t2p on PATH
    with pytest.raises(Lm2amError, match="apt-get install flite.*lang.g2p: none"):
        g2p_flite(["BLORPTASTIC"])


def test_symbol_tables(lang):
    lang_dir, report, _ = lang
    words = read_symbols(lang_dir / "words.txt")
    phones = read_symbols(lang_dir / "phones.txt")
    for table in (words, phones):
        assert sorted(table.values()) == list(range(len(table)))  # contiguous from 0
        assert table["<eps>"] == 0
    n = len(words)
    assert words["#0"] == n - 3 and words["<s>"] == n - 2 and words["</s>"] == n - 1
    assert set(words) - {"<eps>", "#0", "<s>", "</s>"} == set(read_lexicon(lang_dir))
    assert phones["SIL"] == 1 and phones["SPN"] == 2
    disambig = [p for p in phones if p.startswith("#")]
    assert disambig == [f"#{i}" for i in range(len(disambig))] == [f"#{i}" for i in range(report.disambig_symbols)]
    # RED/READ are homophones here (READ keeps its first variant, R EH D... or R IY D);
    # every disambig symbol used in the lexicon exists in phones.txt
    used = {p for line in (lang_dir / "lexicon_disambig.txt").read_text().splitlines()
            for p in line.split()[1:] if p.startswith("#")}
    assert used <= set(disambig) and "#0" not in used


def test_add_disambig():
    lex = [("A", ("AH",)), ("AB", ("AH", "B")), ("RED", ("R", "EH", "D")), ("READ", ("R", "EH", "D")),
           ("X", ("EH", "K", "S"))]
    out, mx = add_disambig(lex)
    assert mx == 2
    assert dict(out) == {"A": ("AH", "#1"), "AB": ("AH", "B"), "RED": ("R", "EH", "D", "#1"),
                         "READ": ("R", "EH", "D", "#2"), "X": ("EH", "K", "S")}


def test_oov_policy_unk_and_skip():
    lexicon_words = {"HELLO", "WORLD", "THE", "<UNK>"}
    texts = {"u1": "HELLO WORLD", "u2": "HELLO ZORP WORLD", "u3": "", "u4": "ZORP BLIP", "u5": "the zorp"}
    out, st = apply_oov_policy(texts, lexicon_words, LangConfig(oov_policy="unk"))
    assert out == {"u1": "HELLO WORLD", "u2": "HELLO <UNK> WORLD", "u5": "THE <UNK>"}
    assert (st.utterances, st.kept, st.oov_tokens, st.mapped_tokens) == (5, 3, 4, 2)
    assert (st.dropped_empty, st.dropped_no_words, st.dropped_oov) == (1, 1, 0)
    assert st.tokens == 9 and abs(st.oov_rate - 4 / 9) < 1e-9
    out, st = apply_oov_policy(texts, lexicon_words, LangConfig(oov_policy="skip"))
    assert out == {"u1": "HELLO WORLD"}
    assert (st.kept, st.dropped_empty, st.dropped_no_words, st.dropped_oov, st.mapped_tokens) == (1, 1, 1, 2, 0)
    with pytest.raises(Lm2amError, match="all 2 utterances dropped"):
        apply_oov_policy({"a": "ZORP", "b": ""}, lexicon_words, LangConfig())


def test_config_validation():
    with pytest.raises(ValueError, match="'unk' or 'skip'"):
        LangConfig(oov_policy="drop")
    with pytest.raises(Lm2amError, match="lang.*oov_policy must be 'unk' or 'skip'"):
        from_dict(LangConfig, {"oov_policy": "drop"}, "conf.yaml: lang")
    with pytest.raises(Lm2amError, match="unknown key 'g2p_tool'"):
        from_dict(LangConfig, {"g2p_tool": "flite"}, "conf.yaml: lang")


def test_bpe_round_trip_and_determinism(lang, tmp_path):
    import sentencepiece as spm

    lang_dir, report, cfg = lang
    assert report.bpe_vocab_size == 60
    sp = spm.SentencePieceProcessor(model_file=str(lang_dir / "bpe.model"))
    assert sp.get_piece_size() == 60 and sp.id_to_piece(0) == "<unk>"
    text = "THE CAT SAT UNDER THE GREEN TABLE"
    ids = sp.encode(text)
    assert ids and sp.decode(ids) == text
    assert len((lang_dir / "bpe.vocab").read_text().splitlines()) == 60
    assert not list(lang_dir.glob(".*tmp*"))  # no temp files left behind
    # same text, same options -> byte-identical model (and the same pieces in another dir)
    lm = _lm_text(tmp_path / "lm.txt")
    first = None
    for _ in range(2):
        train_bpe(lm, tmp_path / "again", cfg)
        model = (tmp_path / "again" / "bpe.model").read_bytes()
        assert first is None or model == first
        first = model
    assert (tmp_path / "again" / "bpe.vocab").read_text() == (lang_dir / "bpe.vocab").read_text()


def test_bpe_vocab_too_large(tmp_path):
    lm = tmp_path / "lm.txt"
    lm.write_text("THE CAT SAT\nTHE DOG RAN\n")
    with pytest.raises(Lm2amError, match=r"lang\.bpe_vocab_size <= \d+"):
        prepare_lang(tmp_path / "lang", {"train": ["THE CAT"]}, lm, LangConfig(g2p="none", bpe_vocab_size=500))


def test_missing_lm_text(tmp_path):
    with pytest.raises(Lm2amError, match="nope.txt does not exist"):
        prepare_lang(tmp_path / "lang", AM, tmp_path / "nope.txt", LangConfig())
    assert not (tmp_path / "lang").exists()  # checked before anything is written


def test_cli_with_manifests(tmp_path):
    from lhotse import SupervisionSegment, SupervisionSet

    man = tmp_path / "data" / "manifests"
    man.mkdir(parents=True)
    for part, texts in AM.items():
        sups = [SupervisionSegment(id=f"{part}-{i}", recording_id=f"{part}-{i}", start=0.0, duration=1.0,
                                   text=t) for i, t in enumerate(texts)]
        SupervisionSet.from_segments(sups).to_file(man / f"supervisions_{part}.jsonl.gz")
    (tmp_path / "conf.yaml").write_text("lang:\n  bpe_vocab_size: 50\n  g2p: none\n")
    cmd = [sys.executable, str(REPO / "steps" / "prepare_lang.py"), "--config", str(tmp_path / "conf.yaml"),
           "--manifests", str(man), "--parts", "train-synth,dev-synth",
           "--lm-text", str(_lm_text(tmp_path / "lm.txt")), str(tmp_path / "lang")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "train-synth: 12 tokens" in res.stdout and "BPE vocab 50" in res.stdout
    assert (tmp_path / "lang" / "bpe.model").is_file() and (tmp_path / "lang" / ".done").is_file()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "up to date, skipping" in res.stdout
    res = subprocess.run(cmd[:-1] + ["--parts", "test-synth", str(tmp_path / "lang")], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 1 and "supervisions_test-synth.jsonl.gz" in res.stderr


def test_oov_policy_on_cuts(lang):
    """The features stage applies the policy to cuts: OOV -> <UNK> (unk) or the cut dropped (skip)."""
    from lhotse import CutSet, MonoCut, SupervisionSegment
    from lhotse.testing.dummies import dummy_recording

    from lm2am.lang import LangConfig, apply_oov_policy_to_cuts

    lang_dir = lang[0] if isinstance(lang, tuple) else lang
    cuts = CutSet.from_cuts(
        MonoCut(id=f"c{i}", start=0, duration=1, channel=0, recording=dummy_recording(i),
                supervisions=[SupervisionSegment(id=f"c{i}", recording_id=f"dummy-recording-{i:04d}",
                                                 start=0, duration=1, text=t)])
        for i, t in enumerate(["HELLO WORLD", "HELLO QZXWV", "QZXWV"]))
    kept, stats = apply_oov_policy_to_cuts(cuts, lang_dir, LangConfig(oov_policy="unk"))
    assert [c.supervisions[0].text for c in kept] == ["HELLO WORLD", "HELLO <UNK>"]
    assert stats.dropped_no_words == 1 and stats.mapped_tokens == 1
    kept, stats = apply_oov_policy_to_cuts(cuts, lang_dir, LangConfig(oov_policy="skip"))
    assert [c.id for c in kept] == ["c0"] and stats.dropped_oov == 1

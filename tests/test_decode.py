"""Decoding graph, k2 decoder and scoring on a toy language.

Toy lang: six words over five phones (+ SIL, SPN), homophone-prefix disambiguation symbols
(BEE/BEAT, TEA/TEAK), a senone tree grown on synthetic statistics (one phone's senones depend
on the left context, so the graph must get triphone context right) and a bigram LM.
Checks: the n-gram estimator against a hand computation and normalization; the HCLG accepts
the pdf sequence of a word sequence (with the right words out) and rejects a non-word one; the
LM shapes path scores; the decoder recovers words from peaked log-likelihoods (with frame
repetition for a subsampling AM, retries with narrow beams, scale sweeps, word times); the WER
reports (the scorer's promises against sclite: tests/test_score.py).
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Dict, Sequence

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst/kaldilm: the other order hangs)
import k2
import numpy as np
import pytest
import torch

from lm2am.align.topo import HmmTopo
from lm2am.errors import Lm2amError
from lm2am.graph.arpa import read_arpa, write_arpa
from lm2am.graph.ngram import NgramConfig, estimate_ngram

# the toy lang, tree and graph (the toy fixture; shared with test_gmm.py and test_kaldi_interop.py)
from conftest import TOY_PID as PID
from conftest import pdf_seq, peaked


def _linear_best(graph, pdfs: Sequence[int]):
    """Intersect the graph with the linear acceptor of ``pdfs`` (labels pdf + 1); returns
    (found, word ids, score)."""
    lin = k2.arc_sort(k2.linear_fsa([p + 1 for p in pdfs]))
    fsa = graph.fsa
    inter = k2.intersect(fsa, lin, treat_epsilons_specially=False)
    inter = k2.connect(inter)
    if inter.num_arcs == 0:
        return False, [], -math.inf
    best = k2.shortest_path(k2.create_fsa_vec([inter]), use_double_scores=True)
    aux = best.aux_labels
    vals = aux.values if isinstance(aux, k2.RaggedTensor) else aux
    wids = [int(v) for v in vals.tolist() if v > 0]
    return True, wids, float(best.get_tot_scores(use_double_scores=True, log_semiring=False)[0])


# ----------------------------------------------------------------------------- n-gram
def test_kneser_ney_matches_hand_computation(tmp_path: Path):
    """Bigram, one fixed discount D = 0.5 per order, corpus "a b" x2 + "b a" + "a"."""
    vocab = ["<eps>", "a", "b", "c", "#0", "<s>", "</s>"]
    m = estimate_ngram(["a b", "a b", "b a", "a"], vocab, NgramConfig(order=2, fixed_discounts=[0.5, 0.5]))
    write_arpa(m, tmp_path / "lm.arpa")
    lm = read_arpa(tmp_path / "lm.arpa")
    # unigram continuation counts (distinct left neighbours): a <- {<s>, b}, b <- {a, <s>},
    # </s> <- {a, b}: 2 each, total 6; c unseen. gamma0 = 3 * 0.5 / 6; uniform over {a, b, c, </s>}
    g0 = 3 * 0.5 / 6
    p_uni = {"a": 1.5 / 6 + g0 / 4, "b": 1.5 / 6 + g0 / 4, "c": g0 / 4, "</s>": 1.5 / 6 + g0 / 4}
    for w, p in p_uni.items():
        assert lm.log10prob(w) == pytest.approx(math.log10(p), abs=1e-6)
    # history a (highest order: raw counts): a b (2), a </s> (2: "b a", "a") -> denom 4, gamma = 2 * 0.5 / 4
    g_a = 0.25
    assert lm.log10prob("b", ["a"]) == pytest.approx(math.log10(1.5 / 4 + g_a * p_uni["b"]), abs=1e-6)
    assert lm.log10prob("</s>", ["a"]) == pytest.approx(math.log10(1.5 / 4 + g_a * p_uni["</s>"]), abs=1e-6)
    assert lm.log10prob("c", ["a"]) == pytest.approx(math.log10(g_a * p_uni["c"]), abs=1e-6)
    # history <s>: <s> a (3), <s> b (1) -> denom 4, gamma = 2 * 0.5 / 4
    assert lm.log10prob("b", ["<s>"]) == pytest.approx(math.log10(0.5 / 4 + 0.25 * p_uni["b"]), abs=1e-6)
    assert lm.log10prob("a", ["<s>"]) == pytest.approx(math.log10(2.5 / 4 + 0.25 * p_uni["a"]), abs=1e-6)
    assert lm.prob[("<s>",)] == -99.0


@pytest.mark.parametrize("cfg", [NgramConfig(order=3), NgramConfig(order=2, discount="plain"),
                                 NgramConfig(order=3, min_counts=[1, 2]), NgramConfig(order=4)])
def test_every_history_sums_to_one(tmp_path: Path, cfg: NgramConfig):
    import itertools

    vocab = ["<eps>", "<UNK>", "a", "b", "c", "d", "#0", "<s>", "</s>"]
    text = ["a b c", "a b", "b c a", "c a b c", "a a", "b x", "d", "a b c", "a b c", "c c c a b"]
    m = estimate_ngram(text, vocab, cfg)
    write_arpa(m, tmp_path / "lm.arpa")
    lm = read_arpa(tmp_path / "lm.arpa")
    predicted = ["<UNK>", "a", "b", "c", "d", "</s>"]
    for n in range(cfg.order):
        for h in itertools.product(["<s>"] + predicted[:-1], repeat=n):
            if "<s>" in h[1:]:
                continue
            assert sum(10 ** lm.log10prob(w, h) for w in predicted) == pytest.approx(1.0, abs=1e-5), h
    assert m.info["oov_tokens"] == 1  # "x" -> <UNK>


def test_ngram_rejects_vocab_without_sentence_marks():
    with pytest.raises(Lm2amError, match="<s>"):
        estimate_ngram(["a"], ["<eps>", "a", "</s>"])


# ----------------------------------------------------------------------------- graph
def test_graph_files_and_sizes(toy):
    d = toy["root"] / "lang" / "graph"
    for f in ("HCLG.fst", "HCLG.pt", "G.arpa", "graph_info.json", "tree", "words.txt", "tid2pdf.npy"):
        assert (d / f).is_file(), f
    info, g = toy["info"], toy["graph"]
    assert info["num_pdfs"] == toy["tree"].num_leaves == g.num_pdfs
    assert info["sizes"]["HCLG"]["arcs"] > 0 and info["build_seconds"] < 30
    labels = g.fsa.labels
    assert int(labels.min()) >= -1 and int(labels.max()) <= g.num_pdfs
    assert int((labels == 0).sum()) == 0  # epsilon-free: every arc consumes a frame
    # the OpenFst copy reads back with transition-ids on the input side
    import kaldifst

    fst = kaldifst.StdVectorFst.read(str(d / "HCLG.fst"))
    assert fst.num_states == info["sizes"]["HCLG"]["states"]


def test_label_mapping_is_tid_to_pdf_plus_one(toy):
    """Every k2 arc label equals tid2pdf[tid] + 1 for the arc's transition-id."""
    d = toy["root"] / "lang" / "graph"
    tid2pdf = np.load(d / "tid2pdf.npy")
    g = toy["graph"].fsa
    lab, tids = g.labels.numpy(), g.tids.numpy()
    emit = lab > 0
    assert (tids[emit] > 0).all()
    np.testing.assert_array_equal(lab[emit], tid2pdf[tids[emit]] + 1)


@pytest.mark.parametrize("words,dur,sil", [(["BEE", "TEA"], 1, True), (["CAT", "TAB", "TEA"], 2, False),
                                           (["TEAK"], 3, True), (["BEAT", "CAT"], 1, False)])
def test_graph_accepts_correct_sequence(toy, words, dur, sil):
    ok, wids, _ = _linear_best(toy["graph"], pdf_seq(toy["tree"], words, dur, sil))
    assert ok
    assert [toy["words"][w] for w in wids] == words


def test_graph_accepts_optional_silence_between_words(toy):
    seq = pdf_seq(toy["tree"], [], 2, True, phones=["B", "IY", "SIL", "T", "IY", "K"])
    ok, wids, _ = _linear_best(toy["graph"], seq)
    assert ok and [toy["words"][w] for w in wids] == ["BEE", "TEAK"]


def test_graph_rejects_non_words_and_wrong_context(toy):
    tree = toy["tree"]
    ok, _, _ = _linear_best(toy["graph"], pdf_seq(tree, [], 1, True, phones=["B", "AA", "K"]))
    assert not ok  # B AA K spells no word sequence
    # IY after B has its own senones: using the "left = T" ones after B must not be accepted
    good = pdf_seq(tree, ["BEE"], 1, False)
    bad = list(good)
    for s in range(3):
        b_iy, t_iy = tree.lookup(PID["B"], PID["IY"], 0, s), tree.lookup(PID["T"], PID["IY"], 0, s)
        assert b_iy != t_iy
        bad[3 + s] = t_iy
    assert _linear_best(toy["graph"], good)[0]
    assert not _linear_best(toy["graph"], bad)[0]


def test_graph_scores_follow_the_lm(toy):
    """Same acoustics length, LM-likely order scores higher than an order never seen."""
    tree = toy["tree"]
    _, _, seen = _linear_best(toy["graph"], pdf_seq(tree, ["CAT", "TAB"], 1, False))
    _, _, unseen = _linear_best(toy["graph"], pdf_seq(tree, ["TAB", "CAT"], 1, False))
    assert seen > unseen


def test_graph_too_big_fails_early(toy, tmp_path: Path):
    from lm2am.graph import GraphConfig, make_graph

    with pytest.raises(Lm2amError, match="max_hclg_arcs"):
        make_graph(toy["root"] / "lang", toy["tree"], tmp_path / "g", HmmTopo(),
                   GraphConfig(lm=NgramConfig(order=2), max_hclg_arcs=10), lm_text=toy["root"] / "lm.txt")
    assert not (tmp_path / "g").exists()


def test_graph_rejects_topology_mismatch(toy, tmp_path: Path):
    from lm2am.graph import make_graph

    with pytest.raises(Lm2amError, match="HMM states"):
        make_graph(toy["root"] / "lang", toy["tree"], tmp_path / "g", HmmTopo(num_states=4),
                   lm_text=toy["root"] / "lm.txt")


def test_weighted_hmm_graph_decodes(toy, tmp_path: Path):
    """With HmmTopo.self_loop_prob set, self-loops/forward arcs carry scale * log p weights."""
    from lm2am.decode import DecodeConfig, decode
    from lm2am.graph import GraphConfig, load_graph, make_graph

    info = make_graph(toy["root"] / "lang", toy["tree"], tmp_path / "g", HmmTopo(self_loop_prob=0.7),
                      GraphConfig(lm=NgramConfig(order=2)), lm_text=toy["root"] / "lm.txt")
    assert info["self_loop_scale"] == pytest.approx(0.1)
    g = load_graph(tmp_path / "g")
    arcs = g.fsa.arcs.values()
    loops = g.fsa.scores[arcs[:, 0] == arcs[:, 1]]
    assert loops.numel() and torch.allclose(loops, torch.full_like(loops, 0.1 * math.log(0.7)), atol=1e-5)
    assert torch.allclose(toy["graph"].fsa.scores[toy["graph"].fsa.arcs.values()[:, 0] ==
                                                  toy["graph"].fsa.arcs.values()[:, 1]], torch.tensor(0.0))
    ll = {"u": peaked(pdf_seq(toy["tree"], ["CAT", "TAB"], 3, True), g.num_pdfs)}
    assert decode(ll, g, DecodeConfig(acoustic_scale=1.0)).hyps == {"u": ["CAT", "TAB"]}


# ----------------------------------------------------------------------------- decoder
UTTS = {"u1": ["BEE", "TEA"], "u2": ["CAT", "TAB", "TEA"], "u3": ["TEAK"], "u4": ["BEAT", "CAT"],
        "u5": ["TEA", "BEE"]}


def _loglikes(toy, factor: int = 1) -> Dict[str, np.ndarray]:
    out = {}
    for i, (u, w) in enumerate(UTTS.items()):
        x = peaked(pdf_seq(toy["tree"], w, dur=factor * (1 + i % 3), sil=i % 2 == 0), toy["graph"].num_pdfs)
        out[u] = x[factor // 2::factor] if factor > 1 else x  # what a subsampling AM would emit
    return out


def test_decoder_recovers_words_from_peaked_loglikes(toy):
    from lm2am.decode import DecodeConfig, decode

    res = decode(_loglikes(toy), toy["graph"], DecodeConfig(acoustic_scale=1.0, max_utts_per_batch=3),
                 extra_scales=[0.5])
    assert res.hyps == UTTS and not res.failed
    assert res.hyps_by_scale[0.5] == UTTS
    assert res.rtf > 0 and res.audio_seconds > 0
    # word times: u1 = SIL (3 frames) BEE (6) TEA (6) at one frame per HMM state
    wt = res.word_times["u1"]
    assert [(w.word, round(w.start, 2), round(w.duration, 2)) for w in wt] == [("BEE", 0.03, 0.06), ("TEA", 0.09, 0.06)]


def test_decoder_repeats_frames_of_a_subsampling_am(toy):
    from lm2am.decode import DecodeConfig, decode

    ll = _loglikes(toy, factor=3)
    res = decode(ll, toy["graph"], DecodeConfig(acoustic_scale=1.0, subsampling_factor=3))
    assert res.hyps == UTTS


def test_decoder_retries_narrow_beams_and_never_dies(toy, caplog):
    from lm2am.decode import DecodeConfig, decode

    ll = _loglikes(toy)
    cfg = DecodeConfig(acoustic_scale=1.0, search_beam=0.5, output_beam=0.5, min_active_states=1,
                       max_active_states=1, max_retries=1, retry_beam_factor=2.0)
    res = decode(ll.items(), toy["graph"], cfg)  # an iterable of pairs works too
    assert set(res.hyps) == set(UTTS)
    assert set(res.failed) <= set(UTTS)
    for u in res.failed:
        assert res.hyps[u] == []
    # a wrong matrix width is a one-line user error naming the utterance
    with pytest.raises(Lm2amError, match="u9"):
        decode({"u9": np.zeros((5, 3), np.float32)}, toy["graph"])


# ----------------------------------------------------------------------------- scoring
REFS = {"a-1": "THE CAT SAT ON THE MAT", "a-2": "DON'T STOP <UNK> NOW", "b-1": "A WELL-KNOWN FACT", "b-2": "",
        "c-1": "ONE TWO THREE", "c-2": "I I I SAID", "c-3": "HELLO THERE WORLD", "d-1": "X Y Z", "d-2": "SAME HERE"}
HYPS = {"a-1": "THE CAT SAT THE THE MAT MAT", "a-2": "DON'T <UNK> STOP NOW", "b-1": "A WELL KNOWN FACT",
        "b-2": "UH UM", "c-1": "", "c-2": "I SAID I", "c-3": "HELLO WORLD THERE", "d-1": "z y x",
        "d-2": "SAME HERE"}


def test_wer_and_reports(tmp_path: Path):
    from lm2am.decode.score import compute_wer, read_trn, score_set

    st = compute_wer(REFS, HYPS)
    assert (st.num_words, st.errors) == (28, 18)
    assert st.summary_line().startswith("%WER 64.29 [ 18 / 28,")
    assert st.ins + st.dels + st.subs == 18
    stats = score_set(REFS, HYPS, tmp_path, "toy", use_sclite=False)
    assert (tmp_path / "wer-toy").read_text().splitlines()[0] == stats.summary_line()
    errs = (tmp_path / "errs-toy.txt").read_text()
    for section in ("PER-UTT DETAILS", "SUBSTITUTIONS", "DELETIONS", "INSERTIONS", "PER-WORD STATS"):
        assert section in errs
    assert "c-1:\t(ONE->*) (TWO->*) (THREE->*)" in errs
    assert read_trn(tmp_path / "hyp.trn")["a-1"] == HYPS["a-1"].split()


def test_best_scale():
    from lm2am.decode.score import best_scale

    assert best_scale({0.05: 20.0, 0.08: 12.0, 0.1: 12.5, 0.12: 15.0}) == 0.08
    assert best_scale({0.05: 10.0, 0.1: 10.0, 0.15: 10.0}) == 0.1  # ties: the middle of the sweep
    with pytest.raises(Lm2amError):
        best_scale({})


def test_decode_cli_on_scp(toy, tmp_path: Path):
    """steps/decode.py over a kaldiio scp, scoring against a Kaldi text file."""
    import subprocess
    import sys

    import kaldiio

    from conftest import REPO

    ll = _loglikes(toy)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'll.ark'},{tmp_path / 'll.scp'}") as w:
        for u in sorted(ll):
            w(u, ll[u])
    (tmp_path / "text").write_text("".join(f"{u} {' '.join(w)}\n" for u, w in sorted(UTTS.items())))
    out = tmp_path / "decode_dev"
    r = subprocess.run([sys.executable, str(REPO / "steps" / "decode.py"), "--graph",
                        str(toy["root"] / "lang" / "graph"), "--acoustic-scale", "1.0", "--scales", "0.5,1.0",
                        "--ref", str(tmp_path / "text"), str(tmp_path / "ll.scp"), str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "wer-dev").read_text().startswith("%WER 0.00 [ 0 / 10,")
    assert (out / "hyp.ctm").is_file() and (out / "ali_phones.txt").is_file()
    assert float((out / "best_scale").read_text()) in (0.5, 1.0)


def test_decode_in_jobs_writes_what_one_process_writes(toy, tmp_path: Path):
    """steps/decode.py in 3 jobs (each its slice of the utterances) + --merge gives the same
    scoring files, byte for byte, as one process: wer, errs, trn, the scale sweep and its pick,
    word times and phone alignments (noisy scores: errors that differ between scales)."""
    import subprocess
    import sys

    import kaldiio

    from conftest import REPO, TOY_LEX

    rng = np.random.default_rng(5)
    words = [w for w, _ in TOY_LEX if w != "<UNK>"]
    refs = {f"u{i:02d}": list(rng.choice(words, int(rng.integers(1, 5)))) for i in range(14)}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'll.ark'},{tmp_path / 'll.scp'}") as w:
        for u, ws in refs.items():
            x = peaked(pdf_seq(toy["tree"], ws, dur=int(rng.integers(1, 4))), toy["graph"].num_pdfs)
            w(u, x + rng.normal(0, 4.0, x.shape).astype(np.float32))
    (tmp_path / "text").write_text("".join(f"{u} {' '.join(w)}\n" for u, w in refs.items()))
    common = [sys.executable, str(REPO / "steps" / "decode.py"), "--graph", str(toy["root"] / "lang" / "graph"),
              "--acoustic-scale", "1.0", "--scales", "0.3,0.6,1.0,1.5", "--ref", str(tmp_path / "text"),
              "--set-name", "dev", "--no-sclite", str(tmp_path / "ll.scp")]

    def run(*args: str) -> None:
        r = subprocess.run(common[:-1] + list(args[:-1]) + [common[-1], args[-1]], capture_output=True,
                           text=True, cwd=REPO)
        assert r.returncode == 0, r.stderr[-2000:]

    one, three = tmp_path / "one", tmp_path / "three"
    run(str(one))
    for job in (1, 2, 3):
        run("--job", str(job), "--num-jobs", "3", str(three))
    assert not (three / "wer-dev").exists()  # the jobs only decode
    jobs = [pickle.loads((three / "jobs" / f"decode.{j}.pkl").read_bytes())["utts"] for j in (1, 2, 3)]
    assert all(jobs) and sum(jobs, []) == sorted(refs)  # contiguous slices, every utterance once
    run("--merge", "--num-jobs", "3", str(three))
    names = sorted(str(f.relative_to(one)) for f in one.rglob("*") if f.is_file() and f.name != "decode_info.json"
                   and "log" not in f.parts)
    for need in ("wer-dev", "errs-dev.txt", "hyp.trn", "ref.trn", "scales.txt", "best_scale", "hyp.txt",
                 "hyp.ctm", "ali_phones.txt", "scale_0.3/wer-dev"):
        assert need in names
    for name in names:
        assert (three / name).read_bytes() == (one / name).read_bytes(), name
    wers = [line.split()[2] for line in (one / "scales.txt").read_text().splitlines()]
    assert len(set(wers)) > 1 and float(wers[0]) > 0  # the sweep has something to choose
    info = json.loads((three / "decode_info.json").read_text())
    assert info["jobs"] == 3 and info["utterances"] == len(refs)
    # a job missing, or one from another run's options, stops the merge with the file's name
    (three / "jobs" / "decode.2.pkl").unlink()
    r = subprocess.run(common[:-1] + ["--merge", "--num-jobs", "3", common[-1], str(three)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "decode.2.pkl: missing" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(common[:-1] + ["--merge", "--num-jobs", "2", common[-1], str(three)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "decode.1.pkl: made with other num_jobs" in r.stderr


def test_make_graph_cli_skips_when_up_to_date(toy, tmp_path: Path):
    import subprocess
    import sys

    from conftest import REPO

    tree = tmp_path / "tree.json"
    toy["tree"].save(tree)
    cmd = [sys.executable, str(REPO / "steps" / "make_graph.py"), "--lm-text", str(toy["root"] / "lm.txt"),
           "--order", "2", str(toy["root"] / "lang"), str(tree), str(tmp_path / "graph")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "graph" / "HCLG.pt").is_file()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "up to date" in r.stdout
    bad = subprocess.run(cmd[:-2] + [str(tmp_path / "missing.json"), str(tmp_path / "g2")], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 1 and bad.stderr.startswith("ERROR: ")



def test_lm_sentences_select_sources_and_add_transcripts(tmp_path):
    """graph.lm_sources keeps the named blocks of the LM pool (sources.tsv), and
    graph.add_train_transcripts appends the training transcripts."""
    from lm2am.errors import Lm2amError
    from lm2am.graph.lm_text import lm_sentences

    text = tmp_path / "lm_text.txt"
    text.write_text("b1\nb2\nf1\nw1\nw2\n")
    assert list(lm_sentences(text, None, ["t1"])) == ["b1\n", "b2\n", "f1\n", "w1\n", "w2\n", "t1"]
    with pytest.raises(Lm2amError, match="sources.tsv is missing"):
        list(lm_sentences(text, ["wordnet"]))
    (tmp_path / "sources.tsv").write_text("source\tsentences\nbible\t2\nfortunes\t1\nwordnet\t2\n")
    assert list(lm_sentences(text, ["fortunes", "wordnet"], ["t1"])) == ["f1\n", "w1\n", "w2\n", "t1"]
    with pytest.raises(Lm2amError, match="quran not in"):
        list(lm_sentences(text, ["quran"]))
    vocab = ["<eps>", "b1", "b2", "f1", "w1", "w2", "t1", "<s>", "</s>"]
    m = estimate_ngram(lm_sentences(text, ["wordnet"], ["t1"]), vocab, NgramConfig(order=1))
    assert m.info["sentences"] == 3

"""Kaldi interop (issue 12): lm2am's senone tree as a Kaldi ``tree`` file (text and binary) read by
Kaldi's own ContextDependency and read back, and Kaldi's FasterDecoder as a second decoder over
the same HCLG as the k2 decoder: the same best path (words and cost) on the toy graph of
test_decode.py, answers to a wide-beam referee on noisy scores there, and agreement on the tiny
recipe's real graph with oracle-senone likelihoods."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst/kaldi_decoder: the other order hangs)
import k2  # noqa: F401  (pinned: a broken install fails the module, never skips it)
import kaldi_decoder  # noqa: F401
import numpy as np
import pytest

from lm2am.errors import Lm2amError
from lm2am.tree import ContextTree
from lm2am.tree.kaldi_format import (all_contexts, load_kaldi_context_dependency, mapping_mismatches,
                                     read_kaldi_tree, write_kaldi_tree)

# the toy lang, tree and graph of the k2 decoder's tests (the toy fixture is in conftest.py)
from conftest import REPO, TREE_PHONES, oracle_loglikes, pdf_seq, peaked, random_tree_stats, toy_tree
from conftest import TOY_LEX
from conftest import TOY_PHONES as PHONES


# ---------------------------------------------------------------- tree interop
def _shared_root_tree():
    """A tree with a shared root (asks the centre phone), a 5-state no-context SIL and the edge."""
    from lm2am.tree import build_tree

    st, _ = random_tree_stats(8)
    return build_tree(st, TREE_PHONES, 40, min_count=10, no_context_phones=["SIL"], num_states={"SIL": 5},
                      roots=[["a1", "a2", "a3"]])


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("which", ["toy", "shared_root"])
def test_tree_round_trip_maps_every_context_alike(tmp_path: Path, binary: bool, which: str):
    tree = toy_tree() if which == "toy" else _shared_root_tree()
    path = tmp_path / "tree"
    write_kaldi_tree(tree, path, binary=binary)
    data = path.read_bytes()
    assert data.startswith(b"\0B") == binary
    if not binary:  # Kaldi's text layout
        text = data.decode()
        assert text.startswith("ContextDependency 3 1 ToPdf TE 1 ") and text.rstrip().endswith("EndContextDependency")
    cd = load_kaldi_context_dependency(path)  # Kaldi's own object, from the file
    assert (cd.context_width, cd.central_position, cd.num_pdfs) == (3, 1, tree.num_leaves)
    if not binary:  # Kaldi re-serializes what we parsed to the very same text
        assert str(cd) == data.decode()
    back = read_kaldi_tree(path, tree.phones, tree.num_states, tree.sil_phone)
    ctx = all_contexts(tree)
    assert ctx.shape[0] > 1000 and set(ctx[:, 0]) >= {0}  # the edge is among the contexts
    bad, n = mapping_mismatches(tree, back, kaldi_cd=cd, contexts=ctx)
    assert (bad, n) == (0, ctx.shape[0])
    # and the read-back tree survives lm2am's own JSON format unchanged
    back.save(tmp_path / "tree.json")
    assert mapping_mismatches(tree, ContextTree.load(tmp_path / "tree.json"))[0] == 0
    # without the silence phone the edge keeps Kaldi's own meaning: same answers (0 sits in sil's sets)
    assert mapping_mismatches(tree, read_kaldi_tree(path, tree.phones, tree.num_states))[0] == 0


def test_mismatch_is_detected_and_bad_files_fail_clearly(tmp_path: Path):
    tree = toy_tree()
    write_kaldi_tree(tree, tmp_path / "tree")
    text = (tmp_path / "tree").read_text()
    # swap two leaf ids: the checker must see it
    i = text.index("CE 0 ")
    j = text.index("CE 1 ")
    swapped = text[:i] + "CE 1 " + text[i + 5:j] + "CE 0 " + text[j + 5:]
    (tmp_path / "swapped").write_text(swapped)
    other = read_kaldi_tree(tmp_path / "swapped", tree.phones, tree.num_states, tree.sil_phone)
    assert mapping_mismatches(tree, other)[0] > 0
    (tmp_path / "cut").write_text(text[: len(text) // 2])
    with pytest.raises(Lm2amError, match="cut"):
        read_kaldi_tree(tmp_path / "cut", tree.phones, tree.num_states)
    with pytest.raises(Lm2amError, match="does not exist"):
        load_kaldi_context_dependency(tmp_path / "missing")


def test_convert_tree_cli_round_trip(tmp_path: Path):
    tree = toy_tree()
    tree.save(tmp_path / "tree.json")
    (tmp_path / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(PHONES)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = [sys.executable, str(REPO / "steps/convert_tree.py")]
    r = subprocess.run(cli + ["to-kaldi", str(tmp_path / "tree.json"), str(tmp_path / "tree")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "0 mismatches" in r.stdout
    r = subprocess.run(cli + ["from-kaldi", "--sil-phone", "SIL", str(tmp_path / "tree"), str(tmp_path / "phones.txt"),
                              str(tmp_path / "back.json")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    back = ContextTree.load(tmp_path / "back.json")
    assert mapping_mismatches(tree, back)[0] == 0
    r = subprocess.run(cli + ["from-kaldi", str(tmp_path / "nope"), str(tmp_path / "phones.txt"),
                              str(tmp_path / "x.json")], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- second decoder
SENTENCES = [["BEE", "TEA"], ["CAT", "TAB"], ["BEAT", "CAT", "TEA"], ["TEAK"], ["TEA", "BEE", "BEAT"], ["TAB"]]


@pytest.mark.parametrize("source", ["fst", "k2"])
def test_both_decoders_find_the_same_best_path_on_the_toy_graph(toy, source: str):  # noqa: F811
    from lm2am.decode import DecodeConfig, decode
    from lm2am.decode.kaldi import decode as kaldi_decode
    from lm2am.decode.compare import k2_best_path_costs
    from lm2am.decode.kaldi import load_kaldi_graph

    tree, graph = toy["tree"], toy["graph"]
    ll = {f"u{i}": peaked(pdf_seq(tree, ws, dur=i % 3 + 1), tree.num_leaves) for i, ws in enumerate(SENTENCES)}
    cfg = DecodeConfig(acoustic_scale=1.0)
    ours = decode(ll, graph, cfg)
    kg = load_kaldi_graph(toy["root"] / "lang" / "graph", source=source)
    theirs = kaldi_decode(ll, kg, cfg)
    assert theirs.hyps == ours.hyps == {f"u{i}": ws for i, ws in enumerate(SENTENCES)}
    assert not theirs.failed
    k2_costs = k2_best_path_costs(ll, graph, cfg)
    for u in ll:  # the same path: equal total cost (graph + acoustic) up to float32 rounding
        assert theirs.costs[u] == pytest.approx(k2_costs[u], abs=1e-3)
    if source == "fst":  # transition-ids on the path give the same phones and word times
        for u in ll:
            np.testing.assert_array_equal(theirs.frame_phones[u], ours.frame_phones[u])
            assert theirs.word_times[u] == ours.word_times[u]
    assert theirs.rtf > 0


def test_kaldi_decoder_subsampling_and_bad_input(toy):  # noqa: F811
    from lm2am.decode import DecodeConfig
    from lm2am.decode.kaldi import decode as kaldi_decode
    from lm2am.decode.kaldi import load_kaldi_graph

    tree = toy["tree"]
    seq = pdf_seq(tree, ["CAT", "TAB"], dur=2)
    x = peaked(seq[::2], tree.num_leaves)  # every 2nd frame: an AM with subsampling 2
    kg = load_kaldi_graph(toy["root"] / "lang" / "graph")
    res = kaldi_decode({"u": x}, kg, DecodeConfig(acoustic_scale=1.0, subsampling_factor=2))
    assert res.hyps["u"] == ["CAT", "TAB"]
    with pytest.raises(Lm2amError, match="expects"):
        kaldi_decode({"u": x[:, :-1]}, kg)
    with pytest.raises(Lm2amError, match="CPU"):
        kaldi_decode({"u": x}, kg, device="cuda")


def test_decode_cli_kaldi_option_and_compare_script(toy, tmp_path: Path):  # noqa: F811
    import kaldiio

    tree = toy["tree"]
    ll = {f"u{i}": peaked(pdf_seq(tree, ws), tree.num_leaves) for i, ws in enumerate(SENTENCES)}
    kaldiio.save_ark(str(tmp_path / "ll.ark"), ll, scp=str(tmp_path / "ll.scp"))
    (tmp_path / "text").write_text("".join(f"u{i} {' '.join(ws)}\n" for i, ws in enumerate(SENTENCES)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    graph = str(toy["root"] / "lang" / "graph")
    common = ["--graph", graph, "--acoustic-scale", "1.0", "--ref", str(tmp_path / "text")]
    hyps = {}
    for dec in ("k2", "kaldi"):
        r = subprocess.run([sys.executable, str(REPO / "steps/decode.py"), *common, "--decoder", dec, "--no-sclite",
                            "--set-name", "t", str(tmp_path / "ll.scp"), str(tmp_path / dec)],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "%WER 0.00" in (tmp_path / dec / "wer-t").read_text()
        hyps[dec] = (tmp_path / dec / "hyp.txt").read_text()
        assert (tmp_path / dec / "hyp.ctm").read_text()
    assert hyps["k2"] == hyps["kaldi"]
    r = subprocess.run([sys.executable, str(REPO / "steps/compare_decoders.py"), *common, str(tmp_path / "ll.scp"),
                        str(tmp_path / "cmp")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (tmp_path / "cmp" / "compare_decoders.md").read_text()
    assert f"identical output: {len(SENTENCES)}/{len(SENTENCES)} = 100.0 %" in md and "No differing" in md
    assert "| Kaldi FasterDecoder | 0.00 |" in md


def test_verdicts():
    from lm2am.decode.compare import verdict

    assert verdict(10.0, 10.0, 10.0, 0.01).startswith("tie")
    assert verdict(12.0, 10.0, 10.0, 0.01) == "beam: k2 missed the best path"
    assert verdict(10.0, 12.0, 10.0, 0.01) == "beam: Kaldi missed the best path"
    assert verdict(12.0, 11.0, 10.0, 0.01) == "beam: both missed the best path"
    assert verdict(9.0, 11.0, 10.0, 0.01).startswith("SUSPECT")


# ---------------------------------------------------------------- tiny recipe, oracle senones
# tiny_recipe: the shared session fixture of tests/conftest.py (stages 0-11 of conf/tiny.yaml)
@pytest.mark.slow
def test_decoders_agree_on_the_tiny_recipe_graph(tiny_recipe: Path, monkeypatch, tmp_path: Path):
    """Oracle-senone log-likelihoods of test-synth (as tests/test_recipe.py builds them) decoded by
    both decoders over the real graph: >= 95 % identical outputs, no SUSPECT difference, and the
    real tree round-trips through Kaldi's format."""
    from lm2am.decode import DecodeConfig
    from lm2am.decode.compare import compare_decoders
    from lm2am.decode.score import read_references

    monkeypatch.chdir(tiny_recipe)
    part = "test-synth"
    mats = oracle_loglikes(part)
    refs = read_references(f"data/fbank/cuts_{part}.jsonl.gz")
    cmp = compare_decoders(mats, "data/lang/graph", DecodeConfig(acoustic_scale=2.0), refs)
    print("\n" + cmp.markdown("tiny recipe, test-synth, oracle senones"))
    assert cmp.identical_share >= 0.95
    assert cmp.wer_k2 < 10.0 and cmp.wer_kaldi < 10.0
    assert not [d for d in cmp.diffs if str(d["verdict"]).startswith("SUSPECT")]
    # the recipe's own tree through Kaldi's text format and back, checked on every context
    tree = ContextTree.load("exp/tree/tree.json")
    write_kaldi_tree(tree, tmp_path / "tree.txt")
    back = read_kaldi_tree(tmp_path / "tree.txt", tree.phones, tree.num_states, tree.sil_phone)
    cd = load_kaldi_context_dependency(tmp_path / "tree.txt")
    bad, n = mapping_mismatches(tree, back, cd)
    assert bad == 0 and n > 10000
    # and Kaldi's object equals the binary tree the graph stage wrote
    assert cd.__getstate__() == load_kaldi_context_dependency("data/lang/graph/tree").__getstate__()


# ---------------------------------------------------------------- noisy scores, wide-beam referee
# noise std on the 0 / -8 oracle scores; narrow: the decoders' beam and max active; wide: x WIDE
NOISE, NARROW_BEAM, NARROW_ACTIVE, WIDE = 5.0, 4.0, 20, 8.0


def test_decoders_on_noisy_scores_answer_to_a_wide_beam_referee(toy):  # noqa: F811
    """Oracle scores plus seeded Gaussian noise (many hypotheses wrong) decoded at a narrow beam
    by both decoders. Wherever they disagree, a wide-beam Kaldi search (the referee) finds a path
    at least as cheap as each one's, so neither can be "better" than exhaustive search (a k2-side
    scoring or graph bug cannot pass as a beam effect); at the wide beam k2 and Kaldi find the
    same best path (same words and cost)."""
    from lm2am.decode import DecodeConfig
    from lm2am.decode import decode as k2_decode
    from lm2am.decode.compare import compare_decoders, k2_best_path_costs
    from lm2am.decode.kaldi import decode as kaldi_decode
    from lm2am.decode.kaldi import load_kaldi_graph
    from lm2am.decode.score import compute_wer

    tree, graph, graph_dir = toy["tree"], toy["graph"], toy["root"] / "lang" / "graph"
    rng = np.random.default_rng(7)
    words = [w for w, _ in TOY_LEX if w != "<UNK>"]
    refs, ll = {}, {}
    for i in range(60):
        ws = list(rng.choice(words, int(rng.integers(1, 5))))
        x = peaked(pdf_seq(tree, ws, dur=int(rng.integers(1, 4))), tree.num_leaves)
        refs[f"u{i:02d}"], ll[f"u{i:02d}"] = ws, x + rng.normal(0, NOISE, x.shape).astype(np.float32)
    narrow = DecodeConfig(acoustic_scale=1.0, search_beam=NARROW_BEAM, output_beam=NARROW_BEAM, min_active_states=1,
                          max_active_states=NARROW_ACTIVE)
    tol = 1e-3
    cmp = compare_decoders(ll, graph_dir, narrow, refs, wide_factor=WIDE)
    assert compute_wer(refs, cmp.k2.hyps).wer > 20.0  # the noise makes real errors
    assert cmp.diffs  # the narrow beam makes the decoders differ somewhere: the referee has work
    for d in cmp.diffs:
        assert d["wide_cost"] <= d["k2_cost"] + tol, d
        assert d["wide_cost"] <= d["kaldi_cost"] + tol, d
    # everywhere, not only where they differ: no narrow search beats the referee
    wide = DecodeConfig(acoustic_scale=1.0, search_beam=NARROW_BEAM * WIDE, output_beam=NARROW_BEAM * WIDE,
                        min_active_states=1, max_active_states=int(NARROW_ACTIVE * WIDE))
    referee = kaldi_decode(ll, load_kaldi_graph(graph_dir), wide, word_times=False)
    assert not referee.failed
    c_k2 = k2_best_path_costs(ll, graph, narrow)
    for u in ll:
        assert referee.costs[u] <= min(c_k2[u], cmp.kaldi.costs.get(u, np.inf)) + tol, u
    # at the wide beam both find the referee's path: same words (continuous noise leaves no exact
    # ties) and the same cost
    wide_k2 = k2_decode(ll, graph, wide, word_times=False)
    c_wide_k2 = k2_best_path_costs(ll, graph, wide)
    for u in ll:
        assert wide_k2.hyps[u] == referee.hyps[u], u
        assert c_wide_k2[u] == pytest.approx(referee.costs[u], abs=tol), u


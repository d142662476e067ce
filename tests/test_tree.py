"""Senone tree: statistics, questions, greedy building on synthetic stats with a known answer,
lookup of unseen contexts, file round trip, determinism and the Kaldi ContextDependency export."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from lm2am.errors import Lm2amError
from lm2am.tree import (EDGE, ContextTree, TreeStats, build_tree, cluster_phones, frame_contexts,
                        read_questions, state_questions)

from conftest import TREE_DIM as D  # noqa: E402
from conftest import TREE_PHONES as PHONES  # noqa: E402
from conftest import random_tree_stats  # noqa: E402

ID = {p: i for i, p in enumerate(PHONES)}
A = [ID["a1"], ID["a2"], ID["a3"]]
B = [ID["b1"], ID["b2"], ID["b3"]]


def _frames(rng, n: int, center: int, lefts, rights, states, mean) -> Tuple[np.ndarray, ...]:
    lt = rng.choice(lefts, n)
    r = rng.choice(rights, n)
    s = rng.choice(states, n)
    m = np.asarray(mean(lt, r, s), float)
    feats = m[:, None] + rng.normal(0, 1, (n, D))
    return feats, lt, np.full(n, center), r, s


def _known_stats(seed: int = 0, n_x: int = 4000) -> TreeStats:
    """Centre x: mean +3 when the left phone is in A, else -3 (right and state irrelevant).
    Centres a*/b*/y: homogeneous, a* near +5, b* near -5 (so clustering can find A and B).
    b3 is never a context of x, and y never a left context at all."""
    rng = np.random.default_rng(seed)
    st = TreeStats(D)
    ctx = A + B[:2] + [ID["SIL"], EDGE]
    st.accumulate(*_frames(rng, n_x, ID["x"], ctx, ctx, [0, 1, 2],
                           lambda lt, r, s: np.where(np.isin(lt, A), 3.0, -3.0)))
    for p, mu in [(a, 5.0) for a in A] + [(b, -5.0) for b in B] + [(ID["y"], 0.0), (ID["SIL"], 0.0)]:
        st.accumulate(*_frames(rng, 600, p, ctx, ctx, [0, 1, 2], lambda lt, r, s, mu=mu: np.full(lt.size, mu)))
    return st


def _split_nodes(node):
    stack = [node]
    while stack:
        nd = stack.pop()
        if nd.key >= 0:
            yield nd
            stack += [nd.yes, nd.no]


def _subtree_count(node) -> float:
    if node.key < 0:
        return node.count
    return _subtree_count(node.yes) + _subtree_count(node.no)


def _root(tree: ContextTree, phone: str):
    return next(nd for ps, nd in tree.roots if ID[phone] in ps)


# ---------------------------------------------------------------- statistics
def test_accumulate_matches_naive_sums_and_merge_and_save(tmp_path: Path):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, D))
    lt, c, r, s = (rng.integers(0, 3, 300) for _ in range(4))
    st = TreeStats(D)
    for i in range(0, 300, 7):  # many small batches exercise the lazy merge
        st.accumulate(feats[i:i + 7], lt[i:i + 7], c[i:i + 7], r[i:i + 7], s[i:i + 7])
    keys = st.keys
    assert len(set(map(tuple, keys))) == st.num_contexts == len({(a, b, cc, d) for a, b, cc, d in zip(lt, c, r, s)})
    for row, key in enumerate(keys[:10]):
        sel = (lt == key[0]) & (c == key[1]) & (r == key[2]) & (s == key[3])
        assert st.count[row] == sel.sum()
        np.testing.assert_allclose(st.sum[row], feats[sel].sum(0))
        np.testing.assert_allclose(st.sumsq[row], (feats[sel] ** 2).sum(0))
    half1, half2 = TreeStats(D), TreeStats(D)
    half1.accumulate(feats[:150], lt[:150], c[:150], r[:150], s[:150])
    half2.accumulate(feats[150:], lt[150:], c[150:], r[150:], s[150:])
    half1 += half2
    np.testing.assert_allclose(half1.stats, st.stats)
    st.save(tmp_path / "1.stats")
    back = TreeStats.load(tmp_path / "1.stats")
    np.testing.assert_array_equal(back.keys, st.keys)
    np.testing.assert_array_equal(back.stats, st.stats)
    (tmp_path / "bad.stats").write_text("junk")
    with pytest.raises(Lm2amError, match="bad.stats"):
        TreeStats.load(tmp_path / "bad.stats")


def test_frame_contexts_handles_edges_and_repeated_phones():
    ph = np.array([1, 1, 5, 5, 5, 5, 5, 5, 7])
    stt = np.array([0, 1, 0, 1, 2, 0, 1, 2, 0])  # "5 5": the state going back starts a new segment
    left, right = frame_contexts(ph, stt)
    assert left.tolist() == [EDGE, EDGE, 1, 1, 1, 5, 5, 5, 5]
    assert right.tolist() == [5, 5, 5, 5, 5, 7, 7, 7, EDGE]
    left2, _ = frame_contexts(ph)  # without states the two 5s merge into one segment
    assert left2.tolist() == [EDGE, EDGE, 1, 1, 1, 1, 1, 1, 5]


# ---------------------------------------------------------------- questions
def test_cluster_phones_groups_phones_with_similar_means():
    qs = cluster_phones(_known_stats())
    universe = set(A + B + [ID["x"], ID["y"], ID["SIL"]])
    assert set(qs[0]) in (set(A), universe - set(A))  # first split: the +5 phones from the rest
    assert sorted(B) in qs
    # no question mixes an a* with a b* phone unless it is a large class above them
    for q in qs:
        if set(q) & set(A) and set(q) & set(B):
            assert set(A) | set(B) <= set(q)


def test_state_questions_and_read_questions(tmp_path: Path):
    assert state_questions(3) == [[0], [0, 1], [1]]
    f = tmp_path / "questions.txt"
    f.write_text("a1 a2 a3\n\n5 6 7\n")
    assert read_questions(f, PHONES) == [A, B]
    f.write_text("a1 zz\n")
    with pytest.raises(Lm2amError, match="questions.txt:1"):
        read_questions(f, PHONES)


# ---------------------------------------------------------------- building
def test_first_split_recovers_the_known_class_and_lookup_of_unseen_contexts():
    st = _known_stats()
    for questions in (None, [A, B, A + B, [ID["a1"]], [ID["b1"], ID["b2"]]]):
        n_roots = len(PHONES) - 2  # all but <eps> and #0
        tree = build_tree(st, PHONES, n_roots + 1, questions=questions, min_count=20)
        assert tree.num_leaves == n_roots + 1
        root = _root(tree, "x")
        seen_left = set(A + B[:2] + [ID["SIL"]])  # the edge 0 counts as SIL
        assert root.key == 0 and set(root.values) & seen_left in (set(A), seen_left - set(A))
        # every left in A -> one senone, every other left (seen or not) -> another one
        rights = [EDGE] + list(range(1, len(PHONES) - 1))
        sen_a = {tree.lookup(lp, ID["x"], rp, s) for lp in A for rp in rights for s in range(3)}
        others = [EDGE, ID["SIL"], ID["y"], ID["x"]] + B
        sen_o = {tree.lookup(lp, ID["x"], rp, s) for lp in others for rp in rights for s in range(3)}
        assert len(sen_a) == 1 and len(sen_o) == 1 and sen_a != sen_o
        # a phone with no stats at all as a centre still has a senone
        assert 0 <= tree.lookup(ID["y"], ID["b3"], ID["y"], 2) < tree.num_leaves


def test_more_leaves_recover_a_two_factor_structure():
    """x depends on left class (A vs rest) and on state (2 vs 0/1): 4 true leaves."""
    rng = np.random.default_rng(3)
    st = TreeStats(D)
    ctx = A + B
    st.accumulate(*_frames(rng, 6000, ID["x"], ctx, ctx, [0, 1, 2],
                           lambda lt, r, s: np.where(np.isin(lt, A), 3.0, -3.0) + np.where(s == 2, 8.0, 0.0)))
    tree = build_tree(st, PHONES, len(PHONES) - 2 + 3, questions=[A, B], min_count=20)
    grid = np.array(list(itertools.product(ctx, ctx, range(3))))
    sen = tree.lookup_array(grid[:, 0], np.full(len(grid), ID["x"]), grid[:, 1], grid[:, 2])
    truth = np.isin(grid[:, 0], A) * 2 + (grid[:, 2] == 2)
    assert len(set(sen)) == 4
    for t in range(4):  # one senone per true class
        assert len(set(sen[truth == t])) == 1


def test_num_leaves_and_min_count_are_respected():
    st, _ = random_tree_stats(5)
    for n_leaves, min_count in [(30, 10.0), (80, 60.0)]:
        tree = build_tree(st, PHONES, n_leaves, min_count=min_count, no_context_phones=["SIL"])
        assert tree.num_leaves == n_leaves
        grid = np.array(list(itertools.product(range(10), range(1, 10), range(10), range(3))))
        sen = tree.lookup_array(grid[:, 0], grid[:, 1], grid[:, 2], grid[:, 3])
        assert sorted(set(sen.tolist())) == list(range(n_leaves))  # dense ids, all reachable
        for _, root in tree.roots:
            for nd in _split_nodes(root):
                if nd.gain > 0:  # a learned split (not the fixed per-state chain of SIL)
                    assert _subtree_count(nd.yes) >= min_count and _subtree_count(nd.no) >= min_count
        assert np.isclose(tree.leaf_counts.sum(), st.total_count)
    # SIL never splits on context: one senone per state
    sil = _root(tree, "SIL")
    assert all(nd.key == 3 for nd in _split_nodes(sil))
    assert len({tree.lookup(lt, ID["SIL"], r, 1) for lt in range(10) for r in range(10)}) == 1
    with pytest.raises(Lm2amError, match="num-leaves"):
        build_tree(st, PHONES, 5, no_context_phones=["SIL"])


def test_edge_context_is_treated_as_silence():
    st, _ = random_tree_stats(6)
    tree = build_tree(st, PHONES, 60, min_count=10)
    for c, s in itertools.product(range(2, 10), range(3)):
        for other in range(1, 10):
            assert tree.lookup(EDGE, c, other, s) == tree.lookup(ID["SIL"], c, other, s)
            assert tree.lookup(other, c, EDGE, s) == tree.lookup(other, c, ID["SIL"], s)
    with pytest.raises(ValueError, match="#0"):
        tree.lookup(1, ID["#0"], 1, 0)


def test_deterministic_and_save_load_round_trip(tmp_path: Path):
    st, (feats, lt, c, r, s) = random_tree_stats(7, integer=True)
    st2 = TreeStats(D)
    order = np.random.default_rng(0).permutation(len(lt))
    for part in np.array_split(order, 13):  # other order and batching, same (exact) sums
        st2.accumulate(feats[part], lt[part], c[part], r[part], s[part])
    t1 = build_tree(st, PHONES, 50, min_count=10)
    t2 = build_tree(st2, PHONES, 50, min_count=10)
    assert t1.to_json() == t2.to_json()
    t1.save(tmp_path / "tree.json")
    back = ContextTree.load(tmp_path / "tree.json")
    assert back.to_json() == t1.to_json()
    np.testing.assert_array_equal(back.lookup_array(lt, c, r, s), t1.lookup_array(lt, c, r, s))
    np.testing.assert_array_equal(back.leaf_counts, t1.leaf_counts)
    text = (tmp_path / "tree.json").read_text()
    assert '"ask": "left"' in text and '"a1"' in text  # readable: questions as phone names
    (tmp_path / "broken.json").write_text(text[: len(text) // 2])
    with pytest.raises(Lm2amError, match="broken.json"):
        ContextTree.load(tmp_path / "broken.json")


# ---------------------------------------------------------------- Kaldi interop
def test_kaldi_context_dependency_gives_the_same_senones_and_reads_back(tmp_path: Path):
    import kaldi_hmm_gmm as khg  # conftest imported it first (before kaldifst: the other order hangs)
    st, _ = random_tree_stats(8)
    tree = build_tree(st, PHONES, 40, min_count=10, no_context_phones=["SIL"],
                      num_states={"SIL": 5}, roots=[["a1", "a2", "a3"]])
    assert any(nd.key == 1 for nd in _split_nodes(_root(tree, "a1")))  # shared root asks the centre
    cd = tree.to_kaldi_context_dependency()
    assert (cd.context_width, cd.central_position, cd.num_pdfs) == (3, 1, tree.num_leaves)
    ctx = range(0, len(PHONES) - 1)
    grid: List[Tuple[int, int, int, int]] = [(lt, c, r, s) for lt, c, r in itertools.product(ctx, range(1, 10), ctx)
                                             for s in range(tree.num_states[c])]
    arr = np.array(grid)
    ours = tree.lookup_array(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    kaldi = [cd.compute([lt, c, r], s) for lt, c, r, s in grid]
    assert all(ok for ok, _ in kaldi)
    assert [pdf for _, pdf in kaldi] == ours.tolist()
    # a Kaldi binary tree file reads back into a tree with the same mapping
    cd.write(True, str(tmp_path / "tree"))
    back = ContextTree.from_kaldi_bytes((tmp_path / "tree").read_bytes(), PHONES, tree.num_states)
    np.testing.assert_array_equal(back.lookup_array(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]), ours)
    assert isinstance(khg.ContextDependency, type)

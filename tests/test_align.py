"""Flat-start aligner: topology, k2 training graphs, Viterbi on known posteriors, and a tiny
synthetic corpus whose frame labels flat-start training must recover."""
from __future__ import annotations

import math
from typing import List, Tuple

import k2
import numpy as np
import pytest
import torch

from lm2am.align import (AlignConfig, HmmTopo, MonoStateModel, StateMap, align, build_graph,
                         compile_graphs, min_frames, train_flat_start, utterance_units)
from lm2am.align.graphs import Unit, _sorted_arcs, graph_arcs
from lm2am.errors import Lm2amError

PHONES = ["<eps>", "SIL", "SPN", "A", "B", "C", "#0", "#1"]
LEX = {"AB": ["A", "B"], "CA": ["C", "A"], "B": ["B"], "BCA": ["B", "C", "A"], "C": ["C"],
       "<UNK>": ["SPN"]}
SIL, SPN, A, B, C = 1, 2, 3, 4, 5


def smap(**kw) -> StateMap:
    return StateMap(PHONES, HmmTopo(**kw))


def accepts(graph: k2.Fsa, pdfs: List[int]) -> Tuple[bool, float]:
    """Does ``graph`` accept the frame sequence ``pdfs``? (and the best path's score)"""
    lin = k2.arc_sort(k2.linear_fsa([p + 1 for p in pdfs]))
    inter = k2.connect(k2.intersect(lin, graph))
    if inter.num_arcs == 0:
        return False, -math.inf
    return True, float(k2.shortest_path(k2.create_fsa_vec([inter]), True).get_tot_scores(
        log_semiring=False, use_double_scores=True)[0])


# ---------------------------------------------------------------- topology and graphs

def test_state_map_numbering():
    m = StateMap({"<eps>": 0, "SIL": 1, "A": 2, "#0": 3}, HmmTopo(num_states=3, sil_num_states=5))
    assert m.num_pdfs == 8 and m.sil_phone == 1
    assert [m.pdf(1, s) for s in range(5)] == list(range(5))
    assert m.pdf(2, 2) == 7
    assert m.pdf_to_phone.tolist() == [1] * 5 + [2] * 3
    assert m.pdf_to_state.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(IndexError):
        m.pdf(2, 3)
    with pytest.raises(ValueError, match="sil_prob"):
        HmmTopo(sil_prob=1.0)


def test_graph_size_toy_lexicon():
    m = smap()
    # units: SIL? A B SIL? C SIL? -> 18 emitting states + start + final
    g = build_graph(["AB", "C"], LEX, m)
    assert g.shape[0] == 20
    # 18 self-loops + 12 within-phone arcs + 10 entry arcs (2 at start, 2 after each word)
    assert g.num_arcs == 40
    assert "ArcSorted" in g.properties_str and "EpsilonFree" in g.properties_str
    g2 = build_graph(["AB", "C"], LEX, smap(optional_silence=False))
    assert (g2.shape[0], g2.num_arcs) == (11, 9 + 6 + 4)
    assert set(g2.labels.tolist()) == {-1} | {m.pdf(p, s) + 1 for p in (A, B, C) for s in range(3)}
    assert min_frames(["AB", "C"], LEX, m) == 9


def test_graph_accepts_right_order_only():
    m = smap(sil_prob=0.25)
    g = build_graph(["AB", "C"], LEX, m)

    def frames(*phones_durs):
        out = []
        for p, d in phones_durs:  # d frames spread over the 3 states, at least one each
            per = [1, 1, 1]
            per[0] += d - 3
            out += [m.pdf(p, s) for s in range(3) for _ in range(per[s])]
        return out

    ok, score = accepts(g, frames((A, 4), (B, 3), (C, 5)))
    assert ok and score == pytest.approx(3 * math.log(0.75))  # three skipped silences
    ok, score = accepts(g, frames((SIL, 3), (A, 4), (B, 3), (SIL, 3), (C, 5), (SIL, 4)))
    assert ok and score == pytest.approx(3 * math.log(0.25))
    assert not accepts(g, frames((C, 5), (A, 4), (B, 3)))[0]  # wrong word order
    assert not accepts(g, frames((A, 4), (C, 5)))[0]  # missing phone
    assert not accepts(g, frames((SIL, 3), (SIL, 3), (A, 4), (B, 3), (C, 3)))[0]  # one sil only
    # skipping a state is impossible: A with states 0 and 2 only
    assert not accepts(g, [m.pdf(A, 0), m.pdf(A, 2)] + frames((B, 3), (C, 3)))[0]


def test_graph_attributes_and_batch():
    m = smap()
    g = build_graph(["B", "CA"], LEX, m)
    final = g.labels == -1
    assert (g.phone_ids[final] == -1).all() and (g.word_ids[final] == -1).all()
    emit = ~final
    assert torch.equal(g.phone_ids[emit].long(),
                       torch.from_numpy(m.pdf_to_phone)[g.labels[emit].long() - 1].long())
    assert set(g.word_ids[g.phone_ids == SIL].tolist()) == {-1}
    assert set(g.word_ids[g.phone_ids == C].tolist()) == {1}
    vec = compile_graphs([["B"], ["CA", "B"], []], LEX, m)
    assert vec.shape[0] == 3
    # empty transcript -> one obligatory silence
    assert build_graph([], LEX, m).shape[0] == 3 + 2


def test_oov_is_a_clear_error():
    with pytest.raises(Lm2amError, match="'ZEBRA'.*utt7"):
        build_graph(["AB", "ZEBRA"], LEX, smap(), utt="utt7")
    with pytest.raises(Lm2amError, match="'Q'"):
        build_graph(["X"], {"X": ["Q"]}, smap())


# ---------------------------------------------------------------- Viterbi on known posteriors

class PosteriorModel(MonoStateModel):
    """A 'model' whose input features are already the log-posteriors."""

    def forward(self, x, lengths=None):
        return torch.log_softmax(x, dim=-1)


def test_viterbi_recovers_known_segmentation():
    m = smap()
    rng = np.random.RandomState(0)
    utts = [  # (words, [(phone, frames per state)])
        (["AB", "C"], [(SIL, [2, 1, 3]), (A, [1, 4, 1]), (B, [2, 2, 2]), (C, [1, 1, 5])]),
        (["C", "B"], [(C, [3, 1, 1]), (SIL, [1, 2, 2]), (B, [1, 1, 1]), (SIL, [2, 2, 4])]),
        (["CA"], [(C, [1, 1, 1]), (A, [2, 2, 2])]),
    ]
    feats, truth = [], []
    for _words, segs in utts:
        pdfs = [m.pdf(p, s) for p, durs in segs for s, d in enumerate(durs) for _ in range(d)]
        post = np.full((len(pdfs), m.num_pdfs), 0.1 / (m.num_pdfs - 1))
        post[np.arange(len(pdfs)), pdfs] = 0.9
        post = post * rng.uniform(0.9, 1.1, post.shape)  # no ties
        feats.append(np.log(post).astype(np.float32))
        truth.append(np.asarray(pdfs, dtype=np.int32))
    model = PosteriorModel(m.num_pdfs, m.num_pdfs)
    out = align(model, feats, [u[0] for u in utts], LEX, PHONES, batch_size=2,
                utt_ids=["u0", "u1", "u2"])
    assert [a.utt_id for a in out] == ["u0", "u1", "u2"]
    for a, t in zip(out, truth):
        np.testing.assert_array_equal(a.states, t)
        np.testing.assert_array_equal(a.phones, m.pdf_to_phone[t])
        assert a.states.dtype == np.int32 and a.num_frames == len(t)
    assert out[0].words == [("AB", 6, 18), ("C", 18, 25)]
    assert out[1].words == [("C", 0, 5), ("B", 10, 13)]
    assert out[0].phone_segments == [(SIL, 0, 6), (A, 6, 12), (B, 12, 18), (C, 18, 25)]
    assert out[1].phone_segments[-1] == (SIL, 13, 21)
    assert out[2].loglike == pytest.approx(float(np.sum(
        feats[2][np.arange(9), truth[2]] - np.log(np.exp(feats[2]).sum(1)))) + 2 * math.log(0.5),
        rel=1e-4)


def test_too_short_utterance_fails_clearly():
    m = smap()
    model = PosteriorModel(m.num_pdfs, m.num_pdfs)
    feats = [np.zeros((4, m.num_pdfs), np.float32), np.zeros((12, m.num_pdfs), np.float32)]
    texts = [["BCA"], ["B"]]
    with pytest.raises(Lm2amError, match="short"):
        align(model, feats, texts, LEX, PHONES, utt_ids=["short", "ok"])
    out = align(model, feats, texts, LEX, PHONES, utt_ids=["short", "ok"], allow_failures=True)
    assert [a.utt_id for a in out] == ["ok"] and out[0].num_frames == 12
    with pytest.raises(Lm2amError, match="outputs"):
        align(PosteriorModel(4, 4), feats, texts, LEX, PHONES)


# ---------------------------------------------------------------- pronunciation variants

VAR = {**LEX, "W": [["A"], ["B", "C"]], "V": [["C"], ["A", "B"]]}


def one_frame_per_state(m: StateMap, *phones: int) -> List[int]:
    return [m.pdf(p, s) for p in phones for s in range(m.num_states(p))]


def test_graph_accepts_each_pronunciation_and_no_mix():
    m = smap(sil_prob=0.25)
    g = build_graph(["W", "AB"], VAR, m)
    assert "EpsilonFree" in g.properties_str and "ArcSorted" in g.properties_str
    for pron in ([A], [B, C]):  # each alternative costs 0: only the three skipped silences count
        ok, score = accepts(g, one_frame_per_state(m, *pron, A, B))
        assert ok and score == pytest.approx(3 * math.log(0.75))
    ok, score = accepts(g, one_frame_per_state(m, SIL, B, C, SIL, A, B, SIL))
    assert ok and score == pytest.approx(3 * math.log(0.25))
    for wrong in ([A, C], [B], [A, B, C], [C]):  # a mix, a prefix, both in a row, a suffix
        assert accepts(g, one_frame_per_state(m, *wrong, A, B)) == (False, -math.inf)


def test_variants_join_at_word_boundaries():
    m = smap()
    g = build_graph(["W", "V"], VAR, m)
    for w in ([A], [B, C]):
        for v in ([C], [A, B]):
            assert accepts(g, one_frame_per_state(m, *w, *v))[0]
    # units SIL | A, B C | SIL | C, A B | SIL: 9 units, 27 states, each with a self-loop, 2
    # forward arcs inside each unit and 2 between the phones of B C and of A B; entry arcs:
    # start 3, after the first SIL 2, after each W variant 3 (SIL, C, A), after the second SIL 2,
    # after each V variant 2 (SIL, final), after the last SIL 1
    assert (g.shape[0], g.num_arcs) == (29, 27 + 18 + 2 + 3 + 2 + 2 * 3 + 2 + 2 * 2 + 1)
    assert min_frames(["W", "V"], VAR, m) == 6 and min_frames(["V", "V"], VAR, m) == 6
    units = utterance_units(["W", "V"], VAR, m)
    assert [(u.phone_id, u.word_id, u.pron_id) for u in units] == [
        (SIL, -1, 0), (A, 0, 0), (B, 0, 1), (C, 0, 1), (SIL, -1, 0), (C, 1, 0), (A, 1, 1), (B, 1, 1),
        (SIL, -1, 0)]
    emit = g.labels != -1
    seg_phone = {int(k): int(p) for k, p in zip(g.seg_ids[emit], g.phone_ids[emit])}
    assert seg_phone == {k: u.phone_id for k, u in enumerate(units)}  # one segment id per unit


def test_repeated_pronunciations_are_one_alternative():
    m = smap(optional_silence=False)
    assert build_graph(["X"], {"X": [["A"], ("A",)]}, m).num_arcs == build_graph(["X"], {"X": ["A"]}, m).num_arcs
    with pytest.raises(Lm2amError, match="empty pronunciation"):
        build_graph(["X"], {"X": [["A"], []]}, m)


def _graph_arcs_before_variants(words, lexicon, m: StateMap):
    """A frozen copy of the training graph as built before pronunciation variants (first
    pronunciation of each word only), for the equality test below."""
    topo = m.topo
    units = []
    for w, word in enumerate(words):
        units += [Unit(m.sil_phone, -1, True)] if topo.optional_silence else []
        units += [Unit(m.phone_id(p), w, False) for p in lexicon[word]]
    units += [Unit(m.sil_phone, -1, True)] if topo.optional_silence else []
    units = units if words else [Unit(m.sil_phone, -1, False)]
    log_sil, log_nosil = math.log(topo.sil_prob), math.log1p(-topo.sil_prob)
    M = len(units)
    entries = [[] for _ in range(M + 1)]
    entries[M] = [(M, 0.0)]
    for k in range(M - 1, -1, -1):
        entries[k] = ([(k, log_sil)] + [(j, s + log_nosil) for j, s in entries[k + 1]]
                      if units[k].optional else [(k, 0.0)])
    nst = [m.num_states(u.phone_id) for u in units]
    first = np.concatenate([[1], 1 + np.cumsum(nst)]).astype(np.int64)
    src, dst, lab, sc, unit_of = [], [], [], [], []

    def enter(q, k_next, base):
        for j, s in entries[k_next]:
            src.append(q), unit_of.append(j), sc.append(base + s)
            dst.append(int(first[j]) if j < M else int(first[-1]))
            lab.append(m.pdf(units[j].phone_id, 0) + 1 if j < M else -1)

    enter(0, 0, 0.0)
    for k, u in enumerate(units):
        for j in range(nst[k]):
            q, label = int(first[k]) + j, m.pdf(u.phone_id, j) + 1
            src.append(q), dst.append(q), lab.append(label), sc.append(topo.loop_score), unit_of.append(k)
            if j + 1 < nst[k]:
                src.append(q), dst.append(q + 1), lab.append(label + 1), sc.append(topo.forward_score)
                unit_of.append(k)
            else:
                enter(q, k + 1, topo.forward_score)
    return _sorted_arcs(units, src, dst, lab, sc, unit_of)


@pytest.mark.parametrize("topo", [{}, {"sil_prob": 0.3, "self_loop_prob": 0.6, "sil_num_states": 5},
                                  {"optional_silence": False}])
def test_single_pronunciation_graph_is_unchanged(topo):
    m = smap(**topo)
    as_lists = {w: [p] for w, p in LEX.items()}  # load_lexicon's form, one pronunciation each
    for words in (["AB", "C"], ["B", "CA", "B"], [], ["<UNK>", "BCA", "C", "C"]):
        want = _graph_arcs_before_variants(words, LEX, m)
        for lex in (LEX, as_lists):
            got = graph_arcs(utterance_units(words, lex, m), m)
            for x, y in zip(got, want):
                assert x.dtype == y.dtype and np.array_equal(x, y)
        g = build_graph(words, as_lists, m)
        assert torch.equal(g.scores, torch.from_numpy(want[1]))


def test_alignment_takes_the_pronunciation_the_frames_support():
    m = smap()
    rng = np.random.RandomState(1)
    utts = [  # (words, [(phone, frames per state)])
        (["W", "AB"], [(SIL, [2, 2, 2]), (B, [1, 2, 1]), (C, [2, 1, 1]), (A, [1, 1, 2]), (B, [2, 2, 1])]),
        (["W", "AB"], [(A, [2, 2, 3]), (SIL, [1, 1, 1]), (A, [1, 1, 2]), (B, [2, 2, 1])]),
        (["W", "V"], [(B, [1, 1, 1]), (C, [2, 1, 1]), (C, [1, 2, 1]), (SIL, [1, 1, 1])]),
        (["W", "V"], [(B, [1, 1, 1]), (C, [2, 1, 1]), (A, [1, 2, 1]), (B, [3, 1, 1])]),
    ]
    feats, truth = [], []
    for _words, segs in utts:
        pdfs = [m.pdf(p, s) for p, durs in segs for s, d in enumerate(durs) for _ in range(d)]
        post = np.full((len(pdfs), m.num_pdfs), 0.1 / (m.num_pdfs - 1))
        post[np.arange(len(pdfs)), pdfs] = 0.9
        feats.append(np.log(post * rng.uniform(0.9, 1.1, post.shape)).astype(np.float32))
        truth.append(np.asarray(pdfs, dtype=np.int32))
    out = align(PosteriorModel(m.num_pdfs, m.num_pdfs), feats, [u[0] for u in utts], VAR, PHONES,
                batch_size=2)
    for a, t, (_, segs) in zip(out, truth, utts):
        np.testing.assert_array_equal(a.states, t)
        assert [p for p, _, _ in a.phone_segments] == [p for p, _ in segs]
    assert out[0].words == [("W", 6, 14), ("AB", 14, 23)]
    assert out[2].phone_segments == [(B, 0, 3), (C, 3, 7), (C, 7, 11), (SIL, 11, 14)]  # C | C: two
    assert out[2].words == [("W", 0, 7), ("V", 7, 11)]


def test_flat_start_trains_on_variants():
    feats, texts, _ = synthetic_corpus(n=6, seed=2)
    lex = {**LEX, "AB": [["A", "B"], ["A", "C", "B"]], "BCA": [["B", "C", "A"], ["B", "A"]]}
    model, hist = train_flat_start(feats, texts, lex, PHONES, HmmTopo(),
                                   AlignConfig(epochs=1, hidden_dim=8, num_layers=1, batch_size=3))
    assert hist[0]["skipped"] == 0 and math.isfinite(hist[0]["loglike_per_frame"])
    out = align(model, feats, texts, lex, PHONES)
    assert [a.num_frames for a in out] == [f.shape[0] for f in feats]


# ---------------------------------------------------------------- flat start on a synthetic corpus

def synthetic_corpus(n: int = 30, dim: int = 20, seed: int = 0):
    """Utterances of 2-4 words; each phone (and silence) is a Gaussian cluster, 4-11 frames long,
    optional silences of 4-14 frames. Returns feats, texts and the true phone id per frame."""
    rng = np.random.RandomState(seed)
    means = {p: rng.randn(dim) * 1.5 for p in (SIL, A, B, C)}
    pid = {"A": A, "B": B, "C": C}
    words = ["AB", "CA", "B", "BCA", "C"]
    feats, texts, labels = [], [], []
    for _ in range(n):
        text = [words[i] for i in rng.randint(0, len(words), size=rng.randint(2, 5))]
        seq: List[int] = []
        if rng.rand() < 0.7:
            seq += [SIL] * rng.randint(4, 15)
        for k, w in enumerate(text):
            for p in LEX[w]:
                seq += [pid[p]] * rng.randint(4, 12)
            if k < len(text) - 1 and rng.rand() < 0.5:
                seq += [SIL] * rng.randint(4, 12)
        if rng.rand() < 0.7:
            seq += [SIL] * rng.randint(4, 15)
        feats.append((np.stack([means[p] for p in seq]) + rng.randn(len(seq), dim))
                     .astype(np.float32))
        texts.append(text)
        labels.append(np.asarray(seq, dtype=np.int32))
    return feats, texts, labels


@pytest.fixture(scope="module")
def trained():
    feats, texts, labels = synthetic_corpus()
    cfg = AlignConfig(epochs=10, hidden_dim=64, num_layers=2, batch_size=8, lr=3e-3, seed=0)
    model, hist = train_flat_start(feats, texts, LEX, PHONES, HmmTopo(), cfg)
    return feats, texts, labels, cfg, model, hist


def test_flat_start_recovers_frame_labels(trained):
    feats, texts, labels, cfg, model, hist = trained
    lls = [h["loglike_per_frame"] for h in hist]
    assert len(lls) == cfg.epochs and lls[-1] > lls[0] + 1.0
    assert all(h["skipped"] == 0 for h in hist)
    out = align(model, feats, texts, LEX, PHONES, batch_size=8)
    assert [a.num_frames for a in out] == [f.shape[0] for f in feats]
    acc = float(np.mean(np.concatenate([a.phones == ref for a, ref in zip(out, labels)])))
    assert acc >= 0.9, f"frame phone accuracy {acc:.3f}"
    for a, words in zip(out, texts):
        assert [w for w, _, _ in a.words] == words
        starts_ends = [x for _, s, e in a.words for x in (s, e)]
        assert starts_ends == sorted(starts_ends) and all(s < e for _, s, e in a.words)


def test_alignment_independent_of_batching(trained):
    feats, texts, _, _, model, _ = trained
    a1 = align(model, feats[:7], texts[:7], LEX, PHONES, batch_size=1)
    a7 = align(model, feats[:7], texts[:7], LEX, PHONES, batch_size=7)
    for x, y in zip(a1, a7):
        np.testing.assert_array_equal(x.states, y.states)
        assert x.loglike == pytest.approx(y.loglike, abs=1e-3)


def test_training_is_deterministic_on_cpu():
    feats, texts, _ = synthetic_corpus(n=8, seed=1)
    cfg = AlignConfig(epochs=2, hidden_dim=16, num_layers=1, batch_size=4, seed=3)
    runs = [train_flat_start(feats, texts, LEX, PHONES, HmmTopo(), cfg) for _ in range(2)]
    assert [h["loglike_per_frame"] for h in runs[0][1]] == [h["loglike_per_frame"] for h in runs[1][1]]
    for p, q in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- equal-alignment warm start, utterance mean

def test_equal_alignment_spreads_frames_over_the_states():
    from lm2am.align.flat_start import equal_alignment

    m = smap()
    lex = {**LEX, "AB": [["A", "B"], ["A", "C", "B"]]}  # the first pronunciation is the one used
    ali = equal_alignment(["AB", "C"], lex, m, 30)  # SIL A B C SIL: 15 states, 2 frames each
    states = [m.pdf(p, j) for p in (SIL, A, B, C, SIL) for j in range(3)]
    np.testing.assert_array_equal(ali, np.repeat(states, 2))
    ali = equal_alignment(["AB", "C"], lex, m, 40)  # no silence between the words; shares within 1 frame
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, ali, -1])))
    assert len(runs) == 15 and runs.min() >= 2 and runs.max() <= 3 and runs.sum() == 40
    ali = equal_alignment(["AB", "C"], lex, m, 10)  # too short for the end silences: phones only
    np.testing.assert_array_equal(ali[:1], [m.pdf(A, 0)])
    assert len(ali) == 10 and set(ali) == {m.pdf(p, j) for p in (A, B, C) for j in range(3)}


def test_utterance_mean_model_ignores_each_utterance_offset():
    torch.manual_seed(0)
    model = MonoStateModel(6, 9, hidden_dim=8, num_layers=2, input_norm="utterance_mean").eval()
    x = torch.randn(2, 12, 6)
    lengths = torch.tensor([12, 7])
    x[1, 7:] = 0.0  # padding
    shifted = x.clone()
    shifted[0] += torch.randn(6) * 5  # a different constant spectral offset per utterance
    shifted[1, :7] += torch.randn(6) * 5
    y, z = model(x, lengths), model(shifted, lengths)
    torch.testing.assert_close(y[0], z[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(y[1, :7], z[1, :7], atol=1e-4, rtol=0)
    glob = MonoStateModel(6, 9, hidden_dim=8, num_layers=2).eval()
    assert not torch.allclose(glob(x, lengths)[0], glob(shifted, lengths)[0], atol=1e-2)
    with pytest.raises(ValueError, match="input_norm"):
        AlignConfig(input_norm="speaker")


def test_equal_start_with_utterance_mean_recovers_offset_utterances():
    """Each utterance shifted by its own constant offset (an unseen voice's spectral tilt):
    equal-alignment rounds, then full-sum rounds, on mean-removed features find the phones."""
    feats, texts, labels = synthetic_corpus(seed=4)
    rng = np.random.RandomState(5)
    feats = [f + rng.randn(f.shape[1]).astype(np.float32) * 3 for f in feats]
    cfg = AlignConfig(epochs=10, hidden_dim=64, num_layers=2, batch_size=8, lr=3e-3, seed=0,
                      equal_align_epochs=3, input_norm="utterance_mean")
    model, hist = train_flat_start(feats, texts, LEX, PHONES, HmmTopo(), cfg)
    assert [h["mode"] for h in hist] == ["equal"] * 3 + ["full_sum"] * 7
    out = align(model, feats, texts, LEX, PHONES, batch_size=8)
    acc = float(np.mean(np.concatenate([a.phones == ref for a, ref in zip(out, labels)])))
    assert acc >= 0.9, f"frame phone accuracy {acc:.3f}"

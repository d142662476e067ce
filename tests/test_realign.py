"""lm2am/align/realign.py: full-rate posteriors from a subsampled AM, monophone-state scores
from senone posteriors, and the senone cover read off a tree. (The realignment of a real part
runs in tests/test_recipe.py.)"""
from __future__ import annotations

import numpy as np
import torch

from lm2am.align.realign import (AmStateScorer, full_rate_log_posteriors, senone_state_cover,
                                 state_log_priors)
from lm2am.am.config import ModelConfig
from lm2am.am.model import build_model


def _model(subsampling: int, senones: int = 6):
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden_dim=16, num_layers=3, dropout=0.0, subsampling=subsampling,
                                feat_dim=8), senones, [], {})
    return m.eval()


def test_full_rate_posteriors_equal_the_model_on_shifted_inputs():
    """Every frame gets the output of the subsampled model run so that it is a kept frame:
    for a frame t away from the edges (beyond the receptive field) that equals the first model
    output after input start s, for any s = t - f//2 - f*j (a different batch, length and
    phase than the interleaving used); padding and the edges change nothing else."""
    f, R = 3, 16  # R > the receptive field of _model (2 + 3 + 9 frames on each side)
    m = _model(f)
    x = torch.randn(2, 70, 8)
    lengths = torch.tensor([70, 55])
    with torch.no_grad():
        out = full_rate_log_posteriors(m, x, lengths)
        assert out.shape == (2, 70, 6)
        for b, T in enumerate(lengths.tolist()):
            for t in range(R, T - R):
                s = t - f // 2 - f * (R // f)
                xs = x[b:b + 1, s:T]
                ref = m(xs, torch.tensor([xs.shape[1]]), with_aux=False)["main"][0, R // f]
                assert torch.allclose(out[b, t], ref, atol=1e-5), (b, t)
            assert torch.equal(out[b, 0], out[b, f // 2])  # the edge frame copies its neighbour
            assert torch.isfinite(out[b, :T]).all()
        one = _model(1)
        assert torch.allclose(full_rate_log_posteriors(one, x, lengths),
                              one(x, lengths, with_aux=False)["main"])


def test_state_scores_sum_the_senones_that_serve_each_state():
    m = _model(1, senones=4)
    cover = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]], bool)  # senone 2 serves states 1 and 2
    log_prior = np.log(np.array([0.5, 0.3, 0.2], np.float32))
    sc = AmStateScorer(m, cover, log_prior)
    assert sc.num_pdfs == 3
    x = torch.randn(1, 10, 8)
    with torch.no_grad():
        p = m(x, torch.tensor([10]), with_aux=False)["main"].exp()[0]
        got = sc.emission_scores(x, torch.tensor([10], dtype=torch.int32))[0]
    want = torch.stack([p[:, 0] + p[:, 1], p[:, 2], p[:, 2] + p[:, 3]], dim=1).log() - torch.from_numpy(log_prior)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(sc.emission_scores(x, prior_scale=0.0)[0], want + torch.from_numpy(log_prior), atol=1e-5)
    # state priors: each senone's prior split equally among its states, normalized
    lp = state_log_priors(cover, np.log(np.array([0.1, 0.2, 0.4, 0.3])))
    np.testing.assert_allclose(np.exp(lp), [0.3, 0.2, 0.5], atol=1e-6)


class _Tree:
    """A stand-in tree: senone = centre phone * 10 + (state if the centre is 1 else 0)."""

    num_leaves = 30

    @staticmethod
    def lookup_array(left, centre, right, state):
        return np.where(centre == 1, 10 + state, centre * 10)


class _Smap:
    num_pdfs = 5
    pdf_to_phone = np.array([1, 1, 1, 2, 2])
    pdf_to_state = np.array([0, 1, 2, 0, 1])


def test_cover_reads_every_context_of_the_tree():
    cover = senone_state_cover(_Tree(), _Smap())
    assert cover.shape == (30, 5)
    assert [list(np.flatnonzero(cover[:, p])) for p in range(5)] == [[10], [11], [12], [20], [20]]
    assert cover[20].sum() == 2 and cover.sum() == 5  # phone 2's states share one senone


def test_an_am_of_another_tree_is_refused():
    """The AM's senone priors follow its own tree's leaf occupancies; after a rebuild of the
    tree with the same number of leaves they no longer do, and realignment refuses it."""
    import pytest

    from lm2am.align.realign import check_am_matches_tree
    from lm2am.errors import Lm2amError

    rng = np.random.default_rng(0)
    counts = rng.integers(50, 5000, size=300).astype(float)
    log_priors = np.log(counts / counts.sum()) + rng.normal(0, 0.05, 300)
    assert check_am_matches_tree(log_priors, counts, "am.pt", "tree.json") > 0.95
    with pytest.raises(Lm2amError, match="trained on another tree"):
        check_am_matches_tree(log_priors, rng.permutation(counts), "am.pt", "tree.json")

"""Input normalization and training-time augmentation of the AM (lm2am.am.augment, model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lm2am.am.augment import (AugmentConfig, CutPerturber, make_spec_augment, mel_centers,
                              stretch_index, warp_frequency)
from lm2am.am.config import ModelConfig, TrainConfig
from lm2am.am.model import build_model, cepstral_lifter_matrix
from lm2am.frames import normalize_input
from lm2am.config import from_dict
from lm2am.errors import Lm2amError


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 40, 80, generator=g) * 3 + 5
    lengths = torch.tensor([40, 25, 12])
    return x, lengths


@pytest.mark.parametrize("mode", ["utterance", "utterance_mean"])
def test_utterance_norm_uses_only_each_utterances_frames(mode):
    x, lengths = _batch()
    y = normalize_input(x, lengths, mode)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(y[i, :n].mean(0), torch.zeros(80), atol=1e-4)
        if mode == "utterance":
            assert torch.allclose(y[i, :n].std(0, unbiased=False), torch.ones(80), atol=1e-3)
        assert float(y[i, n:].abs().max() if n < 40 else 0.0) == 0.0
        # the same utterance alone (no padding) gives the same normalized frames
        alone = normalize_input(x[i:i + 1, :n], lengths[i:i + 1], mode)
        assert torch.allclose(alone[0], y[i, :n], atol=1e-5)
    assert normalize_input(x, lengths, "global") is x


def test_model_output_invariant_to_feature_offset_with_utterance_norm():
    """A per-utterance channel offset/gain (a new microphone or voice level) does not change
    what an utterance-normalized model outputs; with global CMVN it does."""
    torch.manual_seed(0)
    x, lengths = _batch()
    outs = {}
    for norm in ("global", "utterance"):
        m = build_model(ModelConfig(hidden_dim=32, num_layers=2, input_norm=norm, dropout=0.0), 10, [], {})
        m.eval()
        a = m.log_posteriors(x, lengths, normalized=True)
        b = m.log_posteriors(x * 1.7 + 4.0, lengths, normalized=True)
        outs[norm] = float((a - b).abs().max())
    assert outs["utterance"] < 1e-3 < outs["global"]


def test_cepstral_lifter_keeps_the_envelope_and_drops_fine_structure():
    """The lifter is an orthogonal projection onto the first K DCT-II coefficients: a smooth
    spectral envelope passes unchanged, a fast ripple across bins (harmonics) is removed, and
    the model's output does not see the ripple at all."""
    m = cepstral_lifter_matrix(80, 20)
    assert torch.allclose(m @ m, m, atol=1e-5) and torch.allclose(m, m.T)
    assert round(float(torch.trace(m))) == 20  # rank K
    assert torch.equal(cepstral_lifter_matrix(80, 0), torch.eye(80))
    bins = torch.arange(80, dtype=torch.float32)
    envelope = torch.cos(torch.pi / 80 * (bins + 0.5) * 3)  # DCT basis 3: inside the kept 20
    ripple = torch.cos(torch.pi / 80 * (bins + 0.5) * 50)   # basis 50: dropped
    assert torch.allclose(envelope @ m, envelope, atol=1e-4)
    assert float((ripple @ m).abs().max()) < 1e-4
    torch.manual_seed(0)
    x, lengths = _batch()
    outs = {}
    for keep in (0, 20):
        model = build_model(ModelConfig(hidden_dim=32, num_layers=2, dropout=0.0, cepstral_lifter=keep),
                            10, [], {})
        model.eval()
        a = model.log_posteriors(x, lengths, normalized=True)
        b = model.log_posteriors(x + 2.0 * ripple, lengths, normalized=True)
        outs[keep] = float((a - b).abs().max())
        assert "lifter" not in model.state_dict()  # derived from the config, not saved
    assert outs[20] < 1e-3 < outs[0]
    with pytest.raises(ValueError, match="cepstral_lifter"):
        ModelConfig(cepstral_lifter=81)


def test_spec_augment_only_in_training_mode():
    torch.manual_seed(0)
    x, lengths = _batch()
    m = build_model(ModelConfig(hidden_dim=32, num_layers=2, input_norm="utterance", dropout=0.0), 10, [], {})
    m.eval()
    ref = m(x, lengths)["main"]
    m.spec_augment = make_spec_augment(AugmentConfig(spec_augment=True, spec_augment_p=1.0))
    assert torch.equal(m(x, lengths)["main"], ref)  # eval: never augmented
    m.train()
    assert not torch.allclose(m(x, lengths)["main"], ref)  # training: masked
    m.eval()
    assert torch.equal(m(x, lengths)["main"], ref)
    assert set(m.state_dict()) == set(build_model(m.cfg, 10, [], {}).state_dict())


def test_perturber_draws_depend_on_seed_epoch_and_cut_only():
    cfg = AugmentConfig(vtlp=[0.9, 1.1], time_stretch=[0.9, 1.0, 1.1])
    a, b = CutPerturber(cfg, 1), CutPerturber(cfg, 1)
    ids = [f"u{i}" for i in range(30)]
    assert [a.draw(u) for u in ids] == [b.draw(u) for u in reversed(ids)][::-1]
    a.set_epoch(1)
    assert [a.draw(u) for u in ids] != [b.draw(u) for u in ids]
    alphas = [a.draw(u)[0] for u in ids]
    assert min(alphas) >= 0.9 and max(alphas) <= 1.1 and len(set(alphas)) == 30
    assert {a.draw(u)[1] for u in ids} == {0.9, 1.0, 1.1}


def test_time_stretch_keeps_features_and_targets_aligned():
    feats = np.repeat(np.arange(100, dtype=np.float32)[:, None], 80, axis=1)
    targets = np.arange(100)
    for factor in (0.9, 1.1):
        pos, nearest = stretch_index(100, factor)
        assert len(pos) == round(100 / factor)
        p = CutPerturber(AugmentConfig(time_stretch=[factor]), 0)
        x, arrays = p("u", feats, {"senone": targets})
        assert x.shape == (len(pos), 80) and arrays["senone"].shape == (len(pos),)
        # each output frame's target is the source frame nearest to where its features come from
        assert np.all(np.abs(x[:, 0] - arrays["senone"]) <= 0.5 + 1e-4)


def test_vtlp_moves_spectral_peaks_with_the_warp_factor():
    centers = mel_centers(80, AugmentConfig())
    feats = np.zeros((5, 80), np.float32)
    feats[:, 40] = 10.0  # a formant at the centre of bin 40
    assert warp_frequency(feats, 1.0, centers) is feats
    up = warp_frequency(feats, 1.15, centers)  # a shorter vocal tract: formants move up
    down = warp_frequency(feats, 0.87, centers)
    assert int(up[0].argmax()) > 40 > int(down[0].argmax())
    expect_up = np.argmin(np.abs(centers - centers[40] * 1.15))
    assert abs(int(up[0].argmax()) - expect_up) <= 1


def test_augment_config_errors_name_the_key():
    with pytest.raises(Lm2amError, match="unknown key 'vtpl'"):
        from_dict(TrainConfig, {"augment": {"vtpl": [0.9, 1.1]}}, "am.train")
    with pytest.raises(Lm2amError, match="vtlp"):
        from_dict(TrainConfig, {"augment": {"vtlp": [1.2, 0.9]}}, "am.train")
    with pytest.raises(Lm2amError, match="input_norm"):
        from_dict(ModelConfig, {"input_norm": "speaker"}, "am.model")
    assert not AugmentConfig().perturbs_cuts and make_spec_augment(AugmentConfig()) is None

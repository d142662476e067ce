"""lm2am/am/loglikes.py: an AM's log-likelihoods on a part (log-posteriors minus log-priors) as
a Kaldi ark/scp, with frame subsampling, priors fallback and the done marker. Data: the
made-up targets part of tests/test_am.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lm2am.am.config import SystemConfig, TrainConfig, make_model_config
from lm2am.am.train import train_system
from lm2am.errors import Lm2amError
from lm2am.frames import num_subsampled
from test_am import NUM_SENONES, data  # noqa: F401  (the module-scoped data fixture)


@pytest.fixture(scope="module")
def model3(data, tmp_path_factory):  # noqa: F811
    """A 1-epoch AM with output subsampling 3 on the made-up train part."""
    root, paths, _ = data
    exp = tmp_path_factory.mktemp("ll") / "am"
    train_one_epoch(paths, exp, {"num_layers": 3, "hidden_dim": 32, "dropout": 0.0, "subsampling": 3}, valid=False)
    return exp / "final.pt"


def train_one_epoch(paths, exp: Path, model: dict, valid: bool) -> None:
    """A 1-epoch CE AM with these model keys on the made-up train part, into ``exp``."""
    cfg = make_model_config(model)
    train = TrainConfig(epochs=1, warmup_steps=1, max_duration=2.5, checkpoint_every_steps=0, num_threads=1,
                        average_last_epochs=1, valid=valid)
    threads = torch.get_num_threads()
    try:
        train_system(SystemConfig(name="ce"), cfg, train, paths, exp)
    finally:
        torch.set_num_threads(threads)


def test_loglikes_match_the_model_and_priors(data, model3, tmp_path: Path):  # noqa: F811
    import kaldiio
    from lhotse import CutSet

    from lm2am.am.checkpoint import load_model
    from lm2am.am.loglikes import compute_loglikes
    from lm2am.data import load_global_cmvn

    root, paths, _ = data
    cuts = paths.cuts("dev")
    out = tmp_path / "decode_dev" / "loglikes.scp"
    info = compute_loglikes(model3, cuts, out, cmvn=paths.cmvn, max_frames=200)  # several batches
    assert info.subsampling_factor == 3 and info.num_pdfs == NUM_SENONES
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["subsampling_factor"] == 3 and meta["rtf"] >= 0
    lines = out.read_text().splitlines()
    assert lines == sorted(lines) and all(f" {out.with_suffix('.ark')}:" in x for x in lines)
    model, _ = load_model(model3)
    priors = np.load(model3.parent / "priors.npy")
    mean, std = load_global_cmvn(paths.cmvn)
    scp = kaldiio.load_scp(str(out))
    cs = list(CutSet.from_file(cuts))
    assert sorted(scp.keys()) == sorted(c.id for c in cs)
    for c in cs:
        x = torch.from_numpy(((c.load_features() - mean) / std).astype(np.float32))
        ref = model.log_posteriors(x, normalized=True).numpy() - priors  # the utterance alone
        got = scp[c.id]
        assert got.dtype == np.float32 and got.shape == (num_subsampled(c.num_frames, 3), NUM_SENONES)
        assert abs(got.shape[0] * 3 - c.num_frames) < 3  # what the decoder expands to
        np.testing.assert_allclose(got, ref, atol=1e-4)  # batching/padding changes nothing
    assert info.output_frames == sum(num_subsampled(c.num_frames, 3) for c in cs)

    # unchanged rerun: skipped; the ark is not rewritten
    mtime = out.with_suffix(".ark").stat().st_mtime_ns
    again = compute_loglikes(model3, cuts, out, cmvn=paths.cmvn, max_frames=200)
    assert again.output_frames == info.output_frames and out.with_suffix(".ark").stat().st_mtime_ns == mtime


def test_priors_fallback_and_errors(data, model3, tmp_path: Path):  # noqa: F811
    import shutil

    from lhotse import CutSet

    from lm2am.am.loglikes import compute_loglikes
    from lm2am.am.priors import count_priors

    root, paths, _ = data
    exp = tmp_path / "copy"
    exp.mkdir()
    shutil.copy(model3, exp / "final.pt")  # no priors.npy next to it
    out = tmp_path / "ll.scp"
    with pytest.raises(Lm2amError, match="priors.npy: senone priors missing"):
        compute_loglikes(exp / "final.pt", paths.cuts("dev"), out)
    compute_loglikes(exp / "final.pt", paths.cuts("dev"), out, train_cuts=paths.cuts("train"))
    np.testing.assert_allclose(np.load(exp / "priors.npy"),
                               count_priors(CutSet.from_file(paths.cuts("train")), NUM_SENONES, 3))
    with pytest.raises(Lm2amError, match="must end in .scp"):
        compute_loglikes(exp / "final.pt", paths.cuts("dev"), tmp_path / "ll.ark")
    with pytest.raises(Lm2amError, match="cuts missing"):
        compute_loglikes(exp / "final.pt", tmp_path / "none.jsonl.gz", out)


def test_speaker_mean_norm_in_training_and_loglikes(data, tmp_path: Path):  # noqa: F811
    """``input_norm: speaker_mean`` removes each speaker's own feature mean in training and in
    the log-likelihoods (these made-up cuts name no speaker, so each cut is its own): the
    scp equals the model on ``(x - speaker mean) / global std``, and a per-speaker offset (a
    new channel or voice level) does not change it."""
    import kaldiio
    from lhotse import CutSet, MonoCut, SupervisionSegment

    from lm2am.am.checkpoint import load_model
    from lm2am.am.loglikes import compute_loglikes
    from lm2am.data import load_global_cmvn, speaker_means
    from lm2am.data.features import cut_speaker

    root, paths, _ = data
    exp = tmp_path / "am"
    train_one_epoch(paths, exp, {"num_layers": 2, "hidden_dim": 16, "dropout": 0.0, "input_norm": "speaker_mean"},
                    valid=True)
    out = tmp_path / "ll" / "loglikes.scp"
    compute_loglikes(exp / "final.pt", paths.cuts("dev"), out, cmvn=paths.cmvn, max_frames=200)
    model, _ = load_model(exp / "final.pt")
    priors = np.load(exp / "priors.npy")
    _, std = load_global_cmvn(paths.cmvn)
    scp = kaldiio.load_scp(str(out))
    cs = list(CutSet.from_file(paths.cuts("dev")))
    for c in cs:
        x = c.load_features()
        for shift in (0.0, 3.0):
            xs = torch.from_numpy((((x + shift) - (x + shift).mean(0)) / std).astype(np.float32))
            ref = model.log_posteriors(xs, normalized=True).numpy() - priors
            np.testing.assert_allclose(scp[c.id], ref, atol=1e-4)

    # speakers group cuts: the mean is over all of a speaker's frames
    a, b = cs[0], cs[1]
    sup = [SupervisionSegment(id=c.id, recording_id=c.id, start=0, duration=c.duration, speaker="S")
           for c in (a, b)]
    two = [MonoCut(id=c.id, start=0, duration=c.duration, channel=0, features=c.features, supervisions=[s])
           for c, s in zip((a, b), sup)]
    assert cut_speaker(two[0]) == "S" and cut_speaker(a) == a.id
    both = np.concatenate([a.load_features(), b.load_features()])
    np.testing.assert_allclose(speaker_means(two)["S"], both.mean(0), rtol=1e-5, atol=1e-5)

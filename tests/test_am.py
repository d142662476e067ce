"""Acoustic model: configs, losses vs dense references, heads, subsampling, training, resume,
determinism, NaN handling, DDP (CPU/gloo), evaluation and the stage scripts.

Data: a tiny targets cut set built here (random fbank-like features that depend on the senone
label, so a model can learn; made-up frame targets through lm2am.targets) and fake sparse
teacher posteriors (no teacher stage needed).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pytest
import torch

from lm2am import checkpoint as ckpt
from lm2am.am import checkpoint as ckpt_mod
from lm2am.am.config import (HeadConfig, SystemConfig, TrainConfig, load_system_file,
                             make_model_config)
from lm2am.am.data import AmDataset, DataPaths, load_cuts
from lm2am.am.losses import ce_loss, frame_accuracy, interpolation_loss, kd_loss, system_loss
from lm2am.am.model import build_model
from lm2am.am.train import train_system
from lm2am.errors import Lm2amError
from lm2am.frames import num_subsampled, subsample
from lm2am.targets import FrameTargets

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = REPO / "egs" / "synth-en" / "s5" / "conf" / "systems"
NUM_PHONES = 10  # 0 <eps>, 1 SIL, 2 SPN, 3..9 speech phones
NUM_SENONES = 1 + 3 * (NUM_PHONES - 3)  # 0 = silence, 3 states per speech phone
NUM_SUBWORDS = 12
FEAT_DIM = 80
TINY_MODEL = dict(num_layers=3, hidden_dim=32, dropout=0.1)
VOCAB = {"senone": NUM_SENONES, "monophone": NUM_PHONES, "subword": NUM_SUBWORDS}


# --------------------------------------------------------------------------- fixtures


def fake_targets(T: int, rng: np.random.Generator) -> FrameTargets:
    """Consistent made-up targets: SIL at both ends, phones of 3-8 frames, 3 senone states per
    phone, one subword token per two phones."""
    s0, s1 = int(rng.integers(3, 8)), int(rng.integers(3, 8))
    phone = np.full(T, 1, np.int32)
    phone_pos = np.full(T, -1, np.int32)
    senone = np.zeros(T, np.int32)
    t, k, prev = s0, 0, -1
    while t < T - s1:
        n = min(int(rng.integers(3, 9)), T - s1 - t)
        p = int(rng.integers(3, NUM_PHONES))
        while p == prev:
            p = int(rng.integers(3, NUM_PHONES))
        phone[t:t + n], phone_pos[t:t + n], prev = p, k, p
        states = np.minimum(np.arange(n) * 3 // max(n, 1), 2)
        senone[t:t + n] = 1 + 3 * (p - 3) + states
        t, k = t + n, k + 1
    sil = phone_pos < 0
    senone_pos = np.full(T, -1, np.int32)
    sp = np.flatnonzero(~sil)
    if len(sp):
        new = np.ones(len(sp), bool)
        new[1:] = (senone[sp][1:] != senone[sp][:-1]) | (phone_pos[sp][1:] != phone_pos[sp][:-1])
        senone_pos[sp] = np.cumsum(new) - 1
    subword = np.where(sil, -1, phone_pos // 2).astype(np.int32)
    ntok = int(subword.max()) + 1 if len(sp) else 0
    tokens = [int(x) for x in rng.integers(0, NUM_SUBWORDS, ntok)]
    subword_id = np.where(sil, -1, np.asarray(tokens + [0])[np.maximum(subword, 0)]).astype(np.int32)
    return FrameTargets(senone=senone, phone=phone, subword=subword, subword_id=subword_id,
                        phone_pos=phone_pos, senone_pos=senone_pos, silence=sil, subword_tokens=tokens)


def make_part(root: Path, part: str, n: int, seed: int, emb: np.ndarray) -> Dict[str, FrameTargets]:
    """fbank-like cuts of ``part`` (features = senone embedding + noise) with targets attached
    under ``root/data/targets``, mirroring the targets stage's layout."""
    from lhotse import CutSet, MonoCut, NumpyFilesWriter
    from lhotse.features.base import Features

    from lm2am.targets import attach_targets, write_targets

    rng = np.random.default_rng(seed)
    cuts, targets = [], {}
    feat_dir = root / "data" / "fbank" / f"feats_{part}"
    with NumpyFilesWriter(feat_dir) as w:
        for i in range(n):
            T = int(rng.integers(40, 130))
            cid = f"{part}-{i:03d}"
            t = fake_targets(T, rng)
            x = (emb[t.senone] + 0.8 * rng.standard_normal((T, FEAT_DIM))).astype(np.float32) * 2 + 5
            key = w.write(cid, x)
            f = Features(type="fbank", num_frames=T, num_features=FEAT_DIM, frame_shift=0.01,
                         sampling_rate=16000, start=0.0, duration=T / 100, storage_type=w.name,
                         storage_path=str(feat_dir), storage_key=key, recording_id=cid)
            cuts.append(MonoCut(id=cid, start=0.0, duration=T / 100, channel=0, features=f))
            targets[cid] = t
    tdir = root / "data" / "targets"
    write_targets(targets, tdir, part, num_senones=NUM_SENONES, num_phones=NUM_PHONES,
                  num_subwords=NUM_SUBWORDS)
    attach_targets(CutSet.from_cuts(cuts), tdir, part)
    return targets


class FakePosteriors:
    """``load_teacher_posteriors`` stand-in: top-4 per frame, 0.7 on the true unit label and
    0.1 on three others; mask False on silence and padding. Optionally NaN for some cuts."""

    def __init__(self, targets: Dict[str, FrameTargets], nan_cuts: Sequence[str] = ()):
        self.targets, self.nan_cuts = targets, set(nan_cuts)

    def __call__(self, post_dir: Path, cut_ids: Sequence[str], num_frames: Sequence[int],
                 subsampling: int = 1, vocab_size=None):
        unit = Path(post_dir).parent.name[len("lm_"):]
        field = {"senone": "senone", "monophone": "phone", "subword": "subword_id"}[unit]
        V = VOCAB[unit]
        assert vocab_size in (None, V)
        Ts = num_subsampled(max(num_frames), subsampling)
        idx = torch.zeros(len(cut_ids), Ts, 4, dtype=torch.long)
        probs = torch.zeros(len(cut_ids), Ts, 4)
        mask = torch.zeros(len(cut_ids), Ts, dtype=torch.bool)
        for i, (cid, n) in enumerate(zip(cut_ids, num_frames)):
            t = self.targets[cid]
            assert t.num_frames == n
            lab = torch.from_numpy(subsample(getattr(t, field), subsampling).astype(np.int64))
            sil = torch.from_numpy(subsample(t.silence, subsampling))
            m = len(lab)
            base = lab.clamp(min=0)
            idx[i, :m] = torch.stack([(base + j) % V for j in range(4)], -1)
            probs[i, :m] = torch.tensor([0.7, 0.1, 0.1, 0.1])
            if cid in self.nan_cuts:
                probs[i, :m] = float("nan")
            mask[i, :m] = ~sil
        return type("SparsePosteriors", (), {"indices": idx, "probs": probs, "mask": mask})()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A recipe-like directory with train (8 cuts) and dev (3 cuts) targets, CMVN stats and
    (empty) teacher posterior directories; returns (root, paths, targets by cut id)."""
    import kaldiio

    root = tmp_path_factory.mktemp("am")
    emb = np.random.default_rng(7).standard_normal((NUM_SENONES, FEAT_DIM)).astype(np.float32)
    targets = make_part(root, "train", 8, 1, emb)
    targets.update(make_part(root, "dev", 3, 2, emb))
    feats = [c.load_features() for c in load_cuts(DataPaths(targets_dir=root / "data" / "targets"), "train")]
    cat = np.concatenate(feats).astype(np.float64)
    stats = np.zeros((2, FEAT_DIM + 1))
    stats[0, :-1], stats[1, :-1], stats[0, -1] = cat.sum(0), (cat ** 2).sum(0), len(cat)
    kaldiio.save_mat(str(root / "data" / "fbank" / "global_cmvn.ark"), stats)
    for unit in VOCAB:
        for part in ("train", "dev"):
            (root / "exp" / f"lm_{unit}" / f"post_{part}").mkdir(parents=True)
    paths = DataPaths(targets_dir=root / "data" / "targets", cmvn=root / "data" / "fbank" / "global_cmvn.ark",
                      train_part="train", dev_part="dev",
                      posteriors=str(root / "exp" / "lm_{unit}" / "post_{part}"))
    return root, paths, targets


def tiny_train(**kw) -> TrainConfig:
    base = dict(epochs=3, lr=5e-3, warmup_steps=2, max_duration=2.5, checkpoint_every_steps=0,
                keep_last=2, average_last_epochs=2, log_every_steps=2, num_threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def hier_system(**kw) -> SystemConfig:
    heads = [HeadConfig(unit="monophone", layer=1), HeadConfig(unit="senone", layer=2),
             HeadConfig(unit="subword", layer=-1, loss="kd+ce", ce_weight=0.5)]
    return SystemConfig(name="hier", heads=heads, **kw)


def final_params(exp: Path) -> Dict[str, torch.Tensor]:
    return ckpt_mod.load(exp / "final.pt")["model"]


def assert_same(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- configs


def test_every_system_config_loads():
    files = sorted(SYSTEMS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"ce", "interp_0.1", "interp_0.3", "aux_senone", "aux_monophone", "aux_subword", "hier",
            "hier_no_senone", "hier_no_monophone", "hier_no_subword"} <= names
    for f in files:
        system, model, train = load_system_file(f, REPO / "egs/synth-en/s5/conf/demo.yaml")
        assert system.name == f.stem
        build_model(model, 50, system.heads, {"monophone": 40, "subword": 30})
    hier = load_system_file(SYSTEMS / "hier.yaml")[0]
    assert [h.resolved_layer(6) for h in hier.heads] == [2, 4, 6]  # monophone < senone < subword
    assert hier.teacher_units() == ["monophone", "senone", "subword"]
    assert load_system_file(SYSTEMS / "interp_0.3.yaml")[0].teacher_units() == ["senone"]


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("system:\n  name: x\n  heads:\n    - unit: senone\n      temprature: 2\n")
    with pytest.raises(Lm2amError, match="temprature"):
        load_system_file(bad)
    bad.write_text("system:\n  name: x\n  heads:\n    - unit: phoneme\n")
    with pytest.raises(Lm2amError, match="unit must be one of"):
        load_system_file(bad)
    bad.write_text("system:\n  name: x\n  heads:\n    - unit: senone\n      layer: 9\n")
    with pytest.raises(Lm2amError, match="layer 9 does not exist"):
        load_system_file(bad)
    bad.write_text("system: {name: x}\nmodel: {hidden_dimm: 3}\n")
    with pytest.raises(Lm2amError, match="hidden_dimm"):
        load_system_file(bad)
    # the recipe config's `am` section gives defaults; the system file wins key by key
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("am:\n  model: {hidden_dim: 64, num_layers: 4}\n  train: {epochs: 3, lr: 0.001}\n")
    sysf = tmp_path / "s.yaml"
    sysf.write_text("system: {name: s}\ntrain: {epochs: 5}\n")
    s, m, t = load_system_file(sysf, recipe)
    assert (m.hidden_dim, m.num_layers, t.epochs, t.lr) == (64, 4, 5, 0.001)
    recipe.write_text("am:\n  train: {epoch: 3}\n")
    with pytest.raises(Lm2amError, match="'epoch'"):
        load_system_file(sysf, recipe)
    ok = tmp_path / "ok.yaml"
    ok.write_text("system: {name: x}\nmodel: {preset: gpu, num_layers: 12}\ntrain: {epochs: 2}\n")
    s, m, t = load_system_file(ok, overrides={"train": {"seed": 9}})
    assert (m.hidden_dim, m.bottleneck_dim, t.epochs, t.seed) == (1536, 256, 2, 9)


# --------------------------------------------------------------------------- losses


def _rand(N=2, T=7, V=11, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, T, V, generator=g, dtype=torch.float64)
    labels = torch.randint(0, V, (N, T), generator=g)
    labels[1, -2:] = -1  # padding
    idx = torch.stack([torch.randperm(V, generator=g)[:k] for _ in range(N * T)]).view(N, T, k)
    probs = torch.rand(N, T, k, generator=g, dtype=torch.float64)
    probs = probs / probs.sum(-1, keepdim=True)
    mask = torch.rand(N, T, generator=g) > 0.3
    mask &= labels >= 0
    return logits, labels, idx, probs, mask


def _dense(idx, probs, V):
    return torch.zeros(*idx.shape[:2], V, dtype=probs.dtype).scatter_(-1, idx, probs)


def test_ce_and_interpolation_equal_dense_references():
    logits, labels, idx, probs, mask = _rand()
    logq = torch.log_softmax(logits, -1)
    valid = labels >= 0
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), logits.shape[-1]).double()
    s, n = ce_loss(logq, labels)
    assert n == valid.sum()
    torch.testing.assert_close(s, -(onehot * logq).sum(-1)[valid].sum())
    for lam in (0.0, 0.3, 1.0):
        target = torch.where(mask[..., None], (1 - lam) * onehot + lam * _dense(idx, probs, logits.shape[-1]), onehot)
        ref = -(target * logq).sum(-1)[valid].sum()
        s2, n2 = interpolation_loss(logq, labels, idx, probs, mask, lam)
        torch.testing.assert_close(s2, ref)
        assert n2 == n
    torch.testing.assert_close(interpolation_loss(logq, labels, idx, probs, mask, 0.0)[0], s)  # λ=0 is CE


def test_kd_equals_dense_kl_and_onehot_teacher_equals_ce():
    logits, labels, idx, probs, mask = _rand(V=9, k=9)  # k covers the support
    V = logits.shape[-1]
    for T in (1.0, 2.5):
        p = _dense(idx, probs, V)
        logq = torch.log_softmax(logits / T, -1)
        kl = (torch.special.xlogy(p, p) - p * logq).sum(-1)
        ref = T * T * kl[mask].sum()
        s, n = kd_loss(logits, idx, probs, mask, T)
        torch.testing.assert_close(s, ref.float() if s.dtype == torch.float32 else ref)
        assert n == mask.sum()
        # the dense KL from torch agrees too
        torch.testing.assert_close(
            s, T * T * torch.nn.functional.kl_div(logq[mask], p[mask], reduction="sum").to(s.dtype))
    # top-k with zeros beyond the support: same as dense
    logits, labels, idx, probs, mask = _rand(V=9, k=4, seed=1)
    p = _dense(idx, probs, 9)
    ref = (torch.special.xlogy(p, p) - p * torch.log_softmax(logits, -1)).sum(-1)[mask].sum()
    torch.testing.assert_close(kd_loss(logits, idx, probs, mask)[0], ref.float())
    # one-hot teacher at T=1 is CE to that label
    one_idx = labels.clamp(min=0).unsqueeze(-1)
    one_p = torch.ones_like(one_idx, dtype=torch.float64)
    valid = labels >= 0
    s, n = kd_loss(logits, one_idx, one_p, valid, 1.0)
    torch.testing.assert_close(s.double(), ce_loss(torch.log_softmax(logits, -1), labels)[0])
    # include-silence: frames without a teacher use the one-hot hard label
    s_inc, n_inc = kd_loss(logits, idx, probs, mask, 1.0, labels=labels)
    assert n_inc == valid.sum()
    ce_rest = -torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0][valid & ~mask].sum()
    torch.testing.assert_close(s_inc.double(), kd_loss(logits, idx, probs, mask)[0].double() + ce_rest,
                               rtol=1e-5, atol=1e-5)


def test_system_loss_combines_terms_and_reports_accuracy():
    logits, labels, idx, probs, mask = _rand(V=NUM_SENONES, k=4)
    N, T = labels.shape
    g = torch.Generator().manual_seed(3)
    out = {"main": torch.log_softmax(logits.float(), -1),
           "aux": {"monophone": torch.randn(N, T, NUM_PHONES, generator=g),
                   "subword": torch.randn(N, T, NUM_SUBWORDS, generator=g)}}
    phone = labels % NUM_PHONES
    sub = torch.where(mask, labels % NUM_SUBWORDS, torch.full_like(labels, -1))
    targets = {"senone": labels, "phone": phone, "subword_id": sub, "silence": ~mask & (labels >= 0)}
    teach = {u: {"indices": idx % v, "probs": probs.float(), "mask": mask}
             for u, v in (("senone", NUM_SENONES), ("monophone", NUM_PHONES), ("subword", NUM_SUBWORDS))}
    system = SystemConfig(name="x", main_loss="interpolation", interp_lambda=0.2, heads=[
        HeadConfig(unit="monophone", weight=0.5, temperature=2.0),
        HeadConfig(unit="subword", weight=0.3, loss="kd+ce", ce_weight=0.4)])
    loss, st = system_loss(out, targets, teach, system)

    def mean(k):
        return st[k][0] / st[k][1]
    ref = mean("main_interp") + 0.5 * mean("monophone_kd") + 0.3 * (mean("subword_kd") + 0.4 * mean("subword_ce"))
    torch.testing.assert_close(loss, ref)
    for k in ("main_ce", "main_acc", "monophone_acc", "subword_acc", "loss"):
        assert k in st
    c, n = frame_accuracy(out["main"], labels)
    assert st["main_acc"][0] == c and n == (labels >= 0).sum()


def _random_batch(N: int, T: int, seed: int, speech: float = 0.7):
    """Features, lengths, targets and sparse teachers for a random padded batch (the
    subword label and every teacher only on speech frames, as the dataset gives them)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T] + [max(1, T - 3 * i) for i in range(1, N)])
    valid = torch.arange(T)[None] < lengths[:, None]
    speech_mask = valid & (torch.rand(N, T, generator=g) < speech)
    senone = torch.where(valid, torch.randint(0, NUM_SENONES, (N, T), generator=g), -1)
    phone = torch.where(valid, torch.randint(0, NUM_PHONES, (N, T), generator=g), -1)
    sub = torch.where(speech_mask, torch.randint(0, NUM_SUBWORDS, (N, T), generator=g), -1)
    targets = {"senone": senone, "phone": phone, "subword_id": sub, "silence": valid & ~speech_mask}
    teacher = {}
    for unit, V in (("senone", NUM_SENONES), ("monophone", NUM_PHONES), ("subword", NUM_SUBWORDS)):
        idx = torch.stack([torch.randperm(V, generator=g)[:4] for _ in range(N * T)]).view(N, T, 4)
        probs = torch.rand(N, T, 4, generator=g)
        teacher[unit] = {"indices": idx, "probs": probs / probs.sum(-1, keepdim=True), "mask": speech_mask}
    return {"features": torch.randn(N, T, FEAT_DIM, generator=g), "lengths": lengths,
            "targets": targets, "teacher": teacher}


def _loss_and_grads(model, out_fn, b, system):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout masks for both forwards
    loss, stats = system_loss(out_fn(), b["targets"], b["teacher"], system)
    loss.backward()
    return loss.detach(), stats, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("silence,head_loss,f", [("skip", "kd", 1), ("include", "kd", 1),
                                                 ("skip", "kd+ce", 1), ("include", "kd+ce", 2),
                                                 ("skip", "kd", 3)])
def test_heads_on_loss_frames_equal_heads_on_every_frame(silence, head_loss, f):
    """The training forward (each head only on the frames its loss reads, the others without
    gradient for the accuracy) gives the loss, gradients and statistics of the reference:
    every head on every frame, then masked by the loss."""
    from lm2am.am.losses import head_frames, training_forward

    torch.manual_seed(0)
    cfg = make_model_config(dict(TINY_MODEL, subsampling=f))
    system = SystemConfig(name="h", silence_frames=silence, heads=[
        HeadConfig(unit="monophone", layer=1, loss=head_loss, ce_weight=0.7),
        HeadConfig(unit="senone", layer=2, temperature=1.0, loss=head_loss),
        HeadConfig(unit="subword", layer=-1, loss=head_loss, weight=0.5)])
    model = build_model(cfg, NUM_SENONES, system.heads, VOCAB).train()
    b = _random_batch(3, 40, seed=1)
    b["targets"] = {k: subsample(v, f, axis=1) for k, v in b["targets"].items()}
    b["teacher"] = {u: {k: subsample(v, f, axis=1) for k, v in t.items()} for u, t in b["teacher"].items()}
    ref = _loss_and_grads(model, lambda: model(b["features"], b["lengths"]), b, system)
    new = _loss_and_grads(model, lambda: training_forward(model, b, system), b, system)
    out = training_forward(model, b, system)
    loss_frames, _ = head_frames(b["targets"], b["teacher"], system)
    for h in system.heads:  # the heads really ran on fewer frames where the loss skips some
        assert out["aux"][h.name].shape[0] == int(loss_frames[h.name].sum())
    if silence == "skip" and head_loss == "kd":
        assert out["aux"]["monophone"].shape[0] < int((b["targets"]["phone"] >= 0).sum())
    torch.testing.assert_close(new[0], ref[0], rtol=1e-5, atol=1e-6)
    assert new[1].keys() == ref[1].keys()
    for k in ref[1]:
        torch.testing.assert_close(new[1][k][0].float(), ref[1][k][0].float(), rtol=1e-5, atol=1e-4)
        assert int(new[1][k][1]) == int(ref[1][k][1]), k
    for n, g in ref[2].items():  # every parameter gets a gradient (DDP needs that), the same one
        torch.testing.assert_close(new[2][n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_heads_without_loss_frames_still_get_gradients():
    """A batch without teacher frames: the heads run on no frame, yet every head parameter
    gets a (zero) gradient, so DDP's all-reduce sees the same parameters every step."""
    from lm2am.am.losses import training_forward

    torch.manual_seed(0)
    system = SystemConfig(name="h", heads=[HeadConfig(unit="monophone", layer=1),
                                           HeadConfig(unit="subword", layer=-1)])
    model = build_model(make_model_config(TINY_MODEL), NUM_SENONES, system.heads, VOCAB).train()
    b = _random_batch(2, 20, seed=2, speech=0.0)
    loss, stats = system_loss(training_forward(model, b, system), b["targets"], b["teacher"], system)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(float(p.grad.abs().sum()) == 0 for p in model.heads.parameters())
    assert int(stats["monophone_kd"][1]) == 0 and int(stats["monophone_acc"][1]) == int(b["lengths"].sum())


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("f,after", [(1, 1), (3, 1), (2, 0), (3, 2)])
def test_heads_attach_at_layers_and_padding_and_subsampling(f, after):
    torch.manual_seed(0)
    cfg = make_model_config(dict(TINY_MODEL, subsampling=f, subsample_after=after))
    heads = [HeadConfig(unit="monophone", layer=1), HeadConfig(unit="subword", layer=-1)]
    m = build_model(cfg, NUM_SENONES, heads, VOCAB).eval()
    assert m.head_layers == {"monophone": 1, "subword": 3}
    taps = {}
    for i, layer in enumerate(m.layers, 1):
        layer.register_forward_hook(lambda mod, inp, out, i=i: taps.__setitem__(i, out))
    x = torch.randn(2, 23, FEAT_DIM)
    lengths = torch.tensor([23, 17])
    out = m(x, lengths)
    Ts = num_subsampled(23, f)
    assert out["main"].shape == (2, Ts, NUM_SENONES)
    assert out["lengths"].tolist() == [num_subsampled(23, f), num_subsampled(17, f)]
    # the head at layer 1 reads layer 1's output (subsampled like the targets if below the cut)
    h1 = taps[1][:1, :, :23]  # utterance 0 is unpadded
    h1 = subsample(h1, f, axis=2) if after >= 1 else h1
    torch.testing.assert_close(out["aux"]["monophone"][0], m.heads["monophone"](h1[0].T))
    # a padded utterance gets exactly its own outputs
    alone = m(x[1:, :17], lengths[1:])
    n = num_subsampled(17, f)
    torch.testing.assert_close(out["main"][1, :n], alone["main"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["aux"]["subword"][1, :n], alone["aux"]["subword"][0], atol=1e-5, rtol=1e-5)
    # decoding path: raw features, CMVN from the buffers, main output only
    m.set_cmvn(np.full(FEAT_DIM, 1.0), np.full(FEAT_DIM, 2.0))
    torch.testing.assert_close(m.log_posteriors(x[0] * 2 + 1), out["main"][0], atol=1e-5, rtol=1e-5)


def test_dataset_subsamples_targets_and_teachers(data):
    root, paths, targets = data
    from lm2am.data import load_global_cmvn

    cuts = load_cuts(paths, "train")
    ds = AmDataset(load_global_cmvn(paths.cmvn), 3,
                   {"senone": paths.posterior_dir("senone", "train")}, FakePosteriors(targets))
    b = ds[cuts.subset(first=3)]
    T = int(b["lengths"].max())
    assert b["features"].shape == (3, T, FEAT_DIM)
    Ts = num_subsampled(T, 3)
    for i, cid in enumerate(b["cut_ids"]):
        t = targets[cid]
        sub = subsample(t.senone, 3)
        assert b["targets"]["senone"][i, :len(sub)].tolist() == sub.tolist()
        assert (b["targets"]["senone"][i, len(sub):] == -1).all()
        assert b["targets"]["silence"][i, :len(sub)].tolist() == subsample(t.silence, 3).tolist()
        assert b["targets"]["subword_id"][i, :len(sub)].tolist() == subsample(t.subword_id, 3).tolist()
        assert b["lengths"][i] == t.num_frames
    tt = b["teacher"]["senone"]
    assert tt["indices"].shape == (3, Ts, 4) and tt["mask"].shape == (3, Ts)
    # the teacher's top entry is the label on every speech frame: the same frames line up
    m = tt["mask"]
    assert torch.equal(tt["indices"][..., 0][m], b["targets"]["senone"][m])
    # CMVN applied: the training part's features are ~zero-mean
    assert abs(float(b["features"][0, :b["lengths"][0]].mean())) < 0.3


# --------------------------------------------------------------------------- training


def test_lr_schedules():
    from lm2am.am.optim import LrSchedule

    s = LrSchedule("warmup_cosine", 10, 110, 0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(59) == pytest.approx(0.55) and s(109) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    assert LrSchedule("noam", 10, 0, 0)(39) == pytest.approx(0.5)
    assert LrSchedule("constant", 0, 0, 0)(7) == 1.0


def test_training_lowers_loss_and_is_deterministic(data, tmp_path):
    root, paths, targets = data
    model = make_model_config(TINY_MODEL)
    system = SystemConfig(name="ce")
    a = train_system(system, model, tiny_train(epochs=4), paths, tmp_path / "a")
    train_system(system, model, tiny_train(epochs=4), paths, tmp_path / "b")
    assert_same(final_params(tmp_path / "a"), final_params(tmp_path / "b"))
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    assert hist[-1]["train"]["main_ce"] < hist[0]["train"]["main_ce"] - 0.2
    assert hist[-1]["dev"]["main_acc"] > hist[0]["dev"]["main_acc"]
    for f in ("final.pt", "priors.npy", "training_curve.png", "log/train.log", "config.json"):
        assert (tmp_path / "a" / f).is_file(), f
    assert list((tmp_path / "a" / "tensorboard").iterdir())
    assert [p.name for _, p in ckpt.epoch_checkpoints(tmp_path / "a")] == ["epoch-3.pt", "epoch-4.pt"]
    assert ckpt_mod.load(a)["averaged"] == ["epoch-3.pt", "epoch-4.pt"]
    pri = np.load(tmp_path / "a" / "priors.npy")
    assert pri.shape == (NUM_SENONES,) and abs(np.exp(pri).sum() - 1) < 1e-4 and np.isfinite(pri).all()
    # an unchanged rerun is skipped; another seed gives other weights
    mtime = a.stat().st_mtime_ns
    train_system(system, model, tiny_train(epochs=4), paths, tmp_path / "a")
    assert a.stat().st_mtime_ns == mtime
    train_system(system, model, tiny_train(epochs=1, seed=4, priors="posteriors"), paths, tmp_path / "c")
    pri = np.load(tmp_path / "c" / "priors.npy")
    assert pri.shape == (NUM_SENONES,) and abs(np.exp(pri).sum() - 1) < 1e-4
    train_system(system, model, tiny_train(epochs=1), paths, tmp_path / "d")
    assert not torch.equal(final_params(tmp_path / "c")["output.weight"],
                           final_params(tmp_path / "d")["output.weight"])
    # evaluation of the final model: accuracies of the main head, JSON written
    from lm2am.am.evaluate import evaluate_exp

    res = evaluate_exp(a, paths, "dev")
    assert json.loads((tmp_path / "a" / "eval_dev.json").read_text())["main_acc"] == res["main_acc"]
    assert res["main_acc"] == pytest.approx(hist[-1]["dev"]["main_acc"], abs=0.15)


def test_resume_after_kill_gives_identical_weights(data, tmp_path):
    """hier system (three KD heads, dropout): killed mid-epoch 2 after a step checkpoint, then
    rerun: same final parameters as the uninterrupted run."""
    root, paths, targets = data
    model = make_model_config(TINY_MODEL)
    cfg = tiny_train(epochs=3, checkpoint_every_steps=2)
    fake = FakePosteriors(targets)
    train_system(hier_system(), model, cfg, paths, tmp_path / "full", posterior_loader=fake)
    steps = json.loads((tmp_path / "full" / "history.json").read_text())[0]["step"]
    kill = steps + 3  # one step past the checkpoint at steps + 2 (or steps + 1 for odd counts)
    assert train_system(hier_system(), model, cfg, paths, tmp_path / "killed", posterior_loader=fake,
                        stop_at_step=kill) is None
    assert not (tmp_path / "killed" / "final.pt").exists()
    latest = ckpt.latest_checkpoint(tmp_path / "killed", ckpt_mod.FORMAT)
    assert latest.name.startswith("checkpoint-") and ckpt_mod.load(latest)["batch_in_epoch"] > 0
    train_system(hier_system(), model, cfg, paths, tmp_path / "killed", posterior_loader=fake)
    assert_same(final_params(tmp_path / "full"), final_params(tmp_path / "killed"))
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())
    h_res = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert h_full == h_res  # epoch statistics too (restored mid-epoch)
    assert {"monophone_kd", "senone_kd", "subword_kd", "subword_ce", "monophone_acc"} <= set(h_full[0]["train"])


def test_checkpoint_from_other_model_config_is_an_error(data, tmp_path):
    root, paths, _ = data
    system = SystemConfig(name="ce")
    train_system(system, make_model_config(TINY_MODEL), tiny_train(epochs=1, valid=False), paths, tmp_path / "x")
    with pytest.raises(Lm2amError, match=r"model\.hidden_dim = 32 .* 48"):
        train_system(system, make_model_config(dict(TINY_MODEL, hidden_dim=48)), tiny_train(epochs=2),
                     paths, tmp_path / "x")
    with pytest.raises(Lm2amError, match="seed"):
        train_system(system, make_model_config(TINY_MODEL), tiny_train(epochs=2, seed=11), paths, tmp_path / "x")


def test_nan_batches_are_skipped_then_abort(data, tmp_path, caplog):
    root, paths, targets = data
    model = make_model_config(TINY_MODEL)
    system = SystemConfig(name="aux", heads=[HeadConfig(unit="senone", layer=2)])
    fake = FakePosteriors(targets, nan_cuts=["train-002"])
    train_system(system, model, tiny_train(epochs=1, valid=False), paths, tmp_path / "skip", posterior_loader=fake)
    assert "non-finite loss" in caplog.text
    assert all(torch.isfinite(v).all() for v in final_params(tmp_path / "skip").values() if v.is_floating_point())
    all_nan = FakePosteriors(targets, nan_cuts=list(targets))
    with pytest.raises(Lm2amError, match="3 batches in a row"):
        train_system(system, model, tiny_train(epochs=1, max_consecutive_nan=3), paths, tmp_path / "abort",
                     posterior_loader=all_nan)


def test_missing_teacher_posteriors_are_named(data, tmp_path):
    root, paths, _ = data
    p = DataPaths(**{**paths.__dict__, "posteriors": str(tmp_path / "nowhere_{unit}_{part}")})
    with pytest.raises(Lm2amError, match="nowhere_senone_train"):
        train_system(SystemConfig(name="i", main_loss="interpolation", interp_lambda=0.1),
                     make_model_config(TINY_MODEL), tiny_train(epochs=1), p, tmp_path / "e")


# --------------------------------------------------------------------------- DDP and CLI


def _ddp_worker(rank: int, world: int, port: int, paths: DataPaths, exp: str, targets) -> None:
    import lm2am.am.train as am_train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    fit = am_train._fit

    def fit_and_keep(t, p, gen, stop_at_step):  # this rank's weights and step count after training
        done = fit(t, p, gen, stop_at_step)
        torch.save({"step": p.step, "state_dict": t.model.state_dict()}, Path(exp).parent / f"rank{rank}.pt")
        return done

    am_train._fit = fit_and_keep  # (this worker process only)
    train_system(hier_system(), make_model_config(TINY_MODEL), tiny_train(epochs=2), paths, Path(exp),
                 posterior_loader=FakePosteriors(targets))


def test_ddp_two_gloo_processes(data, tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    assert dist.is_available() and dist.is_gloo_available()  # the pinned torch 1.13.1 Linux wheels have gloo
    root, paths, targets = data
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import time

    ctx = mp.spawn(_ddp_worker, args=(2, port, paths, str(tmp_path / "ddp"), targets), nprocs=2,
                   join=False)
    deadline = time.time() + 180
    while not ctx.join(timeout=2):  # raises if a worker failed
        if time.time() > deadline:  # a collective hang must fail the test, not block it
            for p in ctx.processes:
                p.kill()
            pytest.fail("DDP workers did not finish in 180 s")
    ck = ckpt_mod.load(tmp_path / "ddp" / "final.pt")
    from lm2am.am.data import make_sampler

    cfg = tiny_train(epochs=2)
    per_epoch = {}  # (rank, epoch) -> batches of that rank's shard of the epoch
    for rank in (0, 1):
        for epoch in range(cfg.epochs):
            s = make_sampler(load_cuts(paths, "train"), cfg.max_duration, shuffle=True, seed=cfg.seed,
                             num_buckets=cfg.num_buckets, world_size=2, rank=rank)
            s.set_epoch(epoch)
            per_epoch[rank, epoch] = sum(1 for _ in s)
    want = sum(per_epoch[0, e] for e in range(cfg.epochs))
    assert want == sum(per_epoch[1, e] for e in range(cfg.epochs)) > 0  # the shards are equal (drop_last)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ck["step"] == ranks[0]["step"] == ranks[1]["step"] == want
    one, two = (r["state_dict"] for r in ranks)
    # the ranks start from differently seeded weights (seed + rank): equal only if DDP broadcast
    # rank 0's and all-reduced every gradient
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    assert (tmp_path / "ddp" / "history.json").is_file()


def test_stage_scripts(data, tmp_path):
    root, paths, _ = data
    sysf = tmp_path / "ce.yaml"
    sysf.write_text("system: {name: ce}\nmodel: {num_layers: 2, hidden_dim: 16}\n"
                    "train: {epochs: 1, max_duration: 4.0, num_threads: 1}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    common = ["--targets-dir", str(paths.targets_dir), "--cmvn", str(paths.cmvn),
              "--posteriors", paths.posteriors]
    exp = tmp_path / "exp" / "am_ce" / "seed1"
    r = subprocess.run([sys.executable, str(REPO / "steps/train_am.py"), "--system", str(sysf),
                        "--exp-dir", str(exp), "--seed", "1", "--train-part", "train", "--dev-part", "dev"]
                       + common, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(REPO / "steps/eval_am.py"), "--exp-dir", str(exp), "--part", "dev",
                        "--out", str(exp / "eval_dev.json")] + common, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "main frame accuracy" in r.stdout
    assert 0 <= json.loads((exp / "eval_dev.json").read_text())["main_acc"] <= 1


def test_augmented_training_resumes_exactly_and_changes_training_only(data, tmp_path):
    """train.augment (VTLP, frame-rate changes, SpecAugment): killed mid-epoch and rerun gives
    the uninterrupted run's weights (draws depend on seed, epoch and cut only); the augmented
    model differs from the plain one, and its dev evaluation sees no augmentation."""
    root, paths, targets = data
    model = make_model_config(TINY_MODEL)
    aug = {"vtlp": [0.85, 1.15], "time_stretch": [0.9, 1.0, 1.1], "spec_augment": True}
    cfg = tiny_train(epochs=2, checkpoint_every_steps=2, augment=aug)
    system = SystemConfig(name="ce")
    train_system(system, model, cfg, paths, tmp_path / "full")
    steps = json.loads((tmp_path / "full" / "history.json").read_text())[0]["step"]
    assert train_system(system, model, cfg, paths, tmp_path / "killed", stop_at_step=steps + 3) is None
    train_system(system, model, cfg, paths, tmp_path / "killed")
    assert_same(final_params(tmp_path / "full"), final_params(tmp_path / "killed"))
    train_system(system, model, tiny_train(epochs=2, checkpoint_every_steps=2), paths, tmp_path / "plain")
    assert not torch.equal(final_params(tmp_path / "full")["output.weight"],
                           final_params(tmp_path / "plain")["output.weight"])
    from lm2am.am.evaluate import evaluate_exp

    final = tmp_path / "full" / "final.pt"
    a, b = evaluate_exp(final, paths, "dev"), evaluate_exp(final, paths, "dev")
    assert a["main_acc"] == b["main_acc"]  # evaluation is deterministic: no augmentation at test time
    with pytest.raises(Lm2amError, match="time_stretch"):
        train_system(hier_system(), model, cfg, paths, tmp_path / "kd", posterior_loader=FakePosteriors(targets))

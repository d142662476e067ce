"""Teacher LMs: text-side tokens vs alignment-side, batched masking, training/resume, posterior
ark round trip, resumable sharded writing, loader, storage report, plot, bad inputs."""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import kaldiio
import numpy as np
import pytest
import torch

from lm2am.errors import Lm2amError
from lm2am.frames import num_subsampled, subsample
from lm2am.lm.loader import PosteriorReader, load_teacher_posteriors, to_dense
from lm2am.lm.model import LmConfig, TransformerLM
from lm2am.lm.posteriors import compute_posteriors, encode_rows, merge_posteriors, pos_runs, topk_posteriors
from lm2am.lm.scoring import plan_windows, score_sequences, unigram_perplexity
from lm2am.lm.storage_report import format_storage_report, storage_report
from lm2am.lm.tokens import TextTokenizer, sequences_from_text, target_tokens
from lm2am.lm.train import load_lm, train_lm
from lm2am.targets import FrameTargets, collapse_state_senones, make_frame_targets, write_targets
from lm2am.tree import ContextTree, frame_contexts

torch.set_num_threads(1)

# --------------------------------------------------------------------------- fixtures

VOWELS = ["AA", "AE", "AH", "AO", "EY", "IH"]
NONSIL = VOWELS + ["B", "D", "DH", "G", "K", "M", "S", "T"]
PHONES = ["<eps>", "SIL", "SPN"] + NONSIL + ["#0", "#1"]
PID = {p: i for i, p in enumerate(PHONES)}
LEXICON = {
    "THE": ["DH", "AH"], "CAT": ["K", "AE", "T"], "SAT": ["S", "AE", "T"], "A": ["AH"],
    "BIG": ["B", "IH", "G"], "GAME": ["G", "EY", "M"], "DOG": ["D", "AO", "G"],
    "MAD": ["M", "AE", "D"], "<UNK>": ["SPN"],
}
SENTENCES = ["THE CAT SAT", "A BIG DOG SAT", "THE MAD CAT", "A DOG <UNK> GAME", "BIG GAME",
             "THE BIG MAD DOG SAT A GAME", "CAT", "THE DOG THE CAT THE GAME THE DOG"]
TINY = dict(num_layers=1, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, max_len=16,
            batch_tokens=256, eval_batch_tokens=200, warmup_steps=2, lr=3e-3)


def _tree_doc() -> dict:
    """3 states per phone; state 0 asks 'left is a vowel', state 2 'right is SIL' (so optional
    silence changes senones), silence phones one senone per state."""
    roots, n = [], 0

    def leaf() -> dict:
        nonlocal n
        n += 1
        return {"senone": n - 1, "count": 1.0}

    for p in PHONES[1:-2]:
        if p in ("SIL", "SPN"):
            node = {"ask": "state", "in": [0], "gain": 0.0, "yes": leaf(),
                    "no": {"ask": "state", "in": [1], "gain": 0.0, "yes": leaf(), "no": leaf()}}
        else:
            node = {"ask": "state", "in": [0], "gain": 1.0,
                    "yes": {"ask": "left", "in": VOWELS, "gain": 1.0, "yes": leaf(), "no": leaf()},
                    "no": {"ask": "state", "in": [1], "gain": 1.0, "yes": leaf(),
                           "no": {"ask": "right", "in": ["SIL"], "gain": 1.0, "yes": leaf(),
                                  "no": leaf()}}}
        roots.append({"phones": [p], "tree": node})
    return {"format": "lm2am-senone-tree", "version": 1, "num_leaves": n, "sil_phone": "SIL",
            "info": {}, "phones": PHONES, "num_states": {p: 3 for p in PHONES[1:-2]}, "roots": roots}


@pytest.fixture(scope="module")
def tree() -> ContextTree:
    return ContextTree.from_dict(_tree_doc())


@pytest.fixture(scope="module")
def lang_dir(tmp_path_factory) -> Path:
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("lang")
    (d / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(PHONES)))
    (d / "silence_phones.txt").write_text("SIL\nSPN\n")
    (d / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in sorted(LEXICON.items())))
    rng = random.Random(0)
    words = [w for w in LEXICON if w != "<UNK>"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=40,
                                   model_type="bpe", character_coverage=1.0, num_threads=1,
                                   minloglevel=2)
    (d / "bpe.model").write_bytes(model.getvalue())
    return d


@pytest.fixture(scope="module")
def tok(lang_dir, tree) -> TextTokenizer:
    return TextTokenizer(lang_dir, tree=tree)


def synth_targets(sentence: str, tok: TextTokenizer, tree: ContextTree, sil_after: Sequence[int] = (),
                  seed: int = 0) -> FrameTargets:
    """Frame targets of a fake alignment of ``sentence``: SIL at both ends and after the words
    in ``sil_after``; 1-3 frames per HMM state; senones by the tree as the targets stage does."""
    rng = np.random.default_rng(seed)
    ph: List[int] = []
    st: List[int] = []
    words: List[Tuple[str, int, int]] = []

    def phone(p: int) -> None:
        for s in range(3):
            k = int(rng.integers(1, 4))
            ph.extend([p] * k)
            st.extend([s] * k)

    phone(PID["SIL"])
    for i, w in enumerate(sentence.split()):
        start = len(ph)
        for p in LEXICON[w]:
            phone(PID[p])
        words.append((w, start, len(ph)))
        if i in sil_after:
            phone(PID["SIL"])
    phone(PID["SIL"])
    ph_a, st_a = np.asarray(ph), np.asarray(st)
    starts = np.flatnonzero((np.diff(ph_a) != 0) | (np.diff(st_a) < 0)) + 1
    seg = np.zeros(len(ph_a), bool)
    seg[starts] = True
    left, right = frame_contexts(ph_a, st_a, segment_starts=seg)
    sen = tree.lookup_array(left, ph_a, right, st_a)
    return make_frame_targets(ph_a, sen, words, tok.sp, tok.silence,
                              phone_starts=np.r_[0, starts], utt_id=sentence)


@pytest.fixture(scope="module")
def targets(tok, tree, tmp_path_factory) -> Tuple[Path, Dict[str, FrameTargets]]:
    d = tmp_path_factory.mktemp("targets")
    ts = {f"spk-1-{i:04d}": synth_targets(s, tok, tree, sil_after=(0,) if i % 2 else (), seed=i)
          for i, s in enumerate(SENTENCES)}
    write_targets(ts, d, "train", num_senones=tree.num_leaves, num_phones=len(PHONES),
                  num_subwords=tok.sp.get_piece_size())
    return d, ts


@pytest.fixture(scope="module")
def teacher(targets, tok, tmp_path_factory) -> Path:
    """A tiny senone teacher (a few updates: the tests check mechanics, not quality)."""
    d = tmp_path_factory.mktemp("lm_senone")
    seqs = [target_tokens(t, "senone")[0] for t in targets[1].values()]
    cfg = LmConfig(**TINY, max_steps=3, epochs=3, top_k=4, temperature=2.0)
    train_lm("senone", seqs, seqs[:2], tok.vocab_size("senone"), cfg, d, progress=False)
    return d


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("unit", ["senone", "phone", "subword"])
def test_text_tokens_equal_alignment_tokens(unit, tok, tree, lang_dir):
    for i, s in enumerate(SENTENCES):
        t = synth_targets(s, tok, tree, seed=i)
        assert sequences_from_text(unit, [s], lang_dir, tokenizer=tok) == [target_tokens(t, unit)[0]], s


def test_senone_tokens_collapse_and_optional_silence(tok, tree, lang_dir):
    s = "THE CAT SAT"
    # The vectorized collapse equals collapse_state_senones on explicit per-phone states.
    ph = [PID[p] for w in s.split() for p in LEXICON[w]]
    ctx = [0] + ph + [0]
    ref = collapse_state_senones([[tree.lookup(ctx[i], p, ctx[i + 2], st) for st in range(3)]
                                  for i, p in enumerate(ph)])
    assert tok.senones(s.split()) == ref
    # Silence between the words: the alignment's senones differ from plain text (SIL context) ...
    ali = target_tokens(synth_targets(s, tok, tree, sil_after=(0, 1)), "senone")[0]
    assert ali != ref
    # ... and the text side produces exactly them when SIL contexts are inserted there.
    assert tok.senones(s.split(), random.Random(0), sil_prob=1.0) == ali
    # sil_prob inserts at random but reproducibly (seeded), about the given fraction.
    many = ["THE CAT SAT A DOG"] * 200
    a = sequences_from_text("senone", many, lang_dir, tokenizer=tok, sil_prob=0.3, seed=1)
    assert a == sequences_from_text("senone", many, lang_dir, tokenizer=tok, sil_prob=0.3, seed=1)
    plain = tok.senones("THE CAT SAT A DOG".split())
    assert 0.5 < sum(x != plain for x in a) / len(a) < 0.95  # 1 - 0.7^4 = 0.76


def test_oov_and_unk_words(tok, lang_dir):
    sp = tok.sp
    assert sequences_from_text("subword", ["THE <UNK> CAT"], lang_dir, tokenizer=tok) == \
        [sp.encode("THE") + [sp.unk_id()] + sp.encode("CAT")]
    # A word missing from the lexicon is <UNK>: no phone token, one <unk> piece.
    assert tok.phones(["THE", "ZEBRA"]) == [PID["DH"], PID["AH"]]
    assert sequences_from_text("phone", ["<UNK>"], lang_dir, tokenizer=tok) == []


# --------------------------------------------------------------------------- masking scheme


def _reference_logits(model: TransformerLM, seq: Sequence[int], spacing: int) -> torch.Tensor:
    """One forward per masked copy and window, unbatched (the definition)."""
    L = model.max_len
    out = torch.empty(len(seq), model.vocab_size)
    plan = plan_windows(len(seq), L, L // 2, 0) if model.causal else plan_windows(len(seq), L, L // 4, L // 4)
    with torch.no_grad():
        for ws, we, os_, oe in plan:
            own = list(range(os_, oe))
            if model.causal:
                x = torch.tensor([[model.bos_id if ws == 0 else seq[ws - 1]] + list(seq[ws:we - 1])])
                out[os_:oe] = model(x)[0, os_ - ws:oe - ws]
                continue
            copies = len(own) if spacing == 0 else min(spacing, len(own))
            for c in range(copies):
                x = torch.tensor([list(seq[ws:we])])
                masked = own[c::copies]
                x[0, [m - ws for m in masked]] = model.mask_id
                out[masked] = model(x)[0, [m - ws for m in masked]]
    return out


@pytest.mark.parametrize("arch,spacing", [("masked", 0), ("masked", 3), ("causal", 0)])
def test_batched_scoring_equals_one_forward_per_copy(arch, spacing):
    torch.manual_seed(0)
    model = TransformerLM(23, LmConfig(**{**TINY, "arch": arch, "dropout": 0.1})).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 23, n).tolist() for n in (1, 2, 5, 16, 17, 40, 0, 9)]  # > max_len: windows
    got = score_sequences(model, seqs, lambda i, lg: lg, spacing=spacing, batch_tokens=64)
    for s, g in zip(seqs, got):
        if not s:
            assert g is None
            continue
        torch.testing.assert_close(g, _reference_logits(model, s, spacing), atol=2e-5, rtol=1e-4)


def test_plan_windows_partition():
    for n in range(1, 80):
        for L, left, right in ((16, 4, 4), (16, 8, 0), (9, 2, 2)):
            plan = plan_windows(n, L, left, right)
            owned = [i for _, _, os_, oe in plan for i in range(os_, oe)]
            assert owned == list(range(n))
            for ws, we, os_, oe in plan:
                assert 0 <= ws <= os_ < oe <= we <= n and we - ws <= L
                assert os_ - ws >= min(left, os_) and (we - oe >= right or we == n)


# --------------------------------------------------------------------------- training


def _toy_corpus(n: int, seed: int) -> List[List[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.randrange(12)]
        for _ in range(rng.randint(4, 20)):
            s.append((s[-1] * 5 + 3) % 12 if rng.random() < 0.85 else rng.randrange(12))
        out.append(s)
    return out


@pytest.mark.parametrize("arch", ["masked", "causal"])
def test_tiny_lm_beats_unigram(arch, tmp_path):
    train, dev = _toy_corpus(300, 0), _toy_corpus(40, 1)  # up to 21 tokens > max_len 16: crops
    cfg = LmConfig(**{**TINY, "d_model": 32, "ffn_dim": 64}, epochs=4, mask_prob=0.25, arch=arch)
    r = train_lm("phone", train, dev, 12, cfg, tmp_path, progress=False)
    assert r["unigram_dev_perplexity"] == pytest.approx(unigram_perplexity(train, dev, 12))
    assert r["dev_perplexity"] < 0.8 * r["unigram_dev_perplexity"], r
    assert (tmp_path / "final.pt").is_file() and (tmp_path / "report.json").is_file()
    model, meta = load_lm(tmp_path / "final.pt")
    assert meta["unit"] == "phone" and meta["vocab_size"] == 12 and not model.training


def test_training_resumes_after_a_kill(tmp_path, monkeypatch):
    train, dev = _toy_corpus(60, 2), _toy_corpus(5, 3)
    cfg = LmConfig(**TINY, epochs=2, checkpoint_every=3)
    train_lm("phone", train, dev, 12, cfg, tmp_path / "a", progress=False)
    import lm2am.lm.train as tr

    calls = {"n": 0}
    real = tr.nn.utils.clip_grad_norm_

    def dying(*a, **k):  # "killed" at update 8 (checkpoint at 6)
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr.nn.utils, "clip_grad_norm_", dying)
    with pytest.raises(KeyboardInterrupt):
        train_lm("phone", train, dev, 12, cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(tr.nn.utils, "clip_grad_norm_", real)
    assert torch.load(tmp_path / "b" / "checkpoint.pt")["step"] == 6
    train_lm("phone", train, dev, 12, cfg, tmp_path / "b", progress=False)
    a = torch.load(tmp_path / "a" / "final.pt")["model"]
    b = torch.load(tmp_path / "b" / "final.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:  # bit-identical, as lm2am/lm/train.py promises (same updates, same batches, CPU)
        assert torch.equal(a[k], b[k]), k


def test_config_section_and_unit_overrides():
    from lm2am.config import from_dict

    cfg = from_dict(LmConfig, {"d_model": 64, "num_heads": 4, "units": {"senone": {"max_len": 512}}}, "lm")
    assert cfg.for_unit("senone").max_len == 512 and cfg.for_unit("phone").max_len == 256
    for bad, msg in (({"colour": 1}, "unknown key 'colour'"), ({"arch": "rnn"}, "arch"),
                     ({"temperature": 0.05}, "temperature"),
                     ({"units": {"word": {}}}, "unknown unit"),
                     ({"units": {"phone": {"bogus": 1}}}, "bogus")):
        with pytest.raises(Lm2amError, match=msg):
            from_dict(LmConfig, bad, "lm")


# --------------------------------------------------------------------------- posteriors


def _post(teacher, targets, out: Path, num_jobs: int = 2) -> dict:
    for j in range(1, num_jobs + 1):
        compute_posteriors(teacher, targets[0], "train", out, job=j, num_jobs=num_jobs, progress=False)
    return merge_posteriors(teacher, targets[0], "train", out, num_jobs=num_jobs)


@pytest.fixture(scope="module")
def post_dir(teacher, targets, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("post")
    _post(teacher, targets, d)
    return d


def test_ark_round_trip(post_dir, teacher, targets):
    info = PosteriorReader(post_dir).info
    assert info["top_k"] == 4 and info["temperature"] == 2.0 and info["cuts"] == len(SENTENCES)
    assert info["mask_spacing"] == 8  # the default; the reference below uses the same copies
    assert info["dense_float32_bytes_per_frame"] / info["bytes_per_frame"] >= 10
    model, _ = load_lm(teacher / "final.pt")
    reader = PosteriorReader(post_dir)
    via_kaldiio = kaldiio.load_scp(str(post_dir / "post.scp"))
    for cut, t in targets[1].items():
        toks, pos = target_tokens(t, "senone")
        np.testing.assert_array_equal(via_kaldiio[cut], reader.read_matrix(cut))
        idx, probs, speech = reader.frames(cut, t.num_frames)
        np.testing.assert_array_equal(speech, pos >= 0)  # silence marked
        assert (probs[~speech] == 0).all()
        np.testing.assert_allclose(probs[speech].sum(1), 1.0, rtol=1e-6)  # renormalized
        assert (np.diff(probs[speech], axis=1) <= 0).all()  # descending
        # values: top-k of softmax(logits / T) of the frame's token, one forward per token
        ref = _reference_logits(model, toks, info["mask_spacing"])
        ri, rp = topk_posteriors(ref, 4, 2.0)
        np.testing.assert_array_equal(idx[speech], ri[pos[speech]])
        np.testing.assert_allclose(probs[speech], rp[pos[speech]], atol=1e-5)
        full = torch.softmax(ref / 2.0, -1)
        kept = full.gather(1, torch.from_numpy(ri)).sum(1, keepdim=True)
        np.testing.assert_allclose(rp, (full.gather(1, torch.from_numpy(ri)) / kept).numpy(), atol=1e-6)


def test_encode_rows_layout():
    pos = np.array([-1, 0, 0, 1, -1, -1, 1, 2, 2, -1])
    s, e, p = pos_runs(pos)
    assert s.tolist() == [1, 3, 6, 7] and e.tolist() == [3, 4, 7, 9] and p.tolist() == [0, 1, 1, 2]
    idx = np.array([[3, 1], [2, -1], [0, 5]])
    pr = np.array([[0.6, 0.4], [1.0, 0.0], [0.5, 0.5]], np.float32)
    m = encode_rows(pos, idx, pr)
    assert m.shape == (5, 6) and m.dtype == np.float32
    assert m[1].tolist() == [3, 4, 2, -1, 1.0, 0.0]
    assert m[-1].tolist() == [10, 10, -1, -1, 0, 0]  # sentinel: T


def test_resume_after_kill_gives_identical_files(teacher, targets, post_dir, tmp_path, monkeypatch):
    out = tmp_path / "post"
    r1 = compute_posteriors(teacher, targets[0], "train", out, job=1, num_jobs=2, progress=False)
    assert not r1["skipped"]
    mtime = (out / "post.1.ark").stat().st_mtime_ns
    # job 2 is "killed" mid-shard: an exception inside, plus what a SIGKILL leaves behind
    import lm2am.lm.posteriors as P

    real = P.encode_rows
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(P, "encode_rows", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_posteriors(teacher, targets[0], "train", out, job=2, num_jobs=2, progress=False)
    monkeypatch.setattr(P, "encode_rows", real)
    assert not (out / "post.2.ark").exists() and not (out / "post.2.scp").exists()
    (out / ".post.2.ark.tmp99999").write_bytes(b"half an ark")
    (out / "post.2.ark").write_bytes(b"stale")  # an ark without scp/marker: not trusted
    with pytest.raises(Lm2amError, match="shard 2 of 2"):
        merge_posteriors(teacher, targets[0], "train", out, num_jobs=2)
    assert compute_posteriors(teacher, targets[0], "train", out, job=1, num_jobs=2,
                              progress=False)["skipped"]
    assert (out / "post.1.ark").stat().st_mtime_ns == mtime
    _post(teacher, targets, out)
    assert not list(out.glob(".post.2.*tmp*"))
    for name in ("post.1.ark", "post.2.ark"):
        assert (out / name).read_bytes() == (post_dir / name).read_bytes(), name
    norm = lambda d: (d / "post.scp").read_text().replace(str(d), "D")  # noqa: E731
    assert norm(out) == norm(post_dir)


def test_loader_shapes_subsampling_mask(post_dir, targets):
    ts = targets[1]
    ids = list(ts)[:4]
    T = [ts[c].num_frames for c in ids]
    full = load_teacher_posteriors(post_dir, ids, T)
    assert full.indices.shape == (4, max(T), 4) and full.indices.dtype == torch.int64
    assert full.probs.dtype == torch.float32 and full.mask.dtype == torch.bool
    for f in (1, 3):
        sp = load_teacher_posteriors(post_dir, ids, T, subsampling=f)
        Tp = num_subsampled(max(T), f)
        assert sp.probs.shape == (4, Tp, 4) and sp.mask.shape == (4, Tp)
        for b, c in enumerate(ids):
            pos = target_tokens(ts[c], "senone")[1]
            n = num_subsampled(T[b], f)
            np.testing.assert_array_equal(sp.mask[b, :n].numpy(), subsample(pos, f) >= 0)
            assert not sp.mask[b, n:].any()  # padding
            torch.testing.assert_close(sp.probs[b, :n], subsample(full.probs[b, :T[b]], f))
        dense = to_dense(sp, 200)
        assert dense.shape == (4, Tp, 200)
        sums = dense.sum(-1)
        torch.testing.assert_close(sums[sp.mask], torch.ones(int(sp.mask.sum())))
        assert (sums[~sp.mask] == 0).all()
    empty = load_teacher_posteriors(post_dir, [], [])
    assert empty.probs.shape == (0, 0, 4)


def test_bad_inputs(post_dir, teacher, targets, tmp_path):
    ids = list(targets[1])[:2]
    T = [targets[1][c].num_frames for c in ids]
    with pytest.raises(Lm2amError, match="post_info.json.*model's head has 7"):
        load_teacher_posteriors(post_dir, ids, T, vocab_size=7)
    sp = load_teacher_posteriors(post_dir, ids, T)
    with pytest.raises(Lm2amError, match="vocabulary size 3"):
        to_dense(sp, 3)
    with pytest.raises(Lm2amError, match=f"cut {ids[0]}.*but the features {T[0] + 1}"):
        load_teacher_posteriors(post_dir, ids[:1], [T[0] + 1])
    with pytest.raises(Lm2amError, match="no teacher posteriors"):
        load_teacher_posteriors(post_dir, ["nope"], [3])
    with pytest.raises(Lm2amError, match="post_info.json is missing"):
        PosteriorReader(tmp_path)
    # a copy whose scp points at a missing ark, and one with a truncated ark
    import shutil

    for case in ("missing", "corrupt"):
        d = tmp_path / case
        shutil.copytree(post_dir, d)
        (d / "post.scp").write_text((d / "post.scp").read_text().replace(str(post_dir), str(d)))
        ark = d / "post.1.ark"
        if case == "missing":
            ark.unlink()
            match = "post.1.ark.*is missing"
        else:
            ark.write_bytes(ark.read_bytes()[:-7])
            match = "post.1.ark.*truncated"
        last = sorted(PosteriorReader(post_dir).keys())[len(targets[1]) // 2 - 1]  # last of shard 1
        with pytest.raises(Lm2amError, match=match):
            PosteriorReader(d).read_matrix(last)
    # targets of another vocabulary than the teacher's
    with pytest.raises(Lm2amError, match="vocabulary"):
        other = tmp_path / "t2"
        write_targets(targets[1], other, "train", num_senones=999, num_phones=len(PHONES))
        compute_posteriors(teacher, other, "train", tmp_path / "p2", progress=False)


def _kl_exact_spaced(teacher: Path, targets_dir: Path, num_cuts: int, spacing: int) -> Tuple[float, float]:
    """Independently of storage_report: the mean over speech frames of ``KL(exact || spaced)``
    of the teacher's tempered distributions, and its upper bound, the mean of ``max_v log(p/q)``
    (KL(p||q) = E_p log(p/q) <= max log(p/q))."""
    from lm2am.targets import read_targets

    model, meta = load_lm(teacher / "final.pt")
    temp = meta["config"].temperature
    reader = read_targets(targets_dir, "train")
    tp = [target_tokens(reader[c], "senone") for c in sorted(reader, key=str.encode)[:num_cuts]]

    def log_probs(sp: int) -> List[torch.Tensor]:
        return score_sequences(model, [t for t, _ in tp], lambda i, lg: torch.log_softmax(lg.double() / temp, -1),
                               spacing=sp)

    kl = bound = frames = 0.0
    for (_, pos), lp, lq in zip(tp, log_probs(0), log_probs(spacing)):
        per_tok = (lp.exp() * (lp - lq)).sum(-1).numpy()
        worst = (lp - lq).max(-1).values.numpy()
        for j in np.asarray(pos)[np.asarray(pos) >= 0]:  # every speech frame of token j
            kl, bound, frames = kl + per_tok[j], bound + worst[j], frames + 1
    return kl / frames, bound / frames


def test_storage_report_and_plot(teacher, targets, post_dir, tmp_path):
    default = LmConfig().mask_spacing
    assert default == 8
    r = storage_report(teacher, targets[0], "train", ks=(1, 2, 4, 100), num_cuts=3,
                       compare_spacing=(0, 2, default), post_dir=post_dir, temperatures=(0.5, 2.0, 4.0))
    ks = {e["k"]: e for e in r["k"]}
    sweep = {e["temperature"]: e for e in r["temperature_sweep"]}  # at the teacher's top_k, 4
    assert sweep[2.0]["mean_kept_mass"] == pytest.approx(ks[4]["mean_kept_mass"])  # the teacher's T
    assert sweep[2.0]["mean_entropy_stored"] == pytest.approx(ks[4]["mean_entropy_topk"])
    assert sweep[2.0]["mean_entropy_full"] == pytest.approx(r["mean_entropy_full"])
    assert sweep[0.5]["mean_kept_mass"] > sweep[2.0]["mean_kept_mass"] > sweep[4.0]["mean_kept_mass"]
    assert sweep[0.5]["mean_entropy_full"] < sweep[2.0]["mean_entropy_full"] < sweep[4.0]["mean_entropy_full"]
    assert ks[1]["mean_entropy_topk"] == pytest.approx(0.0, abs=1e-9)  # one entry: no uncertainty
    assert ks[1]["mean_kept_mass"] < ks[4]["mean_kept_mass"] <= ks[100]["mean_kept_mass"] + 1e-9
    assert ks[100]["kl_topk_full"] == pytest.approx(0.0, abs=1e-9)  # 100 > vocabulary (76): nothing dropped
    assert ks[4]["bytes"] < ks[100]["bytes"] and ks[1]["smaller_than_dense"] > 10
    kl = {e["mask_spacing"]: e["kl_exact_spaced"] for e in r["spacing"]}
    assert kl[0] == 0.0  # exact scoring against itself
    # these cuts have more tokens than the spacing, so spaced masking hides context exact scoring sees
    assert max(len(target_tokens(t, "senone")[0]) for t in list(targets[1].values())[:3]) > default
    for sp in (2, default):
        want, bound = _kl_exact_spaced(teacher, targets[0], 3, sp)
        # (rel 1e-6: float32 logits of differently batched rows)
        assert 0.0 < kl[sp] <= bound and kl[sp] == pytest.approx(want, rel=1e-6), (sp, kl[sp], want, bound)
    text = format_storage_report(r)
    assert "KL(topk||full)" in text and "stored (k=4)" in text and "temperature 0.5: top-4 keep" in text
    from lm2am.lm.plots_lm import plot_teacher_posteriors

    cut = next(iter(targets[1]))
    png = tmp_path / "p.png"
    plot_teacher_posteriors(post_dir, cut, png, reference=targets[1][cut].senone)
    assert png.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- phone-span masking


@pytest.mark.parametrize("sil_after", [(), (0,)])
def test_text_spans_equal_alignment_spans(sil_after, tok, tree, lang_dir):
    from lm2am.lm.scoring import span_index
    from lm2am.lm.tokens import spans_from_text, target_spans

    for i, s in enumerate(SENTENCES):
        t = synth_targets(s, tok, tree, sil_after=sil_after, seed=i)
        seqs, spans = spans_from_text("senone", [s], lang_dir, tokenizer=tok, mask_span="phone",
                                      drop_empty=False)
        ali = target_spans(t, "senone", "phone")
        if not seqs[0]:
            assert len(ali) == 0
            continue
        assert len(spans[0]) == len(seqs[0])
        np.testing.assert_array_equal(span_index(spans[0]), span_index(ali))
        assert span_index(ali)[-1] + 1 == len(t.phone_tokens)  # one span per phone token
    assert target_spans(t, "senone", "token") is None and target_spans(t, "phone", "phone") is None
    assert spans_from_text("senone", SENTENCES, lang_dir, tokenizer=tok)[1] is None


def _span_reference(model: TransformerLM, seq: Sequence[int], labels: np.ndarray, spacing: int
                    ) -> torch.Tensor:
    """The definition, unbatched: per window, copy c masks the owned spans c, c + P, ... whole."""
    L = model.max_len
    out = torch.empty(len(seq), model.vocab_size)
    with torch.no_grad():
        for ws, we, os_, oe in plan_windows(len(seq), L, L // 4, L // 4):
            win = labels[ws:we]
            owned = sorted(set(win[os_ - ws:oe - ws].tolist()))
            copies = len(owned) if spacing == 0 else min(spacing, len(owned))
            for c in range(copies):
                chosen = owned[c::copies]
                x = torch.tensor([list(seq[ws:we])])
                x[0, torch.from_numpy(np.isin(win, chosen))] = model.mask_id
                logits = model(x)[0]
                for j in range(os_, oe):
                    if labels[j] in chosen:
                        out[j] = logits[j - ws]
    return out


@pytest.mark.parametrize("spacing", [0, 2])
def test_span_scoring_equals_one_forward_per_copy(spacing):
    torch.manual_seed(0)
    model = TransformerLM(23, LmConfig(**{**TINY, "dropout": 0.1})).eval()
    rng = np.random.default_rng(0)
    seqs, spans = [], []
    for n in (1, 3, 7, 16, 40, 0):  # 40 > max_len: windows, spans cut by window edges
        seqs.append(rng.integers(0, 23, n).tolist())
        spans.append(np.sort(rng.integers(0, max(n // 2, 1), n)) * 10)  # labels need not be 0, 1, ..
    got = score_sequences(model, seqs, lambda i, lg: lg, spacing=spacing, batch_tokens=64, spans=spans)
    for s, lab, g in zip(seqs, spans, got):
        if s:
            torch.testing.assert_close(g, _span_reference(model, s, lab, spacing), atol=2e-5, rtol=1e-4)
    # spans of one token each are token masking
    single = [np.arange(len(s)) for s in seqs]
    for a, b in zip(score_sequences(model, seqs, lambda i, lg: lg, spacing=spacing, spans=single),
                    score_sequences(model, seqs, lambda i, lg: lg, spacing=spacing)):
        assert (a is None and b is None) or torch.equal(a, b)


def test_span_noise_is_per_span():
    from lm2am.lm.train import _masked_batch

    model = TransformerLM(12, LmConfig(**TINY))
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 12, n) for n in (9, 16, 4)]
    spans = [np.repeat(np.arange(n), 3)[:len(s)] for n, s in zip((3, 6, 2), seqs)]
    for seed in range(20):
        inp, pad, target = _masked_batch(model, seqs, 0.3, torch.Generator().manual_seed(seed), spans)
        for b, sp in enumerate(spans):
            picked = (target[b, :len(sp)] >= 0).numpy()
            masked = (inp[b, :len(sp)] == model.mask_id).numpy()
            assert picked.any()
            for j in np.unique(sp):  # a span is predicted whole, and masked whole or not at all
                assert len(set(picked[sp == j])) == 1 and len(set(masked[sp == j])) == 1
    # no spans = spans of one token each (token masking's draws unchanged)
    one = [np.arange(len(s)) for s in seqs]
    for a, b in zip(_masked_batch(model, seqs, 0.3, torch.Generator().manual_seed(3)),
                    _masked_batch(model, seqs, 0.3, torch.Generator().manual_seed(3), one)):
        assert torch.equal(a, b)


def _iid_phone_targets(n: int, num_phones: int, seed: int) -> Dict[str, FrameTargets]:
    """Cuts of i.i.d. uniform phones 1..num_phones, 3 HMM states each, senone 3(p-1)+s (one per
    state, context-free), 1-2 frames per state. A senone is then fixed by the other states of its
    phone (Bayes entropy 0 given its neighbours) but uniform over num_phones given the other
    phones (Bayes entropy log num_phones): the two masking schemes' limits."""
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(n):
        sen: List[int] = []
        for p in rng.integers(1, num_phones + 1, rng.integers(8, 16)):
            for s in range(3):
                sen += [3 * (p - 1) + s] * int(rng.integers(1, 3))
        sen_a = np.asarray(sen, np.int32)
        T = len(sen_a)
        new = np.r_[True, sen_a[1:] != sen_a[:-1]]
        new_phone = np.r_[True, sen_a[1:] % 3 < sen_a[:-1] % 3] | (new & (sen_a % 3 == 0))
        zero = np.zeros(T, np.int32)
        out[f"u{seed}-{u:03d}"] = FrameTargets(
            sen_a, (sen_a // 3 + 1).astype(np.int32), zero, zero, (np.cumsum(new_phone) - 1).astype(np.int32),
            (np.cumsum(new) - 1).astype(np.int32), np.zeros(T, bool), [0])
    return out


def test_phone_masked_senone_teacher_is_softer(tmp_path):
    """Same data, seed and size: the teacher trained and scored with mask_span phone is softer
    than the token-masked one, by at least half the fixture's Bayes gap (log P nats), and its
    stored posteriors have the same layout."""
    from lm2am.lm.tokens import target_spans

    P = 6
    train, dev = _iid_phone_targets(80, P, 0), _iid_phone_targets(10, P, 1)
    write_targets(train, tmp_path / "targets", "train", num_senones=3 * P, num_phones=P + 1, num_subwords=1)
    info, report, shapes = {}, {}, {}
    for span in ("token", "phone"):
        cfg = LmConfig(**{**TINY, "d_model": 32, "ffn_dim": 64, "max_len": 64, "batch_tokens": 512},
                       epochs=25, mask_prob=0.25, mask_span=span, top_k=8)
        d = tmp_path / span
        report[span] = train_lm(
            "senone", [target_tokens(t, "senone")[0] for t in train.values()],
            [target_tokens(t, "senone")[0] for t in dev.values()], 3 * P, cfg, d, progress=False,
            train_spans=[target_spans(t, "senone", span) for t in train.values()],
            dev_spans=[target_spans(t, "senone", span) for t in dev.values()])
        for j in (1, 2):
            compute_posteriors(d, tmp_path / "targets", "train", d / "post", job=j, num_jobs=2, progress=False)
        info[span] = merge_posteriors(d, tmp_path / "targets", "train", d / "post", num_jobs=2)
        reader = PosteriorReader(d / "post")
        shapes[span] = {c: reader.read_matrix(c).shape for c in reader.keys()}
    assert info["phone"]["mask_span"] == "phone" and info["token"]["mask_span"] == "token"
    gap = 0.5 * np.log(P)
    assert info["phone"]["mean_entropy_stored"] > info["token"]["mean_entropy_stored"] + gap, info
    assert info["phone"]["mean_entropy_full"] > info["token"]["mean_entropy_full"] + gap, info
    assert np.log(report["phone"]["dev_perplexity"]) > np.log(report["token"]["dev_perplexity"]) + gap
    assert report["phone"]["mask_span"] == "phone"
    assert 0 < info["token"]["mean_kept_mass"] <= 1 and 0 < info["phone"]["mean_kept_mass"] <= 1
    assert shapes["phone"] == shapes["token"]  # one row per token run + sentinel, [R + 1, 2 + 2k]
    ids = sorted(train)[:3]
    T = [train[c].num_frames for c in ids]
    a, b = (load_teacher_posteriors(tmp_path / s / "post", ids, T) for s in ("token", "phone"))
    assert a.probs.shape == b.probs.shape and torch.equal(a.mask, b.mask)
    # the stored values are the span-masked scores (the definition, one forward per copy)
    model, _ = load_lm(tmp_path / "phone" / "final.pt")
    reader = PosteriorReader(tmp_path / "phone" / "post")
    for c in ids:
        toks, pos = target_tokens(train[c], "senone")
        _, probs, speech = reader.frames(c, train[c].num_frames)
        ref = _span_reference(model, toks, target_spans(train[c], "senone", "phone"), 8)
        np.testing.assert_allclose(probs[speech], topk_posteriors(ref, 8, 1.0)[1][pos[speech]], atol=1e-5)


def test_mask_span_needs_spans(tmp_path):
    seqs = [[0, 1, 2, 3, 4, 5]]
    cfg = LmConfig(**TINY, mask_span="phone", max_steps=1)
    with pytest.raises(Lm2amError, match="mask_span phone needs the training sequences' spans"):
        train_lm("senone", seqs, seqs, 6, cfg, tmp_path, progress=False)


def test_mask_span_config():
    from lm2am.config import from_dict

    cfg = from_dict(LmConfig, {"mask_span": "phone"}, "lm")
    assert cfg.for_unit("senone").mask_span == "phone" and cfg.for_unit("subword").mask_span == "token"
    cfg = from_dict(LmConfig, {"units": {"senone": {"mask_span": "phone"}}}, "lm")
    assert cfg.for_unit("senone").mask_span == "phone" and cfg.for_unit("phone").mask_span == "token"
    for bad, msg in (({"mask_span": "word"}, r"^lm\.mask_span: must be one of token, phone"),
                     ({"mask_span": "phone", "arch": "causal"}, r"^lm\.mask_span: 'phone' needs arch masked"),
                     ({"units": {"subword": {"mask_span": "phone"}}}, r"^lm\.units\.subword\.mask_span: "),
                     ({"units": {"senone": {"mask_span": 3}}}, r"lm\.units\.senone\.mask_span")):
        with pytest.raises(Lm2amError, match=msg) as e:
            from_dict(LmConfig, bad, "lm")
        assert "\n" not in str(e.value)


def test_training_data_spans(tmp_path, tree, lang_dir, targets, tok):
    """lm_training_data gives a span label per token of every training and dev sequence (text
    and AM transcripts alike) with mask_span phone, and none otherwise."""
    from lm2am.lm.scoring import span_index
    from lm2am.lm.stage import lm_training_data
    from lm2am.lm.tokens import target_spans

    tree.save(tmp_path / "tree" / "tree.json")
    (tmp_path / "lm.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    cfg = LmConfig(**TINY, mask_span="phone", max_dev_sentences=4)
    d = lm_training_data("senone", cfg, lang_dir, tmp_path / "tree", tmp_path / "lm.txt", targets[0], "train")
    assert len(d.train_spans) == len(d.train) and len(d.dev_spans) == len(d.dev) > 0
    for seqs, spans in ((d.train, d.train_spans), (d.dev, d.dev_spans)):
        assert all(len(s) == len(sp) for s, sp in zip(seqs, spans))
    ali = [t for t in targets[1].values() if t.senone_tokens]  # the AM transcripts come last
    for s, sp, t in zip(d.train[-len(ali):], d.train_spans[-len(ali):], ali):
        assert s == t.senone_tokens
        np.testing.assert_array_equal(span_index(sp), span_index(target_spans(t, "senone", "phone")))
    assert max(span_index(sp)[-1] + 1 for sp in d.train_spans) < max(len(s) for s in d.train)  # phones, not tokens
    d = lm_training_data("senone", LmConfig(**TINY), lang_dir, tmp_path / "tree", tmp_path / "lm.txt",
                         targets[0], "train")
    assert d.train_spans is None and d.dev_spans is None

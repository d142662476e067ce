"""Frame targets: piece placement, invariants, ark/scp + lhotse storage, Kaldi alignment import."""
from __future__ import annotations

import gzip
import io
import random
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import kaldiio
import numpy as np
import pytest

from lm2am.errors import Lm2amError
from lm2am.targets import (FRAME_UNITS, FrameTargets, allocate_frames, attach_targets, check_targets,
                           collapse_state_senones, make_frame_targets, read_targets, write_targets)

# --------------------------------------------------------------------------- fixtures

NONSIL = ["AA", "AE", "AH", "AO", "B", "D", "DH", "EY", "G", "IH", "K", "M", "S", "T"]
VOWELS = {"AA", "AE", "AH", "AO", "EY", "IH"}
LEXICON = {
    "THE": ["DH", "AH"], "CAT": ["K", "AE", "T"], "SAT": ["S", "AE", "T"], "A": ["AH"],
    "BIG": ["B", "IH", "G"], "GAME": ["G", "EY", "M"], "DOG": ["D", "AO", "G"],
    "MAD": ["M", "AE", "D"], "<UNK>": ["SPN"],
}
PHONES = ["<eps>", "SIL", "SPN"] + NONSIL + ["#0", "#1"]
PID = {p: i for i, p in enumerate(PHONES)}
SIL, SPN = PID["SIL"], PID["SPN"]


@pytest.fixture(scope="module")
def sp():
    """A tiny BPE model (vocab 50) trained on synthetic upper-case sentences."""
    import sentencepiece as spm

    rng = random.Random(0)
    words = [w for w in LEXICON if w != "<UNK>"] + ["BOOKKEEPER", "QUICKLY", "GREEN", "HOUSE"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=50,
                                   model_type="bpe", character_coverage=1.0, num_threads=1,
                                   minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


@pytest.fixture(scope="module")
def lang_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lang")
    (d / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(PHONES)))
    (d / "silence_phones.txt").write_text("SIL\nSPN\n")
    (d / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in sorted(LEXICON.items())))
    return d


def kaldi_phone_table(position_dependent: bool = True, stress: bool = True) -> List[str]:
    """Kaldi-style phones.txt symbols (prepare_lang.sh order) for NONSIL + SIL/SPN."""
    names = ["<eps>"]
    sil_suffixes = ["", "_B", "_E", "_I", "_S"] if position_dependent else [""]
    for p in ("SIL", "SPN"):
        names += [p + s for s in sil_suffixes]
    for p in NONSIL:
        for v in ([p + "0", p + "1"] if stress and p in VOWELS else [p]):
            names += [v + s for s in (["_B", "_E", "_I", "_S"] if position_dependent else [""])]
    return names + ["#0", "#1"]


def write_symbols(path: Path, names: Sequence[str]) -> Path:
    path.write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    return path


def synth_alignment(words: Sequence[str], kaldi_names: Sequence[str], *, position_dependent=True,
                    stress=True, seed=0, sil_between=(1,)):
    """Frame-level Kaldi pdf/phone alignment of ``words``: 3-state phones, 1–3 frames per state,
    SIL at both ends and after the words listed in ``sil_between``. pdf = 3 * phone index + state.

    Returns (pdf, kaldi phone ids, expected lm2am phones, expected (word, start, end), per-phone
    state pdfs of the speech phones).
    """
    rng = np.random.default_rng(seed)
    kid = {n: i for i, n in enumerate(kaldi_names)}
    pdf: List[int] = []
    kph: List[int] = []
    lm: List[int] = []
    spans: List[Tuple[str, int, int]] = []
    states_per_phone: List[List[int]] = []

    def phone(base: str, kname: str, record: bool):
        base_idx = PHONES.index(base)
        st = []
        for s in range(3):
            n = int(rng.integers(1, 4))
            p = 3 * base_idx + s
            pdf.extend([p] * n)
            kph.extend([kid[kname]] * n)
            lm.extend([PID[base]] * n)
            st.append(p)
        if record:
            states_per_phone.append(st)

    phone("SIL", "SIL", False)
    for i, w in enumerate(words):
        pron = LEXICON[w]
        start = len(pdf)
        for j, p in enumerate(pron):
            name = p + ("1" if stress and p in VOWELS else "")
            if position_dependent:
                pos = "S" if len(pron) == 1 else "B" if j == 0 else "E" if j == len(pron) - 1 else "I"
                name += "_" + pos
            phone(p, name, p not in ("SIL", "SPN"))
        spans.append((w, start, len(pdf)))
        if i in sil_between:
            phone("SIL", "SIL", False)
    phone("SIL", "SIL", False)
    as_arr = lambda x: np.asarray(x, dtype=np.int32)  # noqa: E731
    return as_arr(pdf), as_arr(kph), as_arr(lm), spans, states_per_phone


def write_text_ark(path: Path, data: Dict[str, np.ndarray]) -> Path:
    path.write_text("".join(f"{k} {' '.join(map(str, v))}\n" for k, v in data.items()))
    return path


def pieces(sp, words: Sequence[str]) -> List[int]:
    return [i for w in words for i in sp.encode(w)]


# --------------------------------------------------------------------------- placement


def test_allocate_frames_rules():
    assert allocate_frames(8, [3, 1]).tolist() == [0] * 6 + [1] * 2  # proportional
    assert allocate_frames(4, [1, 1, 1]).tolist() == [0, 0, 1, 2]  # remainder to the earliest tie
    assert allocate_frames(7, [1, 5]).tolist() == [0] + [1] * 6  # largest remainder (0.83 vs 0.17)
    assert allocate_frames(5, [0, 5]).tolist() == [0, 1, 1, 1, 1]  # lone "▁": still >= 1 frame
    assert allocate_frames(3, [1, 1, 1]).tolist() == [0, 1, 2]  # exactly one frame each
    assert allocate_frames(3, [10, 1, 1]).tolist() == [0, 1, 2]  # >= 1 frame beats proportion
    assert allocate_frames(2, [1, 1, 1, 1]).tolist() == [1, 3]  # fewer frames: char midpoints
    assert allocate_frames(1, [1, 1, 1]).tolist() == [1]
    assert allocate_frames(0, [1, 2]).tolist() == []
    for n in range(1, 30):  # monotone, all pieces used when n >= k
        w = [3, 0, 1, 7, 2]
        a = allocate_frames(n, w)
        assert len(a) == n and np.all(np.diff(a) >= 0)
        if n >= len(w):
            assert set(a.tolist()) == set(range(len(w)))


def test_piece_encoding_per_word_matches_sentence(sp):
    text = "THE BOOKKEEPER SAT QUICKLY ON A MAT"
    assert pieces(sp, text.split()) == sp.encode(text)


def test_make_frame_targets_placement(sp):
    # frames: SIL x2 | THE (DH x2, AH x3) | SIL | <UNK> (SPN x2) | QUICKLY (K x1) | SIL
    ph = [SIL, SIL, PID["DH"], PID["DH"], PID["AH"], PID["AH"], PID["AH"], SIL, SPN, SPN, PID["K"], SIL]
    sen = [0, 0, 10, 11, 20, 20, 21, 1, 5, 5, 30, 2]
    words = [("THE", 2, 7), ("<UNK>", 8, 10), ("QUICKLY", 10, 11)]
    t = make_frame_targets(np.array(ph), np.array(sen), words, sp, {SIL, SPN}, utt_id="u")
    sil = np.array([1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert np.array_equal(t.silence, sil)
    for name in ("subword", "subword_id", "phone_pos", "senone_pos"):
        assert np.all(getattr(t, name)[sil] == -1), name
    the, quickly = sp.encode("THE"), sp.encode("QUICKLY")
    assert t.subword_tokens == the + [sp.unk_id()] + quickly  # <UNK> word: one frameless <unk>
    assert len(quickly) > 1  # 1 frame for several pieces: the middle piece by character midpoint
    k = len(the) + 1 + int(allocate_frames(1, [len(sp.id_to_piece(i).strip("\u2581")) for i in quickly])[0])
    assert t.subword[10] == k and t.subword_id[10] == t.subword_tokens[k]
    speech = ~sil
    assert np.array_equal(np.asarray(t.subword_tokens)[t.subword[speech]], t.subword_id[speech])
    assert t.phone_pos.tolist() == [-1, -1, 0, 0, 1, 1, 1, -1, -1, -1, 2, -1]
    assert t.senone_pos.tolist() == [-1, -1, 0, 1, 2, 2, 3, -1, -1, -1, 4, -1]
    assert t.phone_tokens == [PID["DH"], PID["AH"], PID["K"]]
    assert t.senone_tokens == collapse_state_senones([[10, 11], [20, 20, 21], [30]])
    assert t.senone.dtype == np.int32 and t.silence.dtype == np.bool_
    check_targets("u", t, 12, num_senones=31, num_phones=len(PHONES), num_subwords=sp.get_piece_size())


def test_phone_tokens_split_at_word_boundary_and_phone_starts(sp):
    # "BIG GAME": G G across the word boundary stays two tokens; a given phone start splits too.
    g = PID["G"]
    ph = np.array([PID["B"], PID["IH"], g, g, g, g, PID["EY"], PID["M"]])
    sen = np.array([1, 2, 3, 3, 3, 3, 4, 5])
    t = make_frame_targets(ph, sen, [("BIG", 0, 4), ("GAME", 4, 8)], sp, {SIL, SPN})
    assert t.phone_pos.tolist() == [0, 1, 2, 2, 3, 3, 4, 5]
    assert t.senone_pos.tolist() == [0, 1, 2, 2, 3, 3, 4, 5]
    t2 = make_frame_targets(ph, sen, [("BIGGAME", 0, 8)], sp, {SIL, SPN}, phone_starts=[0, 1, 2, 3, 6, 7])
    assert t2.phone_pos.tolist() == [0, 1, 2, 3, 3, 3, 4, 5]


def test_targets_follow_the_aligned_pronunciation(sp):
    """With two pronunciations of THE, the k2 aligner takes the one the frames support, and the
    frame targets (so the alignment-side teacher tokens) carry that pronunciation's phones."""
    from lm2am.align import StateMap, align
    from lm2am.align.topo import HmmTopo
    from lm2am.lm.tokens import target_tokens
    from test_align import PosteriorModel

    lex = {"THE": [["DH", "AH"], ["DH", "IH"]], "CAT": [["K", "AE", "T"]]}
    m = StateMap(PHONES, HmmTopo())
    for pron in (["DH", "AH"], ["DH", "IH"]):
        phones = ["SIL", *pron, "K", "AE", "T", "SIL"]
        pdfs = [m.pdf(PID[p], st) for p in phones for st in range(3) for _ in range(2)]
        post = np.full((len(pdfs), m.num_pdfs), np.log(0.1 / (m.num_pdfs - 1)), np.float32)
        post[np.arange(len(pdfs)), pdfs] = np.log(0.9)
        ali, = align(PosteriorModel(m.num_pdfs, m.num_pdfs), [post], [["THE", "CAT"]], lex, PHONES)
        t = make_frame_targets(ali.phones, ali.states, ali.words, sp, {SIL, SPN},
                               phone_starts=[st for _, st, _ in ali.phone_segments])
        want = [PID[p] for p in pron + ["K", "AE", "T"]]
        assert t.phone_tokens == want and target_tokens(t, "phone")[0] == want


def test_make_frame_targets_bad_words(sp):
    with pytest.raises(Lm2amError, match="utterance u7: word 1 'B'"):
        make_frame_targets(np.zeros(5), np.zeros(5), [("A", 0, 3), ("B", 2, 5)], sp, {SIL}, utt_id="u7")


# --------------------------------------------------------------------------- invariants


def small_targets(sp, words=("THE", "CAT", "SAT"), seed=0) -> FrameTargets:
    kn = kaldi_phone_table(False, False)
    pdf, _, lm, spans, _ = synth_alignment(words, kn, position_dependent=False, stress=False, seed=seed)
    return make_frame_targets(lm, pdf, spans, sp, {SIL, SPN})


def test_check_targets_messages(sp):
    t = small_targets(sp)
    T = t.num_frames
    check_targets("c1", t, T, 100, len(PHONES), sp.get_piece_size())
    with pytest.raises(Lm2amError, match=rf"cut c1: senone targets have {T} frames but the cut has {T + 2} feature frames"):
        check_targets("c1", t, T + 2, 100, len(PHONES))
    with pytest.raises(Lm2amError, match=rf"cut c1: senone id {t.senone.max()} outside the model's 10 senones"):
        check_targets("c1", t, T, 10, len(PHONES))
    with pytest.raises(Lm2amError, match="cut c1: phone id .* outside the 5 phones"):
        check_targets("c1", t, T, 100, 5)
    with pytest.raises(Lm2amError, match="cut c1: subword id .* outside the 3 pieces"):
        check_targets("c1", t, T, 100, len(PHONES), 3)
    bad = FrameTargets(**{**t.__dict__, "silence": ~t.silence})
    with pytest.raises(Lm2amError, match="cut c1: subword is -1 exactly on silence"):
        check_targets("c1", bad, T, 100, len(PHONES))


# --------------------------------------------------------------------------- storage


def test_write_read_ark_scp(sp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # scp paths are relative, as in a recipe dir
    targets = {"utt-b": small_targets(sp, seed=1), "utt-a": small_targets(sp, ("A", "BIG", "DOG"), 2)}
    info = write_targets(targets, "data/targets", "train", num_senones=60, num_phones=len(PHONES),
                         num_subwords=sp.get_piece_size())
    out = Path("data/targets")
    assert info.utterances == 2 and info.frames == sum(t.num_frames for t in targets.values())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{u}_train.{x}" for u in list(FRAME_UNITS) + ["subword_tokens"] for x in ("ark", "scp")]
        + ["targets_train.json"])  # no temp dir left behind
    # scp: sorted keys, final ark path, offsets where kaldiio finds the objects
    lines = (out / "senone_train.scp").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["utt-a", "utt-b"]
    assert all(ln.split()[1].startswith("data/targets/senone_train.ark:") for ln in lines)
    # Kaldi binary int-vector bytes (BasicVectorHolder<int32>): "<key> \0B", "\4" + int32 size,
    # then "\4" + int32 per element
    raw = (out / "senone_train.ark").read_bytes()
    t = targets["utt-b"]
    head = b"utt-b \x00B\x04" + struct.pack("<i", t.num_frames)
    assert raw.startswith(head)
    body = raw[len(head):len(head) + 5 * t.num_frames]
    assert body == b"".join(b"\x04" + struct.pack("<i", int(v)) for v in t.senone)
    assert len(raw) == sum(len(k) + 1 + 2 + 5 + 5 * v.num_frames for k, v in targets.items())
    got = read_targets(out, "train", num_senones=60)
    assert list(got) == ["utt-a", "utt-b"]
    for k, v in targets.items():
        g = got[k]
        for u in FRAME_UNITS:
            a, b = getattr(g, u), getattr(v, u)
            assert a.dtype == b.dtype and np.array_equal(a, b), u
        assert g.subword_tokens == v.subword_tokens
    sc = kaldiio.load_scp(str(out / "silence_train.scp"))
    assert sc["utt-a"].dtype == np.int32 and set(sc["utt-a"].tolist()) <= {0, 1}
    with pytest.raises(Lm2amError, match="made for 60 senones but the model has 61"):
        read_targets(out, "train", num_senones=61)
    with pytest.raises(Lm2amError, match="targets_dev.json is missing"):
        read_targets(out, "dev")


def test_int32_vector_codec_matches_kaldiio(tmp_path):
    from lm2am.ark import encode_int32_vector, iter_int32_vector_ark

    rng = np.random.default_rng(0)
    data = {f"u{i}": rng.integers(-5, 1 << 20, size=n).astype(np.int32) for i, n in enumerate([0, 1, 7, 300])}
    buf = io.BytesIO()
    kaldiio.save_ark(buf, data)
    ours = b"".join(k.encode() + b" " + encode_int32_vector(v) for k, v in data.items())
    assert ours == buf.getvalue()
    got = dict(iter_int32_vector_ark(ours))
    assert all(np.array_equal(got[k], v) and got[k].dtype == np.int32 for k, v in data.items())
    mat = io.BytesIO()
    kaldiio.save_ark(mat, {"m": np.zeros((2, 3), dtype=np.float32)})
    with pytest.raises(Lm2amError, match=r"feats.ark \(utterance m\): not a Kaldi binary int32 vector"):
        list(iter_int32_vector_ark(mat.getvalue(), "feats.ark"))


def fake_cuts(targets: Dict[str, FrameTargets], extra_frames: Optional[Dict[str, int]] = None):
    from lhotse import CutSet, Features, MonoCut

    extra_frames = extra_frames or {}

    cuts = []
    for i, (cid, t) in enumerate(sorted(targets.items())):
        T = t.num_frames + extra_frames.get(cid, 0)
        start = 0.5 * i
        feats = Features(type="fbank", num_frames=T, num_features=80, frame_shift=0.01,
                         sampling_rate=16000, start=start, duration=T * 0.01,
                         storage_type="lilcom_chunky", storage_path="none", storage_key="0",
                         recording_id=f"rec{i}", channels=0)
        cuts.append(MonoCut(id=cid, start=start, duration=T * 0.01, channel=0, features=feats))
    return CutSet.from_cuts(cuts)


def test_attach_targets_exact_round_trip(sp, tmp_path):
    from lhotse import CutSet

    targets = {f"c{i}": small_targets(sp, ("THE", "MAD", "DOG", "SAT")[: i + 1], i) for i in range(3)}
    write_targets(targets, tmp_path / "t", "train", num_senones=60, num_phones=len(PHONES))
    cuts = attach_targets(fake_cuts(targets), tmp_path / "t", "train")
    manifest = tmp_path / "t" / "cuts_train.jsonl.gz"
    assert manifest.is_file()
    for loaded in (cuts, CutSet.from_file(manifest)):
        for cut in loaded:
            t = targets[cut.id]
            for u in FRAME_UNITS:
                arr = cut.load_custom(u)
                assert arr.dtype == getattr(t, u).dtype and np.array_equal(arr, getattr(t, u)), (cut.id, u)
            assert cut.custom["subword_tokens"] == t.subword_tokens
    lazy = attach_targets(CutSet.from_jsonl_lazy(manifest), tmp_path / "t", "train")  # streamed
    assert np.array_equal(next(iter(lazy)).load_custom("senone"), targets["c0"].senone)


def test_attach_targets_checks(sp, tmp_path):
    targets = {"c0": small_targets(sp), "c1": small_targets(sp, seed=3)}
    write_targets({"c0": targets["c0"]}, tmp_path / "t", "train")
    with pytest.raises(Lm2amError, match="cut c1 of 'train' has no frame targets"):
        attach_targets(fake_cuts(targets), tmp_path / "t", "train")
    assert len(attach_targets(fake_cuts(targets), tmp_path / "t", "train", missing="drop")) == 1
    T = targets["c0"].num_frames
    with pytest.raises(Lm2amError, match=rf"cut c0: senone targets have {T} frames but the cut has {T + 1}"):
        attach_targets(fake_cuts({"c0": targets["c0"]}, {"c0": 1}), tmp_path / "t", "train")
    assert not [p for p in (tmp_path / "t").iterdir() if p.name.startswith(".")]  # temps removed


# --------------------------------------------------------------------------- Kaldi import


UTTS = {  # "A A": the same _S phone twice; "BIG GAME": G G across words; <UNK>: SPN_S
    "spk1-utt1": "THE CAT SAT",
    "spk1-utt2": "A A BIG GAME",
    "spk2-utt1": "THE <UNK> DOG",
}


def kaldi_fixture(tmp_path: Path, position_dependent=True, stress=True, binary=False, gz=False):
    names = kaldi_phone_table(position_dependent, stress)
    kph_file = write_symbols(tmp_path / "kaldi_phones.txt", names)
    pdfs, phones, expected = {}, {}, {}
    for n, (utt, text) in enumerate(sorted(UTTS.items())):
        pdf, kph, lm, spans, st = synth_alignment(text.split(), names, position_dependent=position_dependent,
                                                  stress=stress, seed=n, sil_between=(0,))
        pdfs[utt], phones[utt] = pdf, kph
        expected[utt] = (pdf, lm, spans, st)
    suffix = (".ark" if binary else ".txt") + (".gz" if gz else "")
    paths = []
    for name, data in (("pdf", pdfs), ("phones", phones)):
        p = tmp_path / f"{name}{suffix}"
        if binary:
            buf = io.BytesIO()
            kaldiio.save_ark(buf, data)
            raw = buf.getvalue()
        else:
            raw = "".join(f"{k} {' '.join(map(str, v))}\n" for k, v in data.items()).encode()
        p.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(p)
    return paths[0], paths[1], kph_file, expected


def check_import(got: Dict[str, FrameTargets], expected, sp):
    from lm2am.align.kaldi_import import import_kaldi_alignments  # noqa: F401  (import works)

    assert sorted(got) == sorted(UTTS)
    for utt, (pdf, lm, spans, st) in expected.items():
        t = got[utt]
        assert np.array_equal(t.senone, pdf) and np.array_equal(t.phone, lm)
        words = UTTS[utt].split()
        in_word = np.zeros(len(pdf), dtype=bool)
        for _, s, e in spans:
            in_word[s:e] = True
        assert np.array_equal(t.silence, ~in_word | np.isin(lm, [SIL, SPN])), utt
        want = [i for w in words for i in ([sp.unk_id()] if w == "<UNK>" else sp.encode(w))]
        assert t.subword_tokens == want, utt
        assert t.phone_tokens == [PID[p] for w in words for p in LEXICON[w] if p != "SPN"], utt
        assert t.senone_tokens == collapse_state_senones(st), utt
        for w, s, e in spans:  # every speech frame of a word holds one of its pieces
            if w != "<UNK>":
                assert set(t.subword_id[s:e].tolist()) == set(sp.encode(w)), (utt, w)


@pytest.mark.parametrize("binary,gz", [(False, False), (True, False), (True, True)])
def test_import_position_dependent(sp, lang_dir, tmp_path, binary, gz):
    from lm2am.align.kaldi_import import import_kaldi_alignments

    pdf, phones, kph, expected = kaldi_fixture(tmp_path, binary=binary, gz=gz)
    got = import_kaldi_alignments(pdf, phones, kph, lang_dir, UTTS, sp, num_pdfs=3 * len(PHONES),
                                  num_frames={u: len(e[0]) for u, e in expected.items()})
    check_import(got, expected, sp)


def test_import_position_independent_uses_lexicon(sp, lang_dir, tmp_path):
    from lm2am.align.kaldi_import import import_kaldi_alignments

    pdf, phones, kph, expected = kaldi_fixture(tmp_path, position_dependent=False, stress=False)
    check_import(import_kaldi_alignments(pdf, phones, kph, lang_dir, UTTS, sp), expected, sp)


def test_import_errors(sp, lang_dir, tmp_path):
    from lm2am.align.kaldi_import import import_kaldi_alignments

    pdf, phones, kph, expected = kaldi_fixture(tmp_path)
    # word-count mismatch
    texts = {**UTTS, "spk1-utt1": "THE CAT SAT DOWN"}
    with pytest.raises(Lm2amError, match="utterance spk1-utt1: .* has 3 words but its transcript 4"):
        import_kaldi_alignments(pdf, phones, kph, lang_dir, texts, sp)
    # pdf vs phone length mismatch
    from lm2am.align.kaldi_import import read_int_vectors

    short = {k: (v[:-2] if k == "spk2-utt1" else v) for k, v in read_int_vectors(pdf).items()}
    n = len(read_int_vectors(pdf)["spk2-utt1"])
    bad_pdf = write_text_ark(tmp_path / "short.txt", short)
    with pytest.raises(Lm2amError, match=rf"utterance spk2-utt1: .*short.txt has {n - 2} frames but .*phones.txt has {n}"):
        import_kaldi_alignments(bad_pdf, phones, kph, lang_dir, UTTS, sp)
    # vs feature frames
    frames = {u: len(e[0]) for u, e in expected.items()}
    frames["spk1-utt2"] += 3
    with pytest.raises(Lm2amError, match=rf"utterance spk1-utt2: .* has {frames['spk1-utt2'] - 3} frames but the features have {frames['spk1-utt2']}"):
        import_kaldi_alignments(pdf, phones, kph, lang_dir, UTTS, sp, num_frames=frames)
    got = import_kaldi_alignments(pdf, phones, kph, lang_dir, UTTS, sp, num_frames=frames, frame_tolerance=3)
    assert got["spk1-utt2"].num_frames == frames["spk1-utt2"]
    # unknown phone: rename a used Kaldi phone to one lm2am lacks
    names = kaldi_phone_table()
    names[names.index("DH_B")] = "ZH_B"
    bad_kph = write_symbols(tmp_path / "bad_phones.txt", names)
    with pytest.raises(Lm2amError, match=r"bad_phones.txt: phone ZH_B \(id \d+\) used by utterance"):
        import_kaldi_alignments(pdf, phones, bad_kph, lang_dir, UTTS, sp)
    # transition-ids passed instead of pdf-ids
    with pytest.raises(Lm2amError, match="but num_pdfs is 10; transition-ids instead of pdf-ids"):
        import_kaldi_alignments(pdf, phones, kph, lang_dir, UTTS, sp, num_pdfs=10)
    # garbage text line
    (tmp_path / "bad.txt").write_text("u1 1 2 x\n")
    with pytest.raises(Lm2amError, match="bad.txt line 1: expected 'utt id1 id2 ...'"):
        read_int_vectors(tmp_path / "bad.txt")

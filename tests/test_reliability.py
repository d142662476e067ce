"""Reliability (issue #9): every bad input stops a stage with one ``ERROR:`` line naming the file
(or, for a bad option, the script) and the fix, exit status != 0 and nothing lost: no partial
output under a final name, inputs and earlier outputs byte-identical (:func:`check_promises`
holds every case to all four); a stage killed with SIGKILL and
rerun gives the same bytes as an uninterrupted run; done markers re-run a stage whose config or
input changed; steps/validate_data.py checks parts at stage boundaries.

Each bad-input case runs the real stage script (in this process through ``runpy``, which keeps
the suite fast, or as a subprocess for the shell-level ones) or, where the stage needs a whole
recipe (teacher LM, AM training loop), the library function under :func:`cli_main`.

``python tests/test_reliability.py --report`` runs the cases and writes docs/error_messages.md
(case -> message); so does ``LM2AM_ERROR_REPORT=<file> pytest tests/test_reliability.py``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
import hashlib
import io
import json
import logging
import os
import random
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest
import soundfile as sf

from conftest import write_librispeech_part
from lm2am.errors import cli_main

REPO = Path(__file__).resolve().parents[1]
STEPS = REPO / "steps"
RECIPE = REPO / "egs" / "synth-en" / "s5"
PREFIX = "ERROR: "
TRAIN = {"100-1-0000": "HELLO WORLD", "100-1-0001": "GOOD MORNING", "101-1-0000": "THE CAT SAT",
         "101-1-0001": "A DOG RAN"}
SHORT = {"300-1-0000": "HELLO WORLD GOOD MORNING THE CAT SAT"}  # 0.3 s of audio
#: the phone of each letter: two letters, so none is a Kaldi/lm2am special symbol
LETTER_PHONES = [c + c for c in "ABCDEGHILMNORSTWY"]
MESSAGES: Dict[str, str] = {}  # case -> message, for docs/error_messages.md


# --------------------------------------------------------------------------- running stages


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [x for x in self.stderr.splitlines() if x.strip()]
        return lines[-1] if lines else ""


@contextlib.contextmanager
def _isolated_logging():
    """Stage scripts reconfigure the root logger (and may open log files): undo that."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        yield
    finally:
        for h in root.handlers:
            if h not in saved[0]:
                h.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def run_script(script: Path, *args: object) -> Result:
    """Run a stage script's ``main`` in this process, as ``python script args...`` would."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [str(script)] + [str(a) for a in args]
    code = 0
    try:
        with _isolated_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


def run_library(fn: Callable[[], object]) -> Result:
    """Call ``fn`` the way a stage script does (under :func:`cli_main`)."""
    return run_script_fn(cli_main(fn))


def run_script_fn(main: Callable[[], object]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with _isolated_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def run_subprocess(cmd: Sequence[object], cwd: Optional[Path] = None, timeout: float = 120) -> Result:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


def leftovers(*dirs: Path) -> List[Path]:
    """Temporary files/dirs of interrupted atomic writes under ``dirs``."""
    out = []
    for d in dirs:
        if d.exists():
            out += [p for p in d.rglob("*") if re.search(r"\.tmp\d*", p.name)]
    return out


# --------------------------------------------------------------------------- fixtures


def _letters(word: str) -> List[str]:
    return [c + c for c in word if c + c in LETTER_PHONES]


def write_lang(d: Path, words: Sequence[str]) -> Path:
    """A tiny lang dir: one phone per letter, lexicon, silence phones and a BPE model."""
    import sentencepiece as spm

    d.mkdir(parents=True, exist_ok=True)
    phones = ["<eps>", "SIL", "SPN"] + LETTER_PHONES + ["#0", "#1"]
    (d / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(phones)))
    (d / "silence_phones.txt").write_text("SIL\nSPN\n")
    lex = {w: _letters(w) for w in words}
    lex["<UNK>"] = ["SPN"]
    (d / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in sorted(lex.items())))
    rng = random.Random(0)
    lines = [" ".join(rng.choice(list(words)) for _ in range(rng.randint(2, 6))) for _ in range(200)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(d / "bpe"),
                                   vocab_size=30, model_type="bpe", character_coverage=1.0,
                                   num_threads=1, minloglevel=2)
    return d


@dataclass
class World:
    """Shared, read-only inputs: a corpus, its manifests, features, lang dir, targets, AM data."""

    root: Path
    corpus: Path
    manifests: Path
    fbank: Path
    lang: Path
    targets: Path
    am: Path = Path()
    extra: Dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from lm2am.data import FbankConfig, compute_fbank, prepare_manifests
    from lm2am.targets import write_targets

    root = tmp_path_factory.mktemp("rel")
    corpus = root / "corpus"
    write_librispeech_part(corpus, "train-x", TRAIN)
    write_librispeech_part(corpus, "short-x", SHORT, seconds=0.3, seed=2)
    mdir, fdir = root / "data" / "manifests", root / "data" / "fbank"
    cuts = prepare_manifests(corpus, ["train-x", "short-x"], mdir, num_jobs=1)
    for part, c in cuts.items():
        compute_fbank(c, part, fdir, FbankConfig(num_jobs=1))
    words = sorted({w for t in list(TRAIN.values()) + list(SHORT.values()) for w in t.split()})
    lang = write_lang(root / "data" / "lang", words)
    # targets that fit the features (made-up labels, consistent by construction)
    from lhotse import CutSet

    from test_am import NUM_PHONES, NUM_SENONES, NUM_SUBWORDS, fake_targets

    rng = np.random.default_rng(0)
    fcuts = CutSet.from_file(fdir / "cuts_train-x.jsonl.gz")
    tdir = root / "data" / "targets"
    write_targets({c.id: fake_targets(c.num_frames, rng) for c in fcuts}, tdir, "train-x",
                  num_senones=NUM_SENONES, num_phones=NUM_PHONES, num_subwords=NUM_SUBWORDS)
    return World(root=root, corpus=corpus, manifests=mdir, fbank=fdir, lang=lang, targets=tdir)


@pytest.fixture(scope="module")
def am_world(world: World) -> World:
    """test_am's tiny AM data (targets with cuts attached, CMVN) plus one trained checkpoint."""
    import kaldiio

    from lm2am.am.data import DataPaths, load_cuts
    from test_am import FEAT_DIM, NUM_SENONES, make_part

    root = world.root / "am"
    emb = np.random.default_rng(7).standard_normal((NUM_SENONES, FEAT_DIM)).astype(np.float32)
    targets = make_part(root, "train", 6, 1, emb)
    targets.update(make_part(root, "dev", 2, 2, emb))
    tdir = root / "data" / "targets"
    cat = np.concatenate([c.load_features() for c in load_cuts(DataPaths(targets_dir=tdir), "train")])
    stats = np.zeros((2, FEAT_DIM + 1))
    stats[0, :-1], stats[1, :-1], stats[0, -1] = cat.sum(0), (cat.astype(np.float64) ** 2).sum(0), len(cat)
    kaldiio.save_mat(str(root / "data" / "fbank" / "global_cmvn.ark"), stats)
    for unit in ("senone", "monophone", "subword"):  # FakePosteriors stands in for their content
        (root / "exp" / f"lm_{unit}" / "post_train").mkdir(parents=True)
    world.am = root
    world.extra["am_targets"] = targets
    return world


def am_args(root: Path, exp: Path, system: Path, posteriors: Optional[Path] = None) -> List[object]:
    return ["--system", system, "--exp-dir", exp, "--seed", "1", "--train-part", "train",
            "--dev-part", "", "--targets-dir", root / "data" / "targets",
            "--cmvn", root / "data" / "fbank" / "global_cmvn.ark",
            "--posteriors", posteriors or str(root / "exp" / "lm_{unit}" / "post_{part}")]


def system_file(path: Path, hidden: int = 16, heads: str = "") -> Path:
    path.write_text("system: {name: %s%s}\nmodel: {num_layers: 2, hidden_dim: %d}\n"
                    "train: {epochs: 1, max_duration: 4.0, num_threads: 1, checkpoint_every_steps: 0}\n"
                    % (path.stem, heads, hidden))
    return path


# --------------------------------------------------------------------------- the cases


def _file_digest(p: Path) -> str:
    """sha256 of a file's content (a gzip file's decompressed content: its header holds an mtime)."""
    data = p.read_bytes()
    return hashlib.sha256(gzip.decompress(data) if p.suffix == ".gz" else data).hexdigest()


def digest(*paths: Path) -> Dict[str, str]:
    """Content digest of each file, or of every file under each directory (logs left out),
    keyed by absolute path: what :attr:`Case.intact` holds."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else [q for q in sorted(p.rglob("*")) if q.is_file()
                                          and "log" not in q.relative_to(p).parts]
        out.update({str(q): _file_digest(q) for q in files})
    assert out, f"nothing to digest in {paths}"
    return out


@dataclass
class Case:
    """What one bad-input case ran and what must hold afterwards (:func:`check_promises`)."""

    result: Result
    file: object  # the offending file (for a bad option: the script given it), named in the message
    hint: str  # a fragment of the fix the message proposes
    names: Sequence[str] = ()  # further fragments the message must contain (key, utterance)
    absent: Sequence[Path] = ()  # outputs that must not exist under their final names
    intact: Dict[str, str] = field(default_factory=dict)  # digest() of inputs/earlier outputs, before the run
    clean: Sequence[Path] = ()  # dirs that must hold no temp files
    prefix: str = PREFIX


def _corpus_copy(w: World, tmp: Path) -> Path:
    dst = tmp / "corpus"
    shutil.copytree(w.corpus / "train-x", dst / "train-x")
    return dst


def _flac(corpus: Path, utt: str) -> Path:
    spk, chap, _ = utt.split("-")
    return corpus / "train-x" / spk / chap / f"{utt}.flac"


def _manifests(w: World, tmp: Path, mutate: Callable[[Path], Sequence[str]], hint: str) -> Case:
    """``mutate`` breaks the corpus copy and returns the broken file, then other fragments."""
    corpus = _corpus_copy(w, tmp)
    bad, *names = mutate(corpus)
    before = digest(corpus)
    out = tmp / "manifests"
    r = run_script(STEPS / "make_manifests.py", "--parts", "train-x", "--nj", "1", corpus, out)
    return Case(r, bad, hint, names, absent=[out / "cuts_train-x.jsonl.gz", out / ".train-x.done"],
                intact=before, clean=[out])


def case_wav_missing(w, tmp):
    def m(c):
        p = _flac(c, "100-1-0001")
        p.unlink()
        return [str(p), "missing"]
    return _manifests(w, tmp, m, 'restore it')


def case_wav_empty(w, tmp):
    def m(c):
        p = _flac(c, "100-1-0001")
        p.write_bytes(b"")
        return [str(p), "unreadable audio"]
    return _manifests(w, tmp, m, 're-create or remove 100-1-0001')


def case_wav_truncated(w, tmp):
    def m(c):
        p = _flac(c, "101-1-0000")
        p.write_bytes(p.read_bytes()[: p.stat().st_size * 6 // 10])
        return [str(p), "unreadable audio"]
    return _manifests(w, tmp, m, 're-create or remove 101-1-0000')


def case_wav_not_audio(w, tmp):
    def m(c):
        p = _flac(c, "101-1-0001")
        p.write_text("this is not audio\n" * 50)
        return [str(p), "unreadable audio"]
    return _manifests(w, tmp, m, 're-create or remove 101-1-0001')


def case_wav_wrong_rate(w, tmp):
    def m(c):
        p = _flac(c, "100-1-0000")
        sf.write(p, np.zeros(8000, np.float32) + 0.01, 8000)
        return [str(p), "8000 Hz", "manifests.sampling_rate"]
    return _manifests(w, tmp, m, 'resample it')


def case_transcript_empty(w, tmp):
    def m(c):
        tf = c / "train-x" / "100" / "1" / "100-1.trans.txt"
        tf.write_text("100-1-0000 HELLO WORLD\n100-1-0001\n")
        return [str(tf), "line 2", "empty transcript"]
    return _manifests(w, tmp, m, 'add its text or remove the line')


def case_transcript_non_utf8(w, tmp):
    def m(c):
        tf = c / "train-x" / "101" / "1" / "101-1.trans.txt"
        tf.write_bytes(b"101-1-0000 THE CAT SAT\n101-1-0001 A DOG \xe9T\xe9\n")
        return [str(tf), "UTF-8"]
    return _manifests(w, tmp, m, 're-encode the transcript as UTF-8')


def case_duplicate_utt_id(w, tmp):
    def m(c):
        tf = c / "train-x" / "101" / "1" / "101-1.trans.txt"
        tf.write_text(tf.read_text() + "101-1-0000 THE DOG SAT\n")
        return [str(tf), "duplicate utterance id 101-1-0000"]
    return _manifests(w, tmp, m, 'make ids unique')


def case_transcript_all_oov(w, tmp):
    lang = tmp / "lang"
    lang.mkdir()
    (lang / "lexicon.txt").write_text("ZEBRA ZZ\n<UNK> SPN\n")  # no word of the corpus
    before = digest(lang)
    out = tmp / "fbank"
    r = run_script(STEPS / "compute_fbank.py", "--lang", lang, "--parts", "train-x", w.manifests, out)
    return Case(r, w.manifests / "cuts_train-x.jsonl.gz", "set lang.oov_policy: unk", ["without a lexicon word"],
                absent=[out / "cuts_train-x.jsonl.gz", out / "feats_train-x"], intact=before, clean=[out])


def _kaldi_dir(w: World, tmp: Path) -> Path:
    d = tmp / "kaldi"
    d.mkdir()
    ids = sorted(TRAIN)
    (d / "wav.scp").write_text("".join(f"{u} {_flac(w.corpus, u)}\n" for u in ids))
    (d / "text").write_text("".join(f"{u} {TRAIN[u].lower()}\n" for u in ids))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in ids))
    return d


def _import(d: Path, tmp: Path, bad: Path, hint: str, names: Sequence[str]) -> Case:
    before = digest(tmp)
    out = tmp / "manifests"
    r = run_script(REPO / "local" / "kaldi-data" / "import_data_dir.py", d, "k", out)
    return Case(r, bad, hint, names, absent=[out / "cuts_k.jsonl.gz", out / ".k.done"], intact=before,
                clean=[out])


def case_text_not_in_wav_scp(w, tmp):
    d = _kaldi_dir(w, tmp)
    lines = (d / "wav.scp").read_text().splitlines()
    (d / "wav.scp").write_text("\n".join(lines[:-1]) + "\n")
    return _import(d, tmp, d / "text", "add it or remove it", ["line 4", "101-1-0001", str(d / "wav.scp")])


def case_wav_scp_truncated_wav(w, tmp):
    d = _kaldi_dir(w, tmp)
    wav = tmp / "cut.wav"
    sf.write(wav, np.full(16000, 0.05, np.float32), 16000, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[:20000])  # header says 32000 data bytes
    lines = (d / "wav.scp").read_text().splitlines()
    lines[0] = f"100-1-0000 {wav}"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    return _import(d, tmp, d / "wav.scp", "re-create it or remove the recording", ["line 1", str(wav), "truncated"])


def case_features_shorter_than_transcript(w, tmp):
    out = tmp / "ali"
    r = run_script(STEPS / "train_aligner.py", w.fbank / "cuts_short-x.jsonl.gz", w.lang, out)
    return Case(r, w.fbank / "cuts_short-x.jsonl.gz", "check that the transcripts belong to the audio",
                ["300-1-0000", "frames"], absent=[out / "final.pt", out / ".train.done"], clean=[out])


def _kaldi_ali(w: World, tmp: Path, pdf: bytes, phones: bytes, hint: str, names: Sequence[str]) -> Case:
    """Import a broken pdf alignment (the offending file, ``tmp/pdf.ark``)."""
    kph = tmp / "kaldi_phones.txt"
    kph.write_text("<eps> 0\nSIL 1\n")
    (tmp / "pdf.ark").write_bytes(pdf)
    (tmp / "phones.ark").write_bytes(phones)
    before = digest(tmp)
    out = tmp / "targets"
    r = run_script(STEPS / "import_kaldi_ali.py", tmp / "pdf.ark", tmp / "phones.ark", kph,
                   w.fbank / "cuts_train-x.jsonl.gz", w.lang, out)
    return Case(r, tmp / "pdf.ark", hint, names, absent=[out / "targets_train-x.json", out / "cuts_train-x.jsonl.gz"],
                intact=before, clean=[out])


def _feature_frames(w: World) -> Dict[str, int]:
    from lhotse import CutSet

    return {c.id: c.num_frames for c in CutSet.from_file(w.fbank / "cuts_train-x.jsonl.gz")}


def _text_ark(lengths: Dict[str, int], value: int) -> bytes:
    return "".join(f"{u} {' '.join([str(value)] * n)}\n" for u, n in lengths.items()).encode()


def case_alignment_length_mismatch(w, tmp):
    n = _feature_frames(w)
    short = {u: k - (5 if u == "100-1-0000" else 0) for u, k in n.items()}
    return _kaldi_ali(w, tmp, _text_ark(short, 0), _text_ark(short, 1), "allow a small difference with frame_tolerance",
                      ["100-1-0000", f"{n['100-1-0000'] - 5} frames", f"features have {n['100-1-0000']}"])


def case_alignment_ark_truncated(w, tmp):
    import kaldiio

    n = _feature_frames(w)
    buf = io.BytesIO()
    kaldiio.save_ark(buf, {u: np.zeros(k, np.int32) for u, k in n.items()})
    raw = buf.getvalue()
    return _kaldi_ali(w, tmp, raw[:-9], _text_ark(n, 1), "regenerate the file", ["truncated"])


def case_alignment_ark_corrupt(w, tmp):
    n = _feature_frames(w)
    bad = _text_ark(n, 0).replace(b" 0 0 0", b" 0 x7 0", 1)
    return _kaldi_ali(w, tmp, bad, _text_ark(n, 1), "give ali-to-pdf", ["line 1", "integer"])


def _targets_copy(w: World, tmp: Path) -> Path:
    d = tmp / "targets"
    shutil.copytree(w.targets, d)
    for scp in d.glob("*.scp"):
        scp.write_text(scp.read_text().replace(str(w.targets), str(d)))
    return d


def _validate(w: World, tdir: Path, bad: Path, hint: str, names: Sequence[str] = ()) -> Case:
    """validate_data.py on a broken targets dir: it must report ``bad`` and change nothing."""
    before = digest(tdir)
    r = run_script(STEPS / "validate_data.py", "--fbank-dir", w.fbank, "--targets-dir", tdir,
                   "--parts", "train-x")
    return Case(r, bad, hint, names, intact=before)


def case_targets_ark_truncated(w, tmp):
    d = _targets_copy(w, tmp)
    ark = d / "phone_pos_train-x.ark"
    ark.write_bytes(ark.read_bytes()[:-11])
    return _validate(w, d, ark, "regenerate the file", ["truncated"])


def case_targets_ark_corrupt(w, tmp):
    d = _targets_copy(w, tmp)
    ark = d / "senone_train-x.ark"
    raw = bytearray(ark.read_bytes())
    first = int((d / "senone_train-x.scp").read_text().split()[1].rsplit(":", 1)[1])
    raw[first:first + 3] = b"XYZ"  # the vector header of the first cut
    ark.write_bytes(bytes(raw))
    return _validate(w, d, ark, "give int-vector archives", ["not a Kaldi binary int32 vector"])


def case_targets_scp_missing_ark(w, tmp):
    d = _targets_copy(w, tmp)
    (d / "subword_train-x.ark").unlink()
    return _validate(w, d, d / "subword_train-x.ark", "rerun the targets stage", ["missing"])


def case_targets_frames_differ_from_features(w, tmp):
    from lm2am.targets import read_targets, write_targets

    d = tmp / "targets"
    src = read_targets(w.targets, "train-x")
    from test_am import NUM_PHONES, NUM_SENONES, NUM_SUBWORDS, fake_targets

    ts = {c: src[c] for c in src}
    first = sorted(ts)[0]
    ts[first] = fake_targets(ts[first].num_frames - 3, np.random.default_rng(1))
    write_targets(ts, d, "train-x", num_senones=NUM_SENONES, num_phones=NUM_PHONES,
                  num_subwords=NUM_SUBWORDS)
    return _validate(w, d, d / "senone_train-x.scp", "rerun the targets stage", [first, "target frames",
                                                                                "feature frames"])


def _write_posteriors(d: Path, targets, vocab: int, unit: str = "senone", k: int = 2) -> Path:
    from kaldiio.matio import write_array

    from lm2am.lm.posteriors import FORMAT, VERSION, encode_rows
    from lm2am.lm.tokens import target_tokens

    d.mkdir(parents=True, exist_ok=True)
    ark = d / "post.1.ark"
    lines = []
    with open(ark, "wb") as f:
        for cid in sorted(targets):
            toks, pos = target_tokens(targets[cid], unit)
            idx = np.tile(np.arange(k), (len(toks), 1))
            probs = np.full((len(toks), k), 1.0 / k, np.float32)
            f.write(cid.encode() + b" ")
            lines.append(f"{cid} {ark}:{f.tell()}\n")
            write_array(f, encode_rows(pos, idx, probs))
    (d / "post.scp").write_text("".join(lines))
    (d / "post_info.json").write_text(json.dumps({"format": FORMAT, "version": VERSION,
                                                  "vocab_size": vocab, "top_k": k, "unit": unit}))
    return d


def case_posteriors_wrong_vocab(w, tmp):
    root = w.am
    post = _write_posteriors(tmp / "exp" / "lm_senone" / "post_train", w.extra["am_targets"], vocab=999)
    exp = tmp / "exp" / "am_aux" / "seed1"
    sysf = system_file(tmp / "aux.yaml", heads=", heads: [{unit: senone, layer: 1}]")
    before = digest(post)
    r = run_script(STEPS / "train_am.py", *am_args(root, exp, sysf, tmp / "exp" / "lm_{unit}" / "post_{part}"))
    return Case(r, post / "post_info.json", "use the posteriors of the matching unit", ["999", "outputs"],
                absent=[exp / "final.pt"], intact=before, clean=[exp])


def case_posteriors_scp_missing_ark(w, tmp):
    from lm2am.am.data import load_cuts  # noqa: F401  (import cost outside the timing)
    from lm2am.lm.loader import load_teacher_posteriors

    targets = w.extra["am_targets"]
    post = _write_posteriors(tmp / "post", targets, vocab=40)
    (post / "post.1.ark").unlink()
    ids = sorted(targets)[:2]
    before = digest(post)
    r = run_library(lambda: load_teacher_posteriors(post, ids, [targets[c].num_frames for c in ids]))
    return Case(r, post / "post.1.ark", "rerun the posterior stage", ["missing", str(post / "post.scp")],
                intact=before)


def case_posteriors_ark_truncated(w, tmp):
    from lm2am.lm.loader import load_teacher_posteriors

    targets = w.extra["am_targets"]
    post = _write_posteriors(tmp / "post", targets, vocab=40)
    ark = post / "post.1.ark"
    ark.write_bytes(ark.read_bytes()[:-5])
    ids = sorted(targets)
    before = digest(post)
    r = run_library(lambda: load_teacher_posteriors(post, ids, [targets[c].num_frames for c in ids]))
    return Case(r, ark, "rerun the posterior stage", ["truncated"], intact=before)


def case_checkpoint_other_model_config(w, tmp):
    root = w.am
    exp = tmp / "exp" / "am_ce" / "seed1"
    r = run_script(STEPS / "train_am.py", *am_args(root, exp, system_file(tmp / "ce.yaml", hidden=16)))
    assert r.code == 0, r.stderr[-2000:]
    before = digest(exp)  # every checkpoint, final.pt, priors, history: by content
    assert any(k.endswith("epoch-1.pt") for k in before) and any(k.endswith("final.pt") for k in before)
    r = run_script(STEPS / "train_am.py", *am_args(root, exp, system_file(tmp / "ce.yaml", hidden=24)))
    return Case(r, exp / "epoch-1.pt", "train in a new --exp-dir", ["model.hidden_dim = 16", "says 24"],
                intact=before, clean=[exp])


def case_nan_loss_aborts(w, tmp):
    from lm2am.am.config import HeadConfig, SystemConfig, make_model_config
    from lm2am.am.data import DataPaths
    from lm2am.am.train import train_system
    from test_am import FakePosteriors, tiny_train

    root, targets = w.am, w.extra["am_targets"]
    paths = DataPaths(targets_dir=root / "data" / "targets", cmvn=root / "data" / "fbank" / "global_cmvn.ark",
                      train_part="train", dev_part="",
                      posteriors=str(root / "exp" / "lm_{unit}" / "post_{part}"))
    system = SystemConfig(name="aux", heads=[HeadConfig(unit="senone", layer=1)])
    model = make_model_config(dict(num_layers=2, hidden_dim=16))
    exp = tmp / "skip"
    logs = io.StringIO()
    h = logging.StreamHandler(logs)
    logging.getLogger("lm2am").addHandler(h)
    try:  # fewer NaN batches in a row than max_consecutive_nan: skipped with a warning
        train_system(system, model, tiny_train(epochs=1, valid=False, max_consecutive_nan=20), paths,
                     exp, posterior_loader=FakePosteriors(targets, nan_cuts=list(targets)))
    finally:
        logging.getLogger("lm2am").removeHandler(h)
    assert "non-finite loss" in logs.getvalue() and (exp / "final.pt").is_file()
    exp = tmp / "abort"
    r = run_library(lambda: train_system(system, model, tiny_train(epochs=1, max_consecutive_nan=2), paths,
                                         exp, posterior_loader=FakePosteriors(targets, nan_cuts=list(targets))))
    return Case(r, exp, "lower train.lr", ["2 batches in a row", "non-finite loss"], absent=[exp / "final.pt"],
                clean=[exp])


def _config_case(tmp: Path, text: str, hint: str, names: Sequence[str]) -> Case:
    conf = tmp / "bad.yaml"
    conf.write_text(text)
    before = digest(tmp)
    r = run_subprocess([sys.executable, STEPS / "check_config.py", conf])
    return Case(r, conf, hint, names, intact=before)


def case_config_unknown_key(w, tmp):
    return _config_case(tmp, "features:\n  num_mel_bins: 80\n  frame_shfit: 0.01\n",
                        "valid keys are", ["features", "unknown key 'frame_shfit'", "frame_shift"])


def case_config_wrong_type(w, tmp):
    return _config_case(tmp, "features:\n  num_mel_bins: eighty\n", "fix the config", ["features.num_mel_bins", "integer"])


def case_config_unknown_key_in_stage(w, tmp):
    conf = tmp / "bad.yaml"
    conf.write_text("manifests:\n  sample_rate: 16000\n")
    before = digest(conf)
    out = tmp / "manifests"
    r = run_script(STEPS / "make_manifests.py", "--config", conf, "--parts", "train-x", w.corpus, out)
    return Case(r, conf, "valid keys are", ["manifests", "unknown key 'sample_rate'"],
                absent=[out / "cuts_train-x.jsonl.gz", out / ".train-x.done"], intact=before, clean=[out])


def case_run_sh_unknown_option(w, tmp):
    recipe = _recipe(tmp)
    before = digest(recipe)
    r = run_subprocess(["./run.sh", "--stage", "3", "--no-such-option", "1"], cwd=recipe, timeout=60)
    # the option parser (utils/parse_options.sh) names the script, not "ERROR:"
    return Case(r, "run.sh", "run 'run.sh --help'", ["--no-such-option"], absent=[recipe / "exp", recipe / "data"],
                intact=before, prefix="run.sh: invalid option")


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def case_disk_full_manifests(w, tmp):
    """ENOSPC while lhotse writes the gzipped manifest (after part of the data went out)."""
    real_write = gzip.GzipFile.write
    calls = {"n": 0}

    def write(self, data):
        calls["n"] += 1
        if calls["n"] > 2:
            _enospc()
        return real_write(self, data)

    out = tmp / "manifests"
    gzip.GzipFile.write = write
    try:
        r = run_script(STEPS / "make_manifests.py", "--parts", "train-x", "--nj", "1", w.corpus, out)
    finally:
        gzip.GzipFile.write = real_write
    assert calls["n"] > 2  # the failure happened inside the write
    named = re.search(r"writing (\S+);", r.last_line)
    # the manifest being written is absent (earlier, complete ones may stay: cuts come last)
    return Case(r, named.group(1) if named else out / "?", "free space and rerun the stage", ["disk full", str(out)],
                absent=[Path(named.group(1)) if named else out / "?", out / "cuts_train-x.jsonl.gz",
                        out / ".train-x.done"], clean=[out])


def case_disk_full_targets(w, tmp):
    """ENOSPC while the targets arks are written (the stage's streaming writer)."""
    from lm2am.targets import read_targets, write_targets

    src = read_targets(w.targets, "train-x")
    ts = {c: src[c] for c in src}
    real = io.BufferedWriter.write
    out = tmp / "targets"
    calls = {"n": 0}

    def full_write(self, data):
        if str(getattr(self, "name", "")).startswith(str(out)):
            calls["n"] += 1
            if calls["n"] > 5:
                _enospc()
        return real(self, data)

    import builtins

    real_open = builtins.open

    class Full(io.BufferedWriter):
        write = full_write

    def fake_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if "b" in mode and "w" in mode and str(file).startswith(str(out)):
            raw = f.detach()
            return Full(raw)
        return f

    builtins.open = fake_open
    try:
        r = run_library(lambda: write_targets(ts, out, "train-x"))
    finally:
        builtins.open = real_open
    assert calls["n"] > 5
    return Case(r, out, "free space and rerun the stage", ["disk full"],
                absent=[out / "targets_train-x.json", out / "senone_train-x.scp"], clean=[out])


def case_disk_full_text(w, tmp):
    """ENOSPC in atomic_write_text (every small output: lang files, done markers, scp files)."""
    from lm2am.io import atomic_write_text

    target = tmp / "lang" / "lexicon.txt"
    atomic_write_text(target, "HELLO HH EH L OW\n")  # the earlier run's output
    before = digest(target)
    real = Path.write_text

    def full(self, *a, **k):
        real(self, "HALF")  # part of the data made it to disk
        _enospc()

    Path.write_text = full
    try:
        r = run_library(lambda: atomic_write_text(target, "HELLO HH EE LL OO\n"))
    finally:
        Path.write_text = real
    # the earlier version stays, not the half-written one
    return Case(r, target, "free space and rerun the stage", ["disk full"], intact=before, clean=[target.parent])


# ----- issue #19: faults found by an independent probe


def _fbank_after_change(w: World, tmp: Path, change: Callable[[Path], None]) -> Case:
    """Manifests made from a corpus copy, then its audio changed: the features stage must stop."""
    from lm2am.data import prepare_manifests

    corpus = _corpus_copy(w, tmp)
    mdir = tmp / "manifests"
    prepare_manifests(corpus, ["train-x"], mdir, num_jobs=1)
    p = _flac(corpus, "100-1-0001")
    change(p)
    before = digest(mdir)
    out = tmp / "fbank"
    r = run_script(STEPS / "compute_fbank.py", "--parts", "train-x", mdir, out)
    return Case(r, p, "rerun the manifest stage", ["100-1-0001"],
                absent=[out / "cuts_train-x.jsonl.gz", out / ".train-x.done"], intact=before, clean=[out])


def case_fbank_audio_deleted_after_import(w, tmp):
    return _fbank_after_change(w, tmp, lambda p: p.unlink())


def case_fbank_audio_shorter_than_manifest(w, tmp):
    def shorten(p):  # 0.3 s short: lhotse would pad it with silence (tolerance 0.5 s)
        a, sr = sf.read(p)
        sf.write(p, a[: len(a) - int(0.3 * sr)], sr)
    return _fbank_after_change(w, tmp, shorten)


def case_fbank_audio_truncated_after_import(w, tmp):
    def cut(p):  # the FLAC header still announces the full length
        p.write_bytes(p.read_bytes()[: p.stat().st_size * 6 // 10])
    return _fbank_after_change(w, tmp, cut)


def _recipe(tmp: Path) -> Path:
    """A scratch copy of the synth-en recipe dir (conftest.make_recipe_copy)."""
    from conftest import make_recipe_copy

    return make_recipe_copy(tmp / "s5", RECIPE)


def _run_sh(tmp: Path, args: Sequence[str], names: Sequence[str]) -> Case:
    recipe = _recipe(tmp)
    listed = sorted(p.name for p in recipe.iterdir())
    before = digest(recipe)
    r = run_subprocess(["./run.sh", *args], cwd=recipe, timeout=60)
    after = sorted(p.name for p in recipe.iterdir())
    assert after == listed, f"run.sh {args} wrote {set(after) - set(listed)}"
    return Case(r, "./run.sh", "run './run.sh --help'", names,
                absent=[recipe / "exp", recipe / "data", recipe / "JOB=1:abc"], intact=before)


def case_run_sh_stage_out_of_range(w, tmp):
    return _run_sh(tmp, ["--stage", "99"], ["--stage 99", "no such stage"])


def case_run_sh_stop_stage_before_stage(w, tmp):
    return _run_sh(tmp, ["--stage", "5", "--stop-stage", "3"], ["--stop-stage 3", "--stage 5"])


def case_run_sh_stage_not_a_number(w, tmp):
    return _run_sh(tmp, ["--stage", "abc"], ["--stage 'abc'", "not a number"])


def case_run_sh_nj_zero(w, tmp):
    return _run_sh(tmp, ["--nj", "0"], ["--nj 0", "at least 1"])


def case_run_sh_nj_not_a_number(w, tmp):
    return _run_sh(tmp, ["--nj", "abc"], ["--nj 'abc'", "not a number"])


def case_job_range_not_a_number(w, tmp):
    r = run_subprocess([REPO / "utils" / "run.sh", "JOB=1:abc", "log.JOB", "true"], cwd=tmp)
    return Case(r, "utils/run.sh", "expected VAR=FIRST:LAST", ["JOB=1:abc", "job range"],
                absent=[tmp / "JOB=1:abc", tmp / "log.JOB"])


def case_config_out_of_range_mel_bins(w, tmp):
    return _config_case(tmp, "features:\n  num_mel_bins: -3\n", "fix the config",
                        ["features.num_mel_bins", "[1, 512]", "got -3"])


def case_config_out_of_range_frame_shift(w, tmp):
    return _config_case(tmp, "features:\n  frame_shift: 0\n", "fix the config", ["features.frame_shift", "(0, 1]", "got 0"])


def case_config_duplicate_key(w, tmp):
    return _config_case(tmp, "features:\n  num_mel_bins: 80\n  dither: 0.0\n  num_mel_bins: 40\n",
                        "keep one", ["line 4", "'num_mel_bins' given twice", "line 2"])


def case_features_archive_missing(w, tmp):
    f = tmp / "fbank"
    shutil.copytree(w.fbank, f)
    cuts = f / "cuts_train-x.jsonl.gz"
    raw = gzip.decompress(cuts.read_bytes()).decode().replace(str(w.fbank), str(f))
    cuts.write_bytes(gzip.compress(raw.encode()))
    ark = f / "feats_train-x.lca"
    ark.unlink()
    before = digest(f)
    out = tmp / "ali"
    r = run_script(STEPS / "train_aligner.py", cuts, w.lang, out)
    return Case(r, ark, "rerun the features stage", ["missing", "stage 5"], absent=[out / "final.pt"],
                intact=before, clean=[out])


def case_kaldi_text_bom(w, tmp):
    d = _kaldi_dir(w, tmp)
    (d / "text").write_bytes(b"\xef\xbb\xbf" + (d / "text").read_bytes())
    return _import(d, tmp, d / "text", "save it without the BOM", ["byte-order mark"])


def case_kaldi_wav_scp_bom(w, tmp):
    d = _kaldi_dir(w, tmp)
    (d / "wav.scp").write_bytes(b"\xef\xbb\xbf" + (d / "wav.scp").read_bytes())
    return _import(d, tmp, d / "wav.scp", "save it without the BOM", ["byte-order mark"])


def case_lexicon_phone_not_in_phones(w, tmp):
    lang = tmp / "lang"
    shutil.copytree(w.lang, lang)
    lex = lang / "lexicon.txt"
    lex.write_text(lex.read_text().replace("HELLO HH EE LL LL OO", "HELLO HH EE QQ LL OO"))
    before = digest(lang)
    out = tmp / "ali"
    r = run_script(STEPS / "train_aligner.py", w.fbank / "cuts_train-x.jsonl.gz", lang, out)
    return Case(r, lex, "rerun the lang stage", ["HELLO", "phone QQ", str(lang / "phones.txt")],
                absent=[out / "final.pt"], intact=before, clean=[out])


CASES: Dict[str, Callable] = {name[5:]: fn for name, fn in sorted(globals().items())
                              if name.startswith("case_") and callable(fn)}
NEEDS_AM = {"posteriors_wrong_vocab", "posteriors_scp_missing_ark", "posteriors_ark_truncated",
            "checkpoint_other_model_config", "nan_loss_aborts"}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("LM2AM_ERROR_REPORT")
    if path and MESSAGES:
        write_report(Path(path))


def write_report(path: Path) -> None:
    lines = ["# Error messages for bad input (issue #9)", "",
             "Generated by `python tests/test_reliability.py --report`: every case of the bad-input "
             "suite, the stage that ran, and the last line it printed (temporary paths shown as "
             "`<tmp>`). Each exits with a non-zero status, names the offending file and the fix, and "
             "leaves no partial output (inputs and earlier outputs unchanged, by content).", "",
             "| case | message |", "|---|---|"]
    for name in sorted(MESSAGES):
        msg = MESSAGES[name].replace("|", "\\|")
        lines.append(f"| {name.replace('_', ' ')} | `{msg}` |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def check_promises(name: str, case: Case) -> str:
    """The four promises of every bad-input case; returns the message line.

    1. the stage fails: non-zero exit, no traceback;
    2. one message line (the last of stderr, the only one with the prefix) naming the offending file;
    3. the fix: the message proposes it (``case.hint``), with the case's other fragments;
    4. nothing lost: outputs absent under their final names, no temporary files, and every
       input and earlier output the case recorded byte-identical (by content, not by name).
    """
    r = case.result
    assert r.code != 0, f"{name}: exit 0\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    line = r.last_line
    assert line.startswith(case.prefix), f"{name}: last stderr line {line!r}"
    assert [x for x in r.stderr.splitlines() if x.startswith(case.prefix)] == [line], f"{name}: {r.stderr[-2000:]}"
    assert str(case.file) and str(case.file) in line, f"{name}: the file {case.file} is not named in {line!r}"
    assert case.hint and case.hint in line, f"{name}: the fix {case.hint!r} is not in {line!r}"
    for frag in case.names:
        assert frag in line, f"{name}: {frag!r} not in {line!r}"
    assert case.absent or case.intact, f"{name}: the case checks neither absent outputs nor intact files"
    for p in case.absent:
        assert not p.exists(), f"{name}: partial output {p} left"
    left = leftovers(*case.clean)
    assert not left, f"{name}: temporary files left: {left}"
    changed = [k for k, v in case.intact.items() if not Path(k).is_file() or _file_digest(Path(k)) != v]
    assert not changed, f"{name}: inputs or earlier outputs changed or lost: {changed}"
    return line


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, world: World, tmp_path: Path, request):
    w = request.getfixturevalue("am_world") if name in NEEDS_AM else world
    shared = digest(w.root)  # the shared inputs every case reads
    case: Case = CASES[name](w, tmp_path)
    line = check_promises(name, dataclasses.replace(case, intact={**shared, **case.intact}))
    MESSAGES[name] = line.replace(str(tmp_path), "<tmp>").replace(str(w.root), "<data>")


# --------------------------------------------------------------------------- validation tool


def test_validate_data_ok(world: World):
    r = run_script(STEPS / "validate_data.py", "--manifest-dir", world.manifests, "--fbank-dir",
                   world.fbank, "--targets-dir", world.targets, "--parts", "train-x")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == ("validate_data: train-x: OK (manifests: 4 recordings, 4 supervisions, "
                                "4 cuts; features: 4 cuts, 400 frames; targets: 4 cuts, 400 frames)")
    r = run_script(STEPS / "validate_data.py", "--manifest-dir", world.manifests, "--fbank-dir",
                   world.fbank, "--parts", "train-x,short-x", "--no-read-features")
    assert r.code == 0 and len(r.stdout.strip().splitlines()) == 2, r.stdout + r.stderr


def test_validate_data_finds_problems(world: World, tmp_path: Path):
    from lhotse import CutSet, load_manifest
    from lhotse.utils import fastcopy

    m = tmp_path / "m"
    shutil.copytree(world.manifests, m)
    sups = load_manifest(m / "supervisions_train-x.jsonl.gz")
    s0 = sups[0] if not hasattr(sups, "segments") else list(sups)[0]
    bad = type(sups).from_segments([fastcopy(s, duration=5.0) if s.id == s0.id else s for s in sups])
    bad.to_file(m / "supervisions_train-x.jsonl.gz")
    r = run_script(STEPS / "validate_data.py", "--manifest-dir", m, "--parts", "train-x")
    assert r.code == 1 and "FAILED" in r.stdout
    assert r.last_line.startswith("ERROR: validate_data: train-x: ") and str(m) in r.last_line, r.stderr
    # features whose storage went away
    f = tmp_path / "f"
    shutil.copytree(world.fbank, f)
    cuts = CutSet.from_file(f / "cuts_train-x.jsonl.gz").to_eager()
    cuts = cuts.map(lambda c: fastcopy(c, features=fastcopy(c.features, storage_path=str(tmp_path / "gone"))))
    cuts.to_file(f / "cuts_train-x.jsonl.gz")
    r = run_script(STEPS / "validate_data.py", "--fbank-dir", f, "--parts", "train-x")
    assert r.code == 1 and "which is missing" in r.last_line and "gone" in r.last_line, r.stderr


def test_validate_data_compares_manifests_and_features(world: World, tmp_path: Path):
    """A cut of the manifests without features is an error, unless the OOV policy dropped it."""
    from lhotse import CutSet

    f = tmp_path / "f"
    shutil.copytree(world.fbank, f)
    cuts = CutSet.from_file(f / "cuts_train-x.jsonl.gz").to_eager()
    first = sorted(c.id for c in cuts)[0]
    CutSet.from_cuts([c for c in cuts if c.id != first]).to_file(f / "cuts_train-x.jsonl.gz")
    args = ["--manifest-dir", world.manifests, "--fbank-dir", f, "--parts", "train-x", "--no-read-features"]
    r = run_script(STEPS / "validate_data.py", *args)
    assert r.code == 1 and "FAILED" in r.stdout, r.stdout + r.stderr
    assert first in r.last_line and "3 of the 4" not in r.last_line and "1 of the 4" in r.last_line, r.last_line
    (f / "dropped_train-x.txt").write_text(first + "\n")  # what compute_fbank --lang writes
    r = run_script(STEPS / "validate_data.py", *args)
    assert r.code == 0 and "1 cuts dropped by the OOV policy" in r.stdout, r.stdout + r.stderr


def test_fbank_follows_8khz_data(world: World, tmp_path: Path):
    """8 kHz data imported with --sampling-rate 8000 gets 8 kHz filterbanks (no crash)."""
    d = tmp_path / "kaldi"
    d.mkdir()
    ids = sorted(TRAIN)[:2]
    for i, u in enumerate(ids):
        sf.write(tmp_path / f"{u}.wav", np.random.default_rng(i).uniform(-0.1, 0.1, 8000 + 800 * i)
                 .astype(np.float32), 8000, subtype="PCM_16")
    (d / "wav.scp").write_text("".join(f"{u} {tmp_path / (u + '.wav')}\n" for u in ids))
    (d / "text").write_text("".join(f"{u} {TRAIN[u]}\n" for u in ids))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in ids))
    m, out = tmp_path / "manifests", tmp_path / "fbank"
    r = run_script(REPO / "local" / "kaldi-data" / "import_data_dir.py", "--sampling-rate", "8000", d, "k", m)
    assert r.code == 0, r.stderr
    conf = tmp_path / "c.yaml"
    conf.write_text("features: {num_jobs: 1, num_mel_bins: 40}\n")
    r = run_script(STEPS / "compute_fbank.py", "--config", conf, "--parts", "k", m, out)
    assert r.code == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    from lhotse import CutSet

    cuts = CutSet.from_file(out / "cuts_k.jsonl.gz")
    assert [c.sampling_rate for c in cuts] == [8000, 8000] and [c.num_frames for c in cuts] == [100, 110]
    assert np.isfinite(cuts[0].load_features()).all()


def test_import_done_marker_notices_changed_audio(world: World, tmp_path: Path):
    d = tmp_path / "kaldi"
    d.mkdir()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.full(16000, 0.05, np.float32), 16000, subtype="PCM_16")
    (d / "wav.scp").write_text(f"100-1-0000 {wav}\n")
    (d / "text").write_text("100-1-0000 HELLO WORLD\n")
    (d / "utt2spk").write_text("100-1-0000 100\n")
    m = tmp_path / "manifests"
    imp = REPO / "local" / "kaldi-data" / "import_data_dir.py"
    assert run_script(imp, d, "k", m).code == 0
    assert "already done" in run_script(imp, d, "k", m).stdout
    sf.write(wav, np.full(24000, 0.05, np.float32), 16000, subtype="PCM_16")  # audio replaced
    r = run_script(imp, d, "k", m)
    assert r.code == 0 and "already done" not in r.stdout, r.stdout + r.stderr
    from lhotse import load_manifest

    assert [rec.num_samples for rec in load_manifest(m / "recordings_k.jsonl.gz")] == [24000]


def _config_classes() -> list:
    import dataclasses
    import importlib
    import typing

    from lm2am.config import SECTIONS

    specs = list(SECTIONS.values()) + ["lm2am.am.config:ModelConfig", "lm2am.am.config:SystemConfig",
                                       "lm2am.am.config:TrainConfig", "lm2am.am.augment:AugmentConfig"]
    out: list = []
    stack = [getattr(importlib.import_module(m), c) for m, c in (x.split(":") for x in specs)]
    while stack:
        k = stack.pop()
        if k in out:
            continue
        out.append(k)
        hints = typing.get_type_hints(k)
        for f in dataclasses.fields(k):
            stack += [a for a in (hints[f.name],) + typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
    return out


#: numeric fields where every value of the type is meaningful, and why
NO_RANGE = {("HeadConfig", "layer"): "negative counts from the top; checked against the encoder in resolved_layer"}


def test_every_numeric_config_field_has_a_range_check():
    """Each int/float field of every config dataclass rejects absurd values in __post_init__,
    so check_config (stage 0) names the key instead of a later stage crashing."""
    import dataclasses
    import typing

    from lm2am.config import from_dict
    from lm2am.errors import Lm2amError

    unchecked = []
    for k in _config_classes():
        hints = typing.get_type_hints(k)
        for f in dataclasses.fields(k):
            t = hints[f.name]
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if not (t in (int, float) or (typing.get_origin(t) is typing.Union and args in ([int], [float]))):
                continue
            if (k.__name__, f.name) in NO_RANGE:
                continue
            for v in (-10**9, 10**12):
                try:
                    from_dict(k, {f.name: v}, "c.yaml: sec")
                except Lm2amError as e:
                    assert f.name in str(e), str(e)
                    break
            else:
                unchecked.append(f"{k.__name__}.{f.name}")
    assert not unchecked, f"numeric config fields without a range check: {unchecked}"


def test_noop_rerun_does_not_rewrite_reports(world: World, tmp_path: Path):
    from lm2am.io import write_if_changed
    from lm2am.report.plots import pyplot, save_png

    f = tmp_path / "fbank"
    shutil.copytree(world.fbank, f)
    args = ["--parts", "train-x", f]
    assert run_script(STEPS / "data_summary.py", *args).code == 0
    summary = f / "summary.txt"
    old = time.time_ns() - 10**10
    os.utime(summary, ns=(old, old))
    assert run_script(STEPS / "data_summary.py", *args).code == 0
    assert summary.stat().st_mtime_ns == old  # same content: not rewritten
    p = tmp_path / "r.md"
    assert write_if_changed(p, "a\n") and not write_if_changed(p, "a\n") and write_if_changed(p, "b\n")
    assert p.read_text() == "b\n" and not leftovers(tmp_path)
    png = tmp_path / "plot.png"
    for i in range(2):
        fig = pyplot().figure(figsize=(2, 2))
        fig.gca().plot([0, 1], [1, 0])
        save_png(fig, png)
        if i == 0:
            os.utime(png, ns=(old, old))
    assert png.stat().st_mtime_ns == old


# --------------------------------------------------------------------------- kill -9 and done markers


def tree_digest(d: Path) -> Dict[str, str]:
    """:func:`digest` of ``d``, keyed by paths relative to it."""
    return {str(Path(k).relative_to(d)): v for k, v in digest(d).items()}


def test_kill9_then_rerun_gives_identical_outputs(world: World, tmp_path: Path):
    """SIGKILL steps/compute_fbank.py at several points, rerun it: same bytes as one clean run.

    The kills are subprocesses (a real SIGKILL); the clean run and the reruns go through the
    same script in this process (same code path, no interpreter start-up cost).
    """
    corpus = tmp_path / "corpus"
    write_librispeech_part(corpus, "big-x", {f"{100 + i % 3}-1-{i:04d}": "HELLO WORLD" for i in range(16)},
                           seconds=1.5, seed=5)
    from lm2am.data import prepare_manifests

    mdir = tmp_path / "manifests"
    prepare_manifests(corpus, ["big-x"], mdir, num_jobs=1)
    conf = tmp_path / "c.yaml"
    conf.write_text("features: {num_jobs: 1}\n")
    out = tmp_path / "fbank"
    args = ["--config", conf, "--parts", "big-x", mdir, out]
    r = run_script(STEPS / "compute_fbank.py", *args)
    assert r.code == 0, r.stderr
    want = tree_digest(out)
    assert set(want) == {".big-x.done", "cuts_big-x.jsonl.gz", "feats_big-x.lca"}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(9)
    lca = out / "feats_big-x.lca"  # LilcomChunkyWriter's one storage file
    events = {  # when to kill: as soon as the condition holds
        "storage created": lca.exists,
        "features being written": lambda: lca.exists() and lca.stat().st_size > 0,
        "random delay": None,
    }
    killed_mid_write, started_writing = 0, 0.0
    for what, cond in events.items():
        shutil.rmtree(out)
        p = subprocess.Popen([sys.executable, str(STEPS / "compute_fbank.py")] + [str(a) for a in args],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        t0 = time.time()
        t_end = t0 + 60
        # a random point of the writing phase, as seen by the earlier kills
        delay = t0 + started_writing + rng.uniform(0.0, 0.3) if started_writing else t0 + 3.0
        while p.poll() is None and time.time() < t_end:
            if (cond() if cond else time.time() >= delay):
                if cond is not None and not started_writing:
                    started_writing = time.time() - t0
                break
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the stage and any worker processes
        p.wait()
        print(f"kill at '{what}': exit {p.returncode}, outputs then: "
              f"{sorted(str(q.relative_to(out)) for q in out.rglob('*')) if out.exists() else []}")
        done_at_kill = (out / ".big-x.done").is_file()
        if p.returncode == -signal.SIGKILL and out.exists() and not (out / "cuts_big-x.jsonl.gz").exists():
            killed_mid_write += 1  # some output existed, the completion manifest did not
        r = run_script(STEPS / "compute_fbank.py", *args)
        assert r.code == 0, r.stderr
        if not done_at_kill:  # killed before the done marker: the rerun must redo the work
            assert "already done" not in r.stdout
        assert tree_digest(out) == want, f"kill at '{what}': outputs differ after the rerun"
        assert not leftovers(out)
    assert killed_mid_write >= 1, "no kill landed while the stage was writing"


def test_done_marker_reruns_on_config_or_input_change(world: World, tmp_path: Path):
    out = tmp_path / "fbank"
    conf = tmp_path / "c.yaml"
    conf.write_text("features: {num_jobs: 1}\n")
    args = ["--config", conf, "--parts", "train-x", world.manifests, out]
    r = run_script(STEPS / "compute_fbank.py", *args)
    assert r.code == 0, r.stderr
    first = tree_digest(out)
    r = run_script(STEPS / "compute_fbank.py", *args)
    assert "already done" in r.stdout  # unchanged: no-op
    conf.write_text("features: {num_jobs: 1, num_mel_bins: 40}\n")  # config section changed
    r = run_script(STEPS / "compute_fbank.py", *args)
    assert r.code == 0 and "already done" not in r.stdout
    from lhotse import CutSet

    assert CutSet.from_file(out / "cuts_train-x.jsonl.gz")[0].num_features == 40
    r = run_script(STEPS / "compute_fbank.py", *args)
    assert "already done" in r.stdout
    # an input changed (the manifest rewritten): the stage runs again
    m = tmp_path / "manifests"
    shutil.copytree(world.manifests, m)
    args2 = ["--config", conf, "--parts", "train-x", m, out]
    r = run_script(STEPS / "compute_fbank.py", *args2)
    assert "already done" not in r.stdout
    r = run_script(STEPS / "compute_fbank.py", *args2)
    assert "already done" in r.stdout
    os.utime(m / "cuts_train-x.jsonl.gz", ns=(time.time_ns(), time.time_ns() + 10**9))
    r = run_script(STEPS / "compute_fbank.py", *args2)
    assert r.code == 0 and "already done" not in r.stdout
    assert first != tree_digest(out)  # 40 vs 80 mel bins: the outputs follow the config


# --------------------------------------------------------------------------- --report


if __name__ == "__main__":
    if "--report" in sys.argv:
        target = REPO / "docs" / "error_messages.md"
        os.environ["LM2AM_ERROR_REPORT"] = str(target)
        sys.exit(pytest.main([__file__, "-q", "-k", "test_bad_input", "-p", "no:cacheprovider"]))
    print("usage: python tests/test_reliability.py --report  (writes docs/error_messages.md)")

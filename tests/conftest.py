"""Shared fixtures: a tiny LibriSpeech-layout corpus made from synthetic tones (no TTS needed)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# kaldi_hmm_gmm must be imported before kaldifst/kaldi_decoder/kaldilm (which lhotse or other
# tests may pull in), or the process hangs; importing it first keeps the Kaldi tests running.
import kaldi_hmm_gmm  # noqa: F401
import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SYNTH_RECIPE = REPO / "egs/synth-en/s5"
#: CI (.ci/run) sets LM2AM_REQUIRE_SETUP=1: what utils/setup_env.sh installs must be there, so a
#: missing Debian package fails the tests that need it instead of skipping them unnoticed.
REQUIRE_SETUP = os.environ.get("LM2AM_REQUIRE_SETUP") == "1"


def _setup_reason(what: str) -> str:
    return (f"{what} not installed: these checks did NOT run (utils/setup_env.sh installs it; "
            "LM2AM_REQUIRE_SETUP=1 makes this a failure)")


def needs_setup(present: bool, what: str) -> pytest.MarkDecorator:
    """Mark: skip, saying what is missing, where a Debian package that utils/setup_env.sh installs
    is absent; under LM2AM_REQUIRE_SETUP=1 the test runs anyway and fails on the missing tool."""
    return pytest.mark.skipif(not present and not REQUIRE_SETUP, reason=_setup_reason(what))


def require_setup(present: bool, what: str) -> None:
    """Inside a test or fixture: :func:`needs_setup`'s rule, skip or (LM2AM_REQUIRE_SETUP=1) fail."""
    if not present:
        (pytest.fail if REQUIRE_SETUP else pytest.skip)(_setup_reason(what))


#: last stage of the shared tiny recipe build (data, lang, features, alignment, tree, targets, graph)
TINY_LAST_STAGE = 11


def make_recipe_copy(dst: Path, recipe: Path = SYNTH_RECIPE) -> Path:
    """A scratch copy of a recipe dir: run.sh, cmd.sh and conf/ copied, steps/utils/local/path.sh
    linked to the repo as in egs/."""
    dst.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(recipe / name, dst / name)
    shutil.copytree(recipe / "conf", dst / "conf", symlinks=True)
    for link in ("steps", "utils", "local", "path.sh"):
        os.symlink(REPO / link, dst / link)
    return dst


def oracle_loglikes(part: str, targets_dir: str = "data/targets") -> Dict[str, np.ndarray]:
    """Near-one-hot log-likelihoods of each cut's own target senones (0.9 on the target, the rest
    shared): what a perfect AM would give; checks graph, decoder and scoring without training."""
    from lm2am.targets import read_info, read_targets

    num = read_info(targets_dir, part).num_senones
    mats = {}
    for utt, t in read_targets(targets_dir, part).items():
        m = np.full((t.num_frames, num), np.log(0.1 / num), dtype=np.float32)
        m[np.arange(t.num_frames), t.senone] = np.log(0.9)
        mats[utt] = m
    return mats


def run_recipe(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    """``./run.sh ARGS`` in ``recipe``, output captured."""
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True)


#: pytest-xdist groups of the tests that use the tiny recipe: those that need stages 12-17 on top
#: (they run them, in this order, on one worker) and those that only read stages 0-11's outputs
TINY_TRAINED_GROUP, TINY_GROUP = "tiny_trained", "tiny_recipe"


def xdist_group_of(item: pytest.Item) -> str:
    """The pytest-xdist group of a test: one of the tiny recipe's two groups, else its file."""
    fixtures = getattr(item, "fixturenames", ())
    if "tiny_trained" in fixtures:
        return TINY_TRAINED_GROUP
    return TINY_GROUP if "tiny_recipe" in fixtures else item.path.name


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into node-id suffixes
def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n N --dist loadgroup`` (``make test``). Each worker builds its own
    session and module fixtures, so every other test goes to its file's group (a module fixture
    such as test_librispeech.py's recipe run is built once); the tiny recipe is shared by the
    workers (:func:`tiny_recipe`), and its tests form two groups that may run side by side: the
    stage 12-17 chain and the tests that only read stages 0-11. Under xdist the chain is
    scheduled first and the LibriSpeech recipe second (with ``--no-loadscope-reorder``, as
    ``make test`` runs it), so the two recipe runs start at once on different workers. Without
    xdist the marks do nothing."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike (xdist compares them)
        first = {TINY_TRAINED_GROUP: 0, "test_librispeech.py": 1, TINY_GROUP: 2}
        items.sort(key=lambda item: first.get(xdist_group_of(item), len(first)))  # stable


@contextlib.contextmanager
def _locked(lock: Path):
    """An exclusive lock on the file ``lock`` (created if need be) for the ``with`` body."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """Stages 0-11 of the synth-en recipe on conf/tiny.yaml, built once per test session and
    shared by every test file (minutes). Under pytest-xdist the workers share one build in the
    session's base temp dir: the first worker to need it builds it, the others wait for it.
    ``LM2AM_TINY_RECIPE=<dir>`` reuses a copy that already ran them (for iterating on one test)."""
    given = os.environ.get("LM2AM_TINY_RECIPE")
    if given:
        return Path(given)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's base temp dir is below the session's
    recipe, status = root / "tiny_recipe" / "s5", root / "tiny_recipe" / "build_status"
    with _locked(root / "tiny_recipe.lock"):
        if not status.is_file():  # not built yet (by another worker)
            try:
                make_recipe_copy(recipe)
                r = run_recipe(recipe, "--config", "conf/tiny.yaml", "--stage", "0", "--stop-stage", str(TINY_LAST_STAGE))
                (recipe / "first_run.out").write_text(r.stdout + r.stderr)
                status.write_text(f"{r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            except Exception as e:  # the other workers fail with this, not on a half-made copy
                status.write_text(f"error\n{e!r}")
                raise
    code, tail = status.read_text().split("\n", 1)
    assert code == "0", f"recipe failed:\n{tail}"
    return recipe


#: AM systems of the tiny end-to-end run (stages 14-17), one seed each
TINY_SYSTEMS = "ce interp_0.1 hier"


@pytest.fixture(scope="session")
def tiny_trained(tiny_recipe: Path) -> Path:
    """Stages 12-15 on top of the tiny recipe, once per session: teacher LMs, posteriors, the
    AM systems of :data:`TINY_SYSTEMS` and their dev frame accuracy (tests/test_recipe.py and
    the benchmark's quick pass, tests/test_bench.py, read them). Its tests run on one worker
    (:func:`xdist_group_of`)."""
    r = run_recipe(tiny_recipe, "--config", "conf/tiny.yaml", "--stage", "12", "--stop-stage", "15",
                   "--am-systems", TINY_SYSTEMS, "--extra-seeds", "")  # one seed each: CI time
    assert r.returncode == 0, f"stages 12-15 failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return tiny_recipe


def write_librispeech_part(root: Path, part: str, utts: Dict[str, str], sr: int = 16000,
                           seconds: float = 1.0, seed: int = 0) -> List[Path]:
    """Write ``utts`` (utt id ``spk-chap-NNNN`` -> text) as FLAC + trans.txt under root/part."""
    rng = np.random.default_rng(seed)
    by_chapter: Dict[Path, List[str]] = {}
    paths = []
    for utt, text in sorted(utts.items()):
        spk, chap, _ = utt.split("-")
        d = root / part / spk / chap
        d.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(sr * seconds)) / sr
        audio = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(t.size)
        p = d / f"{utt}.flac"
        sf.write(p, audio.astype(np.float32), sr)
        paths.append(p)
        by_chapter.setdefault(d / f"{spk}-{chap}.trans.txt", []).append(f"{utt} {text}")
    for tf, lines in by_chapter.items():
        tf.write_text("\n".join(lines) + "\n")
    return paths


@pytest.fixture
def tone_corpus(tmp_path: Path) -> Path:
    """corpus/ with parts train-x (4 utts, 2 speakers) and dev-x (2 utts)."""
    root = tmp_path / "corpus"
    write_librispeech_part(root, "train-x", {"100-1-0000": "HELLO WORLD", "100-1-0001": "GOOD MORNING",
                                              "101-1-0000": "THE CAT SAT", "101-1-0001": "A DOG RAN"})
    write_librispeech_part(root, "dev-x", {"200-1-0000": "HELLO THERE", "200-1-0001": "THE DOG SAT"}, seed=1)
    return root


# ------------------------------------------------------------------------------------------
# The toy language of the decoder tests (test_decode.py, test_gmm.py, test_kaldi_interop.py)

TOY_PHONES = ["<eps>", "SIL", "SPN", "AA", "B", "K", "T", "IY", "#0", "#1", "#2"]
TOY_PID = {p: i for i, p in enumerate(TOY_PHONES)}
TOY_LEX = [("<UNK>", ("SPN",)), ("BEAT", ("B", "IY", "T")), ("BEE", ("B", "IY")), ("CAT", ("K", "AA", "T")),
           ("TAB", ("T", "AA", "B")), ("TEA", ("T", "IY")), ("TEAK", ("T", "IY", "K"))]
TOY_PRON = dict(TOY_LEX)
TOY_LM_TEXT = "BEE TEA\nCAT TAB\nBEAT CAT\nTEAK TEA\nBEE BEAT TEA\nCAT TAB TEA\nTEA BEE\n"


def write_toy_lang(d: Path) -> List[str]:
    """The toy lang dir (lexicons, words.txt, phones.txt) in ``d``; returns the word list."""
    from lm2am.lang import add_disambig

    d.mkdir(parents=True, exist_ok=True)
    dis, _ = add_disambig(TOY_LEX)
    (d / "lexicon.txt").write_text("".join(" ".join((w,) + p) + "\n" for w, p in TOY_LEX))
    (d / "lexicon_disambig.txt").write_text("".join(" ".join((w,) + p) + "\n" for w, p in dis))
    words = ["<eps>"] + sorted(w for w, _ in TOY_LEX) + ["#0", "<s>", "</s>"]
    (d / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    (d / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(TOY_PHONES)))
    return words


def toy_tree() -> "ContextTree":  # noqa: F821
    """3 states per phone; IY's senones split on "left is B" (a context the graph must honour)."""
    from lm2am.tree import TreeStats, build_tree

    rng = np.random.default_rng(0)
    st = TreeStats(2)
    real = list(range(1, 8))
    for c in real:
        for s in range(3):
            n = 400
            lt, r = rng.choice([0] + real, n), rng.choice([0] + real, n)
            mean = c * 10.0 + s * 3.0 + np.where((c == TOY_PID["IY"]) & (lt == TOY_PID["B"]), 1.5, 0.0)
            st.accumulate(mean[:, None] + rng.normal(0, 0.3, (n, 2)), lt, np.full(n, c), r, np.full(n, s))
    return build_tree(st, TOY_PHONES, 40, questions=[["B"], ["T"], ["K"], ["AA", "IY"], ["SIL"]], min_count=50,
                      no_context_phones=["SIL", "SPN"], num_states=3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy lang, tree and bigram HCLG (k2 graph loaded)."""
    from lm2am.align.topo import HmmTopo
    from lm2am.graph import GraphConfig, load_graph, make_graph
    from lm2am.graph.ngram import NgramConfig

    root = tmp_path_factory.mktemp("toy")
    words = write_toy_lang(root / "lang")
    (root / "lm.txt").write_text(TOY_LM_TEXT)
    tree = toy_tree()
    info = make_graph(root / "lang", tree, root / "lang" / "graph", HmmTopo(),
                      GraphConfig(lm=NgramConfig(order=2)), lm_text=root / "lm.txt")
    graph = load_graph(root / "lang" / "graph")
    return {"root": root, "words": words, "tree": tree, "info": info, "graph": graph}


def pdf_seq(tree: "ContextTree", word_seq: Sequence[str], dur: int = 2, sil: bool = True,  # noqa: F821
            phones: Sequence[str] = ()) -> List[int]:
    """Forced path: pdf per frame for the words (or raw phones), each HMM state ``dur`` frames,
    triphone context across words, utterance edges = 0 (the tree's convention)."""
    ph = list(phones) or [p for w in word_seq for p in TOY_PRON[w]]
    ph = (["SIL"] if sil else []) + ph + (["SIL"] if sil else [])
    ids = [TOY_PID[p] for p in ph]
    out: List[int] = []
    for i, c in enumerate(ids):
        left = ids[i - 1] if i > 0 else 0
        right = ids[i + 1] if i + 1 < len(ids) else 0
        for s in range(3):
            out += [tree.lookup(left, c, right, s)] * dur
    return out


def peaked(seq: Sequence[int], num_pdfs: int, floor: float = -8.0) -> np.ndarray:
    """Log-likelihoods with 0 on the path ``seq`` and ``floor`` elsewhere."""
    x = np.full((len(seq), num_pdfs), floor, np.float32)
    x[np.arange(len(seq)), seq] = 0.0
    return x


# ------------------------------------------------------------------------------------------
# Synthetic tree statistics (test_tree.py, test_kaldi_interop.py)

TREE_PHONES = ["<eps>", "SIL", "a1", "a2", "a3", "b1", "b2", "b3", "x", "y", "#0"]
TREE_DIM = 4


def random_tree_stats(seed: int, n: int = 20000, integer: bool = False) -> Tuple["TreeStats", Tuple]:  # noqa: F821
    """Context-state statistics over TREE_PHONES whose means depend on centre, left, right and state."""
    from lm2am.tree import TreeStats

    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 2, (len(TREE_PHONES), TREE_DIM))
    c = rng.integers(1, 10, n)
    lt, r = rng.integers(0, 10, n), rng.integers(0, 10, n)
    s = rng.integers(0, 3, n)
    feats = mu[c] + 0.7 * mu[lt] - 0.4 * mu[r] + s[:, None] + rng.normal(0, 1, (n, TREE_DIM))
    if integer:  # exact sums whatever the accumulation order
        feats = np.round(feats * 4)
    st = TreeStats(TREE_DIM)
    st.accumulate(feats, lt, c, r, s)
    return st, (feats, lt, c, r, s)

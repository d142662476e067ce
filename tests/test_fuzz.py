"""Fuzzing (issue #9): the parsers of user files never fail with anything but Lm2amError.

Covered: the lexicon and symbol-table readers (lm2am/lang/lang_dir.py), Kaldi table files of a data dir
(lm2am/corpus/kaldi_dir.py read_kaldi_table), Kaldi int-vector alignment archives, text or
binary, plain or gzipped (lm2am/align/kaldi_import.py read_int_vectors), and recipe configs
(lm2am/config.py check_config / load_section). Inputs are arbitrary bytes plus mutations of valid
files; a run must either parse or raise Lm2amError with a one-line message.
"""
from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm2am.errors import Lm2amError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
TMP = Path(tempfile.mkdtemp(prefix="lm2am_fuzz_"))


def _write(name: str, data: bytes) -> Path:
    p = TMP / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _parses_or_lm2am_error(fn, *args):
    try:
        return fn(*args)
    except Lm2amError as e:
        assert "\n" not in str(e), str(e)
        return None


def _mutate(valid: bytes):
    """Valid bytes with a slice replaced, truncated or duplicated."""
    n = len(valid)
    return st.one_of(
        st.binary(max_size=200),
        st.integers(0, n).map(lambda k: valid[:k]),
        st.tuples(st.integers(0, n), st.integers(0, n), st.binary(max_size=12)).map(
            lambda t: valid[:min(t[:2])] + t[2] + valid[max(t[:2]):]),
        st.integers(0, n).map(lambda k: valid[:k] + valid),
    )


_TEXT_LINES = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
                       max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))

# ---------------------------------------------------------------------------- lexicon, symbols

LEXICON = b"HELLO HH AH L OW\nWORLD W ER L D\n<UNK> SPN\n"
PHONES = b"<eps> 0\nSIL 1\nSPN 2\nAH 3\n#0 4\n"


@SETTINGS
@given(st.one_of(_mutate(LEXICON), _TEXT_LINES))
def test_read_lexicon(data: bytes):
    from lm2am.lang import read_lexicon

    d = TMP / "lang_lex"
    _write("lang_lex/lexicon.txt", data)
    lex = _parses_or_lm2am_error(read_lexicon, d)
    if lex is not None:
        assert all(isinstance(p, tuple) and p for prons in lex.values() for p in prons)


@SETTINGS
@given(st.one_of(_mutate(PHONES), _TEXT_LINES))
def test_read_symbols(data: bytes):
    from lm2am.lang import read_symbols

    table = _parses_or_lm2am_error(read_symbols, _write("phones.txt", data))
    if table is not None:
        assert all(isinstance(v, int) and v >= 0 for v in table.values())


# ---------------------------------------------------------------------------- Kaldi tables

TEXT = b"spk1-u1 hello world\nspk1-u2 good morning\n"
SEGMENTS = b"u1 rec1 0.0 1.5\nu2 rec1 1.5 -1\n"


@SETTINGS
@given(st.one_of(_mutate(TEXT), _mutate(SEGMENTS), _TEXT_LINES),
       st.sampled_from([(2, None, False), (2, None, True), (2, 2, False), (4, 4, False)]))
def test_read_kaldi_table(data: bytes, fields):
    from lm2am.corpus.kaldi_dir import read_kaldi_table

    lo, hi, empty = fields
    table = _parses_or_lm2am_error(read_kaldi_table, _write("table", data), lo, hi, empty)
    if table is not None:
        assert all(" " not in k for k in table)


# ---------------------------------------------------------------------------- alignments


def _binary_ark(d) -> bytes:
    import kaldiio

    buf = io.BytesIO()
    kaldiio.save_ark(buf, {k: np.asarray(v, dtype=np.int32) for k, v in d.items()})
    return buf.getvalue()


ALI = {"u1": [0, 0, 1, 1, 2], "u2": [3, 3, 3]}
TEXT_ALI = b"u1 0 0 1 1 2\nu2 [ 3 3 3 ]\n"
BIN_ALI = _binary_ark(ALI)


@SETTINGS
@given(st.one_of(_mutate(TEXT_ALI), _mutate(BIN_ALI), _TEXT_LINES), st.booleans())
def test_read_int_vectors(data: bytes, gz: bool):
    from lm2am.align.kaldi_import import read_int_vectors

    path = _write("ali.ark.gz" if gz else "ali.ark", gzip.compress(data) if gz else data)
    out = _parses_or_lm2am_error(read_int_vectors, path)
    if out is not None:
        assert all(a.dtype == np.int32 and a.ndim == 1 for a in out.values())


@SETTINGS
@given(st.binary(max_size=300))
def test_read_int_vectors_corrupt_gzip(data: bytes):
    from lm2am.align.kaldi_import import read_int_vectors

    _parses_or_lm2am_error(read_int_vectors, _write("corrupt.ark.gz", b"\x1f\x8b" + data))


# ---------------------------------------------------------------------------- configs

CONFIG = (b"corpus:\n  num_speakers: 4\nfeatures:\n  num_mel_bins: 80\n  dither: 0.0\n"
          b"lang:\n  oov_policy: unk\n  bpe_vocab_size: 100\nam:\n  model: {hidden_dim: 32}\n")
_YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                          st.floats(allow_nan=True), st.text(max_size=10))
_YAML_VALUES = st.recursive(_YAML_SCALARS, lambda c: st.one_of(st.lists(c, max_size=3),
                                                                  st.dictionaries(st.text(max_size=8), c, max_size=3)),
                            max_leaves=8)
_SECTIONS = st.sampled_from(["corpus", "asterisk", "manifests", "features", "lang", "topo", "align",
                             "tree", "graph", "decode", "am", "lm", "bogus"])


@SETTINGS
@given(st.one_of(_mutate(CONFIG), _TEXT_LINES))
def test_check_config_bytes(data: bytes):
    from lm2am.config import check_config

    _parses_or_lm2am_error(check_config, _write("conf.yaml", data))


@SETTINGS
@given(st.dictionaries(_SECTIONS, st.dictionaries(st.sampled_from(
    ["num_mel_bins", "dither", "oov_policy", "bpe_vocab_size", "num_states", "hidden_dim", "model",
     "train", "top_k", "seed", "epochs", "sampling_rate", "x"]), _YAML_VALUES, max_size=3), max_size=3))
def test_check_config_structures(doc):
    import yaml

    from lm2am.config import check_config

    _parses_or_lm2am_error(check_config, _write("conf2.yaml", yaml.safe_dump(doc).encode()))

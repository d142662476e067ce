"""Tests for lm2am.corpus.text_sources (needs wordnet-base, fortunes(-min), bible-kjv)."""
from __future__ import annotations

import re

import pytest

from lm2am.corpus import text_sources as ts
from lm2am.errors import Lm2amError

WORDS_RE = re.compile(r"^[A-Z']+( [A-Z']+)*$")  # normalize_text alphabet, single spaces


@pytest.fixture(scope="module")
def pools() -> ts.TextPools:
    return ts.load_text_pools(seed=7, num_train=5000, num_dev=300, num_test=300)


def test_sizes_and_sources(pools: ts.TextPools) -> None:
    assert (len(pools.train), len(pools.dev), len(pools.test)) == (5000, 300, 300)
    assert set(pools.lm_sources) == {"wordnet", "fortunes", "bible"}
    assert all(n > 0 for n in pools.lm_sources.values())
    assert sum(pools.lm_sources.values()) == len(pools.lm)
    # Rough sizes of the Debian text sources, with slack for package versions.
    assert len(ts.wordnet_sentences()) > 20000
    assert len(ts.fortune_sentences()) > 10000
    assert len(ts.bible_sentences()) > 30000


def test_disjoint(pools: ts.TextPools) -> None:
    train, dev, test, lm = map(set, (pools.train, pools.dev, pools.test, pools.lm))
    assert len(train) == len(pools.train) and len(dev) == len(pools.dev)
    assert len(test) == len(pools.test) and len(lm) == len(pools.lm)
    assert not train & dev and not train & test and not dev & test
    assert not lm & (train | dev | test)


def test_normalized_alphabet_and_lengths(pools: ts.TextPools) -> None:
    for name in ("train", "dev", "test", "lm"):
        for s in getattr(pools, name):
            assert WORDS_RE.match(s), (name, s)
    for s in pools.train + pools.dev + pools.test:
        assert 5 <= len(s.split()) <= 20


def test_deterministic_with_seed(pools: ts.TextPools) -> None:
    again = ts.load_text_pools(seed=7, num_train=5000, num_dev=300, num_test=300)
    assert again == pools
    other = ts.load_text_pools(seed=8, num_train=5000, num_dev=300, num_test=300)
    assert other.train != pools.train and other.test != pools.test


def test_lm_source_selection() -> None:
    p = ts.load_text_pools(seed=0, num_train=10, num_dev=1, num_test=1, lm_sources=["fortunes"])
    assert set(p.lm_sources) == {"fortunes"} and p.lm_sources["fortunes"] == len(p.lm)
    assert ts.load_text_pools(seed=0, num_train=1, num_dev=0, num_test=0, lm_sources=()).lm == []
    with pytest.raises(Lm2amError, match="unknown LM source"):
        ts.load_text_pools(seed=0, num_train=1, num_dev=0, num_test=0, lm_sources=["news"])


def test_too_large_request() -> None:
    n = len(ts.wordnet_sentences())
    with pytest.raises(Lm2amError, match=str(n)):
        ts.load_text_pools(seed=0, num_train=n, num_dev=1, num_test=0)


def test_missing_sources(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    monkeypatch.setattr(ts, "WORDNET_DIRS", (str(tmp_path),))
    monkeypatch.setattr(ts, "FORTUNE_DIRS", (str(tmp_path),))
    monkeypatch.setattr(ts, "BIBLE_COMMAND", "no-such-bible-command")
    with pytest.raises(Lm2amError, match="apt-get install wordnet-base"):
        ts.wordnet_sentences()
    with pytest.raises(Lm2amError, match="apt-get install fortunes"):
        ts.fortune_sentences()
    with pytest.raises(Lm2amError, match="apt-get install bible-kjv"):
        ts.bible_sentences()


def test_fortune_parsing() -> None:
    text = ("A banker lends you his umbrella when the sun is shining.  Mr. Smith agrees!\n"
            "\t\t-- Mark Twain, \"Some\n\t\tBook\"\n%\n<irc> not prose at all here\n%\n")
    records = list(ts._fortune_records(text))
    assert "Twain" not in records[0] and "Book" not in records[0]
    assert ts._split_sentences(records[0]) == [
        "A banker lends you his umbrella when the sun is shining.", "Mr. Smith agrees!"]

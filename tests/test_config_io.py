"""Typed configs reject unknown keys and wrong types; atomic writes and done markers."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

from lm2am.config import check_config, from_dict, load_section
from lm2am.corpus.text_norm import normalize_text, verbalize_number, verbalize_ordinal
from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_path, atomic_write_text


@dataclass
class Sub:
    a: int = 1


@dataclass
class Cfg:
    x: float = 1.0
    n: int = 2
    name: str = "a"
    flag: bool = False
    items: List[str] = field(default_factory=list)
    opt: Optional[int] = None
    sub: Sub = field(default_factory=Sub)


def test_from_dict_types_and_coercion():
    c = from_dict(Cfg, {"x": 3, "items": ["p"], "opt": None, "sub": {"a": 5}}, "t")
    assert c.x == 3.0 and isinstance(c.x, float) and c.items == ["p"] and c.sub.a == 5


@pytest.mark.parametrize("data,needle", [
    ({"nme": "x"}, "unknown key 'nme'"),
    ({"n": 1.5}, "t.n: expected an integer"),
    ({"flag": "yes"}, "t.flag: expected true/false"),
    ({"items": "abc"}, "t.items: expected a list"),
    ({"sub": {"b": 1}}, "unknown key 'b'"),
])
def test_from_dict_rejects(data, needle):
    with pytest.raises(Lm2amError, match=needle):
        from_dict(Cfg, data, "t")


def test_load_section_errors(tmp_path: Path):
    with pytest.raises(Lm2amError, match="does not exist"):
        load_section(tmp_path / "nope.yaml", "x", Cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(Lm2amError, match="not valid YAML"):
        load_section(bad, "x", Cfg)
    ok = tmp_path / "ok.yaml"
    ok.write_text("x: {n: 7}\n")
    assert load_section(ok, "x", Cfg).n == 7
    assert load_section(ok, "other", Cfg).n == 2  # missing section -> defaults


def test_check_config_unknown_section(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("featurez: {}\n")
    with pytest.raises(Lm2amError, match="unknown section 'featurez'"):
        check_config(f)
    f.write_text("features: {num_mel_bins: 80, bogus: 1}\n")
    with pytest.raises(Lm2amError, match="features: unknown key 'bogus'"):
        check_config(f)


def test_recipe_configs_are_valid():
    conf = Path(__file__).resolve().parents[1] / "egs/synth-en/s5/conf"
    for f in sorted(conf.glob("*.yaml")):
        check_config(f)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists() and os.listdir(tmp_path) == []
    atomic_write_text(target, "done")
    assert target.read_text() == "done"


def test_done_marker_tracks_params_and_inputs(tmp_path: Path):
    inp = tmp_path / "in.txt"
    inp.write_text("a")
    m = DoneMarker(tmp_path / ".done", params={"k": 1}, inputs=[inp])
    assert not m.is_done()
    m.mark()
    assert DoneMarker(tmp_path / ".done", params={"k": 1}, inputs=[inp]).is_done()
    assert not DoneMarker(tmp_path / ".done", params={"k": 2}, inputs=[inp]).is_done()
    inp.write_text("changed!")
    assert not DoneMarker(tmp_path / ".done", params={"k": 1}, inputs=[inp]).is_done()


def test_text_normalization():
    assert verbalize_number(0) == "zero"
    assert verbalize_number(1999) == "one thousand nine hundred ninety nine"
    assert verbalize_ordinal(3) == "third" and verbalize_ordinal(40) == "fortieth"
    assert normalize_text("It's 5 o'clock -- \"now\"!") == "IT'S FIVE O'CLOCK NOW"
    assert normalize_text("...") == ""

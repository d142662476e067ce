"""Typed configuration: YAML sections loaded into dataclasses that reject unknown keys.

A recipe config (``egs/<corpus>/s5/conf/<size>.yaml``) has one top-level section per stage
family (``corpus``, ``features``, ``lang``, ...). Each section is a dataclass defined next to
the code that uses it; :data:`SECTIONS` names them so a whole file can be checked up front.
"""
from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar

import yaml

from lm2am.errors import Lm2amError

T = TypeVar("T")

#: section name -> "module:Class"; imported lazily so checking a config stays cheap.
SECTIONS: Dict[str, str] = {
    "corpus": "lm2am.corpus.synth_en:SynthConfig",
    "asterisk": "lm2am.corpus.asterisk:AsteriskConfig",
    "manifests": "lm2am.data:ManifestConfig",
    "features": "lm2am.data:FbankConfig",
    "lang": "lm2am.lang:LangConfig",
    "topo": "lm2am.align.topo:HmmTopo",
    "align": "lm2am.align.flat_start:AlignConfig",
    "gmm": "lm2am.gmm.config:GmmConfig",
    "tree": "lm2am.tree.stage:TreeConfig",
    "graph": "lm2am.graph:GraphConfig",
    "decode": "lm2am.decode:DecodeConfig",
    "am": "lm2am.am.config:AmConfig",
    "lm": "lm2am.lm.model:LmConfig",
}


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: Dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(str(key), line, seen[key])
            except TypeError:  # an unhashable key: let the base class report it
                continue
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class RangeError(ValueError):
    """A config value out of its range; :func:`from_dict` names it as ``section.key``."""

    def __init__(self, key: str, msg: str):
        super().__init__(f"{key} {msg}")
        self.key, self.msg = key, msg


def check_range(obj: Any, name: str, lo: Optional[float] = None, hi: Optional[float] = None, *,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise :class:`RangeError` unless ``obj.<name>`` (None passes; lists: every item) lies in
    the range: ``lo``/``hi`` bounds, exclusive when ``lo_open``/``hi_open``. For the
    ``__post_init__`` of every config dataclass with numeric fields."""
    value = getattr(obj, name)
    for v in (value if isinstance(value, (list, tuple)) else [value]):
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        bad = (lo is not None and (v <= lo if lo_open else v < lo)) or \
              (hi is not None and (v >= hi if hi_open else v > hi))
        if bad or v != v:  # NaN
            if lo is not None and hi is not None:
                want = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            elif lo is not None:
                want = f"{'>' if lo_open else '>='} {lo}"
            else:
                want = f"{'<' if hi_open else '<='} {hi}"
            raise RangeError(name, f"must be {want}, got {v!r}")


def read_yaml(path: Path | str) -> Dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing, malformed or ambiguous file
    (a key given twice in one mapping is an error, not 'the last one wins')."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"config file {path} does not exist; pass an existing file with --config")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as e:
        raise Lm2amError(f"{path} line {e.line}: key '{e.key}' given twice (also on line "
                         f"{e.first}); keep one") from None
    except UnicodeDecodeError as e:
        raise Lm2amError(f"{path}: not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise Lm2amError(f"{path}{where}: not valid YAML; fix the syntax") from None
    if not isinstance(data, dict):
        raise Lm2amError(f"{path}: expected a mapping of sections at the top level")
    return data


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Check (and lightly coerce int->float) ``value`` against a type annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except Lm2amError as e:
                errors.append(str(e))
        raise Lm2amError(errors[0] if errors else f"{where}: wrong type")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, "a list", value)
        inner = args[0] if args else Any
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _type_error(where, "a mapping", value)
        vt = args[1] if len(args) == 2 else Any
        return {k: _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(where, "a number", value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, "an integer", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(where, "true/false", value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(where, "a string", value)
        return value
    return value


FIX_HINT = "; fix the config"


def _type_error(where: str, expected: str, value: Any) -> Lm2amError:
    return Lm2amError(f"{where}: expected {expected}, got {value!r}{FIX_HINT}")


def from_dict(cls: Type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise Lm2amError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _type_error(where, "a mapping", data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Lm2amError(
            f"{where}: unknown key '{unknown[0]}'; valid keys are: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except RangeError as e:
        raise Lm2amError(f"{where}.{e.key}: {e.msg}{FIX_HINT}") from None
    except (ValueError, TypeError) as e:
        raise Lm2amError(f"{where}: {e}") from None
    return obj


def load_section(path: Path | str, section: str, cls: Type[T]) -> T:
    """Load one section of a recipe config file as dataclass ``cls`` (missing -> defaults)."""
    data = read_yaml(path)
    return from_dict(cls, data.get(section), f"{path}: {section}")


def check_config(path: Path | str) -> None:
    """Validate every section of a recipe config; raises Lm2amError on the first problem."""
    data = read_yaml(path)
    for name, value in data.items():
        if name not in SECTIONS:
            raise Lm2amError(
                f"{path}: unknown section '{name}'; valid sections are: {', '.join(SECTIONS)}"
            )
        mod, cls_name = SECTIONS[name].split(":")
        cls = getattr(importlib.import_module(mod), cls_name)
        from_dict(cls, value, f"{path}: {name}")


def to_dict(obj: Any) -> Dict[str, Any]:
    """Dataclass -> plain dict (for logging and fingerprints)."""
    return dataclasses.asdict(obj)


def name_and_dir(spec: str, error: str) -> Tuple[str, Path]:
    """Split a ``NAME=DIR`` command-line value (``--extra-row``, aligner lists).

    Raises :class:`Lm2amError` with ``error`` when the name, the ``=`` or the directory is missing.
    """
    name, sep, d = spec.partition("=")
    if not sep or not name or not d:
        raise Lm2amError(error)
    return name, Path(d)

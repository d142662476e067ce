"""Kaldi ``tree`` files (``ContextDependency``) for lm2am's senone tree, text and binary.

Kaldi's ``build-tree`` writes a ``ContextDependency``: ``ContextDependency N P ToPdf <EventMap>
EndContextDependency``, the EventMap made of ``TE key size ( ... )`` tables, ``SE key [ set ]
{ yes no }`` splits, ``CE pdf`` leaves and ``NULL``; keys 0..N-1 are context positions, -1 the
pdf-class. lm2am's tree (:class:`lm2am.tree.ContextTree`, ``exp/tree/tree.json``) is a triphone
tree with Kaldi's convention (N=3, P=1: key 0 = left, 1 = centre, 2 = right phone, pdf-class =
0-based HMM state; utterance edge = phone 0, put into every phone set that holds the silence
phone) and its senone ids are Kaldi's pdf-ids (the graph's ``tid2pdf``). So the conversion is
exact:

* :func:`write_kaldi_tree`: the tree as a real ``kaldi_hmm_gmm.ContextDependency``
  (:meth:`ContextTree.to_kaldi_context_dependency`), written by Kaldi's own ``Write`` in text
  form (``copy-tree --binary=false`` layout; default) or binary (what ``build-tree`` writes).
* :func:`load_kaldi_context_dependency`: a text or binary tree file into a
  ``kaldi_hmm_gmm.ContextDependency`` (the wheel has no file reader, but it unpickles from
  Kaldi's binary serialization, so a text file is re-serialized to binary here first); query it
  with ``compute([left, centre, right], pdf_class)``.
* :func:`read_kaldi_tree`: a text or binary tree file back into a :class:`ContextTree` (HMM state
  counts and the silence phone come from the caller: a Kaldi tree does not store them).
* :func:`mapping_mismatches`: compare two trees (and optionally a Kaldi object) on every
  ``(left, centre, right, state)``.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path
from lm2am.tree import ContextTree

__all__ = ["parse_kaldi_tree_text", "kaldi_text_to_bytes", "kaldi_tree_bytes", "write_kaldi_tree",
           "load_kaldi_context_dependency", "read_kaldi_tree", "all_contexts", "mapping_mismatches"]

_BINARY_HEADER = b"\0B"


def _khg():
    if "kaldi_hmm_gmm" not in sys.modules and any(
            m in sys.modules for m in ("kaldifst", "kaldi_decoder", "kaldilm")):
        raise RuntimeError("import kaldi_hmm_gmm before kaldifst/kaldi_decoder/kaldilm (the other order hangs)")
    import kaldi_hmm_gmm
    return kaldi_hmm_gmm


# --------------------------------------------------------------------------- text form
class _Tokens:
    def __init__(self, text: str, where: str):
        self.t, self.i, self.where = text.split(), 0, where

    def next(self) -> str:
        if self.i >= len(self.t):
            raise Lm2amError(f"{self.where}: Kaldi tree text ends early (truncated file?)")
        self.i += 1
        return self.t[self.i - 1]

    def expect(self, tok: str) -> None:
        got = self.next()
        if got != tok:
            raise Lm2amError(f"{self.where}: expected {tok!r} at token {self.i}, found {got!r}; not a Kaldi tree")

    def int(self) -> int:
        tok = self.next()
        try:
            return int(tok)
        except ValueError:
            raise Lm2amError(f"{self.where}: expected an integer at token {self.i}, found {tok!r}") from None


def _parse_map(tk: _Tokens):
    kind = tk.next()
    if kind == "NULL":
        return None
    if kind == "CE":
        return ("CE", tk.int())
    if kind == "SE":
        key = tk.int()
        tk.expect("[")
        vals: List[int] = []
        while True:
            tok = tk.next()
            if tok == "]":
                break
            try:
                vals.append(int(tok))
            except ValueError:
                raise Lm2amError(f"{tk.where}: bad integer {tok!r} in a question set") from None
        tk.expect("{")
        yes, no = _parse_map(tk), _parse_map(tk)
        tk.expect("}")
        return ("SE", key, vals, yes, no)
    if kind == "TE":
        key, size = tk.int(), tk.int()
        tk.expect("(")
        table = [_parse_map(tk) for _ in range(size)]
        tk.expect(")")
        return ("TE", key, table)
    raise Lm2amError(f"{tk.where}: unknown EventMap node {kind!r} at token {tk.i}")


def parse_kaldi_tree_text(text: str, where: str = "tree") -> Tuple[int, int, object]:
    """Parse a text-form Kaldi tree: returns ``(N, P, event_map)`` with the map as nested tuples
    (``("CE", pdf)``, ``("SE", key, values, yes, no)``, ``("TE", key, table)``, ``None``)."""
    tk = _Tokens(text, where)
    tk.expect("ContextDependency")
    n, p = tk.int(), tk.int()
    tk.expect("ToPdf")
    emap = _parse_map(tk)
    tk.expect("EndContextDependency")
    if tk.i != len(tk.t):
        raise Lm2amError(f"{where}: {len(tk.t) - tk.i} tokens after EndContextDependency; not one Kaldi tree")
    return n, p, emap


def kaldi_tree_bytes(n: int, p: int, emap) -> bytes:
    """Kaldi's binary serialization (without the ``\\0B`` header) of ``(N, P, event_map)``."""
    out = bytearray()

    def token(t: str) -> None:
        out.extend(t.encode() + b" ")

    def int32(v: int, signed: bool = True) -> None:
        out.append(4 if signed else 256 - 4)  # Kaldi's size byte; negative = unsigned
        out.extend(int(v).to_bytes(4, "little", signed=signed))

    def write(m) -> None:
        if m is None:
            token("NULL")
        elif m[0] == "CE":
            token("CE")
            int32(m[1])
        elif m[0] == "SE":
            _, key, vals, yes, no = m
            token("SE")
            int32(key)
            out.append(4)
            out.extend(len(vals).to_bytes(4, "little", signed=True))
            out.extend(np.asarray(vals, dtype="<i4").tobytes())
            token("{")
            write(yes)
            write(no)
            token("}")
        else:
            _, key, table = m
            token("TE")
            int32(key)
            int32(len(table), signed=False)
            token("(")
            for t in table:
                write(t)
            token(")")

    token("ContextDependency")
    int32(n)
    int32(p)
    token("ToPdf")
    write(emap)
    token("EndContextDependency")
    return bytes(out)


def kaldi_text_to_bytes(text: str, where: str = "tree") -> bytes:
    """Text-form Kaldi tree -> Kaldi binary serialization (no header)."""
    return kaldi_tree_bytes(*parse_kaldi_tree_text(text, where))


def _file_bytes(path: Path) -> bytes:
    """The binary serialization (no header) of a text or binary Kaldi tree file."""
    if not path.is_file():
        raise Lm2amError(f"Kaldi tree file {path} does not exist; give the tree written by build-tree "
                         "or steps/convert_tree.py to-kaldi")
    data = path.read_bytes()
    if data.startswith(_BINARY_HEADER):
        return data[len(_BINARY_HEADER):]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise Lm2amError(f"{path}: neither a binary (\\0B header) nor a text Kaldi tree") from None
    return kaldi_text_to_bytes(text, str(path))


# --------------------------------------------------------------------------- files
def write_kaldi_tree(tree: ContextTree, path: Union[Path, str], binary: bool = False) -> None:
    """Write ``tree`` as a Kaldi ``tree`` file with Kaldi's own writer (text by default, as
    ``copy-tree --binary=false``; ``binary=True`` as ``build-tree``), atomically."""
    cd = tree.to_kaldi_context_dependency()
    with atomic_path(path) as tmp:
        cd.write(binary, str(tmp))


def load_kaldi_context_dependency(path: Union[Path, str]):
    """A Kaldi tree file (text or binary) as a ``kaldi_hmm_gmm.ContextDependency``."""
    khg = _khg()
    data = _file_bytes(Path(path))
    cd = khg.ContextDependency.__new__(khg.ContextDependency)
    try:
        cd.__setstate__(([b - 256 if b > 127 else b for b in data],))
    except RuntimeError as e:
        raise Lm2amError(f"{path}: Kaldi could not read this tree ({str(e).splitlines()[-1][:200]})") from None
    return cd


def read_kaldi_tree(path: Union[Path, str], phones: Sequence[str], num_states: Mapping[int, int],
                    sil_phone: Optional[int] = None) -> ContextTree:
    """A Kaldi tree file (text or binary, N=3 P=1) as a :class:`ContextTree` that gives the same
    pdf-id for every context. ``phones``: phones.txt order; ``num_states``: HMM states per phone id;
    ``sil_phone``: the phone that edge context 0 stands for (the lm2am convention), or None."""
    return ContextTree.from_kaldi_bytes(_file_bytes(Path(path)), phones, num_states, sil_phone)


# --------------------------------------------------------------------------- checks
def all_contexts(tree: ContextTree) -> np.ndarray:
    """[K, 4] every ``(left, centre, right, state)``: centres = phones with a root, left/right =
    the edge 0 and every phone that is not a disambiguation symbol, states of the centre."""
    ctx = [0] + [i for i, p in enumerate(tree.phones) if i > 0 and not p.startswith("#")]
    rows = [(lt, c, r, s) for c in sorted(tree.num_states) for lt, r in itertools.product(ctx, ctx)
            for s in range(tree.num_states[c])]
    return np.asarray(rows, np.int64).reshape(-1, 4)


def mapping_mismatches(a: ContextTree, b: ContextTree, kaldi_cd=None, contexts: Optional[np.ndarray] = None
                       ) -> Tuple[int, int]:
    """``(mismatches, contexts checked)`` between ``a``, ``b`` and (optionally) a Kaldi
    ``ContextDependency`` over :func:`all_contexts` of ``a`` (a context counts once however many
    of the three disagree; a Kaldi ``compute`` without answer is a mismatch)."""
    ctx = all_contexts(a) if contexts is None else contexts
    pa = a.lookup_array(ctx[:, 0], ctx[:, 1], ctx[:, 2], ctx[:, 3])
    bad = pa != b.lookup_array(ctx[:, 0], ctx[:, 1], ctx[:, 2], ctx[:, 3])
    if kaldi_cd is not None:
        pk = np.array([pdf if ok else -1 for ok, pdf in
                       (kaldi_cd.compute([int(x) for x in row[:3]], int(row[3])) for row in ctx)], np.int64)
        bad |= pk != pa
    return int(bad.sum()), int(ctx.shape[0])

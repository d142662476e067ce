"""Kaldi ``tree`` files (``ContextDependency``) for lm2am's senone tree, text and binary.

Kaldi's ``build-tree`` writes a ``ContextDependency``: ``ContextDependency N P ToPdf <EventMap>
EndContextDependency``, the EventMap made of ``TE key size ( ... )`` tables, ``SE key [ set ]
{ yes no }`` splits, ``CE pdf`` leaves and ``NULL``; keys 0..N-1 are context positions, -1 the
pdf-class. lm2am's tree (:class:`lm2am.tree.ContextTree`, ``exp/tree/tree.json``) is a triphone
tree with Kaldi's convention (N=3, P=1: key 0 = left, 1 = centre, 2 = right phone, pdf-class =
0-based HMM state; utterance edge = phone 0, put into every phone set that holds the silence
phone) and its senone ids are Kaldi's pdf-ids (the graph's ``tid2pdf``). So the conversion is
exact. Event maps are handled as nested tuples (``("CE", pdf)``, ``("SE", key, values, yes,
no)``, ``("TE", key, table)``, ``None``), with one binary writer (:func:`kaldi_tree_bytes`):

* :func:`tree_to_kaldi_bytes` / :func:`tree_from_kaldi_bytes`: a :class:`ContextTree` to and
  from Kaldi's binary serialization (a ``TE`` table on the centre phone of ``SE``/``CE`` trees).
* :func:`write_kaldi_tree`: the tree as a real ``kaldi_hmm_gmm.ContextDependency``, written by
  Kaldi's own ``Write`` in text form (``copy-tree --binary=false`` layout; default) or binary
  (what ``build-tree`` writes).
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
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path
from lm2am.tree.context import CENTER, EDGE, LEFT, RIGHT, STATE
from lm2am.tree.model import ContextTree, Node

__all__ = ["parse_kaldi_tree_text", "kaldi_text_to_bytes", "kaldi_tree_bytes", "tree_to_kaldi_bytes",
           "tree_from_kaldi_bytes", "kaldi_context_dependency", "write_kaldi_tree",
           "load_kaldi_context_dependency", "read_kaldi_tree", "all_contexts", "mapping_mismatches"]

_BINARY_HEADER = b"\0B"
_KALDI_KEY = {LEFT: 0, CENTER: 1, RIGHT: 2, STATE: -1}  # -1 = kPdfClass
_LM2AM_KEY = {v: k for k, v in _KALDI_KEY.items()}


# --------------------------------------------------------------------------- reading
# Both readers (text tokens, binary bytes) offer token / expect / int / intvec / unknown, so one
# recursive parser (_read_map) reads an EventMap from either.
class _TextReader:
    def __init__(self, text: str, where: str):
        self.t, self.i, self.where = text.split(), 0, where

    def token(self) -> str:
        if self.i >= len(self.t):
            raise Lm2amError(f"{self.where}: Kaldi tree text ends early (truncated file?)")
        self.i += 1
        return self.t[self.i - 1]

    def expect(self, tok: str) -> None:
        got = self.token()
        if got != tok:
            raise Lm2amError(f"{self.where}: expected {tok!r} at token {self.i}, found {got!r}; not a Kaldi tree")

    def int(self) -> int:
        tok = self.token()
        try:
            return int(tok)
        except ValueError:
            raise Lm2amError(f"{self.where}: expected an integer at token {self.i}, found {tok!r}") from None

    def intvec(self) -> List[int]:
        self.expect("[")
        vals: List[int] = []
        while True:
            tok = self.token()
            if tok == "]":
                return vals
            try:
                vals.append(int(tok))
            except ValueError:
                raise Lm2amError(f"{self.where}: bad integer {tok!r} in a question set") from None

    def unknown(self, kind: str) -> Lm2amError:
        return Lm2amError(f"{self.where}: unknown EventMap node {kind!r} at token {self.i}")


class _BinaryReader:
    """Minimal reader for Kaldi's binary EventMap serialization."""

    def __init__(self, data: bytes):
        self.d, self.i = data, 0

    def token(self) -> str:
        j = self.d.index(b" ", self.i)
        t = self.d[self.i:j].decode()
        self.i = j + 1
        return t

    def expect(self, t: str) -> None:
        got = self.token()
        if got != t:
            raise Lm2amError(f"Kaldi tree: expected {t!r}, found {got!r} at byte {self.i}")

    def int(self) -> int:
        size = self.d[self.i]
        signed = size < 128
        v = int.from_bytes(self.d[self.i + 1:self.i + 5], "little", signed=signed)
        self.i += 5
        return v

    def intvec(self) -> List[int]:
        if self.d[self.i] != 4:
            raise Lm2amError("Kaldi tree: expected a vector of int32")
        cnt = int.from_bytes(self.d[self.i + 1:self.i + 5], "little", signed=True)
        start = self.i + 5
        self.i = start + 4 * cnt
        return np.frombuffer(self.d[start:self.i], dtype="<i4").astype(int).tolist()

    def unknown(self, kind: str) -> Lm2amError:
        return Lm2amError(f"Kaldi tree: unknown EventMap node {kind!r}")


def _read_map(r):
    """One EventMap (nested tuples) from a :class:`_TextReader` or :class:`_BinaryReader`."""
    kind = r.token()
    if kind == "NULL":
        return None
    if kind == "CE":
        return ("CE", r.int())
    if kind == "SE":
        key = r.int()
        vals = r.intvec()
        r.expect("{")
        yes, no = _read_map(r), _read_map(r)
        r.expect("}")
        return ("SE", key, vals, yes, no)
    if kind == "TE":
        key = r.int()
        size = r.int()
        r.expect("(")
        table = [_read_map(r) for _ in range(size)]
        r.expect(")")
        return ("TE", key, table)
    raise r.unknown(kind)


def parse_kaldi_tree_text(text: str, where: str = "tree") -> Tuple[int, int, object]:
    """Parse a text-form Kaldi tree: returns ``(N, P, event_map)`` with the map as nested tuples
    (``("CE", pdf)``, ``("SE", key, values, yes, no)``, ``("TE", key, table)``, ``None``)."""
    tk = _TextReader(text, where)
    tk.expect("ContextDependency")
    n, p = tk.int(), tk.int()
    tk.expect("ToPdf")
    emap = _read_map(tk)
    tk.expect("EndContextDependency")
    if tk.i != len(tk.t):
        raise Lm2amError(f"{where}: {len(tk.t) - tk.i} tokens after EndContextDependency; not one Kaldi tree")
    return n, p, emap


# --------------------------------------------------------------------------- binary form
class _BinaryWriter:
    """Kaldi's binary tokens and integers, appended to one buffer."""

    def __init__(self):
        self.out = bytearray()

    def token(self, t: str) -> None:
        self.out.extend(t.encode() + b" ")

    def int32(self, v: int, signed: bool = True) -> None:
        self.out.append(4 if signed else 256 - 4)  # Kaldi's size byte; negative = unsigned
        self.out.extend(int(v).to_bytes(4, "little", signed=signed))

    def intvec(self, vals: Sequence[int]) -> None:
        self.out.append(4)  # WriteIntegerVector: element size, count, raw int32s
        self.out.extend(len(vals).to_bytes(4, "little", signed=True))
        self.out.extend(np.asarray(vals, dtype="<i4").tobytes())

    def event_map(self, m) -> None:
        if m is None:
            self.token("NULL")
        elif m[0] == "CE":
            self.token("CE")
            self.int32(m[1])
        elif m[0] == "SE":
            _, key, vals, yes, no = m
            self.token("SE")
            self.int32(key)
            self.intvec(vals)
            self.token("{")
            self.event_map(yes)
            self.event_map(no)
            self.token("}")
        else:
            _, key, table = m
            self.token("TE")
            self.int32(key)
            self.int32(len(table), signed=False)
            self.token("(")
            for t in table:
                self.event_map(t)
            self.token(")")


def kaldi_tree_bytes(n: int, p: int, emap) -> bytes:
    """Kaldi's binary serialization (without the ``\\0B`` header) of ``(N, P, event_map)``."""
    w = _BinaryWriter()
    w.token("ContextDependency")
    w.int32(n)
    w.int32(p)
    w.token("ToPdf")
    w.event_map(emap)
    w.token("EndContextDependency")
    return bytes(w.out)


def kaldi_text_to_bytes(text: str, where: str = "tree") -> bytes:
    """Text-form Kaldi tree -> Kaldi binary serialization (no header)."""
    return kaldi_tree_bytes(*parse_kaldi_tree_text(text, where))


# --------------------------------------------------------------------------- ContextTree <-> Kaldi
def _node_map(nd: Optional[Node], sil_phone: Optional[int]):
    """An lm2am question tree as an event map (edge id 0 joins every phone set holding silence)."""
    if nd is None:
        return None
    if nd.key < 0:
        return ("CE", nd.senone)
    vals = set(nd.values)
    if nd.key in (LEFT, RIGHT, CENTER) and sil_phone is not None and sil_phone in vals:
        vals.add(EDGE)
    return ("SE", _KALDI_KEY[nd.key], sorted(vals), _node_map(nd.yes, sil_phone), _node_map(nd.no, sil_phone))


def tree_to_kaldi_bytes(tree: ContextTree) -> bytes:
    """Kaldi's binary ``ContextDependency`` serialization of ``tree`` (N=3, P=1, without the
    ``\\0B`` header): a ``TE`` table on the centre phone whose entries are ``SE``/``CE`` trees;
    keys 0/1/2 = left/centre/right phone, -1 = pdf-class (state). Edge id 0 joins every phone
    set that holds ``sil_phone`` (the convention of :mod:`lm2am.tree`)."""
    by_phone: Dict[int, Node] = {p: nd for ps, nd in tree.roots for p in ps}
    table = [_node_map(by_phone.get(p), tree.sil_phone) for p in range(len(tree.phones))]
    return kaldi_tree_bytes(3, 1, ("TE", _KALDI_KEY[CENTER], table))


def kaldi_context_dependency(data: bytes):
    """A ``kaldi_hmm_gmm.ContextDependency`` from Kaldi's binary serialization (no header),
    through its pickle state."""
    from lm2am.kaldi import kaldi_wheels

    khg = kaldi_wheels()[0]
    cd = khg.ContextDependency.__new__(khg.ContextDependency)
    cd.__setstate__(([b - 256 if b > 127 else b for b in data],))
    return cd


def _specialize_table(table, key: int, center: int) -> Optional[Node]:
    """A ``TE`` table on a key other than the centre as a chain of single-value questions."""
    entries = [(v, _specialize(t, center)) for v, t in enumerate(table)]
    entries = [(v, nd) for v, nd in entries if nd is not None]
    if not entries:
        return None
    node = entries[-1][1]  # values outside the table: Kaldi has no answer; take the last entry
    for v, nd in reversed(entries[:-1]):
        node = Node(key=_LM2AM_KEY[key], values=(v,), yes=nd, no=node)
    return node


def _specialize(emap, center: int) -> Optional[Node]:
    """The Kaldi map with the centre phone fixed, as lm2am nodes (TE tables on other keys become
    chains of single-value questions); None where the map has no answer for this phone."""
    if emap is None:
        return None
    kind = emap[0]
    if kind == "CE":
        return Node(senone=emap[1])
    if kind == "SE":
        _, key, vals, yes, no = emap
        if key not in _LM2AM_KEY:
            raise Lm2amError(f"Kaldi tree: question on unsupported key {key}")
        if _LM2AM_KEY[key] == CENTER:
            return _specialize(yes if center in vals else no, center)
        y, n = _specialize(yes, center), _specialize(no, center)
        if y is None or n is None:
            return y or n
        return Node(key=_LM2AM_KEY[key], values=tuple(sorted(vals)), yes=y, no=n)
    _, key, table = emap
    if _LM2AM_KEY.get(key) == CENTER:
        return _specialize(table[center], center) if center < len(table) else None
    if key not in _LM2AM_KEY:
        raise Lm2amError(f"Kaldi tree: table on unsupported key {key}")
    return _specialize_table(table, key, center)


def tree_from_kaldi_bytes(data: bytes, phones: Sequence[str], num_states: Mapping[int, int],
                          sil_phone: Optional[int] = None) -> ContextTree:
    """Read Kaldi's binary ``ContextDependency`` (N=3, P=1; as from :func:`tree_to_kaldi_bytes`,
    ``ContextDependency.__getstate__()`` or a binary tree file, with or without the ``\\0B``
    header) into a :class:`ContextTree` that gives the same pdf-id for every context.

    Each phone gets its own root: the Kaldi map specialized to that centre phone. Edge id 0
    keeps Kaldi's own meaning (sets list it explicitly) unless ``sil_phone`` is given. Leaf
    counts are unknown (0).
    """
    data = bytes(b % 256 for b in data) if not isinstance(data, (bytes, bytearray)) else bytes(data)
    r = _BinaryReader(data[2:] if data[:2] == _BINARY_HEADER else data)
    r.expect("ContextDependency")
    n, p = r.int(), r.int()
    if (n, p) != (3, 1):
        raise Lm2amError(f"Kaldi tree has context width {n}, central position {p}; "
                         "only triphone trees (N=3, P=1) are supported")
    r.expect("ToPdf")
    emap = _read_map(r)
    r.expect("EndContextDependency")
    roots = []
    for ph in range(1, len(phones)):
        if phones[ph].startswith("#"):
            continue
        nd = _specialize(emap, ph)
        if nd is not None:
            roots.append(([ph], nd))
    return ContextTree(phones, roots, num_states, sil_phone, {"source": "kaldi"})


# --------------------------------------------------------------------------- files
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


def write_kaldi_tree(tree: ContextTree, path: Union[Path, str], binary: bool = False) -> None:
    """Write ``tree`` as a Kaldi ``tree`` file with Kaldi's own writer (text by default, as
    ``copy-tree --binary=false``; ``binary=True`` as ``build-tree``), atomically."""
    cd = tree.to_kaldi_context_dependency()
    with atomic_path(path) as tmp:
        cd.write(binary, str(tmp))


def load_kaldi_context_dependency(path: Union[Path, str]):
    """A Kaldi tree file (text or binary) as a ``kaldi_hmm_gmm.ContextDependency``."""
    from lm2am.kaldi import kaldi_wheels

    kaldi_wheels()  # the import-order error first, outside the try below
    data = _file_bytes(Path(path))
    try:
        return kaldi_context_dependency(data)
    except RuntimeError as e:
        raise Lm2amError(f"{path}: Kaldi could not read this tree ({str(e).splitlines()[-1][:200]})") from None


def read_kaldi_tree(path: Union[Path, str], phones: Sequence[str], num_states: Mapping[int, int],
                    sil_phone: Optional[int] = None) -> ContextTree:
    """A Kaldi tree file (text or binary, N=3 P=1) as a :class:`ContextTree` that gives the same
    pdf-id for every context. ``phones``: phones.txt order; ``num_states``: HMM states per phone id;
    ``sil_phone``: the phone that edge context 0 stands for (the lm2am convention), or None."""
    return tree_from_kaldi_bytes(_file_bytes(Path(path)), phones, num_states, sil_phone)


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

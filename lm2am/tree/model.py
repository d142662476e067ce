"""The senone tree itself: :class:`ContextTree` (lookup of any context, readable JSON file).

File format (``ContextTree.save``): JSON with the phone table, per-root nested question nodes
(``{"ask": "left", "in": [phone names], "gain": g, "yes": node, "no": node}`` or
``{"senone": id, "count": frames}``), written atomically; :meth:`ContextTree.load` reads it back
exactly. The Kaldi ``ContextDependency`` form lives in :mod:`lm2am.tree.kaldi_format`.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text
from lm2am.tree.context import CENTER, EDGE, KEY_NAMES, LEFT, RIGHT, STATE, phone_table

__all__ = ["Node", "leaves", "ContextTree"]

_FORMAT = "lm2am-senone-tree"
_VERSION = 1


@dataclass
class Node:
    """A question node (``key >= 0``) or a leaf (``key == -1``)."""

    key: int = -1
    values: Tuple[int, ...] = ()  # the "yes" set
    yes: Optional["Node"] = None
    no: Optional["Node"] = None
    senone: int = -1
    count: float = 0.0
    gain: float = 0.0


def leaves(node: Node) -> Iterable[Node]:
    """The leaves under ``node``, depth-first, "yes" before "no"."""
    stack = [node]
    while stack:
        nd = stack.pop()
        if nd.key < 0:
            yield nd
        else:
            stack.append(nd.no)  # yes first in DFS order
            stack.append(nd.yes)


def _index_nodes(roots: Sequence[Tuple[Sequence[int], Node]]) -> Tuple[List[Node], Dict[int, int], List[int]]:
    """Every node once (pre-order), ``id(node) -> index``, and each root's index."""
    nodes: List[Node] = []
    index: Dict[int, int] = {}

    def visit(nd: Node) -> int:
        # recursion depth = tree depth (tens), far below Python's limit
        if id(nd) in index:
            return index[id(nd)]
        i = len(nodes)
        index[id(nd)] = i
        nodes.append(nd)
        if nd.key >= 0:
            visit(nd.yes)
            visit(nd.no)
        return i

    return nodes, index, [visit(nd) for _, nd in roots]


class ContextTree:
    """A senone tree: ``lookup(left, center, right, state) -> senone id`` for any context.

    Built by :func:`lm2am.tree.build_tree` or read by :meth:`load`. ``roots`` pairs each root's
    phone ids with its question tree; every phone with a root can be looked up with any context.
    """

    def __init__(self, phones: Sequence[str], roots: Sequence[Tuple[Sequence[int], Node]],
                 num_states: Mapping[int, int], sil_phone: Optional[int] = None,
                 info: Optional[Mapping[str, object]] = None):
        self.phones: List[str] = list(phones)
        self.roots: List[Tuple[List[int], Node]] = [(sorted(int(p) for p in ps), nd) for ps, nd in roots]
        self.num_states: Dict[int, int] = {int(k): int(v) for k, v in num_states.items()}
        self.sil_phone = None if sil_phone is None else int(sil_phone)
        self.info: Dict[str, object] = dict(info or {})
        self._compile()

    # ---- compiled arrays for vectorized lookup
    def _compile(self) -> None:
        nph = len(self.phones)
        nodes, index, root_nodes = _index_nodes(self.roots)
        root_of = np.full(nph, -1, np.int64)
        for (ps, _), r in zip(self.roots, root_nodes):
            for p in ps:
                if not 0 <= p < nph:
                    raise ValueError(f"root phone id {p} outside the phone list")
                if root_of[p] >= 0:
                    raise ValueError(f"phone {self.phones[p]} has two roots")
                root_of[p] = r
        senones = sorted({nd.senone for nd in nodes if nd.key < 0})
        if senones != list(range(len(senones))):
            raise ValueError("senone ids must be dense 0..num_leaves-1")
        self._compile_nodes(nodes, index, nph)
        self._root_of = root_of
        self._num_leaves = len(senones)
        self._compile_leaves(nodes)

    def _compile_nodes(self, nodes: List[Node], index: Dict[int, int], nph: int) -> None:
        width = max([nph] + [max(nd.values) + 1 for nd in nodes if nd.key >= 0 and nd.values])
        self._key = np.array([nd.key for nd in nodes], np.int64)
        self._yes = np.array([index[id(nd.yes)] if nd.key >= 0 else i for i, nd in enumerate(nodes)], np.int64)
        self._no = np.array([index[id(nd.no)] if nd.key >= 0 else i for i, nd in enumerate(nodes)], np.int64)
        self._senone = np.array([nd.senone for nd in nodes], np.int64)
        self._member = np.zeros((len(nodes), width), bool)
        for i, nd in enumerate(nodes):
            if nd.key >= 0 and nd.values:
                self._member[i, list(nd.values)] = True

    def _compile_leaves(self, nodes: List[Node]) -> None:
        counts = np.zeros(self._num_leaves)
        for nd in nodes:
            if nd.key < 0:
                counts[nd.senone] += nd.count
        self._counts = counts
        sen_phone = np.full(self._num_leaves, -1, np.int64)
        for ps, nd in self.roots:
            for leaf in leaves(nd):
                if sen_phone[leaf.senone] < 0:
                    sen_phone[leaf.senone] = ps[0]
        self._senone_phone = sen_phone

    @property
    def num_leaves(self) -> int:
        """Number of senones (leaves); senone ids are 0..num_leaves-1."""
        return self._num_leaves

    @property
    def leaf_counts(self) -> np.ndarray:
        """[num_leaves] training frame count (occupancy) of each senone."""
        return self._counts.copy()

    @property
    def senone_to_phone(self) -> np.ndarray:
        """[num_leaves] centre phone id of each senone (the first phone of its root)."""
        return self._senone_phone.copy()

    def lookup(self, left: int, center: int, right: int, state: int) -> int:
        """Senone id of one context state (see :mod:`lm2am.tree` for the convention)."""
        return int(self.lookup_array(np.array([left]), np.array([center]), np.array([right]),
                                     np.array([state]))[0])

    def lookup_array(self, left: np.ndarray, center: np.ndarray, right: np.ndarray,
                     state: np.ndarray) -> np.ndarray:
        """Vectorized :meth:`lookup` over equally shaped int arrays; returns int64 senone ids."""
        arrs = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (left, center, right, state)))
        shape = arrs[0].shape
        cols = np.stack([a.reshape(-1) for a in arrs])  # [4, T]
        if self.sil_phone is not None:  # utterance edge behaves as silence
            for k in (LEFT, RIGHT):
                cols[k] = np.where(cols[k] == EDGE, self.sil_phone, cols[k])
        c = cols[CENTER]
        bad = (c < 0) | (c >= len(self._root_of))
        cur = np.where(bad, -1, self._root_of[np.clip(c, 0, len(self._root_of) - 1)])
        if (cur < 0).any():
            p = int(c[np.flatnonzero(cur < 0)[0]])
            name = self.phones[p] if 0 <= p < len(self.phones) else "?"
            raise ValueError(f"lookup: centre phone {p} ({name}) has no root in this tree")
        width = self._member.shape[1]
        pos = np.arange(cols.shape[1])
        active = np.flatnonzero(self._key[cur] >= 0)
        while active.size:
            nd = cur[active]
            v = cols[self._key[nd], pos[active]]
            ok = (v >= 0) & (v < width)
            ans = ok & self._member[nd, np.clip(v, 0, width - 1)]
            cur[active] = np.where(ans, self._yes[nd], self._no[nd])
            active = active[self._key[cur[active]] >= 0]
        return self._senone[cur].reshape(shape)

    # ---- persistence
    def to_json(self) -> str:
        """The readable text written by :meth:`save`."""
        name = self.phones

        def node(nd: Node) -> dict:
            if nd.key < 0:
                return {"senone": nd.senone, "count": nd.count}
            vals = list(nd.values) if nd.key == STATE else [name[v] for v in nd.values]
            return {"ask": KEY_NAMES[nd.key], "in": vals, "gain": nd.gain,
                    "yes": node(nd.yes), "no": node(nd.no)}

        doc = {
            "format": _FORMAT, "version": _VERSION,
            "convention": "senone = lookup(left, center, right, state); state = 0-based HMM state "
                          "(pdf-class); cross-word context is real context; left/right id 0 "
                          "(utterance edge) is treated as sil_phone",
            "num_leaves": self.num_leaves,
            "sil_phone": None if self.sil_phone is None else name[self.sil_phone],
            "info": self.info,
            "phones": self.phones,
            "num_states": {name[p]: n for p, n in sorted(self.num_states.items())},
            "roots": [{"phones": [name[p] for p in ps], "tree": node(nd)} for ps, nd in self.roots],
        }
        out = io.StringIO()
        _dump(doc, out, 0)
        out.write("\n")
        return out.getvalue()

    def save(self, path: Union[Path, str]) -> None:
        """Write the tree as readable JSON to ``path``, atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Union[Path, str]) -> "ContextTree":
        """Read a tree written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise Lm2amError(f"tree file {path} does not exist; run the tree-building stage first")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise Lm2amError(f"{path}: not valid JSON ({e.msg if hasattr(e, 'msg') else e}); "
                             "rebuild the tree") from None
        try:
            return cls.from_dict(doc)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise Lm2amError(f"{path}: not an lm2am senone tree ({e}); rebuild the tree") from None

    @classmethod
    def from_dict(cls, doc: Mapping) -> "ContextTree":
        """Inverse of the JSON document written by :meth:`to_json`."""
        if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
        phones = list(doc["phones"])
        table = phone_table(phones)

        def node(d: Mapping) -> Node:
            if "senone" in d:
                return Node(senone=int(d["senone"]), count=float(d["count"]))
            key = KEY_NAMES.index(d["ask"])
            vals = tuple(int(v) for v in d["in"]) if key == STATE else tuple(table[v] for v in d["in"])
            return Node(key=key, values=vals, yes=node(d["yes"]), no=node(d["no"]), gain=float(d["gain"]))

        roots = [([table[p] for p in r["phones"]], node(r["tree"])) for r in doc["roots"]]
        sil = doc.get("sil_phone")
        tree = cls(phones, roots, {table[k]: int(v) for k, v in doc["num_states"].items()},
                   None if sil is None else table[sil], doc.get("info") or {})
        if tree.num_leaves != int(doc["num_leaves"]):
            raise ValueError(f"num_leaves says {doc['num_leaves']} but the tree has {tree.num_leaves}")
        return tree

    # ---- Kaldi interop (lm2am.tree.kaldi_format)
    def to_kaldi_bytes(self) -> bytes:
        """Kaldi's binary ``ContextDependency`` serialization of this tree (N=3, P=1, without
        the ``\\0B`` header); see :func:`lm2am.tree.kaldi_format.tree_to_kaldi_bytes`."""
        from lm2am.tree.kaldi_format import tree_to_kaldi_bytes

        return tree_to_kaldi_bytes(self)

    def to_kaldi_context_dependency(self):
        """This tree as a ``kaldi_hmm_gmm.ContextDependency`` (through its pickle state, which is
        Kaldi's binary serialization); its ``write()`` gives a Kaldi ``tree`` file."""
        from lm2am.tree.kaldi_format import kaldi_context_dependency

        return kaldi_context_dependency(self.to_kaldi_bytes())

    @classmethod
    def from_kaldi_bytes(cls, data: bytes, phones: Sequence[str], num_states: Mapping[int, int],
                         sil_phone: Optional[int] = None) -> "ContextTree":
        """Read Kaldi's binary ``ContextDependency`` (N=3, P=1; with or without the ``\\0B``
        header) into a :class:`ContextTree` that gives the same pdf-id for every context; see
        :func:`lm2am.tree.kaldi_format.tree_from_kaldi_bytes`."""
        from lm2am.tree.kaldi_format import tree_from_kaldi_bytes

        return tree_from_kaldi_bytes(data, phones, num_states, sil_phone)


def _dump(obj, out: io.StringIO, level: int) -> None:
    """Indented JSON with short scalar lists (phone sets) kept on one line."""
    pad = " " * level
    if isinstance(obj, dict):
        if not any(isinstance(v, (dict, list)) for v in obj.values()):
            flat = json.dumps(obj)
            if len(flat) <= 120:  # leaves and other small records on one line
                out.write(flat)
                return
        out.write("{\n")
        items = list(obj.items())
        for i, (k, v) in enumerate(items):
            out.write(f"{pad} {json.dumps(k)}: ")
            _dump(v, out, level + 1)
            out.write(",\n" if i < len(items) - 1 else "\n")
        out.write(pad + "}")
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        out.write("[\n")
        for i, v in enumerate(obj):
            out.write(pad + " ")
            _dump(v, out, level + 1)
            out.write(",\n" if i < len(obj) - 1 else "\n")
        out.write(pad + "]")
    else:
        out.write(json.dumps(obj))

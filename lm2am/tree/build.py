"""Growing the senone tree: greedy, global likelihood-gain splitting (Kaldi's ``build-tree``)."""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.tree.context import CENTER, EDGE, LEFT, RIGHT, STATE, PhoneRef, phone_id, phone_table
from lm2am.tree.model import ContextTree, Node, leaves
from lm2am.tree.questions import cluster_phones, dedupe_sets, state_questions
from lm2am.tree.stats import TreeStats, gauss_loglik

__all__ = ["build_tree"]


def _resolve_sil(sil_phone: Union[PhoneRef, None], phones: Sequence[str], table: Mapping[str, int]) -> Optional[int]:
    if sil_phone is None:
        return None
    if sil_phone == "auto":
        for name in ("SIL", "sil", "<sil>", "SIL_S"):
            if name in table:
                return table[name]
        return None
    return phone_id(sil_phone, phones, table, "sil_phone")


def _root_sets(phones: Sequence[str], table: Mapping[str, int],
               roots: Optional[Sequence[Sequence[PhoneRef]]]) -> List[List[int]]:
    """The phone groups that get one root each, sorted by their first phone."""
    eligible = [i for i, nm in enumerate(phones) if i != EDGE and not nm.startswith("#")]
    if roots is None:
        root_sets = [[p] for p in eligible]
    else:
        root_sets = [sorted({phone_id(p, phones, table, "roots") for p in r}) for r in roots]
        root_sets = [r for r in root_sets if r]
        flat = [p for r in root_sets for p in r]
        if len(flat) != len(set(flat)):
            raise Lm2amError("roots: a phone appears in two root groups; give each phone one root")
        if EDGE in flat:
            raise Lm2amError("roots: phone id 0 (<eps>) cannot be a centre phone")
        root_sets += [[p] for p in eligible if p not in set(flat)]
    root_sets.sort(key=lambda r: r[0])
    return root_sets


def _checked_keys(stats: TreeStats, nph: int, root_sets: List[List[int]], sil: Optional[int]
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """The stats' context keys (edge mapped to silence) and the root index of every phone."""
    keys = stats.keys.copy()
    if keys.size and keys[:, [LEFT, RIGHT]].max() >= nph:
        raise Lm2amError(f"tree stats use context phone id {int(keys[:, [LEFT, RIGHT]].max())}, beyond the "
                         f"{nph} phones of the phone list; accumulate with the same phones.txt")
    root_index = np.full(nph, -1, np.int64)
    for ri, r in enumerate(root_sets):
        root_index[r] = ri
    if keys.size:
        bad = (keys[:, CENTER] >= nph) | (root_index[np.clip(keys[:, CENTER], 0, nph - 1)] < 0)
        if bad.any():
            p = int(keys[np.flatnonzero(bad)[0], CENTER])
            raise Lm2amError(f"tree stats have centre phone id {p}, which has no root (not in the phone "
                             "list, <eps>, a #disambig symbol, or outside --roots); fix the alignment or roots")
    if sil is not None:  # the edge behaves as silence, for the statistics as for lookup
        for k in (LEFT, RIGHT):
            keys[:, k] = np.where(keys[:, k] == EDGE, sil, keys[:, k])
    return keys, root_index


def _states_per_phone(keys: np.ndarray, root_sets: List[List[int]], phones: Sequence[str],
                      num_states: Union[int, Mapping[PhoneRef, int], None]) -> Dict[int, int]:
    """HMM states per rooted phone (given, or the largest state seen + 1)."""
    seen_max: Dict[int, int] = {}
    if keys.size:
        for p in np.unique(keys[:, CENTER]):
            seen_max[int(p)] = int(keys[keys[:, CENTER] == p, STATE].max()) + 1
    default_n = max(seen_max.values(), default=3)
    nstates: Dict[int, int] = {}
    for r in root_sets:
        for p in r:
            if isinstance(num_states, int):
                nstates[p] = num_states
            elif num_states is not None and (phones[p] in num_states or p in num_states):
                nstates[p] = int(num_states[phones[p]] if phones[p] in num_states else num_states[p])
            else:
                nstates[p] = seen_max.get(p, default_n)
            if seen_max.get(p, 0) > nstates[p]:
                raise Lm2amError(f"tree stats have HMM state {seen_max[p] - 1} for phone {phones[p]}, "
                                 f"but num_states gives it {nstates[p]} states; fix num_states/topology")
    return nstates


@dataclass
class _Splitter:
    """The questions as membership tables and the search for a leaf's best split."""

    x: np.ndarray  # [N, 1 + 2D] stats rows
    cols: List[np.ndarray]  # the 4 context key columns of the rows
    member: Dict[int, np.ndarray]  # key -> [questions, values] bool
    qvals: Dict[int, List[List[int]]]  # key -> the questions' value sets
    min_count: float
    var_floor: float

    def best(self, idx: np.ndarray, allowed: Sequence[int]) -> Optional[Tuple[float, int, int]]:
        """``(gain, key, question)`` of the best split of rows ``idx``, or None."""
        if idx.size < 2:
            return None
        xs = self.x[idx]
        tot = xs.sum(0)
        if tot[0] < 2 * self.min_count:
            return None
        parent = float(gauss_loglik(tot, self.var_floor))
        best: Optional[Tuple[float, int, int]] = None
        for key in allowed:
            cand = self._best_on_key(idx, xs, tot, parent, key)
            if cand is not None and (best is None or cand[0] > best[0]):
                best = cand
        return best

    def _best_on_key(self, idx: np.ndarray, xs: np.ndarray, tot: np.ndarray, parent: float,
                     key: int) -> Optional[Tuple[float, int, int]]:
        vals = self.cols[key][idx]
        order = np.argsort(vals, kind="stable")
        sv = vals[order]
        starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
        if starts.size < 2:
            return None
        uniq = sv[starts]
        per_val = np.add.reduceat(xs[order], starts, axis=0)
        m = self.member[key]
        inr = uniq < m.shape[1]
        mq = np.zeros((m.shape[0], uniq.size), bool)
        mq[:, inr] = m[:, uniq[inr]]
        nyes = mq.sum(1)
        cand = np.flatnonzero((nyes > 0) & (nyes < uniq.size))
        if cand.size == 0:
            return None
        yes = mq[cand].astype(np.float64) @ per_val
        no = tot - yes
        gain = gauss_loglik(yes, self.var_floor) + gauss_loglik(no, self.var_floor) - parent
        gain[(yes[:, 0] < self.min_count) | (no[:, 0] < self.min_count)] = -np.inf
        j = int(np.argmax(gain))
        if not np.isfinite(gain[j]):
            return None
        return (float(gain[j]), key, int(cand[j]))

    def answers(self, idx: np.ndarray, key: int, qi: int) -> np.ndarray:
        """The "yes" answer of question ``qi`` on ``key`` for rows ``idx``."""
        vals = self.cols[key][idx]
        m = self.member[key]
        inr = vals < m.shape[1]
        ans = np.zeros(idx.size, bool)
        ans[inr] = m[qi, vals[inr]]
        return ans


def _question_tables(pq: List[List[int]], nph: int, nstates: Dict[int, int]
                     ) -> Tuple[Dict[int, np.ndarray], Dict[int, List[List[int]]]]:
    """Membership tables and value sets per key for phone questions ``pq`` and state questions."""
    max_states = max(nstates.values(), default=1)
    sq = state_questions(max_states)
    member = {
        LEFT: np.zeros((len(pq), nph), bool),
        STATE: np.zeros((len(sq), max(max_states, 1)), bool),
    }
    for i, q in enumerate(pq):
        member[LEFT][i, q] = True
    for i, q in enumerate(sq):
        member[STATE][i, q] = True
    member[RIGHT] = member[CENTER] = member[LEFT]
    return member, {LEFT: pq, RIGHT: pq, CENTER: pq, STATE: sq}


def _state_chain(idx: np.ndarray, n_st: int, split: _Splitter) -> Node:
    """One leaf per state: a chain "state == s ?" (Kaldi's "not-shared not-split")."""
    cols, x = split.cols, split.x
    leaf_rows = [idx[cols[STATE][idx] == s] for s in range(n_st - 1)]
    leaf_rows.append(idx[cols[STATE][idx] >= n_st - 1])
    node = Node(count=float(x[leaf_rows[-1], 0].sum()))
    for s in range(n_st - 2, -1, -1):
        node = Node(key=STATE, values=(s,), yes=Node(count=float(x[leaf_rows[s], 0].sum())), no=node)
    return node


def _grow(heap: list, seq: int, nleaves: int, num_leaves: int, min_gain: float, split: _Splitter) -> None:
    """Split the leaf with the largest gain over all roots until ``num_leaves`` leaves exist."""
    while heap and nleaves < num_leaves:
        neg_gain, _, node, idx, allowed = heapq.heappop(heap)
        if -neg_gain <= min_gain:
            break
        key, qi = node.values
        ans = split.answers(idx, key, qi)
        node.key, node.values = key, tuple(split.qvals[key][qi])
        children = []
        for side in (ans, ~ans):
            cidx = idx[side]
            child = Node(count=float(split.x[cidx, 0].sum()))
            bs = split.best(cidx, allowed)
            if bs is not None:
                child.values = (bs[1], bs[2])
                child.gain = bs[0]
                heapq.heappush(heap, (-bs[0], seq, child, cidx, allowed))
                seq += 1
            children.append(child)
        node.yes, node.no = children
        nleaves += 1


def _grow_roots(root_sets: List[List[int]], root_index: np.ndarray, keys: np.ndarray,
                nstates: Dict[int, int], nocontext: set, num_leaves: int, min_gain: float,
                split: _Splitter) -> List[Tuple[List[int], Node]]:
    """One tree per root: a state chain for no-context phones, else greedy splits."""
    heap: List[Tuple[float, int, Node, np.ndarray, Tuple[int, ...]]] = []
    seq = 0
    nleaves = 0
    tree_roots: List[Tuple[List[int], Node]] = []
    for ri, r in enumerate(root_sets):
        idx = np.flatnonzero(root_index[keys[:, CENTER]] == ri) if keys.size else np.zeros(0, np.int64)
        n_st = max(nstates[p] for p in r)
        if any(p in nocontext for p in r):
            tree_roots.append((r, _state_chain(idx, n_st, split)))
            nleaves += n_st
            continue
        allowed = [LEFT, RIGHT] + ([CENTER] if len(r) > 1 else []) + ([STATE] if n_st > 1 else [])
        node = Node(count=float(split.x[idx, 0].sum()))
        tree_roots.append((r, node))
        nleaves += 1
        bs = split.best(idx, allowed)
        if bs is not None:
            heapq.heappush(heap, (-bs[0], seq, node, idx, tuple(allowed)))
        node.gain = bs[0] if bs else 0.0
        node.key = -1
        node.values = (bs[1], bs[2]) if bs else ()  # stash the pending question
        seq += 1
    if nleaves > num_leaves:
        raise Lm2amError(f"--num-leaves {num_leaves} is below the {nleaves} leaves the roots need "
                         "(one per phone, one per state of no-context phones); raise it")
    _grow(heap, seq, nleaves, num_leaves, min_gain, split)
    # leaves still holding a stashed (unused) question: clear it; number leaves depth-first
    senone = 0
    for _, root in tree_roots:
        for leaf in leaves(root):
            leaf.values, leaf.gain = (), 0.0
            leaf.senone = senone
            senone += 1
    return tree_roots


def build_tree(stats: TreeStats, phones: Sequence[str], num_leaves: int, *,
               questions: Optional[Sequence[Sequence[PhoneRef]]] = None,
               min_count: float = 100.0, min_gain: float = 0.0,
               no_context_phones: Iterable[PhoneRef] = (),
               sil_phone: Union[PhoneRef, None] = "auto",
               num_states: Union[int, Mapping[PhoneRef, int], None] = None,
               roots: Optional[Sequence[Sequence[PhoneRef]]] = None,
               var_floor: float = 0.01, cluster_state: Optional[int] = 1) -> ContextTree:
    """Grow a senone tree from ``stats`` with at most ``num_leaves`` leaves in total.

    Greedy and global (Kaldi's ``build-tree --max-leaves``): the leaf/question pair with the
    largest log-likelihood gain over all roots is split next, until ``num_leaves`` leaves exist,
    no split leaves both sides with at least ``min_count`` frames, or the best gain is at most
    ``min_gain``.

    Args:
        stats: accumulated context-state statistics.
        phones: phone symbol list, ``phones[id] = name`` (phones.txt order, id 0 = ``<eps>``).
        num_leaves: maximum number of senones (the ``--num-leaves`` option).
        questions: phone sets (ids or names) asked about the left/right (and shared-root centre)
            phone; default :func:`cluster_phones` on ``stats``. HMM-state questions are added
            automatically (:func:`state_questions`).
        min_count: minimum frame count on each side of a split.
        min_gain: stop when the best log-likelihood gain is not above this.
        no_context_phones: phones (silence, noise) that get one leaf per HMM state and never
            split on context.
        sil_phone: the silence phone that edge context 0 is mapped to; ``"auto"`` picks a phone
            named SIL/sil/<sil> if any, ``None`` keeps 0 as a context of its own.
        num_states: HMM states per phone (int for all, or a mapping); default: per phone, the
            largest state index in ``stats`` + 1 (the largest over all phones for unseen ones).
        roots: groups of phones sharing one root (Kaldi ``roots.txt`` "shared" lines; the tree may
            then also ask about the centre phone); every other phone gets a root of its own.
            Phone id 0 and names starting with ``#`` never get a root.
        var_floor: absolute variance floor of the Gaussians (Kaldi's default 0.01).
        cluster_state: the HMM state used by the automatic question clustering.
    """
    if num_leaves < 1:
        raise Lm2amError(f"--num-leaves must be >= 1 (got {num_leaves})")
    table = phone_table(phones)
    nph = len(phones)
    sil = _resolve_sil(sil_phone, phones, table)
    root_sets = _root_sets(phones, table, roots)
    nocontext = {phone_id(p, phones, table, "no_context_phones") for p in no_context_phones}
    keys, root_index = _checked_keys(stats, nph, root_sets, sil)
    x = stats.stats
    nstates = _states_per_phone(keys, root_sets, phones, num_states)
    if questions is None:
        questions = cluster_phones(stats, state=cluster_state, var_floor=var_floor)
        qsource = "auto"
    else:
        qsource = "given"
    qsets = [sorted({phone_id(p, phones, table, "questions") for p in q}) for q in questions]
    pq = dedupe_sets(qsets, set(range(1, nph)))
    member, qvals = _question_tables(pq, nph, nstates)
    split = _Splitter(x, [keys[:, k] for k in range(4)], member, qvals, min_count, var_floor)
    tree_roots = _grow_roots(root_sets, root_index, keys, nstates, nocontext, num_leaves, min_gain, split)
    info = {"num_leaves_requested": int(num_leaves), "min_count": float(min_count),
            "min_gain": float(min_gain), "var_floor": float(var_floor), "questions": qsource,
            "num_phone_questions": len(pq), "total_count": float(x[:, 0].sum()) if keys.size else 0.0,
            "num_contexts": int(keys.shape[0])}
    return ContextTree(phones, tree_roots, nstates, sil, info)

"""Back-off n-gram word LM for the decoding graph: Kneser-Ney estimation, ARPA writing, G.fst.

What it does
------------
:func:`estimate_ngram` counts the n-grams of a text (one normalized sentence per line, wrapped in
``<s> ... </s>``) and estimates an *interpolated* Kneser-Ney model (Chen & Goodman 1998),
modified (three discounts D1, D2, D3+ per order, from the counts of counts) by default or plain
(one discount per order). :func:`~lm2am.graph.arpa.write_arpa` writes it as an ARPA file (atomically) and
:func:`~lm2am.graph.arpa.arpa_to_fst` turns that into Kaldi's ``G.fst`` with ``kaldilm`` (back-off arcs carry the
disambiguation symbol ``#0``, ``<s>``/``</s>`` become epsilons), over the ids of ``words.txt``.

Estimation (the same rules as KenLM's ``lmplz`` and SRILM's ``-kndiscount -interpolate``)
------------------------------------------------------------------------------------------
* Adjusted counts: an n-gram of the highest order, or one that starts with ``<s>``, keeps its
  raw count; any other n-gram gets its continuation count (the number of distinct words seen
  right before it).
* For history ``h`` and word ``w`` seen after it (order k):
  ``p(w|h) = (a(hw) - D_k(a(hw))) / a(h.) + gamma(h) p(w|h')`` with ``a(h.)`` the sum of the
  adjusted counts after ``h``, ``h'`` the history without its first word and
  ``gamma(h) = (a(h.) - sum_kept(a(hw) - D)) / a(h.)`` (the discounted mass plus the mass of
  n-grams removed by count cut-offs). Unigrams interpolate with the uniform distribution over
  the vocabulary (every word of ``words.txt`` except ``<eps>``, ``<s>`` and ``#n``, plus
  ``</s>``), so words never seen in the text still get a probability.
* Because the model is interpolated, the ARPA back-off weight of ``h`` is exactly ``gamma(h)``
  and the ARPA probability of a listed n-gram is the interpolated one; every history's
  distribution sums to one (tested).
* Tokens outside the vocabulary become ``unk_word`` (``<UNK>``) when the vocabulary has it,
  otherwise the sentence is skipped.
* ``min_counts`` (raw-count cut-offs per order >= 2, like SRILM's ``-gtNmin``) and ``max_order``
  keep G, and thus HCLG, small; a kept n-gram always keeps its prefix and suffix, as ARPA needs.

Counting is vectorized with numpy: an n-gram of order k is coded as
``index_{k-1}(prefix) * V + last_word``, so its history's index is ``code // V``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError

log = logging.getLogger(__name__)

__all__ = ["NgramConfig", "NgramModel", "estimate_ngram", "estimate_ngram_from_file", "BOS", "EOS",
           "LOG10_ZERO"]

BOS, EOS = "<s>", "</s>"
LOG10_ZERO = -99.0  # ARPA's "log10(0)" for <s>


@dataclass
class NgramConfig:
    """The ``ngram:`` section of a recipe config.

    Attributes:
        order: n-gram order (3 = trigram).
        discount: ``"modified"`` (modified Kneser-Ney, D1/D2/D3+) or ``"plain"`` (one D per order).
        min_counts: raw-count cut-off per order, starting with bigrams (``[1, 2]`` keeps every
            bigram and the trigrams seen at least twice); missing orders use the last value.
        unk_word: the word that out-of-vocabulary tokens become.
        fixed_discounts: tests only: one discount per order (order 1 first) instead of the
            count-of-counts estimate.
    """

    order: int = 3
    discount: str = "modified"
    min_counts: List[int] = field(default_factory=lambda: [1])
    unk_word: str = "<UNK>"
    fixed_discounts: Optional[List[float]] = None

    def __post_init__(self) -> None:
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        if self.discount not in ("modified", "plain"):
            raise ValueError(f"discount must be 'modified' or 'plain', got {self.discount!r}")
        self.min_counts = list(self.min_counts) or [1]
        if any(c < 1 for c in self.min_counts):
            raise ValueError(f"min_counts must be >= 1, got {self.min_counts}")
        if self.fixed_discounts is not None and len(self.fixed_discounts) < self.order:
            raise ValueError("fixed_discounts needs one value per order")

    def min_count(self, k: int) -> int:
        """Cut-off for order ``k`` (1 for unigrams)."""
        if k < 2:
            return 1
        return self.min_counts[min(k - 2, len(self.min_counts) - 1)]


@dataclass
class NgramModel:
    """An estimated back-off model.

    ``grams[k-1]`` is an int32 array [n_k, k] of word ids (row = n-gram), ``logp[k-1]`` the log10
    probabilities and ``bow[k-1]`` the log10 back-off weights (0 where the n-gram is no
    history); unigram row ``i`` is word id ``i`` of ``vocab`` (rows of non-words are unused).
    """

    vocab: List[str]
    grams: List[np.ndarray]
    logp: List[np.ndarray]
    bow: List[np.ndarray]
    unigram_mask: np.ndarray  # which word ids are listed as unigrams
    discounts: List[Tuple[float, float, float]]
    info: Dict[str, object]

    @property
    def order(self) -> int:
        return len(self.grams)

    def num_ngrams(self) -> List[int]:
        """Number of n-grams per order as listed in the ARPA file."""
        return [int(self.unigram_mask.sum())] + [int(g.shape[0]) for g in self.grams[1:]]


# ----------------------------------------------------------------------------- counting
def _unique_counts(codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    if codes.size == 0:
        return codes, np.zeros(0, np.int64)
    u, c = np.unique(codes, return_counts=True)
    return u, c.astype(np.int64)


def _lookup(sorted_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Index of each code in ``sorted_codes``, -1 where absent."""
    if sorted_codes.size == 0:
        return np.full(codes.shape, -1, np.int64)
    pos = np.searchsorted(sorted_codes, codes)
    pos_c = np.minimum(pos, sorted_codes.size - 1)
    return np.where(sorted_codes[pos_c] == codes, pos_c, -1)


def _discounts(adj: np.ndarray, k: int, cfg: NgramConfig) -> Tuple[float, float, float]:
    """(D1, D2, D3+) for order ``k`` from counts of adjusted counts, with a safe fallback."""
    if cfg.fixed_discounts is not None:
        d = float(cfg.fixed_discounts[k - 1])
        return d, d, d
    n = [int((adj == i).sum()) for i in (1, 2, 3, 4)]
    if n[0] > 0 and n[1] > 0:
        y = n[0] / (n[0] + 2.0 * n[1])
        if cfg.discount == "plain":
            return y, y, y
        if n[2] > 0 and n[3] > 0:
            d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
            if all(0 < di < i + 1 for i, di in enumerate(d)):
                return d
        if 0 < y < 1:
            log.warning("order %d: counts of counts %s too sparse for modified Kneser-Ney; using one "
                        "discount D=%.3f", k, n, y)
            return y, y, y
    log.warning("order %d: counts of counts %s too sparse to estimate discounts; using D=0.5", k, n)
    return 0.5, 0.5, 0.5


def _token_ids(sentences: Iterable[Union[str, Sequence[str]]], table: Dict[str, int], predictable: np.ndarray,
               cfg: NgramConfig) -> Tuple[List[np.ndarray], int, int, int]:
    """Each usable sentence as word ids ``<s> w1 .. wm </s>``; also (sentences, OOV tokens,
    skipped sentences)."""
    bos, eos = table[BOS], table[EOS]
    unk = table.get(cfg.unk_word)
    ids: List[np.ndarray] = []
    n_sent = n_oov = n_skipped = 0
    for s in sentences:
        toks = s.split() if isinstance(s, str) else list(s)
        if not toks:
            continue
        row = [table.get(t, -1) for t in toks]
        if any(i < 0 or not predictable[i] for i in row):
            bad = sum(i < 0 or not predictable[i] for i in row)
            if unk is None:
                n_skipped += 1
                continue
            n_oov += bad
            row = [unk if (i < 0 or not predictable[i]) else i for i in row]
        ids.append(np.asarray([bos] + row + [eos], np.int64))
        n_sent += 1
    if not ids:
        raise Lm2amError("the LM text has no usable sentence (empty, or every sentence has OOV words "
                         f"and the vocabulary has no {cfg.unk_word})")
    return ids, n_sent, n_oov, n_skipped


@dataclass
class _Counts:
    """Per order k (list index k-1): sorted unique n-gram codes, raw counts, word-id rows
    [n_k, k] and, for k >= 2, the index of each n-gram's suffix (last k-1 words) at order k-1."""

    V: int
    codes: List[np.ndarray]
    raw: List[np.ndarray]
    rows: List[np.ndarray]
    suffix: List[Optional[np.ndarray]]


def _count(ids: List[np.ndarray], V: int, N: int) -> Tuple[np.ndarray, _Counts]:
    """The token stream (one int array) and the n-gram counts of every order up to ``N``."""
    seq = np.concatenate(ids)
    sent_start = np.zeros(seq.size, bool)
    sent_start[np.cumsum([0] + [a.size for a in ids[:-1]])] = True
    # distance of each position from its sentence's <s> (n-grams may not cross sentences)
    starts_idx = np.flatnonzero(sent_start)
    pos_in_sent = np.arange(seq.size) - np.repeat(starts_idx, [a.size for a in ids])

    # sorted unique codes and raw counts per order; position -> index, for the next order's codes
    codes: List[np.ndarray] = []
    raw: List[np.ndarray] = []
    rows: List[np.ndarray] = []
    pos_index = seq.copy()  # order 1: index = word id (dense unigram table)
    uni_raw = np.bincount(seq, minlength=V).astype(np.int64)
    codes.append(np.arange(V, dtype=np.int64))
    raw.append(uni_raw)
    rows.append(np.arange(V, dtype=np.int32)[:, None])
    for k in range(2, N + 1):
        # n-gram ending at position j: positions j-k+1..j, within one sentence
        ok = pos_in_sent >= k - 1
        j = np.flatnonzero(ok)
        c = pos_index[j - 1] * V + seq[j]  # prefix index (order k-1, ending at j-1) and last word
        u, cnt = _unique_counts(c)
        codes.append(u)
        raw.append(cnt)
        prev_rows = rows[-1]
        rows.append(np.concatenate([prev_rows[u // V], (u % V).astype(np.int32)[:, None]], axis=1))
        new_index = np.full(seq.size, -1, np.int64)
        new_index[j] = np.searchsorted(u, c)
        pos_index = new_index
    return seq, _Counts(V, codes, raw, rows, _suffixes(codes, rows, V, N))


def _index_of(rws: np.ndarray, codes: List[np.ndarray], V: int) -> np.ndarray:
    """Index of each row of word ids (an n-gram of order ``rws.shape[1]``) at its order, -1 if unseen."""
    idx = rws[:, 0].astype(np.int64)
    for m in range(1, rws.shape[1]):
        found = _lookup(codes[m], np.maximum(idx, 0) * V + rws[:, m])
        idx = np.where(idx >= 0, found, -1)
    return idx


def _suffixes(codes: List[np.ndarray], rows: List[np.ndarray], V: int, N: int) -> List[Optional[np.ndarray]]:
    """Suffix index of every n-gram of order k >= 2 (its last k-1 words) at order k-1."""
    suffix: List[Optional[np.ndarray]] = [None]
    for k in range(2, N + 1):
        sfx = _index_of(rows[k - 1][:, 1:], codes, V)
        assert (sfx >= 0).all(), "suffix of a seen n-gram must be seen"
        suffix.append(sfx)
    return suffix


def _adjusted(c: _Counts, bos: int, predictable: np.ndarray, N: int) -> List[np.ndarray]:
    """Kneser-Ney adjusted counts: raw for the highest order and ``<s>``-initial n-grams, else
    continuation counts."""
    adj: List[np.ndarray] = []
    for k in range(1, N + 1):
        a = c.raw[k - 1].copy()
        if k < N:
            cont = np.bincount(c.suffix[k], minlength=a.size).astype(np.int64)
            starts_bos = c.rows[k - 1][:, 0] == bos
            a = np.where(starts_bos, a, cont)
        adj.append(a)
    adj[0][bos] = 0  # <s> is never predicted
    adj[0][~predictable] = 0
    return adj


def _kept(c: _Counts, predictable: np.ndarray, bos: int, cfg: NgramConfig, N: int) -> List[np.ndarray]:
    """Cut-offs: kept masks per order, closed under prefix and suffix."""
    kept = [np.ones(c.codes[k].size, bool) for k in range(N)]
    kept[0] = predictable.copy()
    kept[0][bos] = True
    for k in range(2, N + 1):
        kept[k - 1] = c.raw[k - 1] >= cfg.min_count(k)
    for k in range(N, 1, -1):
        m = kept[k - 1]
        kept[k - 2][(c.codes[k - 1][m] // c.V)] = True  # prefixes
        kept[k - 2][c.suffix[k - 1][m]] = True  # suffixes
    return kept


def _probabilities(c: _Counts, adj: List[np.ndarray], kept: List[np.ndarray], predictable: np.ndarray,
                   cfg: NgramConfig, N: int):
    """``(discounts, prob, gamma)`` order by order (natural log internally); ``gamma[k-1]``: per
    n-gram of order k, its interpolation weight as a history of order k+1."""
    discounts: List[Tuple[float, float, float]] = []
    prob: List[np.ndarray] = []
    gamma: List[np.ndarray] = []
    for k in range(1, N + 1):
        a = adj[k - 1].astype(np.float64)
        d = _discounts(adj[k - 1][adj[k - 1] > 0] if k == 1 else adj[k - 1], k, cfg)
        discounts.append(d)
        dvec = np.where(a >= 3, d[2], np.where(a == 2, d[1], np.where(a == 1, d[0], 0.0)))
        dvec = np.minimum(dvec, a)
        num = np.where(kept[k - 1], a - dvec, 0.0)
        if k == 1:
            denom = a[predictable].sum()
            g0 = (denom - num[predictable].sum()) / denom if denom > 0 else 1.0
            nv = int(predictable.sum())
            p = np.where(predictable, num / max(denom, 1e-300) + g0 / nv, 0.0)
            log.debug("unigram: interpolation weight of the uniform distribution %.4g", g0)
        else:
            hist = c.codes[k - 1] // c.V
            nh = c.codes[k - 2].size
            denom = np.bincount(hist, weights=a, minlength=nh)
            kept_num = np.bincount(hist, weights=num, minlength=nh)
            g = np.where(denom > 0, (denom - kept_num) / np.maximum(denom, 1e-300), 1.0)
            gamma.append(g)
            p = num / denom[hist] + g[hist] * prob[k - 2][c.suffix[k - 1]]
        prob.append(p)
    gamma.append(np.ones(c.codes[N - 1].size))
    return discounts, prob, gamma


def _arpa_rows(c: _Counts, kept: List[np.ndarray], prob: List[np.ndarray], gamma: List[np.ndarray],
               bos: int, N: int) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
    """The kept n-grams with their log10 probabilities and back-off weights, per order."""
    # is each n-gram a history of a kept (k+1)-gram? (only those get a back-off weight)
    is_hist = [np.zeros(c.codes[k].size, bool) for k in range(N)]
    for k in range(2, N + 1):
        is_hist[k - 2][c.codes[k - 1][kept[k - 1]] // c.V] = True

    grams, logp, bows = [], [], []
    with np.errstate(divide="ignore"):
        for k in range(1, N + 1):
            m = kept[k - 1]
            lp = np.log10(np.maximum(prob[k - 1][m], 1e-300))
            if k == 1:
                lp = lp.copy()
                lp[np.flatnonzero(m) == bos] = LOG10_ZERO
            bw = np.where(is_hist[k - 1][m], np.log10(np.maximum(gamma[k - 1][m], 1e-300)), 0.0)
            grams.append(c.rows[k - 1][m])
            logp.append(lp)
            bows.append(bw)
    return grams, logp, bows


def estimate_ngram(sentences: Iterable[Union[str, Sequence[str]]], vocab: Sequence[str],
                   cfg: Optional[NgramConfig] = None) -> NgramModel:
    """Estimate an interpolated Kneser-Ney back-off model (see the module docstring).

    Args:
        sentences: sentences as strings (split on whitespace) or token lists, without ``<s>``.
        vocab: the word list, index = word id (e.g. from words.txt); must contain ``<s>`` and
            ``</s>``; ``<eps>`` and ``#n`` are never predicted.
        cfg: options.
    """
    cfg = cfg or NgramConfig()
    t0 = time.time()
    vocab = list(vocab)
    table = {w: i for i, w in enumerate(vocab)}
    for s in (BOS, EOS):
        if s not in table:
            raise Lm2amError(f"the vocabulary (words.txt) lacks {s}; rerun the lang stage")
    bos = table[BOS]
    V = len(vocab)
    predictable = np.array([not (w == "<eps>" or w == BOS or w.startswith("#")) for w in vocab])
    if V >= 2 ** 31:
        raise Lm2amError("vocabulary too large")

    ids, n_sent, n_oov, n_skipped = _token_ids(sentences, table, predictable, cfg)
    N = cfg.order
    seq, counts = _count(ids, V, N)
    adj = _adjusted(counts, bos, predictable, N)
    kept = _kept(counts, predictable, bos, cfg, N)
    discounts, prob, gamma = _probabilities(counts, adj, kept, predictable, cfg, N)
    grams, logp, bows = _arpa_rows(counts, kept, prob, gamma, bos, N)
    info = {"sentences": n_sent, "tokens": int(seq.size - 2 * n_sent), "oov_tokens": n_oov,
            "skipped_sentences": n_skipped, "order": N, "discount": cfg.discount,
            "min_counts": list(cfg.min_counts), "seconds": round(time.time() - t0, 2)}
    model = NgramModel(vocab=vocab, grams=grams, logp=logp, bow=bows, unigram_mask=kept[0],
                       discounts=discounts, info=info)
    info["ngrams"] = model.num_ngrams()
    log.info("n-gram LM: order %d (%s KN), %d sentences, %d tokens (%d OOV -> %s), n-grams per order %s, "
             "discounts %s, %.1f s", N, cfg.discount, n_sent, info["tokens"], n_oov, cfg.unk_word,
             info["ngrams"], [tuple(round(x, 3) for x in d) for d in discounts], time.time() - t0)
    return model


def estimate_ngram_from_file(text_path: Union[Path, str], vocab: Sequence[str],
                             cfg: Optional[NgramConfig] = None) -> NgramModel:
    """:func:`estimate_ngram` over a text file (one sentence per line, UTF-8)."""
    text_path = Path(text_path)
    if not text_path.is_file():
        raise Lm2amError(f"LM text {text_path} does not exist; run the corpus stage or fix --lm-text")
    with open(text_path, encoding="utf-8") as f:
        return estimate_ngram((line for line in f), vocab, cfg)

"""Batched scoring of token sequences with a teacher LM: per position, the LM's logits.

Masked LM, batched masking scheme
---------------------------------
Position ``i``'s teacher distribution is ``p(x_i | all other tokens)``: the sequence with
``x_i`` replaced by ``<mask>``. Doing one forward pass per token is what we avoid. For a
sequence (or window, below) of ``n`` tokens we build ``P`` copies; copy ``c`` masks the positions
``i ≡ c (mod P)`` (spaced ``P`` apart), so every position is masked in exactly one copy, and the
copy's output at a masked position is that position's distribution. All copies of many
sequences go through the model as one padded batch (``batch_tokens`` padded tokens per batch,
rows sorted by length so padding stays small), and only the hidden states at masked positions
are projected to the vocabulary (no ``[tokens, V]`` logits for positions nobody asked about).

* ``mask_spacing = 0``: ``P = n``, one masked position per copy: exactly the
  one-position-at-a-time result (tested to float tolerance), cost ``n`` copies of ``n`` tokens.
* ``mask_spacing = s > 0`` (default 8): ``P = min(s, n)``; cost ``s`` copies, i.e. ``n / s``
  times cheaper, but each masked position also lacks the tokens ``s, 2s, ...`` away (masked in
  the same copy). An approximation, measured by :func:`lm2am.lm.storage_report.storage_report`
  (``compare_spacing``): on the demo teachers, mean KL(exact || spacing 8) was 0.0015 (phone),
  0.0016 (subword), 0.0001 (senone) nats per frame, while senone scoring got ~10x cheaper.

Mask spans (``mask_span: phone``, :func:`lm2am.lm.tokens.target_spans`): the unit of masking
is a span (the tokens of one phone occurrence) instead of a token: copy ``c`` masks every token
of the spans ``j ≡ c (mod P)`` (spans counted in the window), and each masked token's
distribution is ``p(x_i | tokens outside its span)``. ``mask_spacing`` then counts spans.

Causal LM: one row per window, input ``<bos> x_0 .. x_{n-2}``, output ``j`` = ``p(x_j | x_{<j})``.

Long sequences (``n > max_len``) are read in overlapping windows (:func:`plan_windows`); each
position takes its distribution from the one window that owns it, where it has at least
``max_len // 4`` tokens of context on both sides (masked) or ``max_len // 2`` on the left
(causal), except at the sequence's ends.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lm2am.lm.model import TransformerLM

__all__ = ["plan_windows", "span_index", "score_sequences", "sequence_logprobs", "perplexity",
           "unigram_perplexity"]

Window = Tuple[int, int, int, int]  # window [ws, we), owned positions [os, oe)
Spans = Optional[Sequence[Optional[np.ndarray]]]  # per sequence: span label per token, or None


def span_index(labels: np.ndarray) -> np.ndarray:
    """Span labels (equal for the consecutive tokens of one span) -> span numbers ``0, 1, ...``."""
    labels = np.asarray(labels)
    new = np.zeros(len(labels), dtype=np.int64)
    new[1:] = labels[1:] != labels[:-1]
    return np.cumsum(new)


def plan_windows(n: int, max_len: int, left: int, right: int) -> List[Window]:
    """Cover positions ``0..n-1`` with windows of at most ``max_len`` tokens.

    Returns ``(ws, we, os, oe)`` per window: the window ``[ws, we)`` and the positions
    ``[os, oe)`` it owns. Owned ranges partition ``[0, n)``; an owned position has at least
    ``left`` tokens of window before it and ``right`` after it unless the sequence ends first.
    """
    if n <= max_len:
        return [(0, n, 0, n)]
    if left + right >= max_len:
        raise ValueError(f"window context {left}+{right} leaves no room in max_len {max_len}")
    out: List[Window] = []
    os_ = 0
    while os_ < n:
        ws = max(0, os_ - left)
        we = min(n, ws + max_len)
        if we == n:
            ws = max(0, min(ws, n - max_len))  # last window: as much left context as fits
            oe = n
        else:
            oe = we - right
        out.append((ws, we, os_, oe))
        os_ = oe
    return out


Row = Tuple[int, int, int, int, np.ndarray, np.ndarray]


def _span_copies(own: np.ndarray, ws: int, we: int, labels: np.ndarray, spacing: int
                 ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(predicted, masked) positions of each copy of one window when spans are masked whole:
    the spans of the owned positions are dealt round-robin to the copies."""
    span = span_index(labels[ws:we])  # span number of each window position
    owned = span[own - ws]
    ids = np.unique(owned)
    copies = len(ids) if spacing <= 0 else min(spacing, len(ids))
    out = []
    for c in range(copies):
        chosen = ids[c::copies]
        out.append((own[np.isin(owned, chosen)], ws + np.flatnonzero(np.isin(span, chosen))))
    return out


def _rows(model: TransformerLM, seqs: Sequence[Sequence[int]], spacing: int, spans: Spans = None
          ) -> List[Row]:
    """(length, seq index, ws, we, predicted positions, masked positions) per model input row."""
    L = model.max_len
    causal = model.causal
    rows = []
    for i, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            continue
        labels = spans[i] if spans is not None else None
        plan = plan_windows(n, L, L // 2, 0) if causal else plan_windows(n, L, L // 4, L // 4)
        for ws, we, os_, oe in plan:
            own = np.arange(os_, oe)
            if causal:
                rows.append((we - ws, i, ws, we, own, own))
                continue
            if labels is not None:
                rows += [(we - ws, i, ws, we, pred, masked)
                         for pred, masked in _span_copies(own, ws, we, np.asarray(labels), spacing)]
                continue
            copies = len(own) if spacing <= 0 else min(spacing, len(own))
            for c in range(copies):
                rows.append((we - ws, i, ws, we, own[c::copies], own[c::copies]))
    # longest first, then by sequence: deterministic, little padding
    rows.sort(key=lambda r: (-r[0], r[1], r[2], int(r[4][0])))
    return rows


@torch.no_grad()
def score_sequences(model: TransformerLM, seqs: Sequence[Sequence[int]],
                    fn: Callable[[int, torch.Tensor], Any], *, spacing: int = 0,
                    batch_tokens: int = 16384, device: Optional[torch.device] = None,
                    spans: Spans = None) -> List[Any]:
    """Run the LM over ``seqs`` and call ``fn(i, logits)`` once per non-empty sequence, where
    ``logits`` is float32 ``[len(seqs[i]), V]`` on the CPU: position ``j``'s logits given the
    rest (masked LM, masking scheme of the module docstring with ``spacing``; with ``spans``,
    given the tokens outside its span) or given the left context (causal LM). Returns the ``fn``
    results by sequence (``None`` for empty ones).

    The model is put in eval mode. Memory holds the logits of the sequences in progress only.
    """
    model.eval()
    device = device or next(model.parameters()).device
    arrays = [np.asarray(s, dtype=np.int64) for s in seqs]
    for i, a in enumerate(arrays):
        if a.size and (a.min() < 0 or a.max() >= model.vocab_size):
            raise ValueError(f"sequence {i}: token id outside 0..{model.vocab_size - 1}")
        if spans is not None and spans[i] is not None and len(spans[i]) != a.size:
            raise ValueError(f"sequence {i}: {len(spans[i])} span labels for {a.size} tokens")
    rows = _rows(model, arrays, spacing, spans)
    remaining: Dict[int, int] = {}
    for r in rows:
        remaining[r[1]] = remaining.get(r[1], 0) + 1
    buffers: Dict[int, torch.Tensor] = {}
    results: List[Any] = [None] * len(seqs)
    V = model.vocab_size
    start = 0
    while start < len(rows):
        width = rows[start][0]  # longest row of the batch (rows are sorted)
        count = max(1, batch_tokens // width)
        batch = rows[start:start + count]
        start += len(batch)
        inp = np.full((len(batch), width), model.pad_id, dtype=np.int64)
        b_idx: List[np.ndarray] = []
        t_idx: List[np.ndarray] = []
        for b, (length, i, ws, we, pos, masked) in enumerate(batch):
            a = arrays[i]
            if model.causal:
                inp[b, 0] = model.bos_id if ws == 0 else a[ws - 1]
                inp[b, 1:length] = a[ws:we - 1]
            else:
                inp[b, :length] = a[ws:we]
                inp[b, masked - ws] = model.mask_id
            b_idx.append(np.full(len(pos), b))
            t_idx.append(pos - ws)
        x = torch.from_numpy(inp).to(device)
        pad = x == model.pad_id
        h = model.hidden(x, pad if bool(pad.any()) else None)
        bi = torch.from_numpy(np.concatenate(b_idx)).to(device)
        ti = torch.from_numpy(np.concatenate(t_idx)).to(device)
        logits = model.logits(h[bi, ti]).float().cpu()
        off = 0
        for _, i, _, _, pos, _ in batch:
            buf = buffers.get(i)
            if buf is None:
                buf = buffers[i] = torch.empty(len(arrays[i]), V)
            buf[torch.from_numpy(pos)] = logits[off:off + len(pos)]
            off += len(pos)
            remaining[i] -= 1
            if remaining[i] == 0:
                results[i] = fn(i, buffers.pop(i))
    return results


def sequence_logprobs(model: TransformerLM, seqs: Sequence[Sequence[int]], *, spacing: int = 0,
                      batch_tokens: int = 16384, device: Optional[torch.device] = None,
                      spans: Spans = None) -> List[np.ndarray]:
    """Per sequence, ``log p`` of each true token under the LM (float64 array per sequence)."""
    def fn(i: int, logits: torch.Tensor) -> np.ndarray:
        lp = torch.log_softmax(logits.double(), dim=-1)
        return lp[torch.arange(len(seqs[i])), torch.as_tensor(list(seqs[i]))].numpy()

    out = score_sequences(model, seqs, fn, spacing=spacing, batch_tokens=batch_tokens, device=device,
                          spans=spans)
    return [np.zeros(0) if o is None else o for o in out]


def perplexity(model: TransformerLM, seqs: Sequence[Sequence[int]], **kw: Any) -> float:
    """Dev perplexity: ``exp(-mean log p)`` over all tokens (for a masked LM the
    pseudo-perplexity, each token given all others, or all outside its span (``spans``), via
    the batched scheme)."""
    lps = sequence_logprobs(model, seqs, **kw)
    n = sum(len(x) for x in lps)
    return math.exp(-sum(float(x.sum()) for x in lps) / max(n, 1))


def unigram_perplexity(train: Sequence[Sequence[int]], dev: Sequence[Sequence[int]],
                       vocab_size: int) -> float:
    """Perplexity on ``dev`` of an add-one smoothed unigram model of ``train`` over
    ``vocab_size`` tokens: ``p(w) = (c(w) + 1) / (N + V)``."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for s in train:
        counts += np.bincount(np.asarray(s, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    logp = np.log(counts + 1.0) - math.log(counts.sum() + vocab_size)
    d = np.concatenate([np.asarray(s, dtype=np.int64) for s in dev]) if dev else np.zeros(0, np.int64)
    return math.exp(-float(logp[d].mean())) if d.size else float("nan")

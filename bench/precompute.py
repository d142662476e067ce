"""Benchmark 3: teacher posterior precompute throughput (tokens/s).

The stage-12 teachers of the tiny recipe score the train part's own token sequences (what
stage 13 does, ``lm2am.lm.scoring.score_sequences`` + ``topk_posteriors``) three ways:

* **batched masking** with the teacher's ``mask_spacing`` (8): ``s`` masked copies per window,
  every copy of many sequences in one padded batch (the default of stage 13);
* **batched, exact** (``mask_spacing 0``): one masked copy per position, still batched;
* **one forward per position**: the definition, unbatched: one model call per token with that
  token masked (the reference of tests/test_lm.py), on the first few sequences.

The baseline of each ratio is the one-forward-per-position throughput.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Sequence

import torch

from bench.common import Context, Row, in_dir

UNITS = {"senone": "senone", "phone": "monophone", "subword": "subword"}  # LM unit -> exp dir


@torch.no_grad()
def one_forward_per_position(model, seqs: Sequence[Sequence[int]], fn: Callable) -> None:
    """Each position scored by its own forward pass with only that position masked."""
    from lm2am.lm.scoring import plan_windows

    model.eval()
    L = model.max_len
    for i, seq in enumerate(seqs):
        if not seq:
            continue
        out = torch.empty(len(seq), model.vocab_size)
        for ws, we, os_, oe in plan_windows(len(seq), L, L // 4, L // 4):
            base = torch.tensor([list(seq[ws:we])])
            for p in range(os_, oe):
                x = base.clone()
                x[0, p - ws] = model.mask_id
                out[p] = model(x)[0, p - ws]
        fn(i, out)


def _throughput(seqs: List[List[int]], run: Callable[[], None]) -> float:
    n = sum(len(s) for s in seqs)
    t0 = time.perf_counter()
    run()
    return n / max(time.perf_counter() - t0, 1e-9)


def _unit_rows(unit: str, reader, ids: List[str], quick: bool) -> List[Row]:
    from lm2am.lm.posteriors import topk_posteriors
    from lm2am.lm.scoring import score_sequences
    from lm2am.lm.tokens import target_tokens
    from lm2am.lm.train import load_lm

    model, meta = load_lm(Path("exp") / f"lm_{UNITS[unit]}" / "final.pt")
    cfg = meta["config"]
    k, temp = cfg.top_k, cfg.temperature
    seqs = [list(target_tokens(reader[c], unit)[0]) for c in ids]

    def fn(i: int, lg: torch.Tensor):
        return topk_posteriors(lg, k, temp)

    def batched(spacing: int) -> Callable[[], None]:
        return lambda: score_sequences(model, seqs, fn, spacing=spacing, batch_tokens=cfg.eval_batch_tokens)

    batched(cfg.mask_spacing)()  # warm-up (allocator, kernels)
    fast = _throughput(seqs, batched(cfg.mask_spacing))
    exact = _throughput(seqs, batched(0))
    naive_seqs = seqs[: 2 if quick else 6]
    naive = _throughput(naive_seqs, lambda: one_forward_per_position(model, naive_seqs, fn))
    ntok = sum(len(s) for s in seqs)
    return [
        Row("posterior precompute", f"{unit}: batched masking (spacing {cfg.mask_spacing}) tokens/s",
            fast, "tokens/s", naive, "one forward per position",
            note=f"{len(seqs)} sequences, {ntok:,} tokens (mean length {ntok / max(1, len(seqs)):.0f}), "
                 f"V={meta['vocab_size']}, top-{k}"),
        Row("posterior precompute", f"{unit}: batched exact (spacing 0) tokens/s", exact,
            "tokens/s", naive, "one forward per position",
            note=f"batched masking is {fast / exact:.1f}x the exact batched scheme; naive on "
                 f"{len(naive_seqs)} sequences ({sum(len(s) for s in naive_seqs)} tokens)"),
    ]


def run(ctx: Context) -> List[Row]:
    from lm2am.targets import read_targets

    rows: List[Row] = []
    with in_dir(ctx.recipe):
        reader = read_targets(Path("data/targets"), "train-synth")
        ids = sorted(reader, key=str.encode)[: 10 if ctx.quick else None]
        for unit in (["senone"] if ctx.quick else list(UNITS)):
            rows += _unit_rows(unit, reader, ids, ctx.quick)
    return rows

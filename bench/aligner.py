"""Benchmark 5: forced-alignment throughput (frames/s) on CPU.

The tiny recipe's flat-start aligner (``exp/ali_mono/final.pt``) aligns the train part with
``lm2am.align.align`` (per-utterance k2 training graphs, ``intersect_dense`` +
``shortest_path``), as stage 8 does. Baselines measured in the same run: real time (100
frames/s at a 10 ms shift) and the aligner network's forward pass alone over the same batches,
which shows what the graph search adds. One full-sum epoch of flat-start training
(``train_flat_start``) is timed too (in ``--quick`` on the 10 utterances of the quick pass).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from bench.common import Context, Row, in_dir, median


def _inputs(quick: bool):
    from lhotse import CutSet

    from lm2am.align.pipeline import cut_inputs, load_lexicon

    cuts = list(CutSet.from_file("data/fbank/cuts_train-synth.jsonl.gz"))
    ids, feats, texts = cut_inputs(cuts[: 10 if quick else None])
    return ids, feats, texts, load_lexicon("data/lang")


def run(ctx: Context) -> List[Row]:
    from lm2am.align import AlignConfig, align, train_flat_start
    from lm2am.align.pipeline import load_aligner

    rows: List[Row] = []
    with in_dir(ctx.recipe):
        model, cfg, topo, phones = load_aligner(Path("exp/ali_mono"))
        ids, feats, texts, lexicon = _inputs(ctx.quick)
        frames = sum(f.shape[0] for f in feats)
        align(model, feats[:2], texts[:2], lexicon, phones, topo, batch_size=cfg.batch_size,
              utt_ids=ids[:2], allow_failures=True)  # warm-up
        t_align, t_nn = [], []
        for _ in range(1 if ctx.quick else 3):
            t0 = time.perf_counter()
            alis = align(model, feats, texts, lexicon, phones, topo, batch_size=cfg.batch_size,
                         utt_ids=ids, allow_failures=True)
            t_align.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(feats), cfg.batch_size):
                    b = feats[i:i + cfg.batch_size]
                    T = max(f.shape[0] for f in b)
                    x = torch.zeros(len(b), T, b[0].shape[1])
                    for j, f in enumerate(b):
                        x[j, :f.shape[0]] = torch.from_numpy(np.asarray(f, np.float32))
                    model.emission_scores(x, torch.tensor([f.shape[0] for f in b]))
            t_nn.append(time.perf_counter() - t0)
        ta, tn = median(t_align), median(t_nn)
        rows.append(Row("aligner", "Viterbi alignment (lm2am.align.align): frames/s", frames / ta, "frames/s",
                        100.0, "real time (100 frames/s)",
                        note=f"{len(feats)} utts, {frames:,} frames, {len(alis)} aligned; the network "
                             f"forward alone runs {frames / tn:,.0f} frames/s ({100 * tn / ta:.0f}% of the time)"))
        # one full-sum epoch (the equal-alignment and Viterbi rounds are other, cheaper epochs)
        tcfg = AlignConfig(**{**cfg.__dict__, "epochs": 1, "equal_align_epochs": 0, "viterbi_epochs": 0})
        t0 = time.perf_counter()
        train_flat_start(feats, texts, lexicon, phones, topo, tcfg, utt_ids=ids)
        tt = time.perf_counter() - t0
        rows.append(Row("aligner", "flat-start training, one epoch: frames/s", frames / tt, "frames/s",
                        frames / ta, "Viterbi alignment frames/s",
                        note=f"full-sum (intersect_dense + backward) over {frames:,} frames in {tt:.1f} s"))
    return rows

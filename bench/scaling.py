"""Benchmark 6: time and peak memory against corpus size (1x, 2x, 4x); fitted log-log exponent.

* **Data prep** (full run only): a synth-en corpus from a config derived from conf/tiny.yaml
  with the ``corpus`` sizes (train/dev/test utterances) times 1, 2 and 4, built from scratch
  by the recipe's own stages, one child process per stage (1 synthesis, 3 manifests, 4 lang,
  5 fbank + CMVN, 6 summary; no Asterisk set). Wall time and the peak resident set of the
  largest process of each stage.
* **Alignment** and **posterior precompute**: the tiny train part replicated (1x = 4 copies for
  alignment, 2 for posteriors; then 2x, 4x: exactly proportional input, same data), processed in a fresh child process per size:
  Viterbi alignment with the tiny aligner (``lm2am.align.align``); teacher posteriors as stage 13
  computes them (``score_sequences`` + ``topk_posteriors`` + ``encode_rows`` written as a Kaldi
  ark, in chunks of ``lm2am.lm.posteriors.CHUNK`` cuts), for every unit. Time is measured
  inside the child (the work, not the imports); peak memory is the child's peak RSS (imports
  included: what a job needs).

Times are wall seconds. On a shared machine the same work's wall time varies several-fold with
other load, so the workers run one torch thread (no OpenMP spin-waiting on a busy core) and the
minimum over interleaved repeats is kept; CPU-time clocks were tried and are not trustworthy in
this sandbox (a thread's CPU time exceeded its wall time). Treat the exponents as rough. The
exponent ``a`` of ``y ~ size^a`` comes from a least-squares fit of log y on log size:
1 is linear, below 1 means fixed costs still weigh (small corpora), above 1 superlinear.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from bench.common import PY, REPO, Context, Row, loglog_slope, make_recipe_copy, measured_run

TARGET_EXPONENT = 1.1  # "grows linearly": fitted time exponent at most this
DATA_PREP_STAGES = {1: "synthesis", 3: "manifests", 4: "lang", 5: "fbank + CMVN", 6: "summary"}


def scaled_config(scale: int) -> str:
    """conf/tiny.yaml with the corpus section's utterance counts times ``scale``."""
    import yaml

    cfg = yaml.safe_load((REPO / "egs/synth-en/s5/conf/tiny.yaml").read_text())
    for k in ("num_train_utts", "num_dev_utts", "num_test_utts"):
        cfg["corpus"][k] = int(cfg["corpus"][k]) * scale
    return yaml.safe_dump(cfg, sort_keys=False)


def _row(name: str, scales: Sequence[int], secs: Sequence[float], rss: Sequence[float], how: str) -> Row:
    a = loglog_slope(scales, secs)
    m = loglog_slope(scales, rss)
    per = ", ".join(f"{s}x {t:.1f} s / {r:.0f} MiB" for s, t, r in zip(scales, secs, rss))
    return Row("scaling", f"{name}: time exponent (log-log slope)", a, "",
               target=f"<= {TARGET_EXPONENT} (linear)", met=a <= TARGET_EXPONENT,
               note=f"peak-memory exponent {m:.2f}; time / peak RSS: {per}; {how}")


def data_prep_rows(ctx: Context, scales: Sequence[int]) -> List[Row]:
    per_stage: Dict[int, List[Dict[str, float]]] = {s: [] for s in DATA_PREP_STAGES}
    for scale in scales:
        d = ctx.scratch / f"synth_x{scale}" / "s5"
        for sub in ("corpus", "data", "exp"):
            shutil.rmtree(d / sub, ignore_errors=True)
        make_recipe_copy(d, scaled_config(scale))
        for st in DATA_PREP_STAGES:
            r = measured_run(["./run.sh", "--config", "conf/bench.yaml", "--stage", str(st), "--stop-stage",
                              str(st), "--real-parts", "", "--nj", "2"], cwd=d,
                             log=ctx.scratch / f"synth_x{scale}_stage{st}.log")
            per_stage[st].append(r)
    rows = []
    for st, name in DATA_PREP_STAGES.items():
        rs = per_stage[st]
        rows.append(_row(f"data prep stage {st} ({name})", scales, [r["seconds"] for r in rs],
                         [r["max_rss_mib"] for r in rs], "synth-en corpus, tiny sizes x scale"))
    tot = [sum(per_stage[st][i]["seconds"] for st in per_stage) for i in range(len(scales))]
    peak = [max(per_stage[st][i]["max_rss_mib"] for st in per_stage) for i in range(len(scales))]
    rows.insert(0, _row("data prep, stages 1-6 together", scales, tot, peak, "synth-en corpus, tiny sizes x scale"))
    return rows


#: 1x of the worker benchmarks = the tiny train part repeated this often (a 1x of about one
#: second is mostly noise on a shared machine)
WORKER_BASE = {"align": 4, "posteriors": 2}


def worker_rows(ctx: Context, scales: Sequence[int], units: Sequence[str], repeats: int) -> List[Row]:
    """Each size ``repeats`` times, sizes interleaved (1, 2, 4, 1, 2, 4): the minimum time per
    size, so a burst of load from other processes hits no single size alone."""
    rows = []
    for what, args in (("alignment", ["align"]), ("posterior precompute", ["posteriors", *units])):
        secs: Dict[int, List[float]] = {s: [] for s in scales}
        rss: Dict[int, List[float]] = {s: [] for s in scales}
        for _ in range(repeats):
            for scale in scales:
                rep = scale * WORKER_BASE[args[0]]
                r = measured_run([PY, "-m", "bench.scaling", "--worker", *args[:1], "--scale", str(rep),
                                  "--out", str(ctx.scratch / "scaling_worker"), "--units", *(args[1:] or ["-"])],
                                 cwd=ctx.recipe, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                     "MKL_NUM_THREADS": "1"},
                                 log=ctx.scratch / f"scaling_{args[0]}_x{rep}.log")
                res = json.loads([ln for ln in r["output"].splitlines() if ln.startswith("{")][-1])
                secs[scale].append(res["seconds"])
                rss[scale].append(r["max_rss_mib"])
        how = (f"1x = tiny train part x{WORKER_BASE[args[0]]}; min wall time of {repeats} interleaved runs "
               "of the work in a 1-thread child; peak RSS of the child" + (f"; units {', '.join(units)}" if what != "alignment" else ""))
        rows.append(_row(what, scales, [min(secs[s]) for s in scales], [max(rss[s]) for s in scales], how))
    return rows


def run(ctx: Context) -> List[Row]:
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    scales = [1, 2] if ctx.quick else [1, 2, 4]
    units = ["senone"] if ctx.quick else ["phone", "senone", "subword"]
    rows = worker_rows(ctx, scales, units, 1 if ctx.quick else 2)
    if ctx.quick:
        ctx.notes.append("scaling: --quick measures 1x and 2x of alignment and senone posteriors only; "
                         "data prep scaling runs in the full suite")
    else:
        rows = data_prep_rows(ctx, scales) + rows
        ctx.notes.append("scaling, data prep: at tiny sizes (100-400 utterances) fixed costs (process "
                         "start-up and imports, lang's g2p of the LM text pool, fbank job set-up) dominate "
                         "every stage, so the fitted exponents are far below 1 and move with the machine's "
                         "load (the scales run one after another); they bound the growth, they do not "
                         "measure the per-utterance cost")
    return rows


# ---------------------------------------------------------------------------------------------- workers
# Run in a fresh process per size (cwd = the tiny recipe) so that peak memory is that size's.


def _work_align(scale: int) -> Tuple[float, float]:
    from lhotse import CutSet

    from lm2am.align import align
    from lm2am.align.pipeline import cut_inputs, load_aligner, load_lexicon

    model, cfg, topo, phones = load_aligner(Path("exp/ali_mono"))
    ids, feats, texts = cut_inputs(list(CutSet.from_file("data/fbank/cuts_train-synth.jsonl.gz")))
    lexicon = load_lexicon("data/lang")
    ids = [f"{i}_{k}" for k in range(scale) for i in ids]
    align(model, feats[:2], texts[:2], lexicon, phones, topo, utt_ids=ids[:2])  # warm-up
    feats, texts = feats * scale, texts * scale
    t0, c0 = time.perf_counter(), time.thread_time()
    align(model, feats, texts, lexicon, phones, topo, batch_size=cfg.batch_size, utt_ids=ids,
          allow_failures=True)
    return time.perf_counter() - t0, time.thread_time() - c0


def _work_posteriors(scale: int, units: Sequence[str], out: Path) -> Tuple[float, float]:
    import numpy as np
    from kaldiio.matio import write_array

    from lm2am.lm.posteriors import CHUNK, encode_rows, topk_posteriors
    from lm2am.lm.scoring import score_sequences
    from lm2am.lm.tokens import target_tokens
    from lm2am.lm.train import load_lm
    from lm2am.targets import read_targets

    out.mkdir(parents=True, exist_ok=True)
    reader = read_targets(Path("data/targets"), "train-synth")
    ids = sorted(reader, key=str.encode) * scale
    total = cpu = 0.0
    for unit in units:
        model, meta = load_lm(Path("exp") / f"lm_{'monophone' if unit == 'phone' else unit}" / "final.pt")
        cfg = meta["config"]
        score_sequences(model, [target_tokens(reader[c], unit)[0] for c in ids[:4]], lambda i, lg: None)  # warm-up
        t0, c0 = time.perf_counter(), time.thread_time()
        with open(out / f"post_{unit}_x{scale}.ark", "wb") as f:
            for c0 in range(0, len(ids), CHUNK):
                chunk = ids[c0:c0 + CHUNK]
                tp = [target_tokens(reader[c], unit) for c in chunk]
                tops = score_sequences(model, [t for t, _ in tp],
                                       lambda i, lg, k=cfg.top_k, t=cfg.temperature: topk_posteriors(lg, k, t),
                                       spacing=cfg.mask_spacing, batch_tokens=cfg.eval_batch_tokens)
                for n, (c, (_, pos), top) in enumerate(zip(chunk, tp, tops)):
                    if top is None:
                        top = (np.zeros((0, cfg.top_k), np.int64), np.zeros((0, cfg.top_k), np.float32))
                    f.write(f"{c}_{c0 + n} ".encode())
                    write_array(f, encode_rows(pos, *top))
        total += time.perf_counter() - t0
        cpu += time.thread_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    return total, cpu


def main() -> None:
    p = argparse.ArgumentParser(description="scaling benchmark worker (run by bench/scaling.py)")
    p.add_argument("--worker", choices=["align", "posteriors"], required=True)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--units", nargs="*", default=[])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    import kaldi_hmm_gmm  # noqa: F401  (before kaldifst & co.: the other order hangs)
    import torch

    # One thread: the work's CPU time is then the main thread's (time.thread_time), which other
    # load on a shared machine does not inflate (2 OpenMP threads spin-wait for each other).
    torch.set_num_threads(1)

    if a.worker == "align":
        secs, cpu = _work_align(a.scale)
    else:
        secs, cpu = _work_posteriors(a.scale, [u for u in a.units if u != "-"], a.out / f"x{a.scale}")
    print(json.dumps({"seconds": secs, "cpu_seconds": cpu}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

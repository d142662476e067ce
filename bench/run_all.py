#!/usr/bin/env python3
"""Run the lm2am benchmark suite and write bench/RESULTS.md.

    .venv/bin/python bench/run_all.py            # everything (~25 min on 2 cores, cache built)
    .venv/bin/python bench/run_all.py --quick    # a smaller pass of every benchmark (< 3 min)
    .venv/bin/python bench/run_all.py --only train_step,decoding

The data is the tiny synth-en recipe, run once into bench/.cache/tiny/s5 (stages 0-13 and the
CE AM of stage 14; about 6-10 minutes the first time). Each figure sits next to a baseline
measured in the same run, so the ratios hold on a busy machine. Benchmarks: see BENCHMARKS.
The GPU training figures come from bench/gpu_train.py, run separately on a GPU machine; its
table (bench/RESULTS_gpu.md), if present, is copied into RESULTS.md with its own header.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kaldi_hmm_gmm  # noqa: E402,F401  (before kaldifst/kaldilm & co.: the other order hangs)

from bench.common import CACHE, REPO, Context, Row, ensure_tiny_dataset, fmt, machine_info  # noqa: E402

#: module name -> what it measures (issue 8's list, in order)
BENCHMARKS = {
    "train_step": "1. AM training step time per system vs CE (CPU), data-loading share",
    "posterior_storage": "2. teacher posterior bytes/frame vs dense; loader read throughput vs features",
    "precompute": "3. posterior precompute tokens/s: batched masking vs one forward per position",
    "decoding": "4. decoding RTF on CPU; graph compile time",
    "aligner": "5. aligner throughput (frames/s) on CPU",
    "scaling": "6. time and peak memory at 1x/2x/4x corpus size, fitted exponent",
    "suite": "7. make test wall time (the tiny recipe + the suite), target <= 10 min on 2 cores",
}
GPU_RESULTS = REPO / "bench" / "RESULTS_gpu.md"


def table(rows: List[Row]) -> str:
    """The markdown results table."""
    out = ["| benchmark | figure | value | unit | baseline (same run) | ratio | target | met | notes |",
           "|---|---|---:|---|---|---:|---|---|---|"]
    for r in rows:
        base = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else r.baseline_name
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        out.append(f"| {r.bench} | {r.figure} | {fmt(r.value)} | {r.unit} | {base} | {fmt(r.ratio)} | "
                   f"{r.target} | {met} | {r.note} |")
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller pass of every benchmark (smoke test)")
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    p.add_argument("--demo-graph", type=Path, help="also decode with this graph dir "
                   "(<recipe>/data/lang/graph, with <recipe>/exp/am_ce/seed1 and its dev cuts)")
    p.add_argument("--demo-am", type=Path, help="AM dir for --demo-graph (default <recipe>/exp/am_ce/seed1)")
    p.add_argument("--demo-config", type=Path, help="recipe config whose decode section --demo-graph uses "
                   "(default <recipe>/conf/demo.yaml)")
    p.add_argument("--out", type=Path, help="results file (default: bench/RESULTS.md; with --quick "
                   "bench/.cache/RESULTS_quick.md)")
    args = p.parse_args()
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"--only: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    out = args.out or (CACHE / "RESULTS_quick.md" if args.quick else REPO / "bench" / "RESULTS.md")

    t_start = time.time()
    recipe = ensure_tiny_dataset(lambda m: print(m, flush=True))
    ctx = Context(recipe=recipe, quick=args.quick, demo_graph=args.demo_graph, demo_am=args.demo_am,
                  demo_config=args.demo_config)
    info = machine_info()  # load average at the start
    rows: List[Row] = []
    failed = []
    timings = {}
    for name in names:
        print(f"== {name}: {BENCHMARKS[name]}", flush=True)
        t0 = time.time()
        try:
            got = importlib.import_module(f"bench.{name}").run(ctx)
        except Exception as e:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            got = [Row(name, "FAILED", float("nan"), note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")]
        timings[name] = time.time() - t0
        for r in got:
            print(f"   {r.figure}: {fmt(r.value)} {r.unit}"
                  + (f" (ratio {fmt(r.ratio)} vs {r.baseline_name})" if r.ratio is not None else "")
                  + ("" if r.met is None else f" -> target {r.target}: {'met' if r.met else 'NOT met'}"),
                  flush=True)
        rows.extend(got)
    total = time.time() - t_start

    md = [f"# lm2am benchmarks{' (--quick)' if args.quick else ''}", "",
          f"Command: `.venv/bin/python bench/run_all.py{' --quick' if args.quick else ''}"
          f"{' --only ' + args.only if args.only else ''}` ({total / 60:.1f} min in all: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ").", "",
          f"Machine: {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
          f"load average at start {info['load']}; Python {info['python']}, torch {info['torch']}; "
          f"{info['date']}.", "",
          "Data: the tiny synth-en recipe (conf/tiny.yaml) in bench/.cache/tiny/s5. Every ratio is "
          "against a baseline measured in the same run (the machine is shared, so absolute times "
          "are noisy; the ratios less so).", "",
          table(rows)]
    if (REPO / "bench" / "data_prep_memory.py").is_file():
        ctx.notes.append("bench/data_prep_memory.py (peak memory of data prep on a fake LibriSpeech "
                         "of N and 2N utterances, in-memory vs streamed) is run on its own; see its docstring")
    if ctx.notes:
        md += ["Notes:", ""] + [f"- {n}" for n in ctx.notes] + [""]
    if ctx.profiles:
        md += ["## Profiles (where a target is missed)", ""]
        for k, v in ctx.profiles.items():
            md += [f"### {k}", "", "```", v.rstrip(), "```", ""]
    if GPU_RESULTS.is_file() and not args.quick:
        md += ["## GPU training throughput (bench/gpu_train.py, measured separately)", "",
               "Random features and random sparse top-k teacher tensors, model + losses only "
               "(no data loading); `time vs CE` is the hier/CE step-time ratio at the same precision.", "",
               GPU_RESULTS.read_text().rstrip(), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(md) + "\n")
    tmp.replace(out)
    print()
    print(table(rows))
    print(f"wrote {out} ({total / 60:.1f} min)")
    if failed:
        print(f"FAILED benchmarks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

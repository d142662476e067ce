#!/usr/bin/env python3
"""Stage: teacher posteriors of one part for one teacher LM, top-k per frame, Kaldi ark/scp.

Three modes:
  --job J --num-jobs N   compute shard J (1-based) only (run N of these in parallel, e.g. with
                         $cmd JOB=1:N ... --job JOB); a finished shard is skipped
  --merge --num-jobs N   after all shards: write post.scp + post_info.json, the storage report
                         (storage_report.txt: bytes and KL for several k) and --plot heatmaps
  (neither)              all N shards in this process, then the merge

Writes <out-dir>/post.<J>.{ark,scp}, post.scp, post_info.json, storage_report.txt,
plots/<cut>.png (layout: lm2am/lm/posteriors.py). top_k, temperature and mask_spacing come from
the config's 'lm' section (per-unit overrides applied), else from the teacher's own config.

e.g.: steps/compute_posteriors.py --config conf/demo.yaml --num-jobs 2 --lang-dir data/lang \\
        --tree-dir exp/tree exp/lm_senone data/targets train-synth exp/lm_senone/post_train-synth
"""
import argparse
import logging
from pathlib import Path

from lm2am.config import load_section
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker, atomic_write_text
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'lm')")
    p.add_argument("--job", type=int, help="compute this shard only (1..--num-jobs)")
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("--merge", action="store_true", help="only merge the finished shards (+ report, plots)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--num-threads", type=int, default=1,
                   help="torch CPU threads per job (output bytes are reproducible per thread count)")
    p.add_argument("--report-cuts", type=int, default=50, help="cuts in the storage report (0: none)")
    p.add_argument("--report-ks", default="1,2,4,8,16,32", help="k values of the storage report")
    p.add_argument("--report-spacing", default="4,8,16",
                   help="masked LM: KL of these mask spacings from the exact scheme, in the report")
    p.add_argument("--plot", type=int, default=1, help="heatmaps of this many cuts (0: none)")
    p.add_argument("--lang-dir", type=Path, help="for readable plot labels (phones, pieces)")
    p.add_argument("--tree-dir", type=Path, help="for readable senone labels in the plots")
    p.add_argument("model_dir", type=Path, help="teacher LM dir (final.pt), e.g. exp/lm_senone")
    p.add_argument("targets_dir", type=Path)
    p.add_argument("part")
    p.add_argument("out_dir", type=Path, help="e.g. exp/lm_senone/post_train-synth")
    args = p.parse_args()
    if args.num_jobs < 1:
        raise Lm2amError(f"--num-jobs must be >= 1, got {args.num_jobs}")
    log_name = f"compute_posteriors.{args.job}.log" if args.job else "compute_posteriors.log"
    setup_logging(args.out_dir / "log" / log_name)
    for f in (args.model_dir / "final.pt", args.targets_dir / f"targets_{args.part}.json"):
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the LM training and targets stages first")

    import torch

    from lm2am.lm.posteriors import (compute_posteriors, format_storage_report, merge_posteriors,
                                     storage_report)
    from lm2am.lm.train import load_lm

    torch.set_num_threads(max(1, args.num_threads))
    _, meta = load_lm(args.model_dir / "final.pt")
    unit = meta["unit"]
    opts = {}
    if args.config:
        from lm2am.lm.model import LmConfig

        cfg = load_section(args.config, "lm", LmConfig).for_unit(unit)
        opts = {"top_k": cfg.top_k, "temperature": cfg.temperature, "mask_spacing": cfg.mask_spacing}
    if args.job is not None:
        compute_posteriors(args.model_dir, args.targets_dir, args.part, args.out_dir, job=args.job,
                           num_jobs=args.num_jobs, device=args.device, **opts)
        return
    if not args.merge:
        for j in range(1, args.num_jobs + 1):
            compute_posteriors(args.model_dir, args.targets_dir, args.part, args.out_dir, job=j,
                               num_jobs=args.num_jobs, device=args.device, **opts)
    info = merge_posteriors(args.model_dir, args.targets_dir, args.part, args.out_dir,
                            num_jobs=args.num_jobs, **opts)
    print(f"{unit} posteriors {args.part}: {info['cuts']} cuts, {info['bytes_per_frame']} bytes/frame "
          f"(dense float32: {info['dense_float32_bytes_per_frame']})")

    marker = DoneMarker(args.out_dir / ".report.done",
                        {"cuts": args.report_cuts, "ks": args.report_ks, "plot": args.plot,
                         "spacing": args.report_spacing},
                        inputs=[args.out_dir / "post_info.json"])
    if marker.is_done():
        return
    if args.report_cuts > 0:
        ks = [int(k) for k in args.report_ks.split(",") if k.strip()]
        r = storage_report(args.model_dir, args.targets_dir, args.part, ks=ks,
                           num_cuts=args.report_cuts, device=args.device, post_dir=args.out_dir,
                           compare_spacing=[int(x) for x in args.report_spacing.split(",") if x.strip()],
                           **{k: v for k, v in opts.items() if k != "top_k"})
        text = format_storage_report(r)
        atomic_write_text(args.out_dir / "storage_report.txt", text)
        logging.info("storage report (%s):\n%s", args.out_dir / "storage_report.txt", text)
    if args.plot > 0:
        from lm2am.lm.plots_lm import plot_teacher_posteriors, unit_labels
        from lm2am.lm.tokens import target_tokens
        from lm2am.targets import read_targets

        tree = None
        if unit == "senone" and args.tree_dir is not None:
            from lm2am.tree import ContextTree

            tree = ContextTree.load(args.tree_dir / "tree.json")
        labels = unit_labels(unit, args.lang_dir, tree)
        reader = read_targets(args.targets_dir, args.part)
        for cut_id in sorted(reader, key=str.encode)[:args.plot]:
            t = reader[cut_id]
            ref = {"senone": t.senone, "phone": t.phone, "subword": t.subword_id}[unit].copy()
            ref[target_tokens(t, unit)[1] < 0] = -1
            path = args.out_dir / "plots" / f"{cut_id}.png"
            plot_teacher_posteriors(args.out_dir, cut_id, path, labels=labels, reference=ref)
            logging.info("plot: %s", path)
    marker.mark()


if __name__ == "__main__":
    main()

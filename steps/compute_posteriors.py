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
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main
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
    p.add_argument("--report-temperatures", default="0.5,1,2",
                   help="kept top-k mass and entropies at these storage temperatures, in the report")
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

    from lm2am.lm.stage import run_posteriors

    summary = run_posteriors(args.model_dir, args.targets_dir, args.part, args.out_dir, config=args.config,
                             job=args.job, num_jobs=args.num_jobs, merge=args.merge, device=args.device,
                             num_threads=args.num_threads, report_cuts=args.report_cuts,
                             report_ks=args.report_ks, report_spacing=args.report_spacing,
                             report_temperatures=args.report_temperatures, plot=args.plot,
                             lang_dir=args.lang_dir, tree_dir=args.tree_dir)
    if summary is not None:
        print(summary)


if __name__ == "__main__":
    main()

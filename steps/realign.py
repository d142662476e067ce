#!/usr/bin/env python3
"""Stage: neural realignment, force-aligning a part with a trained hybrid AM (lm2am.align.realign).

--prepare sets up <realign-dir> once: a copy of the AM, the topology and phones of the source
alignments, and the senone-to-state cover (from the tree the AM was trained on) and state priors
(from the AM's senone priors). Without
it, one job aligns its share of the cuts and writes <realign-dir>/{states,phones}_<part>.<job>
and words_<part>.<job>.ctm, the format of exp/ali_mono, for the tree and targets stages:
  steps/realign.py --prepare --am exp/am_ce/seed1/final.pt --tree exp/tree/tree.json \
    --src-ali exp/ali_mono exp/ali_am
  utils/run.sh JOB=1:2 exp/ali_am/log/align_train-synth.JOB.log \
    steps/realign.py --job JOB --num-jobs 2 --cuts data/fbank/cuts_train-synth.jsonl.gz --lang data/lang exp/ali_am
"""
import argparse
from pathlib import Path

from lm2am.align.realign import AM_FILE, REALIGN_FILE, prepare_realign_dir, realign_cuts
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.jobs import run_align_job
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help="set up the directory (needs --am --tree --src-ali)")
    p.add_argument("--am", type=Path, help="the AM to realign with (final.pt)")
    p.add_argument("--src-ali", type=Path, help="the alignments the AM's targets came from (exp/ali_mono)")
    p.add_argument("--tree", type=Path, help="the tree the AM was trained on (exp/tree/tree.json)")
    p.add_argument("--cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz to align")
    p.add_argument("--lang", type=Path, help="data/lang")
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prior-scale", type=float, default=1.0)
    p.add_argument("realign_dir", type=Path)
    args = p.parse_args()
    setup_logging()
    if args.prepare:
        missing = [o for o in ("am", "tree", "src_ali") if getattr(args, o) is None]
        if missing:
            raise Lm2amError(f"--prepare needs {', '.join('--' + m.replace('_', '-') for m in missing)}")
        marker = DoneMarker(args.realign_dir / ".prepare.done",
                            inputs=[args.am, args.am.parent / "priors.npy", args.tree, args.src_ali / "final.pt"])
        if marker.is_done():
            print(f"{args.realign_dir}: prepared already (same AM and alignments), skipping")
            return
        prepare_realign_dir(args.am, args.tree, args.src_ali, args.realign_dir)
        marker.mark()
        return
    if args.cuts is None or args.lang is None:
        raise Lm2amError("aligning needs --cuts and --lang (or --prepare first)")
    d = args.realign_dir
    run_align_job(args.cuts, args.job, args.num_jobs, d,
                  {"num_jobs": args.num_jobs, "prior_scale": args.prior_scale},
                  [d / AM_FILE, d / REALIGN_FILE, args.lang / "lexicon.txt"], "realign",
                  lambda cuts, name: realign_cuts(d, cuts, args.lang, name, device=args.device,
                                                  prior_scale=args.prior_scale))


if __name__ == "__main__":
    main()

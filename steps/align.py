#!/usr/bin/env python3
"""Stage: Viterbi forced alignment of one job's share of a part's cuts with a trained aligner.

Writes <ali-dir>/{states,phones}_<part>.<job>.{ark,scp} (Kaldi int vectors) and
<ali-dir>/words_<part>.<job>.ctm. Run through the job runner:
  utils/run.sh JOB=1:4 exp/ali_mono/log/align_train.JOB.log \
    steps/align.py --job JOB --num-jobs 4 data/fbank/cuts_train-synth.jsonl.gz data/lang exp/ali_mono
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.jobs import run_align_job  # light: a finished job skips before torch/k2 load
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("ali_dir", type=Path)
    args = p.parse_args()
    setup_logging()

    def align_job(cuts, name: str) -> None:
        from lm2am.align.pipeline import align_cuts

        align_cuts(args.ali_dir, cuts, args.lang_dir, args.ali_dir, name, device=args.device)

    run_align_job(args.cuts, args.job, args.num_jobs, args.ali_dir, {"num_jobs": args.num_jobs},
                  [args.ali_dir / "final.pt", args.lang_dir / "lexicon.txt"], "align", align_job)


if __name__ == "__main__":
    main()

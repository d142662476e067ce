#!/usr/bin/env python3
"""Stage: Viterbi forced alignment of one job's share of a part's cuts with a trained aligner.

Writes <ali-dir>/{states,phones}_<part>.<job>.{ark,scp} (Kaldi int vectors) and
<ali-dir>/words_<part>.<job>.ctm. Run through the job runner:
  utils/run.sh JOB=1:4 exp/ali_mono/log/align_train.JOB.log \
    steps/align.py --job JOB --num-jobs 4 data/fbank/cuts_train-synth.jsonl.gz data/lang exp/ali_mono
"""
import argparse
from pathlib import Path

from lm2am.align.pipeline import align_cuts, split_for_job
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker, atomic_write_text
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
    if not args.cuts.is_file():
        raise Lm2amError(f"{args.cuts}: missing; run the features stage")
    part = args.cuts.name.replace("cuts_", "").replace(".jsonl.gz", "")
    name = f"{part}.{args.job}"
    marker = DoneMarker(args.ali_dir / f".align_{name}.done", params={"num_jobs": args.num_jobs},
                        inputs=[args.cuts, args.ali_dir / "final.pt", args.lang_dir / "lexicon.txt"])
    if marker.is_done():
        print(f"align: {name} up to date, skipping")
        return
    from lhotse import CutSet

    # Kaldi's num_jobs file: readers take jobs 1..N, never stale files from a run with other nj.
    atomic_write_text(args.ali_dir / f"num_jobs_{part}", f"{args.num_jobs}\n")
    cuts = split_for_job(CutSet.from_file(args.cuts), args.job, args.num_jobs)
    align_cuts(args.ali_dir, cuts, args.lang_dir, args.ali_dir, name, device=args.device)
    marker.mark()


if __name__ == "__main__":
    main()

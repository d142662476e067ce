#!/usr/bin/env python3
"""Stage: Viterbi forced alignment of one job's share of a part's cuts with the GMM system.

Writes the k2 aligner's files into the GMM directory (<dir>/{states,phones}_<part>.<job>.{ark,scp},
words_<part>.<job>.ctm, num_jobs_<part>), so <dir> can replace exp/ali_mono as the alignment
directory of steps/build_tree.py, steps/make_targets.py and steps/score_alignment.py:
  utils/run.sh JOB=1:4 exp/mono_gmm/log/align_train.JOB.log \
    steps/align_gmm.py --config conf/tiny.yaml --job JOB --num-jobs 4 \
      data/fbank/cuts_train-synth.jsonl.gz data/lang exp/mono_gmm
"""
from lm2am.kaldi import kaldi_wheels

kaldi_wheels()  # before kaldifst/kaldi_decoder, or the process hangs

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from lm2am.config import load_section  # noqa: E402
from lm2am.errors import cli_main  # noqa: E402
from lm2am.gmm.config import GmmConfig  # noqa: E402
from lm2am.log import setup_logging  # noqa: E402


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'gmm': beams and scales)")
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("gmm_dir", type=Path)
    args = p.parse_args()
    setup_logging()
    cfg = load_section(args.config, "gmm", GmmConfig) if args.config else GmmConfig()
    align_params = {k: v for k, v in vars(cfg).items() if not k.startswith("decode_")}
    from lm2am.jobs import run_align_job  # light: a finished job skips before torch/k2 load

    def align_job(cuts, name: str) -> None:
        from lm2am.gmm.align import align_cuts

        align_cuts(args.gmm_dir, cuts, args.lang_dir, args.gmm_dir, name, cfg)

    run_align_job(args.cuts, args.job, args.num_jobs, args.gmm_dir,
                  {"num_jobs": args.num_jobs, "gmm": align_params},
                  [args.gmm_dir / "final.mdl", args.lang_dir / "lexicon.txt"], "align_gmm", align_job)


if __name__ == "__main__":
    main()

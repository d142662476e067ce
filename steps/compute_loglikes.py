#!/usr/bin/env python3
"""Stage: log-likelihoods of a trained AM on one part (main-output log-posteriors minus log
senone priors), as a Kaldi float32 matrix ark/scp for steps/decode.py; also <scp stem>.json
with the frame counts, the AM's subsampling factor (give it to steps/decode.py
--subsampling-factor) and its real-time factor. Works on any part with features (no targets
needed). An unchanged rerun is a no-op.

e.g.: steps/compute_loglikes.py --cmvn data/fbank/global_cmvn.ark \\
        --train-cuts data/targets/cuts_train-synth.jsonl.gz exp/am_ce/seed1/final.pt \\
        data/fbank/cuts_dev-synth.jsonl.gz exp/am_ce/seed1/decode_dev-synth/loglikes.scp
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cmvn", type=Path, help="global CMVN stats (default: the ones stored in the model)")
    p.add_argument("--train-cuts", type=Path,
                   help="training targets cuts, to count senone priors if <model dir>/priors.npy is missing")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n] (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=20000, help="padded frames per batch (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="recompute even if up to date")
    p.add_argument("model", type=Path, help="trained AM (exp/am_<system>/seed<k>/final.pt)")
    p.add_argument("cuts", type=Path, help="features manifest of the part (data/fbank/cuts_<part>.jsonl.gz)")
    p.add_argument("out_scp", type=Path, help="output scp (the ark and .json go next to it)")
    args = p.parse_args()
    setup_logging()

    from lm2am.am.loglikes import compute_loglikes

    info = compute_loglikes(args.model, args.cuts, args.out_scp, device=args.device, cmvn=args.cmvn,
                            train_cuts=args.train_cuts, max_frames=args.max_frames, force=args.force)
    print(f"{args.out_scp}: {info.utterances} utterances, {info.output_frames} frames x {info.num_pdfs} pdfs, "
          f"subsampling {info.subsampling_factor}, AM real-time factor {info.rtf:.4f}")


if __name__ == "__main__":
    main()

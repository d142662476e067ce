#!/usr/bin/env python3
"""Stage: global CMVN stats (Kaldi format, via kaldiio) from a part's fbank cuts.

e.g.: steps/compute_cmvn.py data/fbank/cuts_train-synth.jsonl.gz data/fbank/global_cmvn.ark
"""
import argparse
import logging
from pathlib import Path

from lm2am.data import compute_global_cmvn
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cuts", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    setup_logging()
    if not args.cuts.is_file():
        raise Lm2amError(f"{args.cuts}: cuts with features missing; run the features stage")
    marker = DoneMarker(args.out.with_name(f".{args.out.name}.done"), inputs=[args.cuts])
    if marker.is_done() and args.out.is_file():
        print(f"compute_cmvn: {args.out} up to date, skipping")
        return
    from lhotse import CutSet

    mean, std = compute_global_cmvn(CutSet.from_jsonl_lazy(args.cuts), args.out)  # streamed
    logging.info("global CMVN from %s: mean[0:3]=%s std[0:3]=%s -> %s", args.cuts, mean[:3], std[:3], args.out)
    marker.mark()


if __name__ == "__main__":
    main()

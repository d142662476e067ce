#!/usr/bin/env python3
"""Stage: flat-start training of the k2 monophone-state aligner on a part's fbank cuts.

Writes <dir>/final.pt and <dir>/history.json (log-likelihood per frame by round).

e.g.: steps/train_aligner.py --config conf/tiny.yaml data/fbank/cuts_train-synth.jsonl.gz data/lang exp/ali_mono
"""
import argparse
from pathlib import Path

from lm2am.align.flat_start import AlignConfig
from lm2am.align.pipeline import train_aligner
from lm2am.align.topo import HmmTopo
from lm2am.config import load_section
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (sections 'align', 'topo')")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("cuts", type=Path)
    p.add_argument("lang_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "train.log")
    cfg = load_section(args.config, "align", AlignConfig) if args.config else AlignConfig()
    topo = load_section(args.config, "topo", HmmTopo) if args.config else HmmTopo()
    for f in (args.cuts, args.lang_dir / "phones.txt", args.lang_dir / "lexicon.txt"):
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the earlier stages (features, lang)")
    marker = DoneMarker(args.out_dir / ".train.done", params={"align": vars(cfg), "topo": vars(topo)},
                        inputs=[args.cuts, args.lang_dir / "phones.txt", args.lang_dir / "lexicon.txt"])
    if marker.is_done() and (args.out_dir / "final.pt").is_file():
        print(f"train_aligner: {args.out_dir}/final.pt up to date, skipping")
        return
    from lhotse import CutSet

    train_aligner(CutSet.from_file(args.cuts), args.lang_dir, args.out_dir, cfg, topo,
                  max_utts=cfg.max_train_utts, device=args.device, source=str(args.cuts))
    marker.mark()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage: frame-level targets of one part for the three units (senone, monophone, subword),
from the aligner's alignments, the senone tree and the BPE model.

Writes <targets-dir>/{senone,phone,subword,...}_<part>.{ark,scp} (Kaldi int vectors),
<targets-dir>/cuts_<part>.jsonl.gz (fbank cuts with the targets attached as lhotse arrays) and,
with --plot, <targets-dir>/plots/<cut>.png (fbank with phone/senone boundaries). Frame counts
of targets and features are checked for every cut.

e.g.: steps/make_targets.py data/fbank/cuts_train-synth.jsonl.gz data/lang exp/ali_mono exp/tree data/targets
"""
import argparse
import logging
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging
from lm2am.targets import make_targets_for_part


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plot", type=int, default=1, help="plot this many cuts (0: none)")
    p.add_argument("--corpus-dir", type=Path, help="corpus with *.phones.txt reference timings for the plot")
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("ali_dir", type=Path)
    p.add_argument("tree_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / f"make_targets_{args.cuts.name.split('.')[0]}.log")
    part = args.cuts.name.replace("cuts_", "").replace(".jsonl.gz", "")
    inputs = [args.cuts, args.lang_dir / "bpe.model", args.tree_dir / "tree.json",
              args.ali_dir / f"num_jobs_{part}"]
    for f in inputs:
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the earlier stages (features, lang, align, tree)")
    marker = DoneMarker(args.out_dir / f".{part}.done", inputs=inputs)
    if marker.is_done() and (args.out_dir / f"cuts_{part}.jsonl.gz").is_file():
        print(f"make_targets: {part} up to date, skipping")
        return
    stats = make_targets_for_part(args.cuts, args.lang_dir, args.ali_dir, args.tree_dir, args.out_dir,
                                  part, num_plots=args.plot, corpus_dir=args.corpus_dir)
    logging.info("%s: targets for %d cuts (%d frames; %d not aligned and left out); frame counts "
                 "checked against features", part, stats["cuts"], stats["frames"], stats["unaligned"])
    marker.mark()


if __name__ == "__main__":
    main()

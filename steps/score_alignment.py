#!/usr/bin/env python3
"""Score forced alignments of any alignment directory (exp/ali_mono, exp/mono_gmm, ...) against
the corpus's reference phone timings (the synthesizers' own *.phones.txt), overall and per voice
family (speakers.tsv's engine column); writes <ali-dir>/accuracy_<part>.txt and .json.

e.g.: steps/score_alignment.py corpus train-synth data/lang exp/ali_mono
"""
import argparse
import json
import logging
from pathlib import Path

from lm2am.align.evaluate import score_ali_dir
from lm2am.errors import cli_main
from lm2am.io import write_if_changed
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", type=Path)
    p.add_argument("part")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("ali_dir", type=Path)
    args = p.parse_args()
    setup_logging()
    scores = score_ali_dir(args.corpus_dir, args.part, args.lang_dir, args.ali_dir)
    if not scores:
        print(f"score_alignment: no reference phone timings under {args.corpus_dir / args.part}; nothing to score")
        return
    lines = [f"{name:<10} {s.summary()}" for name, s in sorted(scores.items())]
    text = f"alignment accuracy vs reference timings, {args.part} ({args.ali_dir}):\n" + "\n".join(lines)
    write_if_changed(args.ali_dir / f"accuracy_{args.part}.txt", text + "\n")
    write_if_changed(args.ali_dir / f"accuracy_{args.part}.json",
                      json.dumps({k: v.as_dict() for k, v in sorted(scores.items())}, indent=1) + "\n")
    logging.info("%s", text)


if __name__ == "__main__":
    main()

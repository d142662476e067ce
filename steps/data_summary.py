#!/usr/bin/env python3
"""Print the corpus summary: hours, utterances, speakers and words per part, and the OOV report.

e.g.: steps/data_summary.py --parts train-synth,dev-synth --lang data/lang data/fbank
"""
import argparse
from pathlib import Path

from lm2am.data import corpus_summary
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import write_if_changed


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", required=True)
    p.add_argument("--lang", type=Path)
    p.add_argument("fbank_dir", type=Path)
    args = p.parse_args()
    from lhotse import CutSet

    cuts = {}
    for part in args.parts.split(","):
        f = args.fbank_dir / f"cuts_{part}.jsonl.gz"
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the features stage")
        cuts[part] = CutSet.from_file(f)
    text = corpus_summary(cuts)
    if args.lang and (args.lang / "oov_report.txt").is_file():
        # the OOV table only; the report goes on to list every g2p pronunciation
        report = (args.lang / "oov_report.txt").read_text().split("\n# g2p pronunciations")[0]
        text += "\n\n" + report.rstrip()
    write_if_changed(args.fbank_dir / "summary.txt", text + "\n")
    print(text)


if __name__ == "__main__":
    main()

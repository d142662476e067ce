#!/usr/bin/env python3
"""WER split by recording condition (clean / noisy / reverberant) and by base voice, one row per
decode directory, from the corpus's per-utterance descriptions (synth-en:
<corpus>/<part>/utt_info.tsv and <corpus>/speakers.tsv). Scores the dev-best scale's hypotheses
where the dev sweep left them (decode_<part>/scale_<best>/), otherwise decode_<part>/hyp.trn.

e.g.: steps/wer_breakdown.py --corpus corpus --part dev-synth --out exp/wer_breakdown_dev-synth.md \\
        ce=exp/am_ce/seed1/decode_dev-synth hier=exp/am_hier/seed1/decode_dev-synth
"""
import argparse
from pathlib import Path

from lm2am.config import name_and_dir
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import write_if_changed
from lm2am.log import setup_logging
from lm2am.report.breakdown import breakdown_table, synth_en_groups, wer_by_group


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="corpus dir with speakers.tsv and <part>/utt_info.tsv")
    p.add_argument("--part", required=True, help="part name, e.g. dev-synth")
    p.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    p.add_argument("rows", nargs="+", help="NAME=DECODE_DIR, one per table row")
    args = p.parse_args()
    setup_logging()
    groups = synth_en_groups(args.corpus, args.part)
    rows = {}
    for spec in args.rows:
        name, d = name_and_dir(spec, f"row {spec!r}: expected NAME=DECODE_DIR")
        for f in ("ref.trn", "hyp.trn"):
            if not (d / f).is_file():
                raise Lm2amError(f"{d / f} is missing; decode {args.part} first (stage 16)")
        rows[name] = wer_by_group(d, groups)
    title = f"# WER (%) on {args.part} by condition and voice (utterances per group in the header)\n\n"
    write_if_changed(args.out, title + breakdown_table(rows))
    print(args.out.read_text(), end="")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Score forced alignments against the corpus's reference phone timings (the synthesizers'
own *.phones.txt), overall and per voice family (speakers.tsv's engine column); writes
<ali-dir>/accuracy_<part>.txt.

e.g.: steps/score_alignment.py corpus train-synth data/lang exp/ali_mono
"""
import argparse
import logging
from pathlib import Path

from lm2am.align.evaluate import read_reference_phones, score_alignments
from lm2am.align.pipeline import read_alignments, read_phone_list
from lm2am.errors import cli_main
from lm2am.io import atomic_write_text
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
    refs = read_reference_phones(sorted((args.corpus_dir / args.part).rglob("*.phones.txt")))
    if not refs:
        print(f"score_alignment: no reference phone timings under {args.corpus_dir / args.part}; nothing to score")
        return
    groups = {}
    spk_file = args.corpus_dir / "speakers.tsv"
    if spk_file.is_file():
        rows = [line.split("\t") for line in spk_file.read_text().splitlines()]
        col = rows[0].index("engine") if "engine" in rows[0] else None
        engine = {r[0]: r[col] for r in rows[1:]} if col is not None else {}
        groups = {u: engine.get(u.split("-")[0], "?") for u in refs}
    alis = {k: v[1] for k, v in read_alignments(args.ali_dir, args.part).items()}
    scores = score_alignments(alis, refs, read_phone_list(args.lang_dir), groups=groups)
    lines = [f"{name:<10} {s.summary()}" for name, s in sorted(scores.items())]
    text = f"alignment accuracy vs reference timings, {args.part}:\n" + "\n".join(lines)
    atomic_write_text(args.ali_dir / f"accuracy_{args.part}.txt", text + "\n")
    logging.info("%s", text)


if __name__ == "__main__":
    main()

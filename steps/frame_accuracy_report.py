#!/usr/bin/env python3
"""Collect every system's dev frame accuracy (exp/am_*/seed*/eval_<part>.json) into a table,
printed and written to <exp>/frame_accuracy_<part>.md.

e.g.: steps/frame_accuracy_report.py exp dev-synth
"""
import argparse
from pathlib import Path

from lm2am.am.evaluate import frame_accuracy_table
from lm2am.errors import cli_main
from lm2am.io import write_if_changed


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir", type=Path)
    p.add_argument("part")
    args = p.parse_args()
    table = frame_accuracy_table(args.exp_dir, args.part)
    write_if_changed(args.exp_dir / f"frame_accuracy_{args.part}.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()

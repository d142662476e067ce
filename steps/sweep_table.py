#!/usr/bin/env python3
"""The dev table of a sweep: exp/sweep_<name>/dev_table.md (dev WER per variant, mean ± std
over seeds, from exp/am_<variant>/seed<k>/decode_<dev>/) and exp/sweep_<name>/picks.txt (per
family the variant with the lowest dev WER, on one line for --am-systems). Prints the table.

e.g.: steps/sweep_table.py --dev-part dev-synth --seeds "1 2" conf/sweeps/kd.yaml exp
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-part", default="dev-synth", help="(default: %(default)s)")
    p.add_argument("--seeds", default="", help="seeds of every variant (default: every seed* dir there is)")
    p.add_argument("--systems-dir", type=Path, help="where the base systems are (default: the sweep's ../systems)")
    p.add_argument("--out-dir", type=Path, help="default: <exp_dir>/sweep_<name>")
    p.add_argument("sweep", type=Path, help="the sweep YAML")
    p.add_argument("exp_dir", type=Path)
    args = p.parse_args()
    setup_logging()

    from lm2am.am.sweep import load_sweep
    from lm2am.report.sweep import write_sweep_table

    sweep = load_sweep(args.sweep, args.systems_dir)
    picks = write_sweep_table(args.exp_dir, sweep, args.seeds.split() or None, args.dev_part, args.out_dir)
    out = args.out_dir or args.exp_dir / f"sweep_{sweep.name}"
    print((out / "dev_table.md").read_text(), end="")
    if picks:
        print(f"Test parts with the picks ({out / 'picks.txt'}): run.sh --stage 14 --am-systems "
              f"\"ce {' '.join(picks.values())}\"")


if __name__ == "__main__":
    main()

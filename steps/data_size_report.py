#!/usr/bin/env python3
"""Stage 17 with --data-sizes: the data-size curve exp/data_size.md (WER per system and
training-data size, mean ± std over seeds, relative change vs the baseline at each size) and
exp/plots/data_size.png (WER vs training hours, one line per system, error bars = seed std),
from the decode directories of stage 16: exp/am_<system>_h<hours>/seed<k>/decode_<part>/ for
each --sizes value and exp/am_<system>/seed<k>/ for the whole training part.
See lm2am/report/data_size.py.

e.g.: steps/data_size_report.py --dev-part dev-synth --test-parts "test-synth test-asterisk" \\
        --sizes "0.5 1" --train-cuts data/targets/cuts_train-synth.jsonl.gz exp ce:1,2,3 interp_0.1:1 hier:1,2,3
"""
import argparse
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main
from lm2am.log import setup_logging


def _sizes(text: str):
    try:
        sizes = [float(s) for s in text.split()]
    except ValueError:
        raise Lm2amError(f"--sizes {text!r}: expected hours, e.g. '0.5 1'") from None
    if not sizes:
        raise Lm2amError("--sizes is empty; give the subset hours, e.g. '0.5 1'")
    return sizes


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-part", default="dev-synth", help="(default: %(default)s)")
    p.add_argument("--test-parts", default="test-synth", help="space-separated (default: %(default)s)")
    p.add_argument("--sizes", required=True, help="the subset hours of --data-sizes, e.g. '0.5 1'")
    p.add_argument("--train-cuts", type=Path,
                   help="training cuts: the whole part's hours, for runs without train_data.json")
    p.add_argument("--baseline", help="system of the relative changes (default: ce if given, else the first)")
    p.add_argument("--out", type=Path, help="default: <exp_dir>/data_size.md")
    p.add_argument("--plot", type=Path, help="default: <exp_dir>/plots/data_size.png")
    p.add_argument("exp_dir", type=Path)
    p.add_argument("systems", nargs="+",
                   help="SYSTEM[:SEED,SEED,...] in table order, its seeds at every size (default: every seed* dir)")
    args = p.parse_args()
    setup_logging()

    from lm2am.report.data_size import write_data_size
    from lm2am.report.results import parse_system_spec

    full_hours, train_part = None, ""
    if args.train_cuts is not None:
        if not args.train_cuts.is_file():
            raise Lm2amError(f"--train-cuts {args.train_cuts}: no such file; run the targets stage")
        from lhotse import CutSet

        full_hours = sum(c.duration for c in CutSet.from_file(args.train_cuts)) / 3600
        train_part = args.train_cuts.name.removeprefix("cuts_").removesuffix(".jsonl.gz")
    systems = [parse_system_spec(s) for s in args.systems]
    write_data_size(args.exp_dir, systems, _sizes(args.sizes), args.dev_part, args.test_parts.split(), full_hours,
                    args.baseline, args.out, args.plot, train_part)
    out = args.out or args.exp_dir / "data_size.md"
    print(out.read_text(), end="")


if __name__ == "__main__":
    main()

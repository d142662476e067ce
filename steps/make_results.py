#!/usr/bin/env python3
"""Stage: the results table exp/RESULTS.md (dev/test WER as mean ± std over seeds, relative
change vs the baseline, dev frame accuracy, best acoustic scale, real-time factors) and the
bar chart exp/plots/wer_systems.png, from the decode directories of stage 16
(exp/am_<system>/seed<k>/decode_<part>/). Rows follow the order of SYSTEM arguments; each is
SYSTEM or SYSTEM:SEED,SEED,... (without seeds: every exp/am_<system>/seed* directory).
--extra-row NAME=DIR adds a row from any directory with DIR/decode_<part>/ (or
DIR/seed*/decode_<part>/), e.g. a GMM baseline. Below the table: each WER's 95 % bootstrap
interval and, per test part, seed-by-seed NIST sctk tests (MAPSSWE, sign, Wilcoxon) of every row
vs the baseline (lm2am/report/significance.py; the sc_stats reports in exp/significance/);
this needs sctk (apt-get install sctk) unless --no-significance.

e.g.: steps/make_results.py --config conf/demo.yaml --dev-part dev-synth \\
        --test-parts "test-synth test-asterisk" --scales "0.05 0.1 0.2" exp ce:1,2,3 interp_0.1:1 hier:1,2,3
"""
import argparse
from pathlib import Path

from lm2am.config import name_and_dir
from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe config named in the header")
    p.add_argument("--dev-part", default="dev-synth", help="part whose WER chose the scale (default: %(default)s)")
    p.add_argument("--test-parts", default="test-synth test-asterisk",
                   help="space-separated test parts (default: %(default)s)")
    p.add_argument("--scales", default="", help="acoustic scales swept on the dev part (for the header)")
    p.add_argument("--baseline", help="row for the relative change (default: ce if present, else the first)")
    p.add_argument("--extra-row", action="append", default=[], metavar="NAME=DIR",
                   help="another row from DIR/decode_<part>/ (repeatable)")
    p.add_argument("--append", action="append", default=[], type=Path, metavar="FILE",
                   help="a Markdown file appended as a section after the table (repeatable)")
    p.add_argument("--out", type=Path, help="default: <exp_dir>/RESULTS.md")
    p.add_argument("--plot", type=Path, help="default: <exp_dir>/plots/wer_systems.png")
    p.add_argument("--strict", action="store_true", help="a missing result is an error, not a note")
    p.add_argument("--no-significance", dest="significance", action="store_false",
                   help="no significance tests and intervals (they need NIST sctk)")
    p.add_argument("exp_dir", type=Path)
    p.add_argument("systems", nargs="*", help="SYSTEM[:SEEDS] in table order")
    args = p.parse_args()
    setup_logging()

    from lm2am.report.results import parse_system_spec
    from lm2am.report.tables import make_results

    systems = [parse_system_spec(s) for s in args.systems]
    extra = [name_and_dir(e, f"--extra-row {e!r}: expected NAME=DIR") for e in args.extra_row]
    tests = args.test_parts.split()
    seeds = "; ".join(f"{n}: {', '.join(s) if s else 'all found'}" for n, s in systems)
    notes = [f"Config: `{args.config}`." if args.config else "",
             f"Parts: dev `{args.dev_part}`, test {', '.join(f'`{t}`' for t in tests) or 'none'}.",
             f"Seeds: {seeds}." if systems else "",
             (f"Acoustic scale: swept over {', '.join(args.scales.split())} on `{args.dev_part}` for each model "
              "(one set of lattices); each model's dev-best scale decodes its test parts." if args.scales.strip()
              else "Acoustic scale: each model's dev-best scale (decode_<dev>/best_scale) decodes its test parts.")]
    rows = make_results(args.exp_dir, systems, args.dev_part, tests, extra, args.baseline, args.out, args.plot,
                        [f"- {n}" for n in notes if n], args.strict, args.append,
                        significance=args.significance)
    out = args.out or args.exp_dir / "RESULTS.md"
    print(out.read_text(), end="")
    print(f"{out}: {len(rows)} rows")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Expand a sweep file (conf/sweeps/<name>.yaml: system variants as a grid or a list per
family, over a base system of conf/systems/) into one system file per variant,
<out-dir>/<variant>.yaml, every one checked like a system file (an unknown key is a one-line
error naming the sweep file). Prints the variant names on one line (for --am-systems).
Format and naming: lm2am/am/sweep.py.

e.g.: steps/expand_sweep.py --config conf/demo.yaml conf/sweeps/kd.yaml conf/systems
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config: check the variants against its am section")
    p.add_argument("--systems-dir", type=Path, help="where the base systems are (default: the sweep's ../systems)")
    p.add_argument("--dry-run", action="store_true", help="check and print the names, write nothing")
    p.add_argument("sweep", type=Path, help="the sweep YAML")
    p.add_argument("out_dir", type=Path, help="where the system files go (conf/systems)")
    args = p.parse_args()
    setup_logging()

    from lm2am.am.sweep import load_sweep, write_variants

    sweep = load_sweep(args.sweep, args.systems_dir, args.config)
    if not args.dry_run:
        write_variants(sweep, args.out_dir)
    print(" ".join(v.name for v in sweep.variants))


if __name__ == "__main__":
    main()

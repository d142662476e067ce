#!/usr/bin/env python3
"""Check a recipe config before any stage runs: unknown sections/keys and wrong types are
one-line errors naming the key.

e.g.: steps/check_config.py conf/demo.yaml
"""
import argparse
from pathlib import Path

from lm2am.config import check_config
from lm2am.errors import cli_main


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    check_config(p.parse_args().config)


if __name__ == "__main__":
    main()

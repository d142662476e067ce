#!/usr/bin/env python3
"""Print the done-marker fingerprint (lm2am.io.fingerprint: the same value a DoneMarker file
holds) of some parameters, config sections and input files, for shell stages that chain
several steps and must skip the whole chain when nothing changed:

    fp=$(steps/fingerprint.py --config conf/demo.yaml --section decode --param "scale=0.1" \\
           exp/am_ce/seed1/final.pt data/fbank/cuts_dev-synth.jsonl.gz)
    [ "$(cat $dir/.done 2>/dev/null)" = "$fp" ] && echo skipping

The sections are hashed as written (not with their defaults filled in); a missing input file counts as missing (its
fingerprint changes once it exists).
"""
import argparse
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config whose --section(s) are hashed")
    p.add_argument("--section", action="append", default=[], help="config section (repeatable)")
    p.add_argument("--param", action="append", default=[], help="any string to hash (repeatable)")
    p.add_argument("inputs", nargs="*", type=Path, help="input files or directories (path, size, mtime)")
    args = p.parse_args()

    from lm2am.config import SECTIONS, read_yaml
    from lm2am.io import fingerprint

    params = {"param": args.param}
    if args.section and args.config is None:
        raise Lm2amError("--section needs --config")
    data = read_yaml(args.config) if args.config else {}
    for sec in args.section:
        if sec not in SECTIONS:
            raise Lm2amError(f"--section {sec}: unknown section; valid sections are: {', '.join(SECTIONS)}")
        # the section as written (stage 0 validated it); importing its dataclass would load torch
        params[sec] = data.get(sec)
    print(fingerprint(params, args.inputs))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Check the data of each part at a stage boundary (like Kaldi's utils/validate_data_dir.sh):
manifests (lhotse validation, unique ids, supervisions inside recordings, transcripts),
features (present, readable, frame counts = duration) and targets (readable, frame counts =
feature frames), for whichever of --manifest-dir / --fbank-dir / --targets-dir are given.

Prints one verdict line per part; the first problem stops with one ERROR line naming the file,
the cut and the fix (exit 1).

e.g.: steps/validate_data.py --manifest-dir data/manifests --fbank-dir data/fbank \\
        --targets-dir data/targets --parts train-synth,dev-synth
"""
import argparse
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main
from lm2am.data import validate_part


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", required=True, help="comma-separated part names")
    p.add_argument("--manifest-dir", type=Path, help="e.g. data/manifests")
    p.add_argument("--fbank-dir", type=Path, help="e.g. data/fbank")
    p.add_argument("--targets-dir", type=Path, help="e.g. data/targets")
    p.add_argument("--no-read-features", action="store_true",
                   help="check feature files exist but do not read every matrix back")
    args = p.parse_args()
    if not (args.manifest_dir or args.fbank_dir or args.targets_dir):
        raise Lm2amError("validate_data.py: give at least one of --manifest-dir, --fbank-dir, "
                         "--targets-dir")
    for part in [x for x in args.parts.split(",") if x]:
        try:
            report = validate_part(part, args.manifest_dir, args.fbank_dir, args.targets_dir,
                                   read_features=not args.no_read_features)
        except Lm2amError as e:
            print(f"validate_data: {part}: FAILED", flush=True)
            raise Lm2amError(f"validate_data: {part}: {e}") from None
        print(f"validate_data: {report.verdict()}", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage: LibriSpeech-layout corpus -> validated lhotse manifests, one set per part.

e.g.: steps/make_manifests.py --config conf/tiny.yaml --parts train-synth,dev-synth corpus data/manifests

--lazy streams each part chapter by chapter (memory flat in the part's size; LibriSpeech 960 h).
"""
import argparse
from pathlib import Path

from lm2am.config import load_section
from lm2am.data import ManifestConfig, manifest_paths, prepare_manifests, prepare_manifests_lazy
from lm2am.errors import cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'manifests')")
    p.add_argument("--parts", required=True, help="comma-separated part names, e.g. train-synth,dev-synth")
    p.add_argument("--nj", type=int, default=2, help="threads for reading audio headers")
    p.add_argument("--lazy", action="store_true",
                   help="stream chapter by chapter instead of loading a part in memory (large corpora)")
    p.add_argument("corpus_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "make_manifests.log")
    cfg = load_section(args.config, "manifests", ManifestConfig) if args.config else ManifestConfig()
    for part in args.parts.split(","):
        marker = DoneMarker(args.out_dir / f".{part}.done", params=vars(cfg),
                            inputs=[args.corpus_dir / part])
        if marker.is_done() and manifest_paths(args.out_dir, part)["cuts"].is_file():
            print(f"make_manifests: {part} already done, skipping")
            continue
        if args.lazy:
            prepare_manifests_lazy(args.corpus_dir, part, args.out_dir, cfg, num_jobs=args.nj)
        else:
            prepare_manifests(args.corpus_dir, [part], args.out_dir, cfg, num_jobs=args.nj)
        marker.mark()


if __name__ == "__main__":
    main()

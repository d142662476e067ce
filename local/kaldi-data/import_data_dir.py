#!/usr/bin/env python3
"""Import a Kaldi data directory (wav.scp, text, utt2spk, optional segments, spk2gender) as the
lhotse manifests stage 3 writes: <manifest-dir>/{recordings,supervisions,cuts}_<part>.jsonl.gz.

Every input is checked first; a problem stops with one line naming the file and line. Pipe
entries in wav.scp ('sox in.sph -t wav - |') are kept as commands. An unchanged rerun is a no-op.

e.g.: local/kaldi-data/import_data_dir.py data/train_clean train-kaldi data/manifests
"""
import argparse
from pathlib import Path

from lm2am.corpus.kaldi_dir import audio_files, import_kaldi_data_dir
from lm2am.data import manifest_paths
from lm2am.errors import cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sampling-rate", type=int, default=16000,
                   help="expected sample rate of every recording (default 16000; no resampling)")
    p.add_argument("data_dir", type=Path, help="Kaldi data directory")
    p.add_argument("part", help="part name for the manifests, e.g. train-kaldi")
    p.add_argument("manifest_dir", type=Path, help="output directory, e.g. data/manifests")
    args = p.parse_args()
    setup_logging(args.manifest_dir / "log" / f"import_data_dir_{args.part}.log")
    # the data dir's files, and the size and mtime of every audio file wav.scp names (a
    # replaced, truncated or deleted recording re-runs the import; pipe commands cannot be seen)
    marker = DoneMarker(args.manifest_dir / f".{args.part}.done",
                        params={"data_dir": str(args.data_dir.resolve()),
                                "sampling_rate": args.sampling_rate},
                        inputs=[args.data_dir, *audio_files(args.data_dir)])
    if marker.is_done() and manifest_paths(args.manifest_dir, args.part)["cuts"].is_file():
        print(f"import_data_dir: {args.part} already done, skipping")
        return
    cuts = import_kaldi_data_dir(args.data_dir, args.part, args.manifest_dir,
                                 sampling_rate=args.sampling_rate)
    marker.mark()
    print(f"import_data_dir: {args.part}: {len(cuts)} utterances -> {args.manifest_dir}")


if __name__ == "__main__":
    main()

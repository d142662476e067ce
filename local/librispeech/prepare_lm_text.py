#!/usr/bin/env python3
"""LM text of the LibriSpeech recipe: openslr.org/11's librispeech-lm-norm.txt(.gz) when it exists
(books disjoint from dev/test; a deterministic sample of --max-sentences lines), else the
training part's transcripts, with a warning that says so.

One upper-case sentence per line, written atomically; re-running with the same inputs and options
is a no-op.

e.g.: local/librispeech/prepare_lm_text.py --lm-norm /data/librispeech-lm-norm.txt \\
        --max-sentences 500000 --manifests data/manifests --train-part train-clean-100 data/local/lm/lm_text.txt
"""
from __future__ import annotations

import argparse
import gzip
import logging
import random
from pathlib import Path
from typing import Iterator, List, Optional

from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker, atomic_path
from lm2am.log import setup_logging


def find_lm_norm(path: Path) -> Optional[Path]:
    """``path`` or ``path.gz`` if either exists."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


def read_lines(path: Path) -> Iterator[str]:
    """Non-empty, stripped, upper-cased lines of a (gzipped) text file, streamed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for line in f:
            line = line.strip()
            if line:
                yield line.upper()


def sample_lines(lines: Iterator[str], k: Optional[int], seed: int = 1) -> List[str]:
    """A uniform sample of ``k`` lines (reservoir sampling: memory O(k)), in file order; all if k is None."""
    if k is None:
        return list(lines)
    rng = random.Random(seed)
    reservoir: List[tuple] = []
    for i, line in enumerate(lines):
        if i < k:
            reservoir.append((i, line))
        else:
            j = rng.randint(0, i)
            if j < k:
                reservoir[j] = (i, line)
    return [line for _, line in sorted(reservoir)]


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm-norm", type=Path, required=True, help="librispeech-lm-norm.txt (or .txt.gz); may be absent")
    p.add_argument("--max-sentences", type=int, default=None, help="sample this many LM sentences (default: all)")
    p.add_argument("--manifests", type=Path, default=Path("data/manifests"))
    p.add_argument("--train-part", required=True, help="its transcripts are the fallback LM text")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    setup_logging()
    src = find_lm_norm(args.lm_norm)
    sups = args.manifests / f"supervisions_{args.train_part}.jsonl.gz"
    if src is None and not sups.is_file():
        raise Lm2amError(f"{sups}: missing, and no LM text at {args.lm_norm}; run the manifest stage first")
    marker = DoneMarker(args.out.with_name(f".{args.out.name}.done"), params={"max": args.max_sentences},
                        inputs=[src] if src else [sups])
    if marker.is_done() and args.out.is_file():
        print(f"prepare_lm_text: {args.out} up to date, skipping")
        return
    if src is not None:
        lines = sample_lines(read_lines(src), args.max_sentences)
        logging.info("LM text: %d sentences of %s%s", len(lines), src,
                     f" (a sample of {args.max_sentences})" if args.max_sentences else "")
    else:
        from lhotse import SupervisionSet

        lines = [s.text.upper() for s in SupervisionSet.from_jsonl_lazy(sups) if s.text and s.text.strip()]
        logging.warning("LM text: %s not found (nor .gz); using the %d training transcripts of %s instead "
                        "(a much weaker LM; get librispeech-lm-norm.txt.gz from openslr.org/11)",
                        args.lm_norm, len(lines), args.train_part)
    if not lines:
        raise Lm2amError(f"no LM sentences in {src or sups}; check the file")
    with atomic_path(args.out) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    marker.mark()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate the synth-en corpus (flite/festival/espeak-ng speech) in LibriSpeech layout.

Writes <corpus-dir>/{train,dev,test}-synth, speakers.tsv, lm_text/ and stats.txt; an unchanged
rerun is a no-op, a killed run resumes with the unfinished parts. Needs the Debian packages
flite, festival (+ festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts), espeak-ng, sox
and asterisk-moh-opsound-wav (music noise), plus wordnet-base/fortunes/bible-kjv for text.

e.g.: local/synth-en/make_corpus.py --config conf/tiny.yaml --nj 2 corpus
"""
import argparse
import dataclasses
import logging
from pathlib import Path

from lm2am.config import load_section
from lm2am.corpus.synth_en import SynthConfig, make_corpus
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'corpus'; default: demo size)")
    p.add_argument("--nj", type=int, help="parallel processes (overrides corpus.nj)")
    p.add_argument("corpus_dir", type=Path)
    args = p.parse_args()
    setup_logging()
    cfg = load_section(args.config, "corpus", SynthConfig) if args.config else SynthConfig()
    if args.nj is not None:
        try:
            cfg = dataclasses.replace(cfg, nj=args.nj)  # re-validates
        except ValueError as e:
            raise Lm2amError(f"--nj {args.nj}: {e}") from None
    marker = DoneMarker(args.corpus_dir / ".done", params=cfg.fingerprint_params())
    if marker.is_done():
        logging.getLogger("lm2am").info("make_corpus: %s already generated with this config, "
                                        "skipping", args.corpus_dir)
        return
    make_corpus(args.corpus_dir, cfg)
    marker.mark()
    logging.getLogger("lm2am").info("make_corpus: wrote %s", args.corpus_dir)


if __name__ == "__main__":
    main()

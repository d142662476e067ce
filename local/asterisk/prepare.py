#!/usr/bin/env python3
"""Real-speech check set: decode the Asterisk G.722 prompts into <corpus-dir>/test-asterisk.

Writes LibriSpeech layout (FLAC + trans.txt, speaker 9000 by default) plus prompt_map.tsv;
an unchanged rerun is a no-op. Needs Debian asterisk-core-sounds-en-g722 (audio) and
asterisk-core-sounds-en (transcripts).

e.g.: local/asterisk/prepare.py --config conf/tiny.yaml corpus
"""
import argparse
import logging
from pathlib import Path

from lm2am.config import load_section, to_dict
from lm2am.corpus.asterisk import (PART, AsteriskConfig, find_sounds_dir, find_transcripts,
                                   format_stats, prepare_asterisk)
from lm2am.errors import cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'asterisk')")
    p.add_argument("--sounds-dir", type=Path, help="directory of the *.g722 prompts "
                   "(default: found under /usr/share/asterisk/sounds/en*)")
    p.add_argument("--transcripts", type=Path, help="core-sounds-en.txt.gz "
                   "(default: /usr/share/doc/asterisk-core-sounds-en/)")
    p.add_argument("corpus_dir", type=Path,
                   help="corpus directory; the part goes to <corpus-dir>/test-asterisk")
    args = p.parse_args()
    setup_logging(args.corpus_dir / "log" / "prepare_asterisk.log")
    cfg = load_section(args.config, "asterisk", AsteriskConfig) if args.config else AsteriskConfig()
    sounds = find_sounds_dir(args.sounds_dir)
    transcripts = find_transcripts(args.transcripts)
    marker = DoneMarker(args.corpus_dir / f".{PART}.done",
                        params={**to_dict(cfg), "sounds_dir": str(sounds),
                                "transcripts": str(transcripts)},
                        inputs=[sounds, transcripts])
    if marker.is_done() and (args.corpus_dir / PART).is_dir():
        print(f"prepare_asterisk: {args.corpus_dir / PART} already done, skipping")
        return
    stats = prepare_asterisk(args.corpus_dir, cfg, sounds_dir=sounds, transcripts=transcripts)
    marker.mark()
    logging.getLogger("lm2am").info("wrote %s", args.corpus_dir / PART)
    print(format_stats(stats))


if __name__ == "__main__":
    main()

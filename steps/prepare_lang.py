#!/usr/bin/env python3
"""Stage: lang dir (lexicon, phones, words, OOV report, BPE model) from the AM transcripts in
the supervision manifests and the LM text pool.

e.g.: steps/prepare_lang.py --config conf/tiny.yaml --manifests data/manifests \\
        --parts train-synth,dev-synth,test-synth --lm-text corpus/lm_text/lm_text.txt data/lang
"""
import argparse
from pathlib import Path

from lm2am.config import load_section, to_dict
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.lang import LangConfig, prepare_lang
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'lang')")
    p.add_argument("--manifests", type=Path, default=Path("data/manifests"),
                   help="directory with supervisions_<part>.jsonl.gz (default: %(default)s)")
    p.add_argument("--parts", required=True, help="comma-separated AM parts, e.g. train-synth,dev-synth")
    p.add_argument("--lm-text", type=Path, help="LM text pool, one normalized sentence per line")
    p.add_argument("lang_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.lang_dir / "log" / "prepare_lang.log")
    cfg = load_section(args.config, "lang", LangConfig) if args.config else LangConfig()

    parts = [x for x in args.parts.split(",") if x]
    sup_files = {part: args.manifests / f"supervisions_{part}.jsonl.gz" for part in parts}
    for part, path in sup_files.items():
        if not path.is_file():
            raise Lm2amError(f"{path}: supervisions of part '{part}' missing; run the manifests stage "
                             "(steps/make_manifests.py) or fix --parts")
    if args.lm_text is not None and not args.lm_text.is_file():
        raise Lm2amError(f"LM text {args.lm_text} does not exist; run the corpus stage or fix --lm-text")
    inputs = list(sup_files.values()) + ([args.lm_text] if args.lm_text else [])
    marker = DoneMarker(args.lang_dir / ".done", params=to_dict(cfg), inputs=inputs)
    if marker.is_done():
        print(f"prepare_lang: {args.lang_dir} up to date, skipping")
        return

    from lhotse import SupervisionSet

    am_texts = {part: [s.text or "" for s in SupervisionSet.from_file(path)]
                for part, path in sup_files.items()}
    report = prepare_lang(args.lang_dir, am_texts, args.lm_text, cfg)
    marker.mark()
    print(report.summary())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage: train the teacher LM of one unit (senone, phone or subword) on the LM text pool plus
the AM training transcripts; report dev (pseudo-)perplexity against a unigram model.

Training text: the LM text (--lm-text, text -> unit tokens via lexicon / tree / BPE, capped by
lm.max_lm_sentences) plus, with lm.include_am_text, the AM training transcripts: their exact
alignment-side token sequences from the targets (--targets-dir/--train-part), or their text
(--train-cuts). Dev: the text of --dev-cuts / --dev-text, else the last lm.max_dev_sentences
LM-text sentences (held out from training).

Writes <out-dir>/final.pt, report.json, checkpoint.pt (resume after a kill: just rerun) and
log/train_lm.log.

e.g.: steps/train_lm.py --config conf/demo.yaml --unit senone --tree-dir exp/tree \\
        --lm-text corpus/lm_text/lm_text.txt --targets-dir data/targets --train-part train-synth \\
        --dev-cuts data/fbank/cuts_dev-synth.jsonl.gz data/lang exp/lm_senone
"""
import argparse
import logging
import sys
from pathlib import Path

from lm2am.config import load_section
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'lm')")
    p.add_argument("--unit", required=True, choices=["senone", "phone", "subword"])
    p.add_argument("--tree-dir", type=Path, help="senone tree dir (tree.json); needed for --unit senone")
    p.add_argument("--lm-text", type=Path, help="LM text pool, one sentence per line")
    p.add_argument("--targets-dir", type=Path, help="frame targets dir: AM transcripts as aligned tokens")
    p.add_argument("--train-part", default="train-synth", help="targets part of the AM training set")
    p.add_argument("--train-cuts", type=Path, help="AM training cuts (their text) instead of --targets-dir")
    p.add_argument("--dev-cuts", type=Path, help="dev cuts: their transcripts are the dev text")
    p.add_argument("--dev-text", type=Path, help="dev text file, one sentence per line")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "train_lm.log")
    logging.info("%s", " ".join(sys.argv))

    from lm2am.lm.model import LmConfig

    base = load_section(args.config, "lm", LmConfig) if args.config else LmConfig()
    cfg = base.for_unit(args.unit)
    inputs = [args.lang_dir / "lexicon.txt", args.lang_dir / "phones.txt", args.lang_dir / "bpe.model"]
    if args.unit == "senone":
        if args.tree_dir is None:
            raise Lm2amError("--unit senone needs --tree-dir (the senone tree)")
        inputs.append(args.tree_dir / "tree.json")
    if args.targets_dir is not None:
        inputs.append(args.targets_dir / f"targets_{args.train_part}.json")
    inputs += [x for x in (args.lm_text, args.train_cuts, args.dev_cuts, args.dev_text) if x is not None]
    for f in inputs:
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the earlier stages (corpus, lang, tree, targets)")
    marker = DoneMarker(args.out_dir / ".done", params={"unit": args.unit, **cfg.training_dict()}, inputs=inputs)
    if marker.is_done() and (args.out_dir / "final.pt").is_file():
        print(f"train_lm: {args.out_dir}/final.pt up to date, skipping")
        return

    import torch

    from lm2am.lm.stage import lm_training_data
    from lm2am.lm.train import train_lm

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    data = lm_training_data(args.unit, cfg, args.lang_dir, args.tree_dir, args.lm_text, args.targets_dir,
                            args.train_part, args.train_cuts, args.dev_cuts, args.dev_text)
    train_lm(args.unit, data.train, data.dev, data.vocab_size, cfg, args.out_dir, device=args.device,
             train_spans=data.train_spans, dev_spans=data.dev_spans)
    marker.mark()


if __name__ == "__main__":
    main()

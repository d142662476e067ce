#!/usr/bin/env python3
"""Stage: score hypotheses against references (WER, errs file, trn files, sclite cross-check).

References and hypotheses: Kaldi text (``utt w1 w2 ...``) or sclite trn (``w1 w2 (utt)``);
references may also be a lhotse cuts/supervisions manifest. Writes wer-<set>, errs-<set>.txt,
ref.trn, hyp.trn into <out-dir> (see lm2am/decode/score.py).

e.g.: steps/score.py --set-name test data/fbank/cuts_test-synth.jsonl.gz exp/am_ce/decode_test/hyp.txt \\
        exp/am_ce/decode_test
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set-name", help="name in the score files (default: the out-dir name without 'decode_')")
    p.add_argument("--no-sclite", action="store_true", help="skip the sclite cross-check")
    p.add_argument("ref", type=Path, help="Kaldi text, .trn or lhotse manifest")
    p.add_argument("hyp", type=Path, help="Kaldi text or .trn")
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "score.log")
    from lm2am.decode.score import read_references, score_set

    refs = read_references(args.ref)
    hyps = read_references(args.hyp)
    set_name = args.set_name or args.out_dir.name.replace("decode_", "")
    stats = score_set(refs, hyps, args.out_dir, set_name, use_sclite=not args.no_sclite)
    print(f"{set_name}: {stats.summary_line()}")


if __name__ == "__main__":
    main()

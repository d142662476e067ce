#!/usr/bin/env python3
"""Stage: decode one set with the GMM monophone system over its own HCLG (Kaldi's
gmm-decode-faster: kaldi-decoder's FasterDecoder on HCLG.fst), and score it.

The graph: steps/make_graph.py --config conf/x.yaml --lm-text <lm text> data/lang \\
             exp/mono_gmm/tree.json exp/mono_gmm/graph
Writes to <out-dir> the files steps/decode.py writes: hyp.txt, decode_info.json (real-time
factor, partial hypotheses) and, scored against the cuts' transcripts by lm2am/decode/score.py,
wer-<set>, errs-<set>.txt, ref.trn, hyp.trn (with the sclite cross-check). With --scales (or
--sweep: gmm.decode_scales) every scale is decoded and scored (<out-dir>/scale_<s>/), the best goes to <out-dir>/best_scale (use it
for test with --acoustic-scale $(cat .../best_scale)).

e.g.: steps/decode_gmm.py --config conf/tiny.yaml --sweep data/fbank/cuts_dev-synth.jsonl.gz exp/mono_gmm \\
        exp/mono_gmm/decode_dev-synth
      steps/decode_gmm.py --config conf/tiny.yaml --acoustic-scale $(cat exp/mono_gmm/decode_dev-synth/best_scale) \\
        data/fbank/cuts_test-synth.jsonl.gz exp/mono_gmm exp/mono_gmm/decode_test-synth
"""
from lm2am.kaldi import kaldi_wheels

kaldi_wheels()  # before kaldifst/kaldi_decoder, or the process hangs

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from lm2am.config import load_section  # noqa: E402
from lm2am.decode.stage import parse_scales  # noqa: E402
from lm2am.errors import Lm2amError, cli_main  # noqa: E402
from lm2am.gmm.config import GmmConfig  # noqa: E402
from lm2am.log import setup_logging  # noqa: E402


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'gmm': decode_beam, decode_max_active, acoustic_scale)")
    p.add_argument("--graph", type=Path, help="graph dir built from <gmm-dir>/tree.json (default: <gmm-dir>/graph)")
    p.add_argument("--acoustic-scale", type=float, help="overrides gmm.acoustic_scale")
    p.add_argument("--scales", help="comma-separated acoustic scales to decode and score as well")
    p.add_argument("--sweep", action="store_true", help="decode and score every scale of gmm.decode_scales too")
    p.add_argument("--set-name", help="name in the score files (default: the out-dir name without 'decode_')")
    p.add_argument("--no-sclite", action="store_true", help="skip the sclite cross-check")
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz (features and references)")
    p.add_argument("gmm_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "decode.log")
    cfg = load_section(args.config, "gmm", GmmConfig) if args.config else GmmConfig()
    scale = args.acoustic_scale if args.acoustic_scale is not None else cfg.acoustic_scale
    extra = parse_scales(args.scales)
    if args.sweep:
        extra += [s for s in cfg.decode_scales if s not in extra]
    if scale <= 0 or any(s <= 0 for s in extra):
        raise Lm2amError("--acoustic-scale/--scales must be > 0")
    if not args.cuts.is_file():
        raise Lm2amError(f"{args.cuts}: missing; run the features stage")
    from lm2am.gmm.decode import decode_and_score

    set_name = args.set_name or args.out_dir.name.replace("decode_", "")
    _, stats, res = decode_and_score(args.cuts, args.gmm_dir, args.out_dir, cfg,
                                     [scale] + [s for s in extra if s != scale], args.graph, set_name,
                                     use_sclite=not args.no_sclite)
    print(f"{set_name} (GMM mono): {stats.summary_line()}; RTF {res.rtf(scale):.4f}"
          + (f"; {len(res.partial[scale])} partial" if res.partial[scale] else ""))


if __name__ == "__main__":
    main()

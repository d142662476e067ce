#!/usr/bin/env python3
"""Cross-check: decode one set with lm2am's k2 decoder and with Kaldi's FasterDecoder over the same
graph, and compare them (lm2am.decode.compare.compare_decoders).

Writes <out-dir>/compare_decoders.md (WER and real-time factor of both, share of utterances with
identical output, and every differing utterance with both best-path costs under the same scale,
the cost of a wider Kaldi search and a verdict: beam effect or SUSPECT) and compare_decoders.json.

e.g.: steps/compare_decoders.py --config conf/tiny.yaml --graph data/lang/graph \\
        --ref data/fbank/cuts_dev-synth.jsonl.gz exp/am_ce/seed1/loglikes_dev.scp exp/am_ce/seed1/compare_dev
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'decode')")
    p.add_argument("--graph", type=Path, required=True, help="graph dir from steps/make_graph.py")
    p.add_argument("--acoustic-scale", type=float, help="overrides decode.acoustic_scale")
    p.add_argument("--subsampling-factor", type=int, help="overrides decode.subsampling_factor")
    p.add_argument("--search-beam", type=float, help="overrides decode.search_beam (Kaldi's --beam)")
    p.add_argument("--max-active-states", type=int, help="overrides decode.max_active_states")
    p.add_argument("--log-priors", type=Path, help="log senone priors (.npy or Kaldi vector) to subtract")
    p.add_argument("--kaldi-graph", choices=("fst", "k2"), default="fst",
                   help="Kaldi decodes HCLG.fst (transition-ids) or HCLG.pt converted to OpenFst (default: %(default)s)")
    p.add_argument("--wide-factor", type=float, default=4.0,
                   help="beam/max-active multiplier of the reference search on differing utterances")
    p.add_argument("--ref", type=Path, help="references: Kaldi text, .trn, or lhotse cuts/supervisions")
    p.add_argument("--title", default="k2 vs Kaldi decoder", help="heading of the markdown report")
    p.add_argument("loglikes_scp", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()

    from lm2am.kaldi import kaldi_wheels

    kaldi_wheels()  # before lhotse/kaldifst/kaldi_decoder: the other order hangs

    from lm2am.decode.compare import compare_set
    from lm2am.decode.stage import decode_config
    from lm2am.log import setup_logging

    setup_logging(args.out_dir / "log" / "compare_decoders.log")
    cfg = decode_config(args.config, {k: getattr(args, k) for k in
                                      ("acoustic_scale", "subsampling_factor", "search_beam", "max_active_states")})
    md = compare_set(args.loglikes_scp, args.graph, args.out_dir, cfg, log_priors=args.log_priors, ref=args.ref,
                     kaldi_source=args.kaldi_graph, wide_factor=args.wide_factor, title=args.title)
    print(md, end="")


if __name__ == "__main__":
    main()

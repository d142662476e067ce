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
import json
from pathlib import Path

import numpy as np

from lm2am.errors import Lm2amError, cli_main


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

    import kaldi_hmm_gmm  # noqa: F401  (before lhotse/kaldifst/kaldi_decoder: the other order hangs)

    from lm2am.config import load_section
    from lm2am.decode import DecodeConfig
    from lm2am.decode.compare import compare_decoders
    from lm2am.io import write_if_changed
    from lm2am.log import setup_logging
    from lm2am.decode.score import read_references

    setup_logging(args.out_dir / "log" / "compare_decoders.log")
    cfg = load_section(args.config, "decode", DecodeConfig) if args.config else DecodeConfig()
    for opt in ("acoustic_scale", "subsampling_factor", "search_beam", "max_active_states"):
        if getattr(args, opt) is not None:
            setattr(cfg, opt, getattr(args, opt))
    try:
        cfg.__post_init__()
    except ValueError as e:
        raise Lm2amError(str(e)) from None
    if not args.loglikes_scp.is_file():
        raise Lm2amError(f"{args.loglikes_scp} does not exist; compute the AM's log-likelihoods first")
    refs = read_references(args.ref) if args.ref else None

    import kaldiio

    priors = None
    if args.log_priors:
        if not args.log_priors.is_file():
            raise Lm2amError(f"--log-priors {args.log_priors} does not exist")
        priors = np.load(args.log_priors) if args.log_priors.suffix == ".npy" else \
            np.asarray(kaldiio.load_mat(str(args.log_priors)), np.float32)
        priors = np.asarray(priors, np.float32).reshape(-1)
    scp = kaldiio.load_scp(str(args.loglikes_scp))
    mats = {}
    for utt in sorted(scp.keys()):
        m = np.array(scp[utt], np.float32)  # a writable copy (torch warns on read-only arrays)
        if priors is not None and priors.size != m.shape[1]:
            raise Lm2amError(f"{args.log_priors} has {priors.size} priors but {utt} has {m.shape[1]} columns")
        mats[utt] = m - priors if priors is not None else m
    cmp = compare_decoders(mats, args.graph, cfg, refs, kaldi_source=args.kaldi_graph, wide_factor=args.wide_factor)
    md = cmp.markdown(args.title)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_if_changed(args.out_dir / "compare_decoders.md", md)
    info = {"graph": str(args.graph), "loglikes": str(args.loglikes_scp), "acoustic_scale": cfg.acoustic_scale,
            "search_beam": cfg.search_beam, "max_active_states": cfg.max_active_states,
            "kaldi_graph": args.kaldi_graph, "utterances": len(cmp.utts),
            "identical_share": round(cmp.identical_share, 4), "wer_k2": cmp.wer_k2, "wer_kaldi": cmp.wer_kaldi,
            "rtf_k2": round(cmp.k2.rtf, 5), "rtf_kaldi": round(cmp.kaldi.rtf, 5),
            "failed_k2": cmp.k2.failed, "failed_kaldi": cmp.kaldi.failed, "diffs": cmp.diffs}
    write_if_changed(args.out_dir / "compare_decoders.json", json.dumps(info, indent=1, default=float) + "\n")
    print(md, end="")


if __name__ == "__main__":
    main()

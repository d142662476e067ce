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
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst/kaldi_decoder, or the process hangs)

import argparse
import json
import logging
from pathlib import Path

from lm2am.config import load_section
from lm2am.errors import Lm2amError, cli_main
from lm2am.gmm.config import GmmConfig
from lm2am.io import atomic_write_text
from lm2am.log import setup_logging


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
    try:
        extra = [float(x) for x in args.scales.split(",") if x] if args.scales else []
    except ValueError:
        raise Lm2amError(f"--scales {args.scales!r}: expected comma-separated numbers") from None
    if args.sweep:
        extra += [s for s in cfg.decode_scales if s not in extra]
    if scale <= 0 or any(s <= 0 for s in extra):
        raise Lm2amError("--acoustic-scale/--scales must be > 0")
    if not args.cuts.is_file():
        raise Lm2amError(f"{args.cuts}: missing; run the features stage")
    from lhotse import CutSet

    from lm2am.gmm.decode import decode_cuts
    from lm2am.gmm.model import GmmSystem
    from lm2am.decode.score import best_scale, read_references, score_set

    system = GmmSystem.load(args.gmm_dir)
    scales = [scale] + [s for s in extra if s != scale]
    cuts = CutSet.from_file(args.cuts)
    res = decode_cuts(system, args.graph or args.gmm_dir / "graph", cuts, scales, cfg.decode_beam,
                      cfg.decode_max_active)
    set_name = args.set_name or args.out_dir.name.replace("decode_", "")
    refs = read_references(args.cuts)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    hyps = res.hyps_by_scale[scale]
    atomic_write_text(out / "hyp.txt", "".join(f"{u} {' '.join(w)}".rstrip() + "\n" for u, w in sorted(hyps.items())))
    stats = score_set(refs, hyps, out, set_name, use_sclite=not args.no_sclite)
    info = {"system": "gmm_mono", "gmm_dir": str(args.gmm_dir), "graph": str(args.graph or args.gmm_dir / "graph"),
            "decoder": "kaldi_decoder.FasterDecoder", "beam": cfg.decode_beam, "max_active": cfg.decode_max_active,
            "acoustic_scale": scale, "utterances": len(hyps), "audio_seconds": round(res.audio_seconds, 2),
            "likelihood_seconds": round(res.likelihood_seconds, 2),
            "decode_seconds": round(res.seconds_by_scale[scale], 2), "rtf": round(res.rtf(scale), 5),
            "partial": res.partial[scale], "wer": stats.summary_line()}
    if len(scales) > 1:
        by_scale = {scale: stats}
        for s in scales[1:]:
            by_scale[s] = score_set(refs, res.hyps_by_scale[s], out / f"scale_{s:g}", set_name, use_sclite=False)
        best = best_scale(by_scale)
        atomic_write_text(out / "scales.txt", "".join(f"{s:g} {by_scale[s].summary_line()}\n" for s in sorted(by_scale)))
        atomic_write_text(out / "best_scale", f"{best:g}\n")
        info["best_scale"] = best
        logging.info("%s: best acoustic scale %g: %s", set_name, best, by_scale[best].summary_line())
    atomic_write_text(out / "decode_info.json", json.dumps(info, indent=1) + "\n")
    print(f"{set_name} (GMM mono): {stats.summary_line()}; RTF {res.rtf(scale):.4f}"
          + (f"; {len(res.partial[scale])} partial" if res.partial[scale] else ""))


if __name__ == "__main__":
    main()

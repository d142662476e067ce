#!/usr/bin/env python3
"""Stage: decode one set with the k2 HCLG, from per-utterance log-likelihood matrices.

Input: a kaldiio scp of float matrices ``[frames, num_pdfs]`` keyed by cut id, holding
log-posteriors minus log-priors (or log-posteriors, with --log-priors). Writes to <out-dir>:
hyp.txt (Kaldi text), hyp.ctm (word times), ali_phones.txt (per-utterance phone alignment,
``utt PHONE LEN ; PHONE LEN ; ...``), decode_info.json (real-time factor, failures) and, with
--ref, the scoring files of lm2am/score.py (wer-<set>, errs-<set>.txt, ref.trn, hyp.trn, with
the sclite cross-check). With --scales, every scale is scored on the same lattices under
<out-dir>/scale_<s>/ and the best one is written to <out-dir>/best_scale (use it for test).
--decoder kaldi decodes with Kaldi's FasterDecoder over the same graph instead (lm2am.decode.kaldi,
CPU only, each extra scale a full re-decode): a cross-check of the k2 decoder.

e.g.: steps/decode.py --graph data/lang/graph --acoustic-scale 0.1 --scales 0.06,0.08,0.1,0.12 \\
        --ref data/fbank/cuts_dev-synth.jsonl.gz --set-name dev exp/am_ce/seed1/loglikes_dev.scp \\
        exp/am_ce/seed1/decode_dev
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np

from lm2am.config import load_section, to_dict
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import atomic_write_text
from lm2am.log import setup_logging


def read_vector(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    import kaldiio

    try:
        return np.asarray(kaldiio.load_mat(str(path)), np.float32).reshape(-1)
    except Exception:
        return np.loadtxt(path, dtype=np.float32).reshape(-1)


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'decode')")
    p.add_argument("--graph", type=Path, required=True, help="graph dir from steps/make_graph.py")
    p.add_argument("--acoustic-scale", type=float, help="overrides decode.acoustic_scale")
    p.add_argument("--scales", help="comma-separated acoustic scales to score from the same lattices")
    p.add_argument("--subsampling-factor", type=int, help="overrides decode.subsampling_factor")
    p.add_argument("--search-beam", type=float, help="overrides decode.search_beam")
    p.add_argument("--max-active-states", type=int, help="overrides decode.max_active_states")
    p.add_argument("--log-priors", type=Path, help="log senone priors (.npy or Kaldi vector) to subtract")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n] (default: %(default)s)")
    p.add_argument("--ref", type=Path, help="references: Kaldi text, .trn, or lhotse cuts/supervisions")
    p.add_argument("--set-name", help="name in the score files (default: the out-dir name without 'decode_')")
    p.add_argument("--no-sclite", action="store_true", help="skip the sclite cross-check")
    p.add_argument("--decoder", choices=("k2", "kaldi"), default="k2",
                   help="k2 (lm2am.decode.k2) or Kaldi's FasterDecoder over the same graph (lm2am.decode.kaldi; "
                        "CPU; --scales re-decode) (default: %(default)s)")
    p.add_argument("--kaldi-graph", choices=("fst", "k2"), default="fst",
                   help="with --decoder kaldi: HCLG.fst (transition-ids) or HCLG.pt converted to OpenFst")
    p.add_argument("loglikes_scp", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "decode.log")
    if args.decoder == "kaldi":
        import kaldi_hmm_gmm  # noqa: F401  (before lhotse/kaldifst/kaldi_decoder: the other order hangs)

    from lm2am.decode import DecodeConfig, decode
    from lm2am.graph import load_graph
    from lm2am.decode.score import best_scale, read_references, score_set

    cfg = load_section(args.config, "decode", DecodeConfig) if args.config else DecodeConfig()
    for opt, key in (("acoustic_scale", "acoustic_scale"), ("subsampling_factor", "subsampling_factor"),
                     ("search_beam", "search_beam"), ("max_active_states", "max_active_states")):
        if getattr(args, opt) is not None:
            setattr(cfg, key, getattr(args, opt))
    try:
        cfg.__post_init__()
    except ValueError as e:
        raise Lm2amError(str(e)) from None
    try:
        scales = [float(x) for x in args.scales.split(",") if x] if args.scales else []
    except ValueError:
        raise Lm2amError(f"--scales {args.scales!r}: expected comma-separated numbers") from None
    if not args.loglikes_scp.is_file():
        raise Lm2amError(f"{args.loglikes_scp} does not exist; compute the AM's log-likelihoods first")
    set_name = args.set_name or args.out_dir.name.replace("decode_", "")
    refs = read_references(args.ref) if args.ref else None

    import kaldiio

    if args.decoder == "kaldi":
        from lm2am.decode.kaldi import decode, load_kaldi_graph  # noqa: F811

        kaldi_graph = load_kaldi_graph(args.graph, args.kaldi_graph)
        graph = kaldi_graph.tables
    else:
        graph = load_graph(args.graph, args.device)
    priors = read_vector(args.log_priors) if args.log_priors else None
    if priors is not None and priors.size != graph.num_pdfs:
        raise Lm2amError(f"{args.log_priors} has {priors.size} priors but the graph {graph.num_pdfs} pdfs")
    scp = kaldiio.load_scp(str(args.loglikes_scp))

    def items():
        for utt in sorted(scp.keys()):
            m = np.asarray(scp[utt], np.float32)
            yield utt, (m - priors) if priors is not None else m

    res = decode(items(), kaldi_graph if args.decoder == "kaldi" else graph, cfg, device=args.device,
                 extra_scales=scales)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hyp.txt", "".join(f"{u} {' '.join(w)}\n".replace(" \n", "\n")
                                               for u, w in sorted(res.hyps.items())))
    if res.word_times:
        from lm2am.decode.score import write_ctm

        write_ctm(res.word_times, out / "hyp.ctm")
    if res.frame_phones and graph.phones is not None:
        lines = []
        for u in sorted(res.frame_phones):
            ph = res.frame_phones[u]
            cut = np.flatnonzero(np.r_[True, ph[1:] != ph[:-1]])
            lens = np.diff(np.r_[cut, ph.size])
            lines.append(u + " " + " ; ".join(f"{graph.phones[ph[c]]} {n}" for c, n in zip(cut, lens)) + "\n")
        atomic_write_text(out / "ali_phones.txt", "".join(lines))
    info = {"config": to_dict(cfg), "graph": str(args.graph), "device": args.device, "utterances": len(res.hyps),
            "audio_seconds": round(res.audio_seconds, 2), "decode_seconds": round(res.decode_seconds, 2),
            "rtf": round(res.rtf, 5), "failed": res.failed, "decoder": args.decoder}
    if refs is not None:
        stats = score_set(refs, res.hyps, out, set_name, res.word_times, use_sclite=not args.no_sclite)
        info["wer"] = stats.summary_line()
        if scales:
            by_scale = {cfg.acoustic_scale: stats}
            for s in scales:
                if s != cfg.acoustic_scale:
                    by_scale[s] = score_set(refs, res.hyps_by_scale[s], out / f"scale_{s:g}", set_name,
                                            use_sclite=False)
            best = best_scale(by_scale)
            atomic_write_text(out / "scales.txt", "".join(f"{s:g} {by_scale[s].summary_line()}\n"
                                                          for s in sorted(by_scale)))
            atomic_write_text(out / "best_scale", f"{best:g}\n")
            info["best_scale"] = best
            logging.info("%s: best acoustic scale %g: %s", set_name, best, by_scale[best].summary_line())
    atomic_write_text(out / "decode_info.json", json.dumps(info, indent=1) + "\n")
    print(f"{set_name}: {info.get('wer', 'decoded (no --ref: not scored)')}; RTF {res.rtf:.4f} on {args.device}"
          + (f"; {len(res.failed)} failed" if res.failed else ""))


if __name__ == "__main__":
    main()

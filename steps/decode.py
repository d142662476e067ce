#!/usr/bin/env python3
"""Stage: decode one set with the k2 HCLG, from per-utterance log-likelihood matrices.

Input: a kaldiio scp of float matrices ``[frames, num_pdfs]`` keyed by cut id, holding
log-posteriors minus log-priors (or log-posteriors, with --log-priors). Writes to <out-dir>:
hyp.txt (Kaldi text), hyp.ctm (word times), ali_phones.txt (per-utterance phone alignment,
``utt PHONE LEN ; PHONE LEN ; ...``), decode_info.json (real-time factor, failures) and, with
--ref, the scoring files of lm2am/decode/score.py (wer-<set>, errs-<set>.txt, ref.trn, hyp.trn, with
the sclite cross-check). With --scales, every scale is scored on the same lattices under
<out-dir>/scale_<s>/ and the best one is written to <out-dir>/best_scale (use it for test).
--decoder kaldi decodes with Kaldi's FasterDecoder over the same graph instead (lm2am.decode.kaldi,
CPU only, each extra scale a full re-decode): a cross-check of the k2 decoder.

In --num-jobs N jobs (the job runner's JOB=1:N; same options for every call): each job decodes
its contiguous slice of the sorted utterances into <out-dir>/jobs/decode.<job>.pkl, then
--merge --num-jobs N writes and scores the whole set, the same files as one process writes.

e.g.: steps/decode.py --graph data/lang/graph --acoustic-scale 0.1 --scales 0.06,0.08,0.1,0.12 \\
        --ref data/fbank/cuts_dev-synth.jsonl.gz --set-name dev exp/am_ce/seed1/loglikes_dev.scp \\
        exp/am_ce/seed1/decode_dev
      utils/run.sh JOB=1:4 log/decode_dev.JOB.log steps/decode.py --job JOB --num-jobs 4 [options] SCP OUT
      steps/decode.py --merge --num-jobs 4 [options] SCP OUT
"""
import argparse
from pathlib import Path

from lm2am.errors import cli_main
from lm2am.log import setup_logging


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
    p.add_argument("--job", type=int, default=1, help="this job's number, 1..--num-jobs (default: %(default)s)")
    p.add_argument("--num-jobs", type=int, default=1,
                   help="decode in this many jobs (each: its slice of the set), then --merge (default: %(default)s)")
    p.add_argument("--merge", action="store_true", help="write and score the set from the --num-jobs jobs' results")
    p.add_argument("loglikes_scp", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    sharded = args.num_jobs > 1 and not args.merge
    setup_logging(args.out_dir / "log" / (f"decode.{args.job}.log" if sharded else "decode.log"))
    if args.decoder == "kaldi":
        from lm2am.kaldi import kaldi_wheels

        kaldi_wheels()  # before lhotse/kaldifst/kaldi_decoder: the other order hangs

    from lm2am.decode.stage import decode_config, decode_job, decode_set, merge_jobs, parse_scales
    from lm2am.errors import Lm2amError

    cfg = decode_config(args.config, {k: getattr(args, k) for k in
                                      ("acoustic_scale", "subsampling_factor", "search_beam", "max_active_states")})
    scales = parse_scales(args.scales)
    set_name = args.set_name or args.out_dir.name.replace("decode_", "")
    if args.num_jobs < 1 or not 1 <= args.job <= args.num_jobs:
        raise Lm2amError(f"--job {args.job} --num-jobs {args.num_jobs}: need 1 <= job <= num-jobs")
    if sharded:
        res = decode_job(args.loglikes_scp, args.graph, args.out_dir, cfg, args.job, args.num_jobs,
                         decoder=args.decoder, kaldi_graph=args.kaldi_graph, device=args.device,
                         log_priors=args.log_priors, scales=scales)
        print(f"{set_name} job {args.job}/{args.num_jobs}: {len(res.hyps)} utterances decoded; RTF {res.rtf:.4f}"
              + (f"; {len(res.failed)} failed" if res.failed else ""))
        return
    if args.merge:
        info, res = merge_jobs(args.loglikes_scp, args.graph, args.out_dir, cfg, args.num_jobs, decoder=args.decoder,
                               device=args.device, ref=args.ref, set_name=set_name, scales=scales,
                               use_sclite=not args.no_sclite)
    else:
        info, res = decode_set(args.loglikes_scp, args.graph, args.out_dir, cfg, decoder=args.decoder,
                               kaldi_graph=args.kaldi_graph, device=args.device, log_priors=args.log_priors,
                               ref=args.ref, set_name=set_name, scales=scales, use_sclite=not args.no_sclite)
    print(f"{set_name}: {info.get('wer', 'decoded (no --ref: not scored)')}; RTF {res.rtf:.4f} on {args.device}"
          + (f"; {len(res.failed)} failed" if res.failed else ""))


if __name__ == "__main__":
    main()

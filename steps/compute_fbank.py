#!/usr/bin/env python3
"""Stage: fbank features (lilcom) for each part's cuts, after applying the lang's OOV policy.

Reads <manifest-dir>/cuts_<part>.jsonl.gz, writes <fbank-dir>/cuts_<part>.jsonl.gz and
<fbank-dir>/feats_<part>/. With --job/--num-jobs it handles parts[job-1::num_jobs] so the job
runner can spread parts over jobs (utils/run.sh JOB=1:N ... --job JOB --num-jobs N).

e.g.: steps/compute_fbank.py --config conf/tiny.yaml --lang data/lang --parts train-synth data/manifests data/fbank
"""
import argparse
import logging
from pathlib import Path

from lm2am.config import load_section
from lm2am.data import FbankConfig, compute_fbank, compute_fbank_lazy, manifest_paths
from lm2am.data.validate import write_dropped
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (sections 'features', 'lang')")
    p.add_argument("--lang", type=Path, help="lang dir; its lexicon defines OOV words (policy: lang.oov_policy)")
    p.add_argument("--parts", required=True, help="comma-separated part names")
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("--lazy", action="store_true",
                   help="stream each part in chunks instead of loading it in memory (large corpora)")
    p.add_argument("manifest_dir", type=Path)
    p.add_argument("fbank_dir", type=Path)
    args = p.parse_args()
    setup_logging()
    cfg = load_section(args.config, "features", FbankConfig) if args.config else FbankConfig()
    parts = args.parts.split(",")[args.job - 1 :: args.num_jobs]
    for part in parts:
        src = manifest_paths(args.manifest_dir, part)["cuts"]
        if not src.is_file():
            raise Lm2amError(f"{src}: manifest missing; run the manifest stage for part {part}")
        inputs = [src] + ([args.lang / "lexicon.txt"] if args.lang else [])
        marker = DoneMarker(args.fbank_dir / f".{part}.done", params=vars(cfg), inputs=inputs)
        if marker.is_done() and (args.fbank_dir / f"cuts_{part}.jsonl.gz").is_file():
            print(f"compute_fbank: {part} already done, skipping")
            continue
        if args.lazy:
            n = _fbank_lazy(args, part, src, cfg)
            logging.info("%s: fbank for %d cuts in %s (streamed)", part, n, args.fbank_dir)
            marker.mark()
            continue
        from lhotse import CutSet

        cuts = CutSet.from_file(src)
        dropped: list = []
        if args.lang:
            from lm2am.lang import LangConfig, apply_oov_policy_to_cuts

            lcfg = load_section(args.config, "lang", LangConfig) if args.config else LangConfig()
            before = [c.id for c in cuts]
            cuts, stats = apply_oov_policy_to_cuts(cuts, args.lang, lcfg, name=str(src))
            kept = {c.id for c in cuts}
            dropped = [i for i in before if i not in kept]
            logging.info("%s: OOV policy '%s': %s", part, lcfg.oov_policy, stats)
        write_dropped(args.fbank_dir, part, dropped)
        compute_fbank(cuts, part, args.fbank_dir, cfg)
        logging.info("%s: fbank for %d cuts in %s", part, len(cuts), args.fbank_dir)
        marker.mark()


def _fbank_lazy(args: argparse.Namespace, part: str, src: Path, cfg: FbankConfig) -> int:
    """--lazy: stream ``src``; the OOV policy is applied chunk by chunk (totals logged once)."""
    from lhotse import CutSet

    transform = None
    dropped: list = []
    if args.lang:
        from lhotse.utils import fastcopy

        from lm2am.lang import LangConfig, apply_oov_policy, read_lexicon

        lcfg = load_section(args.config, "lang", LangConfig) if args.config else LangConfig()
        words = set(read_lexicon(args.lang))  # once, not per chunk
        totals = {"utterances": 0, "kept": 0, "oov_tokens": 0, "mapped_tokens": 0}

        def transform(chunk: list) -> list:
            for c in chunk:
                if len(c.supervisions) != 1:
                    raise Lm2amError(f"{src}: cut {c.id} has {len(c.supervisions)} supervisions; lm2am expects one per cut")
            totals["utterances"] += len(chunk)
            ids = [c.id for c in chunk]
            try:
                texts, stats = apply_oov_policy({c.id: c.supervisions[0].text for c in chunk}, words, lcfg, name=str(src))
            except Lm2amError as e:
                if "utterances dropped" not in str(e):
                    raise
                dropped.extend(ids)
                return []  # this chunk lost every utterance; an empty part is an error later
            dropped.extend(i for i in ids if i not in texts)
            for k in ("kept", "oov_tokens", "mapped_tokens"):
                totals[k] += getattr(stats, k)
            return [fastcopy(c, supervisions=[fastcopy(c.supervisions[0], text=texts[c.id])])
                    for c in chunk if c.id in texts]

        logging.getLogger("lm2am.lang").setLevel(logging.WARNING)  # one line per chunk is noise
    n = compute_fbank_lazy(CutSet.from_jsonl_lazy(src), part, args.fbank_dir, cfg, transform=transform)
    write_dropped(args.fbank_dir, part, dropped)  # before the done marker
    if args.lang:
        logging.info("%s: OOV policy '%s': %s", part, lcfg.oov_policy, totals)
    return n


if __name__ == "__main__":
    main()

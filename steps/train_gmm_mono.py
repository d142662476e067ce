#!/usr/bin/env python3
"""Stage: GMM-HMM monophone system, as Kaldi's steps/train_mono.sh (flat start with equal
alignment, EM with realignment, Gaussian mix-up), on a part's fbank cuts and the lang dir.

Writes <dir>/final.mdl, tree.json, final.pt (so <dir> serves as an alignment directory for the
tree and targets stages), history.json (log-likelihood per frame by iteration), loglike.png.

e.g.: steps/train_gmm_mono.py --config conf/tiny.yaml data/fbank/cuts_train-synth.jsonl.gz data/lang exp/mono_gmm
"""
from lm2am.kaldi import kaldi_wheels

kaldi_wheels()  # before kaldifst/kaldi_decoder, or the process hangs

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from lm2am.align.topo import HmmTopo  # noqa: E402
from lm2am.config import load_section  # noqa: E402
from lm2am.errors import Lm2amError, cli_main  # noqa: E402
from lm2am.gmm.config import GmmConfig  # noqa: E402
from lm2am.io import DoneMarker  # noqa: E402
from lm2am.log import setup_logging  # noqa: E402


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (sections 'gmm', 'topo')")
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "train.log")
    cfg = load_section(args.config, "gmm", GmmConfig) if args.config else GmmConfig()
    topo = load_section(args.config, "topo", HmmTopo) if args.config else HmmTopo()
    for f in (args.cuts, args.lang_dir / "phones.txt", args.lang_dir / "lexicon.txt"):
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the earlier stages (features, lang)")
    train_params = {k: v for k, v in vars(cfg).items() if not k.startswith("decode_")}  # decoding: no retrain
    marker = DoneMarker(args.out_dir / ".train.done", params={"gmm": train_params, "topo": vars(topo)},
                        inputs=[args.cuts, args.lang_dir / "phones.txt", args.lang_dir / "lexicon.txt"])
    if marker.is_done() and (args.out_dir / "final.mdl").is_file():
        print(f"train_gmm_mono: {args.out_dir}/final.mdl up to date, skipping")
        return
    from lhotse import CutSet

    from lm2am.gmm.train import train_gmm_mono

    train_gmm_mono(CutSet.from_file(args.cuts), args.lang_dir, args.out_dir, cfg, topo)
    marker.mark()


if __name__ == "__main__":
    main()

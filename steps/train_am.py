#!/usr/bin/env python3
"""Stage: train one acoustic-model system (CE, label interpolation or auxiliary-head
distillation) and write <exp-dir>/final.pt, priors.npy, history.json, training_curve.png.

Model/train defaults come from the recipe config's `am` section (--config); the system file
overrides them (keys system, model, train); --seed/--epochs/--max-hours override both
(--max-hours: a fixed training subset, the same for every system and seed; the recipe's
--data-sizes trains into exp/am_<system>_h<hours>/seed<k>). A checkpoint in
--exp-dir resumes training; a finished, unchanged run is skipped. Under torchrun it runs DDP
(`torchrun --nproc-per-node 4 steps/train_am.py ... --device cuda`; gloo with --device cpu).

e.g.: steps/train_am.py --config conf/demo.yaml --system conf/systems/hier.yaml \\
        --exp-dir exp/am_hier/seed1 --seed 1 --train-part train-synth --dev-part dev-synth
"""
import argparse
from pathlib import Path

from lm2am.am.data import DataPaths
from lm2am.errors import Lm2amError, cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", type=Path, required=True, help="system YAML (conf/systems/<name>.yaml)")
    p.add_argument("--config", type=Path, help="recipe config with an `am` section (model/train defaults)")
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment dir, one per system and seed")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--epochs", type=int, help="overrides train.epochs")
    p.add_argument("--max-hours", type=float,
                   help="overrides train.max_hours: train on a fixed, nested subset of this many hours")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    DataPaths.add_arguments(p)
    args = p.parse_args()
    print(f"{p.prog} " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None))
    setup_logging()

    from lm2am.am.config import load_system_file
    from lm2am.am.train import train_system

    for opt, f in (("--system", args.system), ("--config", args.config)):
        if f is not None and not f.is_file():
            raise Lm2amError(f"{opt} {f}: no such file (systems live in conf/systems/)")
    over = {k: v for k, v in (("seed", args.seed), ("epochs", args.epochs), ("max_hours", args.max_hours))
            if v is not None}
    system, model, train = load_system_file(args.system, args.config, {"train": over})
    paths = DataPaths.from_args(args)
    for f in (paths.cuts(paths.train_part), paths.cmvn):
        if not f.is_file():
            raise Lm2amError(f"{f}: expected file to exist; run the features and targets stages")
    train_system(system, model, train, paths, args.exp_dir, args.device)


if __name__ == "__main__":
    main()

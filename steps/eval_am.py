#!/usr/bin/env python3
"""Stage: frame accuracy (main output and every auxiliary head) and losses of a trained AM on a
part; writes JSON (default <exp-dir>/eval_<part>.json) and prints the main frame accuracy.

e.g.: steps/eval_am.py --exp-dir exp/am_hier/seed1 --part dev-synth --out exp/am_hier/seed1/eval_dev.json
"""
import argparse
import json
from pathlib import Path

from lm2am.am.data import DataPaths
from lm2am.errors import cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--model", default="final.pt", help="model file in --exp-dir (default: %(default)s)")
    p.add_argument("--part", default="dev-synth", help="(default: %(default)s)")
    p.add_argument("--out", type=Path, help="output JSON (default: <exp-dir>/eval_<part>.json)")
    p.add_argument("--device", default="cpu")
    DataPaths.add_arguments(p, parts=False)
    args = p.parse_args()
    setup_logging()

    from lm2am.am.evaluate import evaluate_exp

    paths = DataPaths.from_args(args)
    res = evaluate_exp(args.exp_dir / args.model, paths, args.part, args.device,
                       out_json=args.out or args.exp_dir / f"eval_{args.part}.json")
    print(json.dumps({k: v for k, v in res.items() if k.endswith("_acc") or k in ("system", "part", "frames")},
                     sort_keys=True))
    print(f"{res['system']} {args.part}: main frame accuracy {res['main_acc']:.4f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peak memory of data preparation as the corpus doubles: fake LibriSpeech of N and 2N utterances
(local/librispeech/make_fake_corpus.py), then the data stages as subprocesses, each one's peak RSS
from os.wait4 (the process and its waited-for children):

  manifests  steps/make_manifests.py [--lazy]
  fbank      steps/compute_fbank.py [--lazy]   (features.num_jobs: 1)
  cmvn       steps/compute_cmvn.py              (always streamed)

for both the in-memory path (synth-en's default) and the streamed one (--lazy, the LibriSpeech
recipe's). Prints a table and the 2N/N ratio per stage; flat memory is a ratio near 1.

e.g.: .venv/bin/python bench/data_prep_memory.py --n 2000 --work /tmp/data_prep_memory
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
PART = "train-clean-100"


def run_peak(cmd: List[str], cwd: Path) -> Tuple[float, float]:
    """Run ``cmd``; returns (peak RSS in MiB, wall seconds). Fails loudly on a non-zero exit."""
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as path.sh sets for recipe jobs
    log = cwd / f"{Path(cmd[1]).stem}.log"  # a file, not a pipe: progress bars would fill a pipe
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=err, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{log.read_text()[-2000:]}")
    return ru.ru_maxrss / 1024, time.time() - t0  # Linux: ru_maxrss in KiB


def measure(work: Path, n: int, pool: int) -> Dict[Tuple[str, str], Tuple[float, float]]:
    """Build the corpus of ``n`` utterances under ``work`` and measure every stage in both modes."""
    py = sys.executable
    corpus = work / f"corpus_{n}"
    if not (corpus / "LibriSpeech" / PART).is_dir():
        subprocess.run([py, str(REPO / "local/librispeech/make_fake_corpus.py"), "--parts", f"{PART}:{n}",
                        "--pool", str(pool), str(corpus)], check=True, stdout=subprocess.DEVNULL)
    conf = work / "conf.yaml"
    conf.write_text("features: {num_jobs: 1}\n")
    out: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for mode, flag in (("in-memory", []), ("streamed", ["--lazy"])):
        d = work / f"run_{n}_{mode}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        steps = REPO / "steps"
        out[("manifests", mode)] = run_peak([py, str(steps / "make_manifests.py"), *flag, "--nj", "2", "--parts", PART,
                                             str(corpus / "LibriSpeech"), "manifests"], d)
        out[("fbank", mode)] = run_peak([py, str(steps / "compute_fbank.py"), *flag, "--config", str(conf),
                                         "--parts", PART, "manifests", "fbank"], d)
        out[("cmvn", mode)] = run_peak([py, str(steps / "compute_cmvn.py"), f"fbank/cuts_{PART}.jsonl.gz",
                                        "fbank/global_cmvn.ark"], d)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="utterances of the smaller corpus (default: %(default)s)")
    p.add_argument("--pool", type=int, default=100, help="distinct synthesized utterances (reused beyond)")
    p.add_argument("--work", type=Path, default=Path("/tmp/lm2am_data_prep_memory"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    small = measure(args.work, args.n, args.pool)
    large = measure(args.work, 2 * args.n, args.pool)
    print(f"peak RSS (MiB) of each data-prep stage, fake LibriSpeech of N={args.n} and 2N={2 * args.n} utterances")
    print(f"{'stage':<10}{'mode':<11}{'N':>9}{'2N':>9}{'2N/N':>7}{'s (N)':>8}{'s (2N)':>8}")
    for key in small:
        (a, ta), (b, tb) = small[key], large[key]
        print(f"{key[0]:<10}{key[1]:<11}{a:>9.1f}{b:>9.1f}{b / a:>7.3f}{ta:>8.1f}{tb:>8.1f}")


if __name__ == "__main__":
    main()

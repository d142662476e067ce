"""One job of a sharded stage, kept free of torch, k2 and lhotse imports so that a finished job
is skipped in a fraction of a second (a no-op rerun starts many of them).

- :func:`split_for_job`: the job's contiguous, deterministic slice of the cuts or utterances.
- :func:`run_align_job`: one job of an alignment stage (``steps/align.py``, ``align_gmm.py``,
  ``realign.py``): skipped while its done marker is current, else its slice is aligned by the
  callback (which imports the aligner only then).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence

from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_write_text


def split_for_job(cuts, job: int, num_jobs: int) -> Sequence:
    """The ``job``-th (1-based) of ``num_jobs`` contiguous, deterministic slices of ``cuts``."""
    import numpy as np

    if not 1 <= job <= num_jobs:
        raise Lm2amError(f"--job {job} must be in 1..{num_jobs}")
    cuts = list(cuts)
    bounds = np.linspace(0, len(cuts), num_jobs + 1).round().astype(int)
    return cuts[bounds[job - 1]:bounds[job]]


def run_align_job(cuts_path: Path, job: int, num_jobs: int, out_dir: Path, params: Dict,
                  inputs: Sequence[Path], what: str, align_job: Callable[[Sequence, str], None]) -> None:
    """One job of an alignment stage: skip it when its done marker is current, else write the
    ``num_jobs_<part>`` file and call ``align_job(cuts of this job, "<part>.<job>")``.

    ``params`` and ``inputs`` (besides ``cuts_path``) fingerprint the job; ``what`` names the
    stage in the skip message.
    """
    if not cuts_path.is_file():
        raise Lm2amError(f"{cuts_path}: missing; run the features stage")
    part = cuts_path.name.replace("cuts_", "").replace(".jsonl.gz", "")
    name = f"{part}.{job}"
    marker = DoneMarker(out_dir / f".align_{name}.done", params=params, inputs=[cuts_path, *inputs])
    if marker.is_done():
        print(f"{what}: {name} up to date, skipping")
        return
    from lhotse import CutSet

    # Kaldi's num_jobs file: readers take jobs 1..N, never stale files from a run with other nj.
    atomic_write_text(out_dir / f"num_jobs_{part}", f"{num_jobs}\n")
    align_job(split_for_job(CutSet.from_file(cuts_path), job, num_jobs), name)
    marker.mark()

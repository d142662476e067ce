"""Senone priors for hybrid decoding: ``log p(s|x) - log p(s)`` is the scaled likelihood.

Two estimates (``TrainConfig.priors``):

* ``counts``: senone frequencies of the training targets (Kaldi's ``ali-to-pdf |
  analyze-counts``), each count floored by adding one, so a senone never seen in training still
  gets a finite log-prior;
* ``posteriors``: the average of the trained model's posteriors over the training part
  (matches what the network actually outputs; Kaldi nnet1's ``--class-frame-counts`` variant).

Saved as ``priors.npy``: ``float32 [num_senones]`` natural-log priors (summing to 1 in the
probability domain), in the experiment directory (or a shared ``exp/priors.npy``: the counts
are the same for every system trained on the same targets).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path

log = logging.getLogger(__name__)


def count_priors(cuts: Any, num_senones: int, subsampling: int = 1) -> np.ndarray:
    """Log-priors from the ``senone`` targets of ``cuts`` (add-one floor), at the model's frame
    rate (frames kept by ``lm2am.frames.subsample``)."""
    from lm2am.frames import subsample

    counts = np.ones(num_senones, dtype=np.float64)  # add-one floor
    for c in cuts:
        s = subsample(np.asarray(c.load_custom("senone")), subsampling)
        if len(s) and (s.min() < 0 or s.max() >= num_senones):
            raise Lm2amError(f"cut {c.id}: senone id outside 0..{num_senones - 1}; the targets "
                             "come from another tree")
        counts += np.bincount(s, minlength=num_senones)
    return np.log(counts / counts.sum()).astype(np.float32)


@torch.no_grad()
def posterior_priors(model: torch.nn.Module, loader: Any, device: Any = "cpu") -> np.ndarray:
    """Log-priors as the frame average of ``model``'s main-output posteriors over ``loader``."""
    model.eval()
    total: Optional[torch.Tensor] = None
    frames = 0
    for batch in loader:
        x = batch["features"].to(device)
        lengths = batch["lengths"].to(device)
        out = model(x, lengths, with_aux=False)
        mask = (batch["targets"]["senone"].to(device) >= 0).unsqueeze(-1)
        s = (out["main"].exp() * mask).sum((0, 1)).double()
        total = s if total is None else total + s
        frames += int(mask.sum())
    if total is None or frames == 0:
        raise Lm2amError("no frames to estimate priors from; the training part is empty")
    p = (total / frames).clamp(min=1e-10).cpu().numpy()
    return np.log(p / p.sum()).astype(np.float32)


def save_priors(path: Path | str, log_priors: np.ndarray) -> None:
    """Write ``priors.npy`` atomically."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(log_priors, dtype=np.float32))


def read_log_priors(path: Path | str) -> np.ndarray:
    """Log senone priors as stored: ``.npy`` (as saved), else a Kaldi vector (binary or text,
    read by kaldiio) or plain numbers, flattened to ``float32``. The one priors reader."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    import kaldiio

    try:
        return np.asarray(kaldiio.load_mat(str(path)), np.float32).reshape(-1)
    except Exception:
        return np.loadtxt(path, dtype=np.float32).reshape(-1)


def load_priors(path: Path | str, num_senones: Optional[int] = None) -> np.ndarray:
    """Read ``priors.npy`` (log-priors; :func:`read_log_priors`), checking the size against
    ``num_senones``."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path}: senone priors missing; they are written when training ends "
                         "(steps/train_am.py)")
    p = read_log_priors(path)
    if p.ndim != 1 or (num_senones is not None and p.shape[0] != num_senones):
        raise Lm2amError(f"{path}: {p.shape} priors but the model has {num_senones} senones; "
                         "retrain or recompute the priors with this model's targets")
    return p

"""Checkpoints of every trainer (the acoustic models, the teacher LMs): one file format, atomic
writes, keep-last-k and averaging.

A checkpoint is a dict written with ``torch.save``:

* ``format`` (which trainer wrote it: :class:`CheckpointFormat`) and ``version``;
* ``model`` (state dict), and in a *training* checkpoint also ``optimizer``, ``scheduler``
  (:func:`training_state`), the position (``epoch``, ``batch_in_epoch``: batches of that epoch
  done, ``step``: updates done) and ``history`` (per-epoch statistics);
* the trainer's own keys: the AM stores its AMP scaler, sampler state, RNG states
  (:func:`rng_state`) and full config (:mod:`lm2am.am.checkpoint`); a teacher LM, whose noise
  is seeded by its update number, the fingerprint of its data and config and the time spent
  (:mod:`lm2am.lm.train`).

Every file goes to a temporary name and is renamed (:func:`save`), so a kill never leaves half
a file. Numbered files in an experiment directory: ``checkpoint-<step>.pt`` (mid-epoch) and
``epoch-<n>.pt`` (end of epoch ``n``), pruned to the newest few (:func:`prune`).
"""
from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path

_STEP = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH = re.compile(r"^epoch-(\d+)\.pt$")


def save(obj: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file and a rename (a kill never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(dict(obj), tmp)


def read(path: Path | str, map_location: Any = "cpu") -> Any:
    """``torch.load`` of one of our own files (configs, numpy RNG states inside: torch >= 2.6
    would refuse them by default); raises whatever torch raises."""
    return torch.load(path, map_location=map_location, weights_only=False)


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
    """The ``format``/``version`` pair of one trainer's files; ``what`` names them in errors."""

    name: str
    version: int
    what: str

    def header(self) -> Dict[str, Any]:
        """The first two keys of every file of this format."""
        return {"format": self.name, "version": self.version}

    def load(self, path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
        """Load a file of this format, with a one-line error for anything else."""
        try:
            ckpt = read(path, map_location)
        except Exception as e:  # torch raises several types for corrupt/foreign files
            raise Lm2amError(f"{path}: cannot read this checkpoint ({type(e).__name__}: {e}); "
                             "delete it to restart from the previous one") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != self.name:
            raise Lm2amError(f"{path}: not an lm2am {self.what} checkpoint")
        if ckpt.get("version") != self.version:
            raise Lm2amError(f"{path}: checkpoint version {ckpt.get('version')} but this code reads "
                             f"version {self.version}; retrain in a new --exp-dir")
        return ckpt


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
                   ) -> Dict[str, Any]:
    """``model``, ``optimizer`` and ``scheduler`` state dicts, the core of a training checkpoint."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict()}


def restore_training_state(ckpt: Mapping[str, Any], model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Load what :func:`training_state` stored."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])


def rng_state() -> Dict[str, Any]:
    """Every RNG that training draws from."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_checkpoints(exp_dir: Path) -> List[Tuple[int, Path]]:
    """``(step, path)`` of the mid-epoch checkpoints, oldest first."""
    out = [(int(m.group(1)), p) for p in exp_dir.glob("checkpoint-*.pt") if (m := _STEP.match(p.name))]
    return sorted(out)


def epoch_checkpoints(exp_dir: Path) -> List[Tuple[int, Path]]:
    """``(epoch, path)`` of the end-of-epoch checkpoints, oldest first."""
    out = [(int(m.group(1)), p) for p in exp_dir.glob("epoch-*.pt") if (m := _EPOCH.match(p.name))]
    return sorted(out)


def latest_checkpoint(exp_dir: Path, fmt: CheckpointFormat) -> Optional[Path]:
    """The checkpoint furthest into training (largest global step), or None."""
    cands = [p for _, p in step_checkpoints(exp_dir)[-1:]] + [p for _, p in epoch_checkpoints(exp_dir)[-1:]]
    best, best_step = None, -1
    for p in cands:
        step = int(fmt.load(p)["step"])
        if step > best_step:
            best, best_step = p, step
    return best


def prune(exp_dir: Path, keep_steps: int, keep_epochs: int) -> None:
    """Delete all but the newest ``keep_steps`` step and ``keep_epochs`` epoch checkpoints."""
    for lst, keep in ((step_checkpoints(exp_dir), keep_steps), (epoch_checkpoints(exp_dir), keep_epochs)):
        for _, p in lst[:max(0, len(lst) - keep)]:
            p.unlink(missing_ok=True)


def average_state_dicts(paths: List[Path], fmt: CheckpointFormat) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the models in ``paths`` (float tensors; others from the last)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: Dict[str, torch.Tensor] = {}
    for i, p in enumerate(paths):
        sd = fmt.load(p)["model"]
        for k, v in sd.items():
            if i == 0:
                avg[k] = v.clone().double() if v.is_floating_point() else v.clone()
            elif v.is_floating_point():
                avg[k] += v.double()
            else:
                avg[k] = v.clone()
    ref = fmt.load(paths[-1])["model"]
    return {k: (v / len(paths)).to(ref[k].dtype) if ref[k].is_floating_point() else v
            for k, v in avg.items()}

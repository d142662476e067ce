"""AM checkpoints: full training state for exact resume, keep-last-k, averaging, final model.

Files in an experiment directory:

* ``checkpoint-<step>.pt``: mid-epoch state every ``checkpoint_every_steps`` steps;
* ``epoch-<n>.pt``: state after epoch ``n`` (1-based) and its validation;
* ``final.pt``: the parameter average of the last ``average_last_epochs`` epoch checkpoints,
  with the configs, vocabulary sizes and CMVN (in the model's buffers): all that decoding
  needs (:func:`load_model`).

A training checkpoint holds the model, optimizer, LR scheduler, AMP scaler, sampler state,
RNG states (torch, CUDA, Python, numpy), the position (epoch, batches done in it, global step),
the metrics history and the full config: resuming from it on CPU gives the same parameters
as never stopping. Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "lm2am-am"
VERSION = 1
_STEP = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH = re.compile(r"^epoch-(\d+)\.pt$")


def save(obj: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file and a rename (a kill never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(dict(obj), tmp)


def load(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load an lm2am AM checkpoint, with a one-line error for anything else."""
    try:
        # our own files (configs, numpy RNG states): torch >= 2.6 would refuse them by default
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for corrupt/foreign files
        raise Lm2amError(f"{path}: cannot read this checkpoint ({type(e).__name__}: {e}); "
                         "delete it to restart from the previous one") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise Lm2amError(f"{path}: not an lm2am acoustic-model checkpoint")
    if ckpt.get("version") != VERSION:
        raise Lm2amError(f"{path}: checkpoint version {ckpt.get('version')} but this code reads "
                         f"version {VERSION}; retrain in a new --exp-dir")
    return ckpt


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


def latest_checkpoint(exp_dir: Path) -> Optional[Path]:
    """The checkpoint furthest into training (largest global step), or None."""
    cands = [p for _, p in step_checkpoints(exp_dir)[-1:]] + [p for _, p in epoch_checkpoints(exp_dir)[-1:]]
    best, best_step = None, -1
    for p in cands:
        step = int(load(p)["step"])
        if step > best_step:
            best, best_step = p, step
    return best


def prune(exp_dir: Path, keep_steps: int, keep_epochs: int) -> None:
    """Delete all but the newest ``keep_steps`` step and ``keep_epochs`` epoch checkpoints."""
    for lst, keep in ((step_checkpoints(exp_dir), keep_steps), (epoch_checkpoints(exp_dir), keep_epochs)):
        for _, p in lst[:max(0, len(lst) - keep)]:
            p.unlink(missing_ok=True)


def check_compatible(ckpt: Mapping[str, Any], config: Mapping[str, Any], path: Path,
                     num_senones: int, vocab_sizes: Mapping[str, int]) -> None:
    """Raise unless ``ckpt`` was trained with the same model and system config and vocabularies
    (its parameters would not fit, or would silently mean something else)."""
    old = ckpt.get("config", {})
    for sec in ("model", "system"):
        a, b = old.get(sec, {}), config[sec]
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                raise Lm2amError(f"{path} was trained with {sec}.{k} = {a.get(k)!r} but the config "
                                 f"now says {b.get(k)!r}; train in a new --exp-dir, or delete "
                                 f"{path.parent}'s checkpoints to start over")
    if ckpt.get("num_senones") != num_senones:
        raise Lm2amError(f"{path} has {ckpt.get('num_senones')} senones but the targets "
                         f"{num_senones}; the tree changed: train in a new --exp-dir")
    for u, n in vocab_sizes.items():
        if ckpt.get("vocab_sizes", {}).get(u) not in (None, n):
            raise Lm2amError(f"{path} has {ckpt['vocab_sizes'][u]} {u} units but the targets {n}; "
                             "train in a new --exp-dir")
    a, b = old.get("train", {}), config["train"]
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k != "seed"]
    if changed:
        log.warning("resuming %s with changed train settings: %s", path,
                    ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in changed))
    if a.get("seed") != b.get("seed"):
        raise Lm2amError(f"{path} was trained with seed {a.get('seed')} but --seed is {b.get('seed')}; "
                         "use one --exp-dir per seed")


def average_state_dicts(paths: List[Path]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the models in ``paths`` (float tensors; others from the last)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: Dict[str, torch.Tensor] = {}
    for i, p in enumerate(paths):
        sd = load(p)["model"]
        for k, v in sd.items():
            if i == 0:
                avg[k] = v.clone().double() if v.is_floating_point() else v.clone()
            elif v.is_floating_point():
                avg[k] += v.double()
            else:
                avg[k] = v.clone()
    ref = load(paths[-1])["model"]
    return {k: (v / len(paths)).to(ref[k].dtype) if ref[k].is_floating_point() else v
            for k, v in avg.items()}


def load_model(path: Path | str, device: Any = "cpu"):
    """Rebuild the AM stored in ``final.pt`` (or any training checkpoint), in eval mode.

    Returns ``(model, info)``; ``info`` holds ``config`` (system/model/train dicts),
    ``num_senones`` and ``vocab_sizes``.
    """
    from lm2am.am.config import HeadConfig, make_model_config
    from lm2am.am.model import build_model
    from lm2am.config import from_dict

    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path}: model file missing; train the system first (steps/train_am.py)")
    ckpt = load(path)
    cfg = ckpt["config"]
    mcfg = make_model_config(cfg["model"], f"{path}: model")
    heads = [from_dict(HeadConfig, h, f"{path}: head") for h in cfg["system"]["heads"]]
    model = build_model(mcfg, ckpt["num_senones"], heads, ckpt["vocab_sizes"])
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, {k: ckpt[k] for k in ("config", "num_senones", "vocab_sizes")}

"""AM checkpoints (the shared format of :mod:`lm2am.checkpoint`): full training state for exact
resume, averaging into the final model, loading it for decoding.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping

import torch

from lm2am.checkpoint import (CheckpointFormat, average_state_dicts, epoch_checkpoints, rng_state,
                              restore_training_state, save, set_rng_state, training_state)
from lm2am.errors import Lm2amError

if TYPE_CHECKING:
    from lm2am.am.epoch import Progress, Trainer

log = logging.getLogger(__name__)

FORMAT = CheckpointFormat("lm2am-am", 1, "acoustic-model")


def load(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load an lm2am AM checkpoint, with a one-line error for anything else."""
    return FORMAT.load(path, map_location)


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


def sampler_state(sampler: Any, batches_done: int) -> Dict[str, Any]:
    """The sampler's state with its position set to the batches the loop actually consumed
    (a DataLoader with workers prefetches, which moves the sampler ahead)."""
    sd = sampler.state_dict()
    diag = sd["diagnostics"]
    cur = diag["stats_per_epoch"][diag["current_epoch"]]
    cur["kept_batches"], cur["discarded_batches"] = batches_done, 0
    return sd


def training_checkpoint(t: "Trainer", p: "Progress", mid_epoch: bool) -> Dict[str, Any]:
    """Everything needed to continue from here (``mid_epoch``: also the sampler position and
    the statistics of the epoch so far)."""
    acc = p.epoch_acc
    return {**FORMAT.header(), **training_state(t.model, t.opt, t.sched),
            "scaler": t.scaler.state_dict() if t.scaler.is_enabled() else None,
            "sampler": sampler_state(t.sampler, p.batch_in_epoch) if mid_epoch else None,
            "epoch": p.epoch, "batch_in_epoch": p.batch_in_epoch, "step": p.step, "rng": rng_state(),
            "config": t.config, "num_senones": t.num_senones, "vocab_sizes": t.vocab,
            "history": p.history, "nan_streak": p.nan_streak,
            "epoch_stats": ({k: (float(acc.sums[k]), float(acc.counts[k])) for k in acc.sums}
                            if mid_epoch else {})}


def resume(t: "Trainer", p: "Progress", path: Path) -> None:
    """Load the checkpoint ``path`` into the trainer and the position ``p`` (RNG states on
    rank 0 only); an incompatible checkpoint is an error."""
    ck = load(path)
    check_compatible(ck, t.config, path, t.num_senones, t.vocab)
    restore_training_state(ck, t.model, t.opt, t.sched)
    t.sched.lr_lambdas[0].__dict__.update(t.schedule.__dict__)  # the current config's schedule
    if ck.get("scaler") is not None and t.scaler.is_enabled():
        t.scaler.load_state_dict(ck["scaler"])
    p.epoch, p.batch_in_epoch, p.step = ck["epoch"], ck["batch_in_epoch"], ck["step"]
    p.nan_streak, p.history = ck.get("nan_streak", 0), ck.get("history", [])
    for k, (s, n) in ck.get("epoch_stats", {}).items():
        p.epoch_acc.add({k: (torch.tensor(s, dtype=torch.float64), torch.tensor(n, dtype=torch.float64))})
    if ck.get("sampler") is not None:
        try:
            t.sampler.load_state_dict(ck["sampler"])
        except AssertionError as e:
            raise Lm2amError(f"{path}: the sampler state does not fit this run ({e}); resume "
                             "with the same number of processes and the same seed") from None
    if ck.get("rng") is not None and t.d.is_main:
        set_rng_state(ck["rng"])
    log.info("resumed from %s: epoch %d, batch %d, step %d", path, p.epoch + 1, p.batch_in_epoch, p.step)


def write_final(t: "Trainer", p: "Progress", final: Path) -> None:
    """Average the last ``average_last_epochs`` epoch checkpoints into the model and ``final``."""
    cfg, exp_dir = t.cfg, t.exp_dir
    eps = epoch_checkpoints(exp_dir)
    use = [path for e, path in eps if e > cfg.epochs - cfg.average_last_epochs and e <= cfg.epochs]
    if not use:  # e.g. the dir holds a longer run's checkpoints and train.epochs was lowered
        raise Lm2amError(f"{exp_dir}: no epoch checkpoints within epochs "
                         f"{cfg.epochs - cfg.average_last_epochs + 1}..{cfg.epochs} to average "
                         f"(found epochs {[e for e, _ in eps]}); use a new --exp-dir or delete it")
    avg = average_state_dicts(use, FORMAT)
    t.model.load_state_dict(avg)
    save({**FORMAT.header(), "model": avg, "config": t.config, "num_senones": t.num_senones,
          "vocab_sizes": t.vocab, "step": p.step, "averaged": [path.name for path in use],
          "history": p.history}, final)
    log.info("%s: average of %s", final, ", ".join(path.name for path in use))


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

"""One epoch of AM training, in icefall's pieces: :func:`compute_loss` (forward and the
system's loss), :func:`optimizer_step` (backward, clipping, the skip of a non-finite batch),
:func:`train_one_epoch` (the batches, logging, mid-epoch checkpoints) and :func:`end_epoch`
(validation, history, the epoch checkpoint, the curve).

:class:`Trainer` holds what does not change during a run (model, optimizer, data, configs),
:class:`Progress` where the run is (what a checkpoint restores besides the model and
optimizer: :mod:`lm2am.am.checkpoint`). Only rank 0 logs, writes TensorBoard and checkpoints.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from lm2am.am import checkpoint as am_ckpt
from lm2am.am.config import SystemConfig, TrainConfig
from lm2am.am.data import AmDataset, batch_to
from lm2am.am.distributed import Dist
from lm2am.am.evaluate import StatsAccumulator, autocast, evaluate_model
from lm2am.am.losses import system_loss, training_forward
from lm2am.am.model import AcousticModel
from lm2am.am.optim import LrSchedule
from lm2am.checkpoint import prune, save
from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text
from lm2am.log import TensorBoard

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Trainer:
    """The parts of one AM training run (built by :mod:`lm2am.am.train`)."""

    system: SystemConfig
    cfg: TrainConfig
    config: Dict[str, Any]  # system, model and train configs as stored in checkpoints
    num_senones: int
    vocab: Dict[str, int]
    exp_dir: Path
    d: Dist
    dev: torch.device
    model: AcousticModel
    opt: torch.optim.Optimizer
    schedule: LrSchedule
    sched: Any  # LambdaLR over ``schedule``
    scaler: Any  # torch.cuda.amp.GradScaler (disabled without float16 AMP)
    sampler: Any
    train_ds: AmDataset
    steps_per_epoch: int
    use_amp: bool
    net: Optional[torch.nn.Module] = None  # the model, or its DDP wrapper
    tb: Optional[TensorBoard] = None
    dev_loader: Any = None

    @property
    def keep_epochs(self) -> int:
        return max(self.cfg.keep_last, self.cfg.average_last_epochs)


@dataclasses.dataclass
class Progress:
    """Where training is: epoch (0-based, the one running), batches done in it, updates done,
    non-finite batches in a row, per-epoch history and the statistics of the epoch so far."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    nan_streak: int = 0
    history: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch_acc: StatsAccumulator = dataclasses.field(default_factory=StatsAccumulator)


class LogWindow:
    """Statistics, wall time and frames since the last log line (carried across epochs)."""

    def __init__(self) -> None:
        self.acc = StatsAccumulator()
        self.t0, self.frames = time.time(), 0

    def reset(self) -> None:
        self.acc.reset()
        self.t0, self.frames = time.time(), 0


def compute_loss(t: Trainer, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Forward one batch; the system's loss and its statistics."""
    b = batch_to(batch, t.dev)
    with autocast(t.dev, t.use_amp, t.cfg.amp_dtype):
        out = training_forward(t.net, b, t.system)
    return system_loss(out, b["targets"], b["teacher"], t.system)


def optimizer_step(t: Trainer, loss: torch.Tensor) -> bool:
    """Backward, clip, step (and the LR schedule's step); returns True when the batch was
    skipped: a non-finite loss on any rank, or (without an AMP scaler) gradient norm."""
    ok = torch.isfinite(loss.detach()).to(torch.float32)
    if t.d.world_size > 1:  # every rank must take the same branch (collectives below)
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    t.opt.zero_grad(set_to_none=True)
    skipped = not bool(ok)
    if not skipped:
        t.scaler.scale(loss).backward()
        t.scaler.unscale_(t.opt)
        gnorm = torch.nn.utils.clip_grad_norm_(
            t.model.parameters(), t.cfg.grad_clip if t.cfg.grad_clip > 0 else float("inf"))
        if not t.scaler.is_enabled() and not torch.isfinite(gnorm):
            skipped = True  # (with a scaler, inf grads are its business)
            t.opt.zero_grad(set_to_none=True)
        else:
            t.scaler.step(t.opt)
            t.scaler.update()
    t.sched.step()
    return skipped


def _count_batch(t: Trainer, p: Progress, window: LogWindow, batch: Dict[str, Any],
                 stats: Dict[str, Any], skipped: bool) -> None:
    """Advance the position; accumulate statistics, or count (and warn about) a skipped batch,
    aborting after ``max_consecutive_nan`` in a row."""
    p.step += 1
    p.batch_in_epoch += 1
    if skipped:
        p.nan_streak += 1
        log.warning("step %d: non-finite loss or gradient on batch %s..., skipped "
                    "(%d in a row)", p.step, batch["cut_ids"][0], p.nan_streak)
        if p.nan_streak >= t.cfg.max_consecutive_nan:
            raise Lm2amError(f"{t.exp_dir}: {p.nan_streak} batches in a row with a non-finite loss (the "
                             f"last on cut {batch['cut_ids'][0]}); lower train.lr, check the inputs, or disable amp")
    else:
        p.nan_streak = 0
        p.epoch_acc.add(stats)
        window.acc.add(stats)


def _log_window(t: Trainer, p: Progress, window: LogWindow, bar: Any) -> None:
    """Log line, TensorBoard scalars and progress-bar loss of the window; then reset it."""
    m = window.acc.means()
    dt = max(time.time() - window.t0, 1e-9)
    m["frames_per_s"] = window.frames * t.d.world_size / dt
    t.tb.scalars("train", m, p.step)
    t.tb.scalars("train", {"lr": t.sched.get_last_lr()[0]}, p.step)
    log.info("epoch %d step %d: %s, lr %.2e", p.epoch + 1, p.step,
             ", ".join(f"{k} {v:.4g}" for k, v in m.items()), t.sched.get_last_lr()[0])
    if hasattr(bar, "set_postfix"):
        bar.set_postfix(loss=f"{m.get('loss', float('nan')):.3f}")
    window.reset()


def save_checkpoint(t: Trainer, p: Progress, mid_epoch: bool) -> None:
    """``checkpoint-<step>.pt`` (mid-epoch) or ``epoch-<n>.pt``; then prune to keep-last-k."""
    name = f"checkpoint-{p.step}.pt" if mid_epoch else f"epoch-{p.epoch}.pt"
    save(am_ckpt.training_checkpoint(t, p, mid_epoch), t.exp_dir / name)
    prune(t.exp_dir, t.cfg.keep_last, t.keep_epochs)


def train_one_epoch(t: Trainer, p: Progress, window: LogWindow, gen: torch.Generator,
                    stop_at_step: Optional[int] = None) -> bool:
    """The rest of epoch ``p.epoch`` (all of it unless resumed mid-epoch); False when stopped
    by ``stop_at_step`` (a testing hook: as if killed there)."""
    from tqdm import tqdm

    if p.batch_in_epoch == 0:
        t.sampler.set_epoch(p.epoch)
        p.epoch_acc.reset()
    if t.train_ds.perturber is not None:  # new draws every epoch, the same after a resume
        t.train_ds.perturber.set_epoch(p.epoch)
    loader = torch.utils.data.DataLoader(t.train_ds, sampler=t.sampler, batch_size=None,
                                         num_workers=t.cfg.num_workers, generator=gen)
    t.net.train()
    bar = tqdm(loader, total=t.steps_per_epoch, initial=p.batch_in_epoch,
               desc=f"{t.system.name} epoch {p.epoch + 1}/{t.cfg.epochs}",
               disable=(not t.d.is_main) or None, dynamic_ncols=True, leave=False)
    for batch in bar:
        loss, stats = compute_loss(t, batch)
        skipped = optimizer_step(t, loss)
        _count_batch(t, p, window, batch, stats, skipped)
        window.frames += int(batch["lengths"].sum())
        if t.d.is_main and p.step % t.cfg.log_every_steps == 0:
            _log_window(t, p, window, bar)
        if t.d.is_main and t.cfg.checkpoint_every_steps and p.step % t.cfg.checkpoint_every_steps == 0 \
                and p.batch_in_epoch < t.steps_per_epoch:
            save_checkpoint(t, p, mid_epoch=True)
        if stop_at_step is not None and p.step >= stop_at_step:
            return False
    bar.close()
    return True


def validate(t: Trainer) -> Dict[str, float]:
    """Statistics of the model on the dev part (rank 0)."""
    return evaluate_model(t.model, t.dev_loader, t.system, t.dev, t.use_amp, t.cfg.amp_dtype)


def _log_epoch(t: Trainer, epoch: int, entry: Dict[str, Any]) -> None:
    t.tb.scalars("epoch_train", entry["train"], epoch)
    if "dev" in entry:
        t.tb.scalars("dev", entry["dev"], epoch)
    log.info("epoch %d done: train %s%s", epoch,
             ", ".join(f"{k} {v:.4f}" for k, v in entry["train"].items()),
             ("; dev " + ", ".join(f"{k} {v:.4f}" for k, v in entry["dev"].items()))
             if "dev" in entry else "")


def end_epoch(t: Trainer, p: Progress) -> None:
    """Epoch statistics (summed over ranks), validation, then on rank 0 the history entry,
    the epoch checkpoint, ``history.json`` and ``training_curve.png``."""
    p.epoch_acc.all_reduce()
    entry: Dict[str, Any] = {"epoch": p.epoch + 1, "step": p.step, "train": p.epoch_acc.means()}
    if t.dev_loader is not None:
        entry["dev"] = validate(t)
    p.epoch += 1
    p.batch_in_epoch = 0
    if t.d.is_main:
        p.history.append(entry)
        _log_epoch(t, p.epoch, entry)
        save_checkpoint(t, p, mid_epoch=False)
        atomic_write_text(t.exp_dir / "history.json", json.dumps(p.history, indent=1) + "\n")
        try:
            from lm2am.report.plots import plot_training_curve

            plot_training_curve(p.history, t.exp_dir / "training_curve.png",
                                f"{t.system.name} (seed {t.cfg.seed})")
        except Exception as e:  # a plot must never stop training
            log.warning("training curve not plotted: %s", e)
    t.d.barrier()

"""Training loop of every AM system: one function, :func:`train_system`, for CPU, one GPU or
DDP under ``torchrun``.

What a run leaves in its experiment directory (``exp/am_<system>/seed<k>``):

* ``final.pt`` (averaged model for decoding), ``priors.npy`` (log senone priors);
* ``epoch-<n>.pt`` / ``checkpoint-<step>.pt`` (:mod:`lm2am.am.checkpoint`), pruned to the
  newest few;
* ``history.json`` (per-epoch train and dev statistics), ``training_curve.png``;
* ``tensorboard/`` (every loss term and every head's frame accuracy, train and dev, and the
  learning rate), ``log/train.log``, ``config.json``.

Resume is automatic: with a checkpoint in the directory training continues from the newest
one (model, optimizer, scheduler, scaler, sampler position, RNG states); on CPU the result is
bit-for-bit the same as an uninterrupted run with the same thread count. A checkpoint made
with another model or system config is an error. A finished run (``.done`` marker matching the
config and inputs, ``final.pt`` present) is skipped.

DDP: started by ``torchrun --nproc-per-node N steps/train_am.py ...`` (``WORLD_SIZE`` > 1):
gloo on CPU, nccl on CUDA; the sampler splits batches over ranks; only rank 0 logs, writes
TensorBoard and checkpoints. Dropout RNG is seeded per rank (``seed + rank``), and only rank
0's RNG state is stored, so an exact resume is a single-process (CPU) guarantee.

A batch whose loss (or, without an AMP scaler, gradient norm) is not finite is skipped with a
warning; ``max_consecutive_nan`` such batches in a row abort the run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from lm2am.am import checkpoint as ckpt_mod
from lm2am.am.config import ModelConfig, SystemConfig, TrainConfig, config_dict
from lm2am.am.data import (AmDataset, DataPaths, batch_to, load_cuts, make_eval_sampler,
                           make_loader, make_sampler, teacher_dirs)
from lm2am.am.evaluate import StatsAccumulator, autocast, evaluate_model
from lm2am.am.losses import system_loss
from lm2am.am.model import AcousticModel, build_model
from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_path, atomic_write_text

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules


class LrSchedule:
    """LR multiplier by step (a callable object, so ``LambdaLR`` stores its settings).

    ``warmup_cosine``: linear warm-up to 1, cosine to ``final_ratio`` at ``total_steps``, flat
    after. ``noam``: linear warm-up, then ``sqrt(warmup / step)``. ``constant``: warm-up, then 1.
    """

    def __init__(self, kind: str, warmup_steps: int, total_steps: int, final_ratio: float):
        self.kind, self.warmup, self.total, self.final = kind, warmup_steps, total_steps, final_ratio

    def __call__(self, step: int) -> float:
        s = step + 1  # LambdaLR calls with 0 before the first step
        warm = min(1.0, s / self.warmup) if self.warmup > 0 else 1.0
        if self.kind == "constant" or s <= self.warmup:
            return warm
        if self.kind == "noam":
            return math.sqrt(self.warmup / s) if self.warmup > 0 else 1.0
        span = max(1, self.total - self.warmup)
        t = min(1.0, (s - self.warmup) / span)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))


# ----------------------------------------------------------------------------------------------
# Distributed set-up


@dataclasses.dataclass
class Dist:
    """Process placement: ``world_size`` 1 without torchrun."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def setup_distributed(device: str) -> Dist:
    """Initialize ``torch.distributed`` when ``WORLD_SIZE`` > 1 (torchrun's environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, world_size=world, rank=rank)
        here = True
    return Dist(world, rank, local, here)


def resolve_device(device: str, d: Dist) -> torch.device:
    """``cuda`` -> this rank's GPU (``cuda:<local_rank>``); checks that CUDA exists."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise Lm2amError(f"--device {device}: CUDA is not available here; use --device cpu")
        dev = torch.device(f"cuda:{d.local_rank}") if d.world_size > 1 or device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
        return dev
    if device != "cpu":
        raise Lm2amError(f"--device {device}: use cpu, cuda or cuda:N")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed torch, CUDA, Python and numpy RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Helpers


def _param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases and norm gains (1-D parameters)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def count_batches(cuts: Any, cfg: TrainConfig, d: Dist) -> int:
    """Batches per epoch for this rank (a metadata-only pass of a twin sampler)."""
    s = make_sampler(cuts, cfg.max_duration, shuffle=True, seed=cfg.seed, num_buckets=cfg.num_buckets,
                     world_size=d.world_size, rank=d.rank)
    s.set_epoch(0)
    return sum(1 for _ in s)


def _sampler_state(sampler: Any, batches_done: int) -> Dict[str, Any]:
    """The sampler's state with its position set to the batches the loop actually consumed
    (a DataLoader with workers prefetches, which moves the sampler ahead)."""
    sd = sampler.state_dict()
    diag = sd["diagnostics"]
    cur = diag["stats_per_epoch"][diag["current_epoch"]]
    cur["kept_batches"], cur["discarded_batches"] = batches_done, 0
    return sd


def _plot_curve(history: List[Dict[str, Any]], path: Path, title: str) -> None:
    """Training curve PNG: loss per epoch (train, dev) and dev frame accuracy per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [h["train"].get("loss", float("nan")) for h in history], "o-", label="train loss")
    a.plot(ep, [h["train"].get("main_ce", float("nan")) for h in history], "o--", label="train main CE")
    if any(h.get("dev") for h in history):
        a.plot(ep, [h.get("dev", {}).get("main_ce", float("nan")) for h in history], "s-", label="dev main CE")
    a.set_xlabel("epoch")
    a.set_ylabel("loss per frame")
    a.legend()
    a.grid(alpha=0.3)
    keys = sorted({k for h in history for k in h.get("dev", {}) if k.endswith("_acc")})
    src = "dev" if keys else "train"
    if not keys:
        keys = sorted({k for h in history for k in h["train"] if k.endswith("_acc")})
    for k in keys:
        b.plot(ep, [h.get(src, {}).get(k, float("nan")) for h in history], "o-", label=k[:-4])
    b.set_xlabel("epoch")
    b.set_ylabel(f"{src} frame accuracy")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


class _Tensorboard:
    """SummaryWriter on rank 0 (a no-op elsewhere, or when tensorboard is missing)."""

    def __init__(self, log_dir: Optional[Path]):
        self.w = None
        if log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.w = SummaryWriter(str(log_dir))
            except ImportError as e:  # training must not depend on it
                log.warning("tensorboard unavailable (%s); no scalars written", e)

    def scalars(self, prefix: str, values: Dict[str, float], step: int) -> None:
        if self.w is not None:
            for k, v in values.items():
                self.w.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


@contextlib.contextmanager
def _log_file(path: Optional[Path]):
    """Also write the log records of this run to ``path`` (rank 0)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    from lm2am.log import FORMAT

    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(h)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(h)
        h.close()


# ----------------------------------------------------------------------------------------------
# The loop


def train_system(system: SystemConfig, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 paths: DataPaths, exp_dir: Path | str, device: str = "cpu", *,
                 posterior_loader: Optional[Callable[..., Any]] = None,
                 stop_at_step: Optional[int] = None) -> Optional[Path]:
    """Train one system and write ``final.pt`` (+ priors, history, curve) to ``exp_dir``.

    Args:
        system, model_cfg, train_cfg: the three configs (:mod:`lm2am.am.config`).
        paths: targets cuts, CMVN, parts and the teacher-posterior pattern.
        exp_dir: the experiment directory (one per system and seed).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun: each rank's local GPU).
        posterior_loader: replaces ``lm2am.lm.loader.load_teacher_posteriors`` (tests).
        stop_at_step: testing hook: return ``None`` right after this global step, as if the
            process had been killed there (nothing more is written).

    Returns the path of ``final.pt`` (``None`` when stopped by ``stop_at_step``).
    """
    exp_dir = Path(exp_dir)
    d = setup_distributed(device)
    try:
        with _log_file(exp_dir / "log" / "train.log" if d.is_main else None):
            return _train(system, model_cfg, train_cfg, paths, exp_dir, device, d,
                          posterior_loader, stop_at_step)
    finally:
        if d.initialized_here:
            torch.distributed.destroy_process_group()


def _train(system: SystemConfig, model_cfg: ModelConfig, cfg: TrainConfig, paths: DataPaths,
           exp_dir: Path, device_name: str, d: Dist, posterior_loader: Any,
           stop_at_step: Optional[int]) -> Optional[Path]:
    from tqdm import tqdm

    from lm2am.data import load_global_cmvn
    from lm2am.targets import read_info

    dev = resolve_device(device_name, d)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    config = config_dict(system, model_cfg, cfg)
    info = read_info(paths.targets_dir, paths.train_part)
    vocab = {"senone": info.num_senones, "monophone": info.num_phones,
             "subword": info.num_subwords or 0}
    for h in system.heads:
        if not vocab[h.unit]:
            raise Lm2amError(f"head {h.name!r}: the targets of {paths.train_part!r} record no "
                             f"{h.unit} vocabulary size; rebuild them with the BPE model")
    inputs = [paths.cuts(paths.train_part), paths.cmvn]
    marker = DoneMarker(exp_dir / ".done", params={"config": config, "paths": {
        k: str(v) for k, v in dataclasses.asdict(paths).items()}}, inputs=inputs)
    final = exp_dir / "final.pt"
    if marker.is_done() and final.is_file():
        log.info("%s: training of %s is complete and up to date, skipping", final, system.name)
        return final

    seed_everything(cfg.seed + d.rank)
    cmvn = load_global_cmvn(paths.cmvn)
    train_cuts = load_cuts(paths, paths.train_part)
    dev_cuts = load_cuts(paths, paths.dev_part) if (cfg.valid and paths.dev_part) else None
    units = system.teacher_units()
    train_ds = AmDataset(cmvn, model_cfg.subsampling,
                         teacher_dirs(paths, units, paths.train_part, required=True), posterior_loader,
                         vocab)
    model: AcousticModel = build_model(model_cfg, info.num_senones, system.heads, vocab)
    model.set_cmvn(*cmvn)
    model.to(dev)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = count_batches(train_cuts, cfg, d)
    if steps_per_epoch == 0:
        raise Lm2amError(f"{paths.cuts(paths.train_part)}: no training batches; the part is empty")
    schedule = LrSchedule(cfg.schedule, cfg.warmup_steps, cfg.epochs * steps_per_epoch, cfg.final_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.cuda.amp.GradScaler(enabled=use_amp and cfg.amp_dtype == "float16")
    sampler = make_sampler(train_cuts, cfg.max_duration, shuffle=True, seed=cfg.seed,
                           num_buckets=cfg.num_buckets, world_size=d.world_size, rank=d.rank)

    # ---- resume
    epoch, batch_in_epoch, step, nan_streak = 0, 0, 0, 0
    history: List[Dict[str, Any]] = []
    epoch_acc = StatsAccumulator()
    latest = ckpt_mod.latest_checkpoint(exp_dir) if exp_dir.is_dir() else None
    if latest is not None:
        ck = ckpt_mod.load(latest)
        ckpt_mod.check_compatible(ck, config, latest, info.num_senones, vocab)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        sched.lr_lambdas[0].__dict__.update(schedule.__dict__)  # the current config's schedule
        if ck.get("scaler") is not None and scaler.is_enabled():
            scaler.load_state_dict(ck["scaler"])
        epoch, batch_in_epoch, step = ck["epoch"], ck["batch_in_epoch"], ck["step"]
        nan_streak, history = ck.get("nan_streak", 0), ck.get("history", [])
        for k, (s, n) in ck.get("epoch_stats", {}).items():
            epoch_acc.add({k: (torch.tensor(s, dtype=torch.float64), torch.tensor(n, dtype=torch.float64))})
        if ck.get("sampler") is not None:
            try:
                sampler.load_state_dict(ck["sampler"])
            except AssertionError as e:
                raise Lm2amError(f"{latest}: the sampler state does not fit this run ({e}); resume "
                                 "with the same number of processes and the same seed") from None
        if ck.get("rng") is not None and d.is_main:
            ckpt_mod.set_rng_state(ck["rng"])
        log.info("resumed from %s: epoch %d, batch %d, step %d", latest, epoch + 1, batch_in_epoch, step)
    elif d.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp_dir / "config.json", json.dumps(config, indent=1) + "\n")

    if d.is_main:
        log.info("system %s: %d senones, heads %s, teachers %s", system.name, info.num_senones,
                 [f"{h.name}@{model.head_layers[h.name]}" for h in system.heads] or "none",
                 units or "none")
        log.info("model: %.2fM parameters (%.2fM without heads), %d batches/epoch x %d epochs, device %s, "
                 "world size %d", model.num_params() / 1e6, model.num_params(True) / 1e6,
                 steps_per_epoch, cfg.epochs, dev, d.world_size)
        log.info("config: %s", json.dumps(config, sort_keys=True))

    net: torch.nn.Module = model
    if d.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    tb = _Tensorboard(exp_dir / "tensorboard" if d.is_main else None)
    dev_loader = None
    if dev_cuts is not None and d.is_main:
        dev_tdirs = teacher_dirs(paths, units, paths.dev_part, required=False)
        if len(dev_tdirs) < len(units):
            dev_tdirs = {}
        dev_loader = make_loader(AmDataset(cmvn, model_cfg.subsampling, dev_tdirs, posterior_loader, vocab),
                                 make_eval_sampler(dev_cuts, cfg.max_duration), cfg.num_workers)

    def make_state(epoch_: int, batch_: int, mid_epoch: bool) -> Dict[str, Any]:
        return {"format": ckpt_mod.FORMAT, "version": ckpt_mod.VERSION, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "sampler": _sampler_state(sampler, batch_) if mid_epoch else None,
                "epoch": epoch_, "batch_in_epoch": batch_, "step": step, "rng": ckpt_mod.rng_state(),
                "config": config, "num_senones": info.num_senones, "vocab_sizes": vocab,
                "history": history, "nan_streak": nan_streak,
                "epoch_stats": ({k: (float(epoch_acc.sums[k]), float(epoch_acc.counts[k]))
                                 for k in epoch_acc.sums} if mid_epoch else {})}

    keep_epochs = max(cfg.keep_last, cfg.average_last_epochs)
    window = StatsAccumulator()
    t_window, frames_window = time.time(), 0
    gen = torch.Generator()  # DataLoader draws its base seed here, not from the global RNG
    gen.manual_seed(cfg.seed)
    try:
        while epoch < cfg.epochs:
            if batch_in_epoch == 0:
                sampler.set_epoch(epoch)
                epoch_acc.reset()
            loader = torch.utils.data.DataLoader(train_ds, sampler=sampler, batch_size=None,
                                                 num_workers=cfg.num_workers, generator=gen)
            net.train()
            bar = tqdm(loader, total=steps_per_epoch, initial=batch_in_epoch,
                       desc=f"{system.name} epoch {epoch + 1}/{cfg.epochs}",
                       disable=(not d.is_main) or None, dynamic_ncols=True, leave=False)
            for batch in bar:
                b = batch_to(batch, dev)
                with autocast(dev, use_amp, cfg.amp_dtype):
                    out = net(b["features"], b["lengths"])
                loss, stats = system_loss(out, b["targets"], b["teacher"], system)
                ok = torch.isfinite(loss.detach()).to(torch.float32)
                if d.world_size > 1:  # every rank must take the same branch (collectives below)
                    torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
                opt.zero_grad(set_to_none=True)
                skipped = not bool(ok)
                if not skipped:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    gnorm = torch.nn.utils.clip_grad_norm_(
                        model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                    if not scaler.is_enabled() and not torch.isfinite(gnorm):
                        skipped = True  # (with a scaler, inf grads are its business)
                        opt.zero_grad(set_to_none=True)
                    else:
                        scaler.step(opt)
                        scaler.update()
                sched.step()
                step += 1
                batch_in_epoch += 1
                if skipped:
                    nan_streak += 1
                    log.warning("step %d: non-finite loss or gradient on batch %s..., skipped "
                                "(%d in a row)", step, batch["cut_ids"][0], nan_streak)
                    if nan_streak >= cfg.max_consecutive_nan:
                        raise Lm2amError(f"{nan_streak} batches in a row with a non-finite loss; "
                                         "lower train.lr, check the inputs, or disable amp")
                else:
                    nan_streak = 0
                    epoch_acc.add(stats)
                    window.add(stats)
                frames_window += int(batch["lengths"].sum())
                if d.is_main and step % cfg.log_every_steps == 0:
                    m = window.means()
                    dt = max(time.time() - t_window, 1e-9)
                    m["frames_per_s"] = frames_window * d.world_size / dt
                    tb.scalars("train", m, step)
                    tb.scalars("train", {"lr": sched.get_last_lr()[0]}, step)
                    log.info("epoch %d step %d: %s, lr %.2e", epoch + 1, step,
                             ", ".join(f"{k} {v:.4g}" for k, v in m.items()), sched.get_last_lr()[0])
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{m.get('loss', float('nan')):.3f}")
                    window.reset()
                    t_window, frames_window = time.time(), 0
                if d.is_main and cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 \
                        and batch_in_epoch < steps_per_epoch:
                    ckpt_mod.save(make_state(epoch, batch_in_epoch, True), exp_dir / f"checkpoint-{step}.pt")
                    ckpt_mod.prune(exp_dir, cfg.keep_last, keep_epochs)
                if stop_at_step is not None and step >= stop_at_step:
                    return None
            bar.close()

            # ---- end of epoch: statistics, validation, checkpoint, curve
            epoch_acc.all_reduce()
            entry: Dict[str, Any] = {"epoch": epoch + 1, "step": step, "train": epoch_acc.means()}
            if dev_loader is not None:
                entry["dev"] = evaluate_model(model, dev_loader, system, dev, use_amp, cfg.amp_dtype)
            epoch += 1
            batch_in_epoch = 0
            if d.is_main:
                history.append(entry)
                tb.scalars("epoch_train", entry["train"], epoch)
                if "dev" in entry:
                    tb.scalars("dev", entry["dev"], epoch)
                log.info("epoch %d done: train %s%s", epoch,
                         ", ".join(f"{k} {v:.4f}" for k, v in entry["train"].items()),
                         ("; dev " + ", ".join(f"{k} {v:.4f}" for k, v in entry["dev"].items()))
                         if "dev" in entry else "")
                ckpt_mod.save(make_state(epoch, 0, False), exp_dir / f"epoch-{epoch}.pt")
                ckpt_mod.prune(exp_dir, cfg.keep_last, keep_epochs)
                atomic_write_text(exp_dir / "history.json", json.dumps(history, indent=1) + "\n")
                try:
                    _plot_curve(history, exp_dir / "training_curve.png", f"{system.name} (seed {cfg.seed})")
                except Exception as e:  # a plot must never stop training
                    log.warning("training curve not plotted: %s", e)
            d.barrier()
    finally:
        tb.close()

    # ---- averaging, priors
    if d.is_main:
        eps = ckpt_mod.epoch_checkpoints(exp_dir)
        use = [p for e, p in eps if e > cfg.epochs - cfg.average_last_epochs and e <= cfg.epochs]
        if not use:  # e.g. the dir holds a longer run's checkpoints and train.epochs was lowered
            raise Lm2amError(f"{exp_dir}: no epoch checkpoints within epochs "
                             f"{cfg.epochs - cfg.average_last_epochs + 1}..{cfg.epochs} to average "
                             f"(found epochs {[e for e, _ in eps]}); use a new --exp-dir or delete it")
        avg = ckpt_mod.average_state_dicts(use)
        model.load_state_dict(avg)
        ckpt_mod.save({"format": ckpt_mod.FORMAT, "version": ckpt_mod.VERSION, "model": avg,
                       "config": config, "num_senones": info.num_senones, "vocab_sizes": vocab,
                       "step": step, "averaged": [p.name for p in use], "history": history}, final)
        log.info("%s: average of %s", final, ", ".join(p.name for p in use))
        _write_priors(model, cfg, train_cuts, train_ds, info.num_senones, exp_dir, dev)
        marker.mark()
    d.barrier()
    return final


def _write_priors(model: AcousticModel, cfg: TrainConfig, cuts: Any, ds: AmDataset,
                  num_senones: int, exp_dir: Path, dev: torch.device) -> None:
    from lm2am.am.priors import count_priors, posterior_priors, save_priors

    if cfg.priors == "posteriors":
        loader = make_loader(AmDataset((ds.mean, 1.0 / ds.inv_std), ds.subsampling, {}),
                             make_eval_sampler(cuts, cfg.max_duration), cfg.num_workers)
        p = posterior_priors(model, loader, dev)
    else:
        p = count_priors(cuts, num_senones, model.cfg.subsampling)
    save_priors(exp_dir / "priors.npy", p)
    log.info("%s: %s log-priors of %d senones", exp_dir / "priors.npy", cfg.priors, num_senones)

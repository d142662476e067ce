"""Training of every AM system: one function, :func:`train_system`, for CPU, one GPU or DDP
under ``torchrun``. This module sets a run up and drives it; the pieces live in
:mod:`lm2am.am.epoch` (loss, update, one epoch, validation), :mod:`lm2am.am.checkpoint`
(resume, averaging), :mod:`lm2am.am.optim` (AdamW groups, LR schedules) and
:mod:`lm2am.am.distributed` (ranks, devices, seeding).

What a run leaves in its experiment directory (``exp/am_<system>/seed<k>``):

* ``final.pt`` (averaged model for decoding), ``priors.npy`` (log senone priors);
* ``epoch-<n>.pt`` / ``checkpoint-<step>.pt`` (:mod:`lm2am.am.checkpoint`), pruned to the
  newest few;
* ``history.json`` (per-epoch train and dev statistics), ``training_curve.png``;
* ``train_data.json``: the hours and utterances trained on (``train.max_hours`` picks a fixed
  subset of the part, :mod:`lm2am.am.subset`);
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

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch

from lm2am.am import checkpoint as am_ckpt
from lm2am.am.config import ModelConfig, SystemConfig, TrainConfig, config_dict
from lm2am.am.augment import CutPerturber, make_spec_augment
from lm2am.am.data import (AmDataset, DataPaths, load_cuts, make_eval_sampler, make_loader,
                           make_sampler, speaker_means_for, teacher_dirs)
from lm2am.am.distributed import Dist, resolve_device, seed_everything, setup_distributed
from lm2am.am.epoch import LogWindow, Progress, Trainer, end_epoch, train_one_epoch
from lm2am.am.model import AcousticModel, build_model
from lm2am.am.optim import LrSchedule, param_groups
from lm2am.am.subset import TrainSubset, select_hours
from lm2am.checkpoint import latest_checkpoint
from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_write_text
from lm2am.log import TensorBoard, log_to_file

log = logging.getLogger(__name__)


class _Data(NamedTuple):
    """The inputs of a run: CMVN stats, train (sub)set and dev cuts, teacher units."""

    cmvn: Any
    train_cuts: Any
    dev_cuts: Any
    units: List[str]
    subset: TrainSubset


def count_batches(cuts: Any, cfg: TrainConfig, d: Dist) -> int:
    """Batches per epoch for this rank (a metadata-only pass of a twin sampler)."""
    s = make_sampler(cuts, cfg.max_duration, shuffle=True, seed=cfg.seed, num_buckets=cfg.num_buckets,
                     world_size=d.world_size, rank=d.rank)
    s.set_epoch(0)
    return sum(1 for _ in s)


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
        with log_to_file(exp_dir / "log" / "train.log" if d.is_main else None):
            return _train(system, model_cfg, train_cfg, paths, exp_dir, device, d,
                          posterior_loader, stop_at_step)
    finally:
        if d.initialized_here:
            torch.distributed.destroy_process_group()


def _vocab_sizes(system: SystemConfig, info: Any, paths: DataPaths) -> Dict[str, int]:
    """Vocabulary size of each unit the targets record; every head's unit must have one."""
    vocab = {"senone": info.num_senones, "monophone": info.num_phones,
             "subword": info.num_subwords or 0}
    for h in system.heads:
        if not vocab[h.unit]:
            raise Lm2amError(f"head {h.name!r}: the targets of {paths.train_part!r} record no "
                             f"{h.unit} vocabulary size; rebuild them with the BPE model")
    return vocab


def _train(system: SystemConfig, model_cfg: ModelConfig, cfg: TrainConfig, paths: DataPaths,
           exp_dir: Path, device_name: str, d: Dist, posterior_loader: Any,
           stop_at_step: Optional[int]) -> Optional[Path]:
    from lm2am.targets import read_info

    dev = resolve_device(device_name, d)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    config = config_dict(system, model_cfg, cfg)
    info = read_info(paths.targets_dir, paths.train_part)
    vocab = _vocab_sizes(system, info, paths)
    marker = DoneMarker(exp_dir / ".done", params={"config": _marker_config(config), "paths": {
        k: str(v) for k, v in dataclasses.asdict(paths).items()}},
        inputs=[paths.cuts(paths.train_part), paths.cmvn])
    final = exp_dir / "final.pt"
    if marker.is_done() and final.is_file():
        log.info("%s: training of %s is complete and up to date, skipping", final, system.name)
        return final

    seed_everything(cfg.seed + d.rank)
    data = _load_data(system, cfg, paths)
    t = _build_trainer(system, model_cfg, cfg, paths, exp_dir, d, dev, config, info.num_senones,
                       vocab, data, posterior_loader)
    p = _resume_or_start(t)
    _log_setup(t, data)
    _attach_loop_parts(t, model_cfg, paths, data, posterior_loader)
    gen = torch.Generator()  # DataLoader draws its base seed here, not from the global RNG
    gen.manual_seed(cfg.seed)
    try:
        if not _fit(t, p, gen, stop_at_step):
            return None
    finally:
        t.tb.close()

    if d.is_main:
        am_ckpt.write_final(t, p, final)
        _write_priors(t.model, cfg, data.train_cuts, t.train_ds, info.num_senones, exp_dir, dev)
        marker.mark()
    d.barrier()
    return final


def _marker_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The config as the done marker hashes it: ``train.max_hours: null`` (the default) left
    out, so runs finished before the option existed stay done."""
    if config["train"].get("max_hours") is not None:
        return config
    return {**config, "train": {k: v for k, v in config["train"].items() if k != "max_hours"}}


def _load_data(system: SystemConfig, cfg: TrainConfig, paths: DataPaths) -> _Data:
    from lm2am.data import load_global_cmvn

    cmvn = load_global_cmvn(paths.cmvn)
    subset = select_hours(load_cuts(paths, paths.train_part), cfg.max_hours)
    dev_cuts = load_cuts(paths, paths.dev_part) if (cfg.valid and paths.dev_part) else None
    return _Data(cmvn, subset.cuts, dev_cuts, system.teacher_units(), subset)


def _perturber(system: SystemConfig, cfg: TrainConfig, units: List[str]) -> Optional[CutPerturber]:
    """The per-cut perturbations of ``train.augment`` (None when off)."""
    aug = cfg.augment_config()
    if units and any(s != 1.0 for s in aug.time_stretch):
        raise Lm2amError(f"system {system.name}: train.augment.time_stretch changes the frame rate, "
                         "which the stored teacher posteriors do not follow; drop time_stretch for "
                         "systems with teachers or interpolation")
    return CutPerturber(aug, cfg.seed) if aug.perturbs_cuts else None


def _build_trainer(system: SystemConfig, model_cfg: ModelConfig, cfg: TrainConfig,
                   paths: DataPaths, exp_dir: Path, d: Dist, dev: torch.device,
                   config: Dict[str, Any], num_senones: int, vocab: Dict[str, int], data: _Data,
                   posterior_loader: Any) -> Trainer:
    """Training set, model (initialized from the seeded RNG), AdamW, LR schedule, AMP scaler
    and sampler, in this order."""
    perturber = _perturber(system, cfg, data.units)
    train_ds = AmDataset(data.cmvn, model_cfg.subsampling,
                         teacher_dirs(paths, data.units, paths.train_part, required=True),
                         posterior_loader, vocab, perturber=perturber,
                         speaker_means=speaker_means_for(model_cfg.input_norm, data.train_cuts))
    model: AcousticModel = build_model(model_cfg, num_senones, system.heads, vocab)
    model.spec_augment = make_spec_augment(cfg.augment_config())
    model.set_cmvn(*data.cmvn)
    model.to(dev)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = count_batches(data.train_cuts, cfg, d)
    if steps_per_epoch == 0:
        raise Lm2amError(f"{paths.cuts(paths.train_part)}: no training batches; the part is empty")
    schedule = LrSchedule(cfg.schedule, cfg.warmup_steps, cfg.epochs * steps_per_epoch, cfg.final_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.cuda.amp.GradScaler(enabled=use_amp and cfg.amp_dtype == "float16")
    sampler = make_sampler(data.train_cuts, cfg.max_duration, shuffle=True, seed=cfg.seed,
                           num_buckets=cfg.num_buckets, world_size=d.world_size, rank=d.rank)
    return Trainer(system=system, cfg=cfg, config=config, num_senones=num_senones, vocab=vocab,
                   exp_dir=exp_dir, d=d, dev=dev, model=model, opt=opt, schedule=schedule,
                   sched=sched, scaler=scaler, sampler=sampler, train_ds=train_ds,
                   steps_per_epoch=steps_per_epoch, use_amp=use_amp)


def _resume_or_start(t: Trainer) -> Progress:
    """Resume from the newest checkpoint of the experiment directory, or (rank 0) create it
    and write ``config.json``."""
    p = Progress()
    latest = latest_checkpoint(t.exp_dir, am_ckpt.FORMAT) if t.exp_dir.is_dir() else None
    if latest is not None:
        am_ckpt.resume(t, p, latest)
    elif t.d.is_main:
        t.exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(t.exp_dir / "config.json", json.dumps(t.config, indent=1) + "\n")
    return p


def _log_setup(t: Trainer, data: _Data) -> None:
    """Log the run's set-up and write ``train_data.json`` (rank 0)."""
    if not t.d.is_main:
        return
    units = data.units
    log.info("training data: %s", data.subset.describe())
    atomic_write_text(t.exp_dir / "train_data.json", json.dumps(data.subset.as_dict(), indent=1) + "\n")
    model = t.model
    log.info("system %s: %d senones, heads %s, teachers %s", t.system.name, t.num_senones,
             [f"{h.name}@{model.head_layers[h.name]}" for h in t.system.heads] or "none",
             units or "none")
    log.info("model: %.2fM parameters (%.2fM without heads), %d batches/epoch x %d epochs, device %s, "
             "world size %d", model.num_params() / 1e6, model.num_params(True) / 1e6,
             t.steps_per_epoch, t.cfg.epochs, t.dev, t.d.world_size)
    log.info("config: %s", json.dumps(t.config, sort_keys=True))


def _attach_loop_parts(t: Trainer, model_cfg: ModelConfig, paths: DataPaths, data: _Data,
                       posterior_loader: Any) -> None:
    """The DDP wrapper, TensorBoard writer and dev loader (the last two on rank 0 only)."""
    t.net = t.model
    if t.d.world_size > 1:
        t.net = torch.nn.parallel.DistributedDataParallel(
            t.model, device_ids=[t.dev.index] if t.dev.type == "cuda" else None)
    t.tb = TensorBoard(t.exp_dir / "tensorboard" if t.d.is_main else None)
    if data.dev_cuts is not None and t.d.is_main:
        dev_tdirs = teacher_dirs(paths, data.units, paths.dev_part, required=False)
        if len(dev_tdirs) < len(data.units):
            dev_tdirs = {}
        t.dev_loader = make_loader(AmDataset(data.cmvn, model_cfg.subsampling, dev_tdirs, posterior_loader,
                                             t.vocab, speaker_means=speaker_means_for(
                                                 model_cfg.input_norm, data.dev_cuts)),
                                   make_eval_sampler(data.dev_cuts, t.cfg.max_duration), t.cfg.num_workers)


def _fit(t: Trainer, p: Progress, gen: torch.Generator, stop_at_step: Optional[int]) -> bool:
    """Epochs until ``train.epochs``; False when stopped by ``stop_at_step``."""
    window = LogWindow()
    while p.epoch < t.cfg.epochs:
        if not train_one_epoch(t, p, window, gen, stop_at_step):
            return False
        end_epoch(t, p)
    return True


def _write_priors(model: AcousticModel, cfg: TrainConfig, cuts: Any, ds: AmDataset,
                  num_senones: int, exp_dir: Path, dev: torch.device) -> None:
    from lm2am.am.priors import count_priors, posterior_priors, save_priors

    if cfg.priors == "posteriors":
        loader = make_loader(AmDataset((ds.mean, 1.0 / ds.inv_std), ds.subsampling, {},
                                       speaker_means=ds.speaker_means),
                             make_eval_sampler(cuts, cfg.max_duration), cfg.num_workers)
        p = posterior_priors(model, loader, dev)
    else:
        p = count_priors(cuts, num_senones, model.cfg.subsampling)
    save_priors(exp_dir / "priors.npy", p)
    log.info("%s: %s log-priors of %d senones", exp_dir / "priors.npy", cfg.priors, num_senones)

"""Frame-level evaluation of a trained AM: losses and frame accuracy of the main output and of
every auxiliary head on a part (dev), written to ``<exp_dir>/eval_<part>.json``.

Frame accuracy = argmax of an output equal to the hard label of its unit (senone, monophone,
subword piece; subword frames on silence are not counted), at the model's frame rate. It makes
the systems comparable before decoding exists. Distillation losses are reported when the
part's teacher posteriors exist (they are optional for evaluation).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from lm2am.am.config import SystemConfig
from lm2am.am.losses import eval_stats
from lm2am.config import from_dict
from lm2am.io import write_if_changed

log = logging.getLogger(__name__)


class StatsAccumulator:
    """Sums ``(sum, count)`` statistics over batches (on device; one sync when read)."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, torch.Tensor] = {}

    def add(self, stats: Mapping[str, Any]) -> None:
        for k, (s, n) in stats.items():
            s, n = s.detach().double(), n.detach().double()
            if k in self.sums:
                self.sums[k] += s
                self.counts[k] += n
            else:
                self.sums[k], self.counts[k] = s.clone(), n.clone()

    def all_reduce(self) -> None:
        """Sum over DDP processes (no-op without torch.distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for d in (self.sums, self.counts):
                for k in sorted(d):
                    dist.all_reduce(d[k])

    def means(self) -> Dict[str, float]:
        return {k: float(self.sums[k] / self.counts[k].clamp(min=1)) for k in sorted(self.sums)}

    def reset(self) -> None:
        self.sums, self.counts = {}, {}


def autocast(device: torch.device, enabled: bool, dtype: str = "float16"):
    """``torch.autocast`` on CUDA when enabled; a no-op context otherwise."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, loader: Any, system: SystemConfig,
                   device: torch.device, amp: bool = False, amp_dtype: str = "float16"
                   ) -> Dict[str, float]:
    """Mean of every statistic of :func:`lm2am.am.losses.eval_stats` over ``loader``
    (losses per frame, accuracies as fractions)."""
    from tqdm import tqdm

    from lm2am.am.data import batch_to

    was_training = model.training
    model.eval()
    acc = StatsAccumulator()
    frames = 0
    bar = tqdm(desc="evaluate", unit="batch", disable=None, leave=False)  # no len(): lhotse samplers
    try:
        for batch in loader:
            b = batch_to(batch, device)
            with autocast(device, amp, amp_dtype):
                out = model(b["features"], b["lengths"])
            acc.add(eval_stats(out, b["targets"], b["teacher"], system))
            frames += int(out["lengths"].sum())
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    res = acc.means()
    res["frames"] = frames
    return res


def evaluate_exp(model_path: Path | str, paths: Any, part: str, device: str = "cpu",
                 out_json: Optional[Path | str] = None, max_duration: float = 200.0,
                 posterior_loader: Any = None) -> Dict[str, Any]:
    """Evaluate a trained model file (``final.pt``) on ``part``; write and return the results.

    ``paths`` is a :class:`lm2am.am.data.DataPaths`; teacher posteriors of ``part`` are used
    where they exist. The JSON (default ``<model dir>/eval_<part>.json``) holds the system
    name, the part, frames, and every statistic (``main_acc`` is the main head's accuracy).
    """
    from lm2am.am.checkpoint import load_model
    from lm2am.am.data import (AmDataset, load_cuts, make_eval_sampler, make_loader,
                               speaker_means_for, teacher_dirs)
    from lm2am.data import load_global_cmvn

    model_path = Path(model_path)
    dev = torch.device(device)
    model, info = load_model(model_path, dev)
    system = from_dict(SystemConfig, info["config"]["system"], f"{model_path}: system")
    cuts = load_cuts(paths, part)
    tdirs = teacher_dirs(paths, system.teacher_units(), part, required=False)
    if len(tdirs) < len(system.teacher_units()):
        tdirs = {}  # partial teachers: report CE and accuracies only
    ds = AmDataset(load_global_cmvn(paths.cmvn), model.cfg.subsampling, tdirs, posterior_loader,
                   info["vocab_sizes"], speaker_means=speaker_means_for(model.cfg.input_norm, cuts))
    loader = make_loader(ds, make_eval_sampler(cuts, max_duration))
    res: Dict[str, Any] = {"system": system.name, "model": str(model_path), "part": part}
    res.update(evaluate_model(model, loader, system, dev))
    out_json = Path(out_json) if out_json else model_path.parent / f"eval_{part}.json"
    write_if_changed(out_json, json.dumps(res, indent=1, sort_keys=True) + "\n")
    log.info("%s on %s: main frame accuracy %.4f (%s)", system.name, part, res["main_acc"],
             ", ".join(f"{k} {v:.4f}" for k, v in res.items()
                       if k.endswith("_acc") and k != "main_acc"))
    return res


def frame_accuracy_table(exp_dir: Path | str, part: str) -> str:
    """Mean ± sample std (over seeds, as RESULTS.md) of every system's main-head frame accuracy on ``part``, from
    ``<exp_dir>/am_<system>/seed*/eval_<part>.json``; a Markdown table."""
    import numpy as np

    rows: Dict[str, list] = {}
    for f in sorted(Path(exp_dir).glob(f"am_*/seed*/eval_{part}.json")):
        res = json.loads(f.read_text())
        rows.setdefault(f.parent.parent.name[3:], []).append(res["main_acc"])
    lines = [f"| system | seeds | main-head frame accuracy on {part} (%) |", "|---|---|---|"]
    for name, accs in rows.items():
        a = np.array(accs) * 100
        lines.append(f"| {name} | {len(a)} | {a.mean():.2f} ± {(a.std(ddof=1) if a.size > 1 else 0.0):.2f} |")
    return "\n".join(lines)

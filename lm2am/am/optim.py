"""AM optimizer set-up: parameter groups for AdamW and the learning-rate schedules."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases and norm gains (1-D parameters)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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

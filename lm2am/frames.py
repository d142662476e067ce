"""Frame bookkeeping shared by the aligner and the AM: subsampling (the one place that decides
which frames an AM with frame rate reduction predicts, so targets, teacher posteriors and model
outputs always line up), padding masks and per-utterance input normalization of padded batches.

With factor ``f`` the kept frames are ``f // 2, f // 2 + f, ...`` (the middle frame of each
group of ``f``), i.e. ``x[f // 2 :: f]`` along the time axis.
"""
from __future__ import annotations

from typing import Any

import torch


def num_subsampled(num_frames: int, factor: int) -> int:
    """Number of frames left after subsampling ``num_frames`` by ``factor``."""
    if factor < 1:
        raise ValueError(f"subsampling factor must be >= 1, got {factor}")
    return len(range(factor // 2, num_frames, factor))


def subsample(x: Any, factor: int, axis: int = 0) -> Any:
    """Keep frames ``factor // 2 :: factor`` of ``x`` (numpy array or torch tensor) on ``axis``."""
    if factor == 1:
        return x
    index = [slice(None)] * x.ndim
    index[axis] = slice(factor // 2, None, factor)
    return x[tuple(index)]


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(N, max_len)`` bool: True on the first ``lengths[i]`` frames of row ``i``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_input(x: torch.Tensor, lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-utterance normalization of a padded ``(N, T, F)`` batch over each utterance's own
    ``lengths[i]`` frames: ``global`` returns ``x``; ``utterance_mean`` removes the utterance
    mean; ``utterance`` also divides by the utterance standard deviation (floored)."""
    if mode in ("global", "speaker_mean"):  # speaker_mean: the data loaders did it
        return x
    mask = frame_mask(lengths, x.shape[1]).unsqueeze(2).to(x.dtype)  # N, T, 1
    n = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=1, keepdim=True) / n
    y = (x - mean) * mask
    if mode == "utterance":
        var = (y * y).sum(dim=1, keepdim=True) / n
        y = y / var.clamp(min=1e-4).sqrt()
    return y

"""Frame subsampling: the one place that decides which frames an AM with frame rate reduction
predicts, so targets, teacher posteriors and model outputs always line up.

With factor ``f`` the kept frames are ``f // 2, f // 2 + f, ...`` (the middle frame of each
group of ``f``), i.e. ``x[f // 2 :: f]`` along the time axis.
"""
from __future__ import annotations

from typing import Any


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

"""Training-time augmentation of the AM's input: what makes a model trained on a few voices carry
over to voices it never heard.

Two families, both on the fly (no extra storage) and both off outside training:

* **per-utterance perturbations** of the raw fbank, drawn once per cut and epoch
  (:class:`CutPerturber`, applied by the training dataset):

  - ``vtlp``: vocal-tract-length perturbation (Jaitly & Hinton 2013) on the mel axis: the
    spectrum is warped by a factor ``alpha`` in Hz (``f -> alpha * f``) and re-read at the mel
    filters' centres by linear interpolation of the log energies. A new vocal tract per epoch.
  - ``time_stretch``: a frame-rate change (Kaldi's speed perturbation factors 0.9/1.0/1.1, on
    the features): output frame ``k`` reads input position ``k * s``; features are linearly
    interpolated, every per-frame target takes the nearest frame.

* **SpecAugment** (Park et al. 2019) through lhotse's ``SpecAugment`` on the normalized batch,
  inside the model's forward pass in training mode only (:func:`make_spec_augment`); time warping
  is off because the frame targets are not warped with the features.

The random draws of :class:`CutPerturber` depend only on ``(seed, epoch, cut id)``, so a resumed
run perturbs exactly as the uninterrupted one.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from lm2am.config import check_range

import numpy as np


@dataclass
class AugmentConfig:
    """``train.augment`` of a recipe or system config (every entry off by default).

    Attributes:
        vtlp: ``[low, high]`` range of the frequency warp factor (e.g. ``[0.88, 1.12]``);
            ``[]`` = off.
        time_stretch: frame-rate factors to draw from with equal probability (e.g.
            ``[0.9, 1.0, 1.1]``); ``[]`` = off.
        spec_augment: apply SpecAugment (frequency and time masks).
        freq_masks, freq_mask_width: number and maximum width (bins) of frequency masks.
        time_masks, time_mask_width: number and maximum width (frames) of time masks.
        max_time_fraction: at most this fraction of an utterance's frames is masked.
        spec_augment_p: probability that an utterance gets SpecAugment at all.
        sample_rate, low_freq, high_freq: the fbank's mel range (lhotse's defaults for 16 kHz).
    """

    vtlp: List[float] = field(default_factory=list)
    time_stretch: List[float] = field(default_factory=list)
    spec_augment: bool = False
    freq_masks: int = 2
    freq_mask_width: int = 15
    time_masks: int = 10
    time_mask_width: int = 40
    max_time_fraction: float = 0.15
    spec_augment_p: float = 0.9
    sample_rate: int = 16000
    low_freq: float = 20.0
    high_freq: float = 0.0

    def __post_init__(self) -> None:
        check_range(self, "freq_masks", 0)
        check_range(self, "freq_mask_width", 0)
        check_range(self, "time_masks", 0)
        check_range(self, "time_mask_width", 0)
        check_range(self, "sample_rate", 1000, 384000)
        check_range(self, "low_freq", 0)
        check_range(self, "high_freq", -self.sample_rate / 2, self.sample_rate / 2)
        if self.vtlp and (len(self.vtlp) != 2 or not 0.5 < self.vtlp[0] <= self.vtlp[1] < 2.0):
            raise ValueError(f"vtlp must be [low, high] with 0.5 < low <= high < 2, got {self.vtlp}")
        if any(not 0.5 <= s <= 2.0 for s in self.time_stretch):
            raise ValueError(f"time_stretch factors must be in [0.5, 2], got {self.time_stretch}")
        if min(self.freq_masks, self.freq_mask_width, self.time_masks, self.time_mask_width) < 0:
            raise ValueError("mask counts and widths must be >= 0")
        if not 0.0 <= self.max_time_fraction <= 1.0 or not 0.0 <= self.spec_augment_p <= 1.0:
            raise ValueError("max_time_fraction and spec_augment_p must be in [0, 1]")

    @property
    def perturbs_cuts(self) -> bool:
        """Whether the per-cut perturbations are on."""
        return bool(self.vtlp) or any(s != 1.0 for s in self.time_stretch)


def _mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(f / 700.0)


def _mel_inv(m: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(m / 1127.0)


def mel_centers(num_bins: int, cfg: AugmentConfig) -> np.ndarray:
    """Centre frequencies (Hz) of Kaldi/lhotse's ``num_bins`` mel filters."""
    high = cfg.high_freq if cfg.high_freq > 0 else cfg.sample_rate / 2 + cfg.high_freq
    lo, hi = _mel(np.float64(cfg.low_freq)), _mel(np.float64(high))
    return _mel_inv(lo + (hi - lo) * np.arange(1, num_bins + 1) / (num_bins + 1))


def warp_frequency(feats: np.ndarray, alpha: float, centers: np.ndarray) -> np.ndarray:
    """Log-mel features of the same sound through a vocal tract scaled by ``alpha``: output bin
    ``i`` reads the input spectrum at ``centers[i] / alpha`` (linear interpolation over the
    input bins' centres, edges held)."""
    if alpha == 1.0:
        return feats
    src = centers / alpha
    x = np.arange(len(centers), dtype=np.float64)
    pos = np.interp(src, centers, x)  # fractional source bin of every output bin
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(centers) - 1)
    w = (pos - i0).astype(feats.dtype)
    return feats[:, i0] * (1 - w) + feats[:, i1] * w


def stretch_index(num_frames: int, factor: float) -> Tuple[np.ndarray, np.ndarray]:
    """For a frame-rate change by ``factor`` (> 1: faster, fewer frames): the fractional source
    position of each output frame, and its nearest source frame (for targets)."""
    n_out = max(1, int(round(num_frames / factor)))
    pos = np.minimum(np.arange(n_out, dtype=np.float64) * factor, num_frames - 1)
    return pos, np.minimum(np.rint(pos).astype(np.int64), num_frames - 1)


def stretch_features(feats: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Features read at fractional frame positions ``pos`` (linear interpolation)."""
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, feats.shape[0] - 1)
    w = (pos - i0).astype(feats.dtype)[:, None]
    return feats[i0] * (1 - w) + feats[i1] * w


class CutPerturber:
    """Draws and applies the per-cut perturbations of :class:`AugmentConfig` (training only)."""

    def __init__(self, cfg: AugmentConfig, seed: int):
        self.cfg = cfg
        self.seed = int(seed)
        self.epoch = 0
        self._centers: Dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """New draws every epoch (called by the training loop, also after a resume)."""
        self.epoch = int(epoch)

    def draw(self, cut_id: str) -> Tuple[float, float]:
        """``(alpha, stretch)`` of one cut in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, zlib.crc32(cut_id.encode())])
        alpha = float(rng.uniform(*self.cfg.vtlp)) if self.cfg.vtlp else 1.0
        stretch = float(rng.choice(self.cfg.time_stretch)) if self.cfg.time_stretch else 1.0
        return alpha, stretch

    def __call__(self, cut_id: str, feats: np.ndarray, frame_arrays: Dict[str, np.ndarray]
                 ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Perturbed raw features and the per-frame arrays (targets) that go with them."""
        alpha, stretch = self.draw(cut_id)
        if alpha != 1.0:
            nb = feats.shape[1]
            if nb not in self._centers:
                self._centers[nb] = mel_centers(nb, self.cfg)
            feats = warp_frequency(feats, alpha, self._centers[nb])
        if stretch != 1.0:
            pos, nearest = stretch_index(feats.shape[0], stretch)
            feats = stretch_features(feats, pos)
            frame_arrays = {k: a[nearest] for k, a in frame_arrays.items()}
        return np.ascontiguousarray(feats, dtype=np.float32), frame_arrays


def make_spec_augment(cfg: AugmentConfig) -> Optional[Any]:
    """lhotse's ``SpecAugment`` for ``cfg`` (``None`` when off); time warping stays off."""
    if not cfg.spec_augment:
        return None
    from lhotse.dataset import SpecAugment

    return SpecAugment(time_warp_factor=None, num_feature_masks=cfg.freq_masks,
                       features_mask_size=cfg.freq_mask_width, num_frame_masks=cfg.time_masks,
                       frames_mask_size=cfg.time_mask_width,
                       max_frames_mask_fraction=cfg.max_time_fraction, p=cfg.spec_augment_p)

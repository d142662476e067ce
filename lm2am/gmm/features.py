"""GMM features from the stored log-mel fbank: MFCC (DCT-II + liftering, Kaldi's
``ComputeDctMatrix``/``ComputeLifterCoeffs``), CMVN and Kaldi's ``add-deltas``.

Computing the cepstra from the stored fbank keeps the frames identical to the neural systems'
and needs no audio; the only difference from Kaldi's MFCC is the number of mel bins (those of
the fbank, 80, instead of 23) and c0 in place of the log energy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.gmm.config import GmmConfig


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Kaldi's orthonormal DCT-II matrix ``[num_ceps, num_bins]``."""
    k = np.arange(num_ceps)[:, None]
    n = np.arange(num_bins)[None, :]
    m = np.sqrt(2.0 / num_bins) * np.cos(np.pi / num_bins * (n + 0.5) * k)
    m[0, :] = np.sqrt(1.0 / num_bins)
    return m


def lifter_coeffs(num_ceps: int, q: float = 22.0) -> np.ndarray:
    """Kaldi's cepstral liftering coefficients ``1 + 0.5 q sin(pi i / q)``."""
    i = np.arange(num_ceps)
    return 1.0 + 0.5 * q * np.sin(np.pi * i / q)


def fbank_to_mfcc(fbank: np.ndarray, num_ceps: int = 13, lifter: float = 22.0) -> np.ndarray:
    """Cepstra ``[T, num_ceps]`` of log-mel features ``[T, num_bins]``."""
    if num_ceps > fbank.shape[1]:
        raise Lm2amError(f"gmm.num_ceps={num_ceps} exceeds the fbank's {fbank.shape[1]} bins; lower it")
    return (fbank.astype(np.float64) @ dct_matrix(num_ceps, fbank.shape[1]).T) * lifter_coeffs(num_ceps, lifter)


def delta_filters(order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi's ``DeltaFeatures`` scales: row ``i`` is the filter of the ``i``-th order, centred,
    length ``2 * order * window + 1``."""
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= np.sum(base ** 2)
    rows = [np.array([1.0])]
    for _ in range(order):
        rows.append(np.convolve(rows[-1], base))
    width = 2 * order * window + 1
    out = np.zeros((order + 1, width))
    for i, r in enumerate(rows):
        pad = (width - r.size) // 2
        out[i, pad:pad + r.size] = r
    return out


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi's ``add-deltas``: ``[T, D] -> [T, D * (order + 1)]``, edge frames repeated."""
    filt = delta_filters(order, window)
    half = filt.shape[1] // 2
    T = feats.shape[0]
    idx = np.clip(np.arange(T)[:, None] + np.arange(-half, half + 1)[None, :], 0, T - 1)
    win = feats[idx]  # [T, width, D]
    return np.concatenate([np.einsum("w,twd->td", f, win) for f in filt], axis=1)


@dataclass
class FeatureTransform:
    """fbank -> GMM features, with the CMVN statistics estimated by :meth:`fit`."""

    features: str = "mfcc"
    num_ceps: int = 13
    deltas: bool = True
    cmvn: str = "utterance"
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None

    @classmethod
    def from_config(cls, cfg: GmmConfig) -> "FeatureTransform":
        return cls(features=cfg.features, num_ceps=cfg.num_ceps, deltas=cfg.deltas, cmvn=cfg.cmvn)

    def _static(self, fbank: np.ndarray) -> np.ndarray:
        x = np.asarray(fbank, dtype=np.float64)
        return fbank_to_mfcc(x, self.num_ceps) if self.features == "mfcc" else x

    def fit(self, fbanks: Iterable[np.ndarray]) -> "FeatureTransform":
        """Global mean/std of the static features (used by ``cmvn: global``)."""
        n, s, s2 = 0, 0.0, 0.0
        for f in fbanks:
            x = self._static(f)
            n += x.shape[0]
            s = s + x.sum(0)
            s2 = s2 + (x ** 2).sum(0)
        if n == 0:
            raise Lm2amError("GMM features: no training frames to estimate CMVN from")
        self.mean = s / n
        self.std = np.sqrt(np.maximum(s2 / n - self.mean ** 2, 1e-10))
        return self

    def __call__(self, fbank: np.ndarray) -> np.ndarray:
        """GMM features ``[T, dim]`` (float32) of one utterance's fbank."""
        x = self._static(fbank)
        if self.cmvn == "utterance":
            x = (x - x.mean(0)) / np.sqrt(np.maximum(x.var(0), 1e-10))
        else:
            if self.mean is None:
                raise RuntimeError("FeatureTransform.fit() must run before global CMVN is applied")
            x = (x - self.mean) / self.std
        if self.deltas:
            x = add_deltas(x)
        return x.astype(np.float32)

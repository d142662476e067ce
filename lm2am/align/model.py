"""A small CPU-friendly neural monophone-state model for the flat-start aligner.

A stack of 1-D convolutions over time (a TDNN) with ReLU, on globally mean/variance-normalized
features (optionally after removing each utterance's own mean, as the GMM's per-utterance CMVN
and the AM's ``input_norm: utterance_mean`` do), ending in a log-softmax over the monophone-state pdfs. The normalization statistics
and the log-priors (with the scale training used) live in buffers, so a saved model aligns new data by itself.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from lm2am.frames import normalize_input

INPUT_NORMS = ("global", "utterance_mean")


class MonoStateModel(nn.Module):
    """TDNN monophone-state classifier: ``(N, T, F)`` features → ``(N, T, num_pdfs)`` log-probs.

    Args:
        feat_dim: input feature dimension (80 for fbank).
        num_pdfs: number of output classes (``StateMap.num_pdfs``).
        hidden_dim: channels of every hidden layer.
        num_layers: number of conv layers (>= 1); the first has ``kernel_size``, later ones 3.
        kernel_size: odd width of the first layer's window; the total context is
            ``kernel_size // 2 + (num_layers - 1)`` frames on each side.
        input_norm: ``global`` or ``utterance_mean`` (each utterance's mean removed first; the
            global statistics are then those of the mean-removed features).
    """

    def __init__(self, feat_dim: int, num_pdfs: int, hidden_dim: int = 256,
                 num_layers: int = 3, kernel_size: int = 5, input_norm: str = "global"):
        super().__init__()
        if num_layers < 1 or kernel_size % 2 != 1:
            raise ValueError("num_layers must be >= 1 and kernel_size odd")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.feat_dim, self.num_pdfs, self.input_norm = feat_dim, num_pdfs, input_norm
        convs: List[nn.Module] = []
        in_dim = feat_dim
        for i in range(num_layers):
            k = kernel_size if i == 0 else 3
            convs.append(nn.Conv1d(in_dim, hidden_dim, k, padding=k // 2))
            in_dim = hidden_dim
        self.convs = nn.ModuleList(convs)
        self.out = nn.Linear(hidden_dim, num_pdfs)
        self.register_buffer("feat_mean", torch.zeros(feat_dim))
        self.register_buffer("feat_std", torch.ones(feat_dim))
        self.register_buffer("log_prior", torch.zeros(num_pdfs))
        # scale of log_prior subtracted from the log-posteriors in training (kept for alignment)
        self.register_buffer("prior_scale", torch.zeros(()))

    def set_cmvn(self, feats: Sequence[np.ndarray]) -> None:
        """Set the global mean/std normalization from a list of ``(T, F)`` feature matrices
        (each less its own mean with ``input_norm: utterance_mean``)."""
        mats = [np.asarray(f, dtype=np.float64) for f in feats]
        if self.input_norm == "utterance_mean":
            mats = [f - f.mean(0) for f in mats]
        cat = np.concatenate(mats, axis=0)
        self.feat_mean.copy_(torch.from_numpy(cat.mean(0)).float())
        self.feat_std.copy_(torch.from_numpy(np.maximum(cat.std(0), 1e-5)).float())

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-posteriors ``(N, T, num_pdfs)`` of padded features ``x`` ``(N, T, F)``.

        Frames at or beyond ``lengths[i]`` are zeroed after every layer, so a padded batch
        gives the same outputs as each utterance alone (the convs see zeros past the end,
        just as their own padding does).
        """
        if self.input_norm != "global":
            n = torch.full((x.shape[0],), x.shape[1], device=x.device) if lengths is None else lengths.to(x.device)
            x = normalize_input(x, n, self.input_norm)
        x = (x - self.feat_mean) / self.feat_std
        mask = None
        if lengths is not None:
            t = torch.arange(x.shape[1], device=x.device)
            mask = (t[None, :] < lengths.to(x.device)[:, None]).unsqueeze(1).to(x.dtype)  # N,1,T
        h = x.transpose(1, 2)  # N, F, T
        if mask is not None:
            h = h * mask
        for conv in self.convs:
            h = torch.relu(conv(h))
            if mask is not None:
                h = h * mask
        return torch.log_softmax(self.out(h.transpose(1, 2)), dim=-1)

    def emission_scores(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                        prior_scale: Optional[float] = None) -> torch.Tensor:
        """Pseudo log-likelihoods ``log p(s|x) - prior_scale * log p(s)`` as used in the graphs.

        ``prior_scale=None`` uses the scale the model was trained with.
        """
        scale = float(self.prior_scale) if prior_scale is None else prior_scale
        logp = self(x, lengths)
        return logp - scale * self.log_prior if scale else logp

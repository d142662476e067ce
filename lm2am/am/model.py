"""The hybrid acoustic model: a TDNN/TDNN-F encoder, a senone output and auxiliary heads.

Input: CMVN'd 80-dim fbank ``(N, T, F)`` (the dataset applies the global CMVN; the statistics
are also kept in the model's buffers so :meth:`AcousticModel.log_posteriors` can take raw
fbank at decoding time). Encoder layer ``i`` (1-based) is a 1-D convolution over time
(layer 1: window ``input_kernel``; later ones: ``kernel_size`` spread by the layer's dilation,
plain or factorized through a bottleneck), ReLU, per-frame LayerNorm, dropout and, from layer 2
on, a scaled bypass of its input (Kaldi's TDNN-F ``bypass-scale`` 0.66). LayerNorm instead of
BatchNorm: per-frame statistics do not see padding or batch composition, so a padded batch
gives each utterance exactly the outputs it gets alone, in training and decoding alike.

Outputs: the main output reads the last layer (a linear layer + log-softmax over senones);
each auxiliary head reads the layer its :class:`~lm2am.am.config.HeadConfig` names. With frame
subsampling ``f`` (``ModelConfig.subsampling``) frames are dropped after layer
``subsample_after`` by :func:`lm2am.frames.subsample`, and a head below that point is
subsampled the same way, so every output has ``num_subsampled(T, f)`` frames aligned with the
subsampled targets and teacher posteriors. Decoding uses the main output only. In training a
head can run on the frames its loss reads only (``aux_frames``: gathered into an ``(M, hidden)``
matrix before the head), which computes the same loss and gradients for less.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from lm2am.am.config import HeadConfig, ModelConfig
from lm2am.frames import frame_mask, normalize_input, subsample

BYPASS_SCALE = 0.66  # Kaldi TDNN-F: keeps the residual sum's scale in check without a norm


def subsampled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Frames left per utterance after :func:`lm2am.frames.subsample` (``num_subsampled``)."""
    if factor == 1:
        return lengths
    # len(range(f // 2, T, f)) = ceil((T - f // 2) / f) for T > f // 2, else 0
    return torch.clamp(torch.div(lengths - factor // 2 + factor - 1, factor, rounding_mode="floor"),
                       min=0)


class TdnnLayer(nn.Module):
    """One encoder layer on ``(N, C, T)``: conv (maybe factorized), ReLU, LayerNorm, dropout."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, dilation: int, bottleneck: int,
                 dropout: float, bypass: bool):
        super().__init__()
        pad = dilation * (kernel // 2)
        if bottleneck > 0:
            self.conv: nn.Module = nn.Sequential(
                nn.Conv1d(in_dim, bottleneck, kernel, dilation=dilation, padding=pad, bias=False),
                nn.Conv1d(bottleneck, out_dim, 1))
        else:
            self.conv = nn.Conv1d(in_dim, out_dim, kernel, dilation=dilation, padding=pad)
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.bypass = bypass and in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        h = self.dropout(h)
        return h + BYPASS_SCALE * x if self.bypass else h


class AuxHead(nn.Module):
    """An auxiliary output layer: linear (or linear-ReLU-linear) to a unit vocabulary."""

    def __init__(self, in_dim: int, vocab: int, bottleneck: int = 0):
        super().__init__()
        if bottleneck > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(in_dim, bottleneck), nn.ReLU(),
                                                nn.Linear(bottleneck, vocab))
        else:
            self.net = nn.Linear(in_dim, vocab)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class AcousticModel(nn.Module):
    """Hybrid AM: ``(N, T, feat_dim)`` CMVN'd fbank -> senone log-posteriors + auxiliary logits.

    Args:
        cfg: encoder shape.
        num_senones: main output size.
        heads: auxiliary heads (may be empty).
        vocab_sizes: output size per unit (``senone``, ``monophone``, ``subword``) for the heads.
    """

    def __init__(self, cfg: ModelConfig, num_senones: int, heads: List[HeadConfig] = (),
                 vocab_sizes: Optional[Mapping[str, int]] = None):
        super().__init__()
        self.cfg = cfg
        self.num_senones = num_senones
        dil = cfg.layer_dilations()
        layers = [TdnnLayer(cfg.feat_dim, cfg.hidden_dim, cfg.input_kernel, 1, 0, cfg.dropout, False)]
        for i in range(1, cfg.num_layers):
            layers.append(TdnnLayer(cfg.hidden_dim, cfg.hidden_dim, cfg.kernel_size, dil[i],
                                    cfg.bottleneck_dim, cfg.dropout, cfg.residual))
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(cfg.hidden_dim, num_senones)
        vocab_sizes = dict(vocab_sizes or {})
        vocab_sizes.setdefault("senone", num_senones)
        self.head_layers: Dict[str, int] = {}
        self.heads = nn.ModuleDict()
        for h in heads:
            if h.unit not in vocab_sizes or not vocab_sizes[h.unit]:
                raise ValueError(f"head {h.name!r}: no vocabulary size for unit {h.unit!r}")
            self.head_layers[h.name] = h.resolved_layer(cfg.num_layers)
            self.heads[h.name] = AuxHead(cfg.hidden_dim, int(vocab_sizes[h.unit]),
                                         cfg.head_bottleneck_dim)
        self.register_buffer("cmvn_mean", torch.zeros(cfg.feat_dim))
        self.register_buffer("cmvn_std", torch.ones(cfg.feat_dim))
        # Derived from the config, so not saved: checkpoints without it still load.
        self.register_buffer("lifter", cepstral_lifter_matrix(cfg.feat_dim, cfg.cepstral_lifter),
                             persistent=False)
        #: training-time SpecAugment (lm2am.am.augment.make_spec_augment); runs only in
        #: training mode, so evaluation and decoding never see it. Not part of the state dict.
        self.spec_augment: Optional[Callable[..., torch.Tensor]] = None

    def set_cmvn(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the global CMVN used in training (applied by :meth:`log_posteriors`)."""
        self.cmvn_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.cmvn_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per utterance for ``lengths`` input frames."""
        return subsampled_lengths(lengths, self.cfg.subsampling)

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor, want: Mapping[int, List[str]]
                ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        f, after = self.cfg.subsampling, self.cfg.subsample_after
        if self.cfg.cepstral_lifter:
            x = x @ self.lifter
        x = normalize_input(x, lengths, self.cfg.input_norm)
        if self.training and self.spec_augment is not None:
            segments = torch.stack([torch.arange(len(lengths)), torch.zeros_like(lengths.cpu()),
                                    lengths.cpu()], dim=1).to(torch.int32)
            x = self.spec_augment(x, segments)
        h = x.transpose(1, 2)  # N, C, T
        mask = frame_mask(lengths, h.shape[2]).unsqueeze(1).to(h.dtype)
        h = h * mask
        taps: Dict[str, torch.Tensor] = {}
        if after == 0 and f > 1:
            h, lengths = subsample(h, f, axis=2), subsampled_lengths(lengths, f)
            mask = frame_mask(lengths, h.shape[2]).unsqueeze(1).to(h.dtype)
        for i, layer in enumerate(self.layers, 1):
            # Zero the padding after each layer: the next conv then sees what it would see at
            # the end of an utterance alone (its own zero padding).
            h = layer(h) * mask
            for name in want.get(i, ()):
                taps[name] = h
            if i == after and f > 1:
                h, lengths = subsample(h, f, axis=2), subsampled_lengths(lengths, f)
                mask = frame_mask(lengths, h.shape[2]).unsqueeze(1).to(h.dtype)
        if f > 1:  # heads tapped below the subsampling point: same frames as the main output
            for name in taps:
                if self.head_layers[name] <= after:
                    taps[name] = subsample(taps[name], f, axis=2)
        return h, lengths, taps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, with_aux: bool = True,
                aux_frames: Optional[Mapping[str, torch.Tensor]] = None,
                aux_stat_frames: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, object]:
        """Run the model on a padded batch.

        Args:
            x: ``(N, T, feat_dim)`` CMVN'd features.
            lengths: ``(N,)`` frames per utterance.
            with_aux: also compute the auxiliary heads.
            aux_frames: per head, an ``(N, T')`` bool mask: that head runs only on those frames
                (training: the frames its loss reads, :func:`lm2am.am.losses.head_frames`), so
                its ``aux`` entry is ``(M, V)`` logits of the masked frames in row-major order.
                Heads not named run on every frame.
            aux_stat_frames: per head, more ``(N, T')`` frames to run that head on without
                gradient (statistics only, e.g. frame accuracy on frames the loss skips):
                ``aux_stat`` ``(M', V)`` logits.

        Returns:
            ``{"main": (N, T', num_senones) log-probs, "aux": {head: (N, T', V) or (M, V)
            logits}, "aux_frames": aux_frames, "aux_stat": {head: (M', V)}, "aux_stat_frames":
            aux_stat_frames, "lengths": (N,) output frames}`` with ``T' = num_subsampled(T,
            subsampling)``.
        """
        aux_frames, aux_stat_frames = dict(aux_frames or {}), dict(aux_stat_frames or {})
        want: Dict[int, List[str]] = {}
        if with_aux:
            for name, layer in self.head_layers.items():
                want.setdefault(layer, []).append(name)
        h, out_len, taps = self._encode(x, lengths, want)
        main = torch.log_softmax(self.output(h.transpose(1, 2)).float(), dim=-1)
        aux = {name: self._head(name, t, aux_frames.get(name)) for name, t in taps.items()}
        with torch.no_grad():
            stat = {name: self._head(name, taps[name], sel)
                    for name, sel in aux_stat_frames.items() if name in taps}
        return {"main": main, "aux": aux, "aux_frames": aux_frames, "aux_stat": stat,
                "aux_stat_frames": aux_stat_frames, "lengths": out_len}

    def _head(self, name: str, tap: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
        """Head ``name`` on a tapped ``(N, C, T')`` layer output: ``(N, T', V)`` logits, or
        ``(M, V)`` of the ``frames`` mask's frames (the rows are gathered before the head, so
        its matrix products and the loss's softmax see only those frames)."""
        rows = tap.transpose(1, 2)
        return self.heads[name](rows if frames is None else rows[frames])

    @torch.no_grad()
    def log_posteriors(self, feats: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                       normalized: bool = False) -> torch.Tensor:
        """Main-output senone log-posteriors for decoding (auxiliary heads are not run).

        Args:
            feats: ``(N, T, F)`` or ``(T, F)`` fbank; raw unless ``normalized`` (then CMVN'd).
            lengths: frames per utterance (default: all ``T``).

        Returns ``(N, T', num_senones)`` (or ``(T', num_senones)`` for a 2-D input).
        """
        single = feats.dim() == 2
        if single:
            feats = feats.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long,
                                 device=feats.device)
        if not normalized:
            feats = (feats - self.cmvn_mean) / self.cmvn_std
        out = self.forward(feats, lengths, with_aux=False)["main"]
        return out[0] if single else out

    def num_params(self, main_only: bool = False) -> int:
        """Number of parameters (``main_only``: without the auxiliary heads)."""
        skip = {id(p) for p in self.heads.parameters()} if main_only else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


def cepstral_lifter_matrix(dim: int, keep: int) -> torch.Tensor:
    """``(dim, dim)`` projection ``C_k^T C_k`` with ``C_k`` the first ``keep`` rows of the
    orthonormal DCT-II: ``frame @ M`` keeps a log-mel frame's first ``keep`` cepstral
    coefficients and drops the rest (identity when ``keep`` is 0 or ``dim``)."""
    if keep in (0, dim):
        return torch.eye(dim)
    n = torch.arange(dim, dtype=torch.float64)
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    dct = torch.cos(torch.pi / dim * (n + 0.5) * k) * (2.0 / dim) ** 0.5
    dct[0] /= 2 ** 0.5
    return (dct.T @ dct).to(torch.float32)


def build_model(cfg: ModelConfig, num_senones: int, heads: List[HeadConfig],
                vocab_sizes: Mapping[str, int]) -> AcousticModel:
    """Construct the AM for a system (see :class:`AcousticModel`)."""
    return AcousticModel(cfg, num_senones, heads, vocab_sizes)

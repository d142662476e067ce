"""The ``gmm:`` config section: Kaldi's ``steps/train_mono.sh`` options, scaled per config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional
from lm2am.config import check_range

# Kaldi's train_mono.sh schedule (40 iterations).
KALDI_REALIGN_ITERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38]


@dataclass
class GmmConfig:
    """GMM-HMM monophone training, alignment and decoding (defaults = Kaldi's train_mono.sh).

    Attributes:
        features: ``mfcc`` (13 cepstra from the stored log-mel fbank: DCT + lifter 22, as
            Kaldi's MFCC without the energy term) or ``fbank`` (the 80-dim fbank as stored).
        num_ceps: cepstra kept with ``mfcc``.
        deltas: append deltas and delta-deltas (Kaldi's ``add-deltas``, window 2).
        cmvn: ``utterance`` (each utterance's own mean and variance; closest to Kaldi's
            per-speaker CMVN, each synthetic utterance being one speaker's) or ``global`` (mean
            and variance of the training frames), applied before the deltas. On the tiny config
            ``utterance`` aligned 68% of the frames to the synthesizers' phones, ``global`` 44%.
        num_iters: EM iterations after the flat-start estimate (Kaldi: 40).
        realign_iters: iterations that realign with the current model first.
        max_iter_inc: last iteration that adds Gaussians.
        tot_gauss: target number of Gaussians (mix-up, ``gmm-est --mix-up``).
        power: exponent for allocating Gaussians to states by occupancy.
        min_gaussian_occupancy_first: ``gmm-est --min-gaussian-occupancy`` of the first update.
        acoustic_scale, transition_scale, self_loop_scale: alignment scales (Kaldi's
            ``--acoustic-scale=0.1 --transition-scale=1.0 --self-loop-scale=0.1``).
        beam_first, beam, retry_beam_factor: alignment beam of the first realignment, later
            ones, and retry beam = beam * factor.
        max_train_utts: train on at most this many utterances, evenly spread (None: all).
        seed: seed of the equal alignment and of the mix-up perturbation (same seed and
            inputs: the same ``final.mdl``, byte for byte).
        decode_beam, decode_max_active: FasterDecoder beam and max active states.
        decode_scales: acoustic scales tried on the dev set (Kaldi scores LMWT 7..17).
    """

    features: str = "mfcc"
    num_ceps: int = 13
    deltas: bool = True
    cmvn: str = "utterance"
    num_iters: int = 40
    realign_iters: List[int] = field(default_factory=lambda: list(KALDI_REALIGN_ITERS))
    max_iter_inc: int = 30
    tot_gauss: int = 1000
    power: float = 0.25
    min_gaussian_occupancy_first: float = 3.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    beam_first: float = 6.0
    beam: float = 10.0
    retry_beam_factor: float = 4.0
    max_train_utts: Optional[int] = None
    seed: int = 1
    decode_beam: float = 13.0
    decode_max_active: int = 7000
    decode_scales: List[float] = field(default_factory=lambda: [0.0588, 0.0714, 0.0833, 0.1, 0.125, 0.143])

    def __post_init__(self) -> None:
        check_range(self, "max_iter_inc", 0)
        check_range(self, "power", 0, 1)
        check_range(self, "min_gaussian_occupancy_first", 0)
        check_range(self, "acoustic_scale", 0, lo_open=True)
        check_range(self, "decode_scales", 0, lo_open=True)
        check_range(self, "transition_scale", 0)
        check_range(self, "self_loop_scale", 0)
        check_range(self, "beam_first", 0, lo_open=True)
        check_range(self, "beam", 0, lo_open=True)
        check_range(self, "retry_beam_factor", 1)
        check_range(self, "max_train_utts", 1)
        check_range(self, "seed", 0)
        check_range(self, "decode_beam", 0, lo_open=True)
        check_range(self, "decode_max_active", 1)
        check_range(self, "realign_iters", 0)
        if self.features not in ("mfcc", "fbank"):
            raise ValueError(f"features must be mfcc or fbank, got {self.features!r}")
        if self.cmvn not in ("global", "utterance"):
            raise ValueError(f"cmvn must be global or utterance, got {self.cmvn!r}")
        if self.num_iters < 1 or self.tot_gauss < 1 or self.num_ceps < 1:
            raise ValueError("num_iters, tot_gauss and num_ceps must be >= 1")
        if any(not 0 < s for s in self.decode_scales + [self.acoustic_scale]):
            raise ValueError("acoustic scales must be > 0")

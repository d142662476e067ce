"""Decoding options: the ``decode:`` section of a recipe config, and the beams of one attempt."""
from __future__ import annotations

from dataclasses import dataclass
from lm2am.config import check_range

__all__ = ["DecodeConfig", "Beams"]


@dataclass
class DecodeConfig:
    """The ``decode:`` section of a recipe config.

    Attributes:
        acoustic_scale: multiplies the log-likelihoods (the LM weight is its inverse).
        search_beam: decoding beam of ``intersect_dense_pruned`` (Kaldi's ``--beam``).
        output_beam: lattice beam, relative to the best path (Kaldi's ``--lattice-beam``).
        min_active_states, max_active_states: per-frame active-state limits.
        max_frames_per_batch: sum of (expanded) frames decoded together.
        max_utts_per_batch: utterances decoded together.
        subsampling_factor: the AM's output frame-rate reduction; frames are repeated this often.
        retry_beam_factor: beams (and max active) multiply by this on each retry of a failure.
        max_retries: retries of an utterance whose lattice came out empty.
        frame_shift: seconds per (expanded) frame, for the real-time factor and word times.
    """

    acoustic_scale: float = 0.1
    search_beam: float = 15.0
    output_beam: float = 8.0
    min_active_states: int = 30
    max_active_states: int = 7000
    max_frames_per_batch: int = 30000
    max_utts_per_batch: int = 64
    subsampling_factor: int = 1
    retry_beam_factor: float = 2.0
    max_retries: int = 2
    frame_shift: float = 0.01

    def __post_init__(self) -> None:
        check_range(self, "frame_shift", 0, 1, lo_open=True)
        if self.acoustic_scale <= 0:
            raise ValueError(f"acoustic_scale must be > 0, got {self.acoustic_scale}")
        if self.search_beam <= 0 or self.output_beam <= 0:
            raise ValueError("search_beam and output_beam must be > 0")
        if self.min_active_states < 0 or self.max_active_states < max(1, self.min_active_states):
            raise ValueError("need 0 <= min_active_states <= max_active_states, max_active_states >= 1")
        if self.max_frames_per_batch < 1 or self.max_utts_per_batch < 1:
            raise ValueError("max_frames_per_batch and max_utts_per_batch must be >= 1")
        if self.subsampling_factor < 1:
            raise ValueError(f"subsampling_factor must be >= 1, got {self.subsampling_factor}")
        if self.retry_beam_factor < 1 or self.max_retries < 0:
            raise ValueError("retry_beam_factor must be >= 1 and max_retries >= 0")

    def beams(self) -> "Beams":
        """The beams of a first attempt."""
        return Beams(self.search_beam, self.output_beam, self.min_active_states, self.max_active_states)


@dataclass
class Beams:
    """Search and lattice beams and active-state limits of one decoding attempt."""

    search: float
    output: float
    min_active: int
    max_active: int

    def wider(self, f: float) -> "Beams":
        """Beams and max active states multiplied by ``f`` (a retry)."""
        return Beams(self.search * f, self.output * f, self.min_active, int(self.max_active * f))

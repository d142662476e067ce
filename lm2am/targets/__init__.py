"""Frame-level targets for three units (senones, monophones, subwords), their checks and storage.

Every frame ``t`` of a cut gets (all ``np.int32[T]`` unless noted, ``T`` = feature frames):

============== ===========================================================================
``senone``     senone (pdf) id: the main output's hard target.
``phone``      monophone id of ``phones.txt`` (silence phones included).
``subword``    index into the cut's ``subword_tokens`` (its sentencepiece token sequence),
               ``-1`` on silence frames.
``subword_id`` sentencepiece piece id of that token (``subword_tokens[subword]``), ``-1`` on
               silence frames.
``phone_pos``  index into the cut's phone token sequence, ``-1`` on silence frames.
``senone_pos`` index into the cut's collapsed senone (HMM-state) token sequence, ``-1`` on
               silence frames.
``silence``    ``np.bool_[T]``: the frame is outside every word or its phone is a silence
               phone (SIL, SPN). Equivalent to ``subword == -1`` (and to both ``*_pos == -1``).
============== ===========================================================================

Homes: :mod:`.rules` (token sequences and piece placement: how the arrays are made),
:mod:`.checks` (their invariants), :mod:`.storage` (Kaldi ark/scp files, the info file, lhotse
custom fields), :mod:`.stage` (the stage: alignments + tree + BPE -> stored targets).
"""
from lm2am.ark import encode_int32_vector, iter_int32_vector_ark
from lm2am.targets.checks import check_targets
from lm2am.targets.rules import (FRAME_UNITS, FrameTargets, allocate_frames, collapse_state_senones,
                                 make_frame_targets, subword_pieces)
from lm2am.targets.stage import make_targets_for_part
from lm2am.targets.storage import (TargetsInfo, TargetsReader, attach_targets, read_info, read_targets,
                                   write_targets)

__all__ = [
    "FRAME_UNITS", "FrameTargets", "TargetsInfo", "TargetsReader", "allocate_frames", "attach_targets",
    "check_targets", "collapse_state_senones", "encode_int32_vector", "iter_int32_vector_ark",
    "make_frame_targets", "make_targets_for_part", "read_info", "read_targets", "subword_pieces",
    "write_targets",
]

"""Decoding the hybrid AM's log-likelihoods over the HCLG of :mod:`lm2am.graph`, and scoring.

Modules: :mod:`~lm2am.decode.config` (the ``decode:`` options, beams), :mod:`~lm2am.decode.result`
(what both decoders return, input checks, word times), :mod:`~lm2am.decode.k2` (batched k2
decoding, the decoder of the recipe), :mod:`~lm2am.decode.kaldi` (Kaldi's FasterDecoder over the
same graph, a cross-check), :mod:`~lm2am.decode.compare` (the two decoders side by side),
:mod:`~lm2am.decode.score` (WER, errs/trn/ctm files, sclite cross-check, best acoustic scale).
k2, torch and the Kaldi wheels are imported only inside the functions that use them.
"""
from lm2am.decode.config import DecodeConfig
from lm2am.decode.k2 import decode
from lm2am.decode.result import (DecodeResult, WordTime, expand_frames, loglikes_from_log_posteriors,
                                 word_alignment)

__all__ = ["DecodeConfig", "DecodeResult", "decode", "loglikes_from_log_posteriors", "expand_frames",
           "word_alignment", "WordTime"]

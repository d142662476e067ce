"""Viterbi alignment and equal alignment over training graphs, with Kaldi's decoder.

:func:`viterbi_align` is Kaldi's ``AlignUtteranceWrapper``: kaldi-decoder's ``FasterDecoder``
with ``beam``; if no path reaches the final state, once more with ``retry_beam``. The decodable
is a ``DecodableCtc`` over ``[T, num_tids]`` whose column ``tid - 1`` is the scaled
log-likelihood of the transition-id's pdf (``DecodableCtc`` answers
``log_likelihood(t, i)`` with ``matrix[t, i - 1]``).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from lm2am.graph.hmm import TransitionTables
from lm2am.kaldi import kaldi_wheels


def tid_matrix(pdf_loglikes: np.ndarray, tables: TransitionTables, scale: float) -> np.ndarray:
    """``[T, num_tids]`` float32 with column ``tid - 1`` = ``scale * loglike[pdf(tid)]``."""
    return np.ascontiguousarray(scale * pdf_loglikes[:, tables.tid2pdf[1:]], dtype=np.float32)


def best_path(fst, loglikes_by_tid: np.ndarray, beam: float, max_active: int = 2147483647
              ) -> Optional[Tuple[List[int], List[int], float]]:
    """``(input labels, output labels, cost)`` of the best complete path, or None if none
    survived the beam."""
    _, kaldifst, kaldi_decoder = kaldi_wheels()
    decoder = kaldi_decoder.FasterDecoder(fst, kaldi_decoder.FasterDecoderOptions(beam=beam, max_active=max_active))
    decoder.decode(kaldi_decoder.DecodableCtc(loglikes_by_tid))
    if not decoder.reached_final():
        return None
    ok, lat = decoder.get_best_path()
    if not ok:
        return None
    ok, ilabels, olabels, weight = kaldifst.get_linear_symbol_sequence(lat)
    if not ok:
        return None
    return list(ilabels), list(olabels), float(weight.value1 + weight.value2)


def viterbi_align(fst, loglikes_by_tid: np.ndarray, beam: float, retry_beam: float
                  ) -> Tuple[Optional[Tuple[List[int], List[int], float]], bool]:
    """Align with ``beam``, retrying with ``retry_beam``: ``(path or None, retried)``."""
    path = best_path(fst, loglikes_by_tid, beam)
    if path is not None or retry_beam <= beam:
        return path, False
    return best_path(fst, loglikes_by_tid, retry_beam), True


def equal_align(fst, num_frames: int, seed: int) -> Optional[Tuple[List[int], List[int]]]:
    """Kaldi's ``align-equal-compiled``: a random path of ``num_frames`` frames with the frames
    spread evenly over its states; None if the utterance is too short for its transcript."""
    _, kaldifst, _ = kaldi_wheels()
    ok, ali = kaldifst.equal_align(ifst=fst, length=num_frames, rand_seed=seed, num_retries=10)
    if not ok:
        return None
    ok, ilabels, olabels, _ = kaldifst.get_linear_symbol_sequence(ali)
    if not ok or len(ilabels) != num_frames:
        return None
    return list(ilabels), list(olabels)

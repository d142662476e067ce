"""The one import guard of the k2-fsa Kaldi wheels.

kaldi-hmm-gmm 1.1.4 hangs the process forever when ``kaldifst``, ``kaldi_decoder`` or ``kaldilm``
were imported before ``kaldi_hmm_gmm``. Every module that needs a Kaldi
wheel imports it through :func:`kaldi_wheels` (or :func:`kaldilm`), which imports them in the only
safe order, or fails with a clear message when the unsafe order already happened.
"""
from __future__ import annotations

import sys
from typing import Any, Tuple

_LATE = ("kaldifst", "kaldi_decoder", "kaldilm")


def _check_order() -> None:
    if "kaldi_hmm_gmm" not in sys.modules and any(m in sys.modules for m in _LATE):
        raise RuntimeError("kaldifst/kaldi_decoder/kaldilm was imported before kaldi_hmm_gmm (that order hangs); "
                           "import kaldi_hmm_gmm first")


def kaldi_wheels() -> Tuple[Any, Any, Any]:
    """The Kaldi wheels ``(kaldi_hmm_gmm, kaldifst, kaldi_decoder)``, imported in the only safe
    order (kaldi_hmm_gmm first): the other order hangs the process."""
    _check_order()
    import kaldi_hmm_gmm
    import kaldi_decoder
    import kaldifst
    return kaldi_hmm_gmm, kaldifst, kaldi_decoder


def kaldilm() -> Any:
    """The ``kaldilm`` module, imported after ``kaldi_hmm_gmm`` (same reason as above)."""
    kaldi_wheels()
    import kaldilm as mod
    return mod

"""The context convention of the senone tree (described in :mod:`lm2am.tree`): context keys,
the utterance-edge symbol, per-frame left/right context, and phone names to ids."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError

__all__ = ["EDGE", "LEFT", "CENTER", "RIGHT", "STATE", "KEY_NAMES", "PhoneRef", "frame_contexts",
           "phone_table", "phone_id"]

#: Context symbol for "beyond the utterance edge" (Kaldi's convention; treated as the silence phone).
EDGE = 0

# Internal key numbering; the file uses the names, Kaldi's EventMap the Kaldi keys.
LEFT, CENTER, RIGHT, STATE = 0, 1, 2, 3
KEY_NAMES = ("left", "center", "right", "state")

PhoneRef = Union[int, str]


def frame_contexts(frame_phones: np.ndarray, frame_states: Optional[np.ndarray] = None,
                   segment_starts: Optional[np.ndarray] = None, edge: int = EDGE
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Left and right context phone of every frame, from a frame-level phone alignment.

    A new phone segment starts at frame 0, where the phone id changes, where ``segment_starts``
    is true, or (if ``frame_states`` is given) where the HMM state goes back (a repeated phone,
    e.g. "t t" across words, under a left-to-right topology). Outside the utterance the context is
    ``edge``. Returns ``(left, right)``, each [T] int64; the centre is ``frame_phones`` itself.
    """
    ph = np.asarray(frame_phones, dtype=np.int64).reshape(-1)
    t = ph.size
    if t == 0:
        return ph.copy(), ph.copy()
    start = np.zeros(t, bool)
    start[0] = True
    start[1:] = ph[1:] != ph[:-1]
    if frame_states is not None:
        st = np.asarray(frame_states, dtype=np.int64).reshape(-1)
        if st.size != t:
            raise ValueError("frame_contexts: frame_states must have one entry per frame")
        start[1:] |= st[1:] < st[:-1]
    if segment_starts is not None:
        ss = np.asarray(segment_starts, dtype=bool).reshape(-1)
        if ss.size != t:
            raise ValueError("frame_contexts: segment_starts must have one entry per frame")
        start |= ss
    seg = np.cumsum(start) - 1
    seg_phone = ph[start]
    left = np.r_[edge, seg_phone[:-1]].astype(np.int64)
    right = np.r_[seg_phone[1:], edge].astype(np.int64)
    return left[seg], right[seg]


def phone_table(phones: Sequence[str]) -> Dict[str, int]:
    """``name -> id`` of a phone symbol list; a name listed twice is an error."""
    table: Dict[str, int] = {}
    for i, name in enumerate(phones):
        if name in table:
            raise Lm2amError(f"phone symbol list: {name!r} appears twice (ids {table[name]} and {i}); "
                             "fix phones.txt")
        table[name] = i
    return table


def phone_id(ref: PhoneRef, phones: Sequence[str], table: Mapping[str, int], what: str) -> int:
    """The id of a phone given by id or name (``what`` names the option in errors)."""
    if isinstance(ref, (int, np.integer)):
        if not 0 <= int(ref) < len(phones):
            raise Lm2amError(f"{what}: phone id {ref} is not in the phone list (0..{len(phones) - 1})")
        return int(ref)
    if ref not in table:
        raise Lm2amError(f"{what}: phone {ref!r} is not in the phone list; check phones.txt")
    return table[ref]

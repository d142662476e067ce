"""HMM topology for the flat-start monophone aligner and the dense "pdf" index of its states.

Every phone is a left-to-right chain of emitting states, each with a self-loop (Kaldi's usual
3-state topology; silence phones may use more states). In the monophone model every (phone,
state) pair is its own pdf, so pdfs are numbered densely phone by phone in phone-id order:
``pdf = offset[phone] + state``. The training graphs use ``pdf + 1`` as arc label because k2
reserves label 0 (epsilon) and -1 (final).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError

PhoneTable = Union[Sequence[str], Mapping[str, int]]
"""Phone inventory as in phones.txt: a list (id = index) or a symbol → id mapping.
``<eps>`` and disambiguation symbols (``#0``, ``#1``, ...) are ignored."""


@dataclass
class HmmTopo:
    """Per-phone HMM topology and the optional-silence model of the training graph.

    Attributes:
        num_states: emitting states per non-silence phone (left-to-right, each with a self-loop).
        sil_num_states: emitting states per silence phone (Kaldi uses 5; 3 is enough here).
        optional_silence: allow one optional silence phone at the start, between words and at
            the end of every utterance (Kaldi's L.fst with ``--sil-prob``).
        sil_prob: probability of taking each optional silence.
        self_loop_prob: if set, self-loops get ``log(p)`` and forward arcs ``log(1 - p)``;
            ``None`` leaves HMM transitions unweighted (durations are left to the acoustic model).
        silence_phones: phones that get ``sil_num_states`` states; the first one present in the
            phone table is the optional silence.
    """

    num_states: int = 3
    sil_num_states: int = 3
    optional_silence: bool = True
    sil_prob: float = 0.5
    self_loop_prob: Union[float, None] = None
    silence_phones: Tuple[str, ...] = ("SIL", "SPN")

    def __post_init__(self) -> None:
        from lm2am.config import check_range

        check_range(self, "num_states", 1)
        check_range(self, "sil_num_states", 1)
        check_range(self, "sil_prob", 0.0, 1.0, lo_open=True, hi_open=True)
        check_range(self, "self_loop_prob", 0.0, 1.0, lo_open=True, hi_open=True)
        self.silence_phones = tuple(self.silence_phones)

    @property
    def loop_score(self) -> float:
        """Log weight of a self-loop arc (0 when transitions are unweighted)."""
        return 0.0 if self.self_loop_prob is None else math.log(self.self_loop_prob)

    @property
    def forward_score(self) -> float:
        """Log weight of an arc leaving a state forwards (0 when transitions are unweighted)."""
        return 0.0 if self.self_loop_prob is None else math.log1p(-self.self_loop_prob)


def _is_modeled(sym: str) -> bool:
    return sym != "<eps>" and not sym.startswith("#")


class StateMap:
    """Dense numbering of (phone id, HMM state) pairs of the monophone-state model.

    Phone ids are those of phones.txt; ``<eps>`` and ``#n`` symbols get no states.

    Attributes:
        phone_to_id: symbol → phone id of every modeled phone.
        id_to_phone: the reverse.
        num_pdfs: number of monophone states (the model's output dimension).
        pdf_to_phone: np.int32 [num_pdfs], phone id of each pdf.
        pdf_to_state: np.int32 [num_pdfs], HMM state (0-based) of each pdf within its phone.
        sil_phone: phone id of the optional silence, or -1 if the table has none.
    """

    def __init__(self, phones: PhoneTable, topo: HmmTopo):
        if isinstance(phones, Mapping):
            table: Dict[str, int] = {str(k): int(v) for k, v in phones.items()}
        else:
            table = {str(p): i for i, p in enumerate(phones)}
        self.topo = topo
        self.phone_to_id: Dict[str, int] = {p: i for p, i in table.items() if _is_modeled(p)}
        if not self.phone_to_id:
            raise Lm2amError("StateMap: the phone table has no phones besides <eps>/#n")
        if len(set(self.phone_to_id.values())) != len(self.phone_to_id):
            raise Lm2amError("StateMap: the phone table maps two phones to the same id")
        self.id_to_phone: Dict[int, str] = {i: p for p, i in self.phone_to_id.items()}
        self._offset: Dict[int, int] = {}
        self._nstates: Dict[int, int] = {}
        pdf_phone: List[int] = []
        pdf_state: List[int] = []
        for pid in sorted(self.id_to_phone):
            n = topo.sil_num_states if self.id_to_phone[pid] in topo.silence_phones else topo.num_states
            self._offset[pid] = len(pdf_phone)
            self._nstates[pid] = n
            pdf_phone += [pid] * n
            pdf_state += list(range(n))
        self.num_pdfs = len(pdf_phone)
        self.pdf_to_phone = np.asarray(pdf_phone, dtype=np.int32)
        self.pdf_to_state = np.asarray(pdf_state, dtype=np.int32)
        sil = [self.phone_to_id[p] for p in topo.silence_phones if p in self.phone_to_id]
        self.sil_phone = sil[0] if sil else -1

    def num_states(self, phone_id: int) -> int:
        """Number of emitting HMM states of ``phone_id``."""
        return self._nstates[phone_id]

    def pdf(self, phone_id: int, state: int) -> int:
        """Dense pdf index of HMM state ``state`` (0-based) of ``phone_id``."""
        if not 0 <= state < self._nstates[phone_id]:
            raise IndexError(f"phone {phone_id} has {self._nstates[phone_id]} states, not {state + 1}")
        return self._offset[phone_id] + state

    def phone_id(self, symbol: str) -> int:
        """Phone id of ``symbol``; Lm2amError if the phone table lacks it."""
        try:
            return self.phone_to_id[symbol]
        except KeyError:
            raise Lm2amError(f"phone '{symbol}' is not in the phone table") from None

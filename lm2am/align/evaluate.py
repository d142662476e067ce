"""Alignment accuracy against reference phone timings (e.g. the synthesizers' own).

Reference files use the LibriSpeech word-alignment format with phones:
``UTTID ",SIL,HH,AH,L,OW," "0.12,0.18,0.25,0.31,0.45,0.60"`` (end times in seconds; an empty
symbol is silence). Two figures, as in aligner papers and Kaldi/MFA evaluations:

- frame phone accuracy: share of frames whose aligned phone equals the reference phone;
- boundary accuracy: the hypothesis and reference phone sequences are matched by edit distance
  (kaldialign) and, for every matched pair with the same label, the end boundary is compared;
  reported as the share within each tolerance (10/20/40 ms).
Silences are merged into one SIL label on both sides; utterances whose reference uses phones
outside ``phone_names`` (e.g. espeak's own symbols) are skipped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError

SIL_ALIASES = {"", "SIL", "PAU", "SP", "SPN", "H#", "#", "_"}

RefPhones = List[Tuple[str, float]]  # (phone, end time in s)


def read_reference_phones(paths: Iterable[Path]) -> Dict[str, RefPhones]:
    """Parse ``*.phones.txt`` reference files into {utt: [(PHONE, end_s), ...]}."""
    out: Dict[str, RefPhones] = {}
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                utt, syms, ends = line.split()
                labels = syms.strip('"').split(",")
                times = [float(t) for t in ends.strip('"').split(",")]
            except ValueError:
                raise Lm2amError(f"{path} line {n}: expected 'UTT \",P1,P2,\" \"e1,e2\"'; regenerate the corpus") from None
            if labels and labels[0] == "" and len(labels) == len(times) + 2:
                labels = labels[1:-1]  # LibriSpeech style leading/trailing commas
            if len(labels) != len(times):
                raise Lm2amError(f"{path} line {n}: {len(labels)} phones but {len(times)} times")
            out[utt] = [(lab.upper(), t) for lab, t in zip(labels, times)]
    return out


def _norm(label: str) -> str:
    label = label.upper().rstrip("012")
    return "SIL" if label in SIL_ALIASES else label


def _merge(segs: Sequence[Tuple[str, float, float]]) -> List[Tuple[str, float, float]]:
    """Merge adjacent silences (label, start, end)."""
    out: List[Tuple[str, float, float]] = []
    for lab, s, e in segs:
        if out and lab == "SIL" and out[-1][0] == "SIL":
            out[-1] = ("SIL", out[-1][1], e)
        elif e > s:
            out.append((lab, s, e))
    return out


@dataclass
class AlignmentScore:
    """Accumulated accuracy figures; ``add`` one utterance at a time."""

    tolerances: Tuple[float, ...] = (0.01, 0.02, 0.04)
    frames: int = 0
    frames_correct: int = 0
    boundaries: int = 0
    within: List[int] = field(default_factory=lambda: [0, 0, 0])
    utterances: int = 0
    skipped: int = 0

    def add(self, hyp_phones: np.ndarray, phone_names: Sequence[str], ref: RefPhones,
            frame_shift: float = 0.01) -> bool:
        """Score one utterance (hyp phone ids per frame); returns False if it was skipped."""
        import kaldialign

        known = {_norm(p) for p in phone_names if p and not p.startswith("#") and p != "<eps>"}
        ref_segs, start = [], 0.0
        for lab, end in ref:
            ref_segs.append((_norm(lab), start, end))
            start = end
        ref_segs = _merge(ref_segs)
        if any(lab not in known for lab, _, _ in ref_segs):
            self.skipped += 1
            return False
        T = len(hyp_phones)
        hyp_segs = []
        ids = np.asarray(hyp_phones)
        change = np.flatnonzero(np.diff(ids)) + 1
        for s, e in zip(np.concatenate([[0], change]), np.concatenate([change, [T]])):
            hyp_segs.append((_norm(phone_names[ids[s]]), s * frame_shift, e * frame_shift))
        hyp_segs = _merge(hyp_segs)
        # frame accuracy: reference label at each frame centre
        centres = (np.arange(T) + 0.5) * frame_shift
        ref_ends = np.array([e for _, _, e in ref_segs])
        idx = np.minimum(np.searchsorted(ref_ends, centres), len(ref_segs) - 1)
        ref_frame = [ref_segs[i][0] for i in idx]
        hyp_frame = [_norm(phone_names[i]) for i in ids]
        self.frames += T
        self.frames_correct += sum(a == b for a, b in zip(ref_frame, hyp_frame))
        # boundary accuracy on matched, same-label phones (last phone's end is the utterance end)
        pairs = kaldialign.align([s[0] for s in ref_segs], [s[0] for s in hyp_segs], "*")
        ri = hi = 0
        for r, h in pairs:
            if r != "*" and h != "*":
                if r == h and ri < len(ref_segs) - 1 and hi < len(hyp_segs) - 1:
                    d = abs(ref_segs[ri][2] - hyp_segs[hi][2])
                    self.boundaries += 1
                    for k, tol in enumerate(self.tolerances):
                        self.within[k] += d <= tol + 1e-9
            ri += r != "*"
            hi += h != "*"
        self.utterances += 1
        return True

    @property
    def frame_accuracy(self) -> float:
        return self.frames_correct / self.frames if self.frames else float("nan")

    def boundary_accuracy(self, tol: float) -> float:
        k = self.tolerances.index(tol)
        return self.within[k] / self.boundaries if self.boundaries else float("nan")

    def summary(self) -> str:
        tol = ", ".join(f"{self.boundary_accuracy(t) * 100:.1f}% within {t * 1000:.0f} ms"
                        for t in self.tolerances)
        return (f"{self.utterances} utterances ({self.skipped} skipped: reference phones outside the "
                f"phone set); frame phone accuracy {self.frame_accuracy * 100:.1f}%; "
                f"{self.boundaries} boundaries: {tol}")


def score_alignments(alis: Dict[str, np.ndarray], refs: Dict[str, RefPhones],
                     phone_names: Sequence[str], frame_shift: float = 0.01,
                     groups: Optional[Dict[str, str]] = None) -> Dict[str, AlignmentScore]:
    """Score {utt: hyp phone ids per frame} against references; one score per group (e.g. per
    voice family; key ``"all"`` always present)."""
    scores: Dict[str, AlignmentScore] = {"all": AlignmentScore()}
    for utt, hyp in sorted(alis.items()):
        if utt not in refs:
            continue
        scores["all"].add(hyp, phone_names, refs[utt], frame_shift)
        if groups and utt in groups:
            scores.setdefault(groups[utt], AlignmentScore()).add(hyp, phone_names, refs[utt], frame_shift)
    return scores

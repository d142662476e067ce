"""Alignment accuracy against reference phone timings (e.g. the synthesizers' own).

Reference files use the LibriSpeech word-alignment format with phones:
``UTTID ",SIL,HH,AH,L,OW," "0.12,0.18,0.25,0.31,0.45,0.60"`` (end times in seconds; an empty
symbol is silence). Two figures, as in aligner papers and Kaldi/MFA evaluations:

- frame phone accuracy: share of frames whose aligned phone equals the reference phone;
- boundary accuracy: the hypothesis and reference phone sequences are matched by edit distance
  (kaldialign) and, for every matched pair with the same label, the end boundary is compared;
  reported as the share within each tolerance (10/20/40 ms).
Silences are merged into one SIL label on both sides; utterances whose reference uses phones
outside ``phone_names`` are skipped and counted.

espeak-ng voices write espeak's own phoneme names (``phone_set`` ``espeak`` in speakers.tsv);
:func:`espeak_to_arpabet` maps them to ARPAbet (one espeak phoneme may become two ARPAbet
phones, e.g. ``A@`` -> ``AA R``, ``@L`` -> ``AH L``, splitting its duration evenly; ``;`` and
other modifiers join the previous phone). The mapping is approximate: an accent's vowel need
not be CMUdict's (en-gb ``0`` vs CMUdict ``AA``/``AO``), which lowers espeak's *frame* accuracy
for reasons other than the aligner; boundaries are compared only between matched phones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.errors import Lm2amError

SIL_ALIASES = {"", "SIL", "PAU", "SP", "SPN", "H#", "#", "_"}

RefPhones = List[Tuple[str, float]]  # (phone, end time in s)

#: espeak-ng English phonemes -> ARPAbet (case matters: ``T`` is TH, ``t`` is T).
ESPEAK_TO_ARPABET: Dict[str, Tuple[str, ...]] = {
    **{c: (c.upper(),) for c in "pbtdkgfvszmnlrwh"}, "h": ("HH",), "j": ("Y",), "N": ("NG",),
    "T": ("TH",), "D": ("DH",), "S": ("SH",), "Z": ("ZH",), "tS": ("CH",), "dZ": ("JH",),
    "r-": ("R",), "l/": ("L",), "n-": ("N",), "m-": ("M",), "t#": ("T",), "d#": ("D",), "z#": ("Z",),
    "x": ("K",), "?": ("T",),
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@-": ("AH",), "V": ("AH",), "a#": ("AH",),
    "3": ("ER",), "3:": ("ER",), "@r": ("ER",), "a": ("AE",), "aa": ("AE",), "A:": ("AA",),
    "A@": ("AA", "R"), "0": ("AA",), "0#": ("AA",), "O": ("AO",), "O:": ("AO",), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "oU": ("OW",), "u": ("UW",), "u:": ("UW",), "U": ("UH",), "U@": ("UH", "R"),
    "E": ("EH",), "e@": ("EH", "R"), "eI": ("EY",), "i": ("IY",), "i:": ("IY",), "I": ("IH",),
    "I2": ("IH",), "I#": ("IH",), "i@": ("IH", "R"), "i@3": ("IH", "R"), "aI": ("AY",),
    "aI@": ("AY", "ER"), "aI3": ("AY", "ER"), "aU": ("AW",), "aU@": ("AW", "ER"), "OI": ("OY",),
    "@L": ("AH", "L"),
}
_ESPEAK_MODIFIERS = {";", "'", ",", ":", "%", "="}


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
            out[utt] = list(zip(labels, times))  # case kept: espeak's T and t differ
    return out


def espeak_to_arpabet(ref: RefPhones) -> RefPhones:
    """An espeak-ng reference in ARPAbet (see the module docstring); unknown phonemes are kept
    as they are (so the utterance is counted as skipped)."""
    out: RefPhones = []
    start = 0.0
    for lab, end in ref:
        if lab in _ESPEAK_MODIFIERS and out:
            out[-1] = (out[-1][0], end)
        elif _norm(lab) == "SIL":
            out.append(("SIL", end))
        else:
            arp = ESPEAK_TO_ARPABET.get(lab, (lab,))
            step = (end - start) / len(arp)
            out += [(p, start + step * (i + 1)) for i, p in enumerate(arp)]
        start = end
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

    def as_dict(self) -> Dict[str, float]:
        """The figures as a flat dict (accuracies in %, for tables and JSON)."""
        d: Dict[str, float] = {"utterances": self.utterances, "skipped": self.skipped, "frames": self.frames,
                               "frame_accuracy": 100.0 * self.frame_accuracy, "boundaries": self.boundaries}
        for t in self.tolerances:
            d[f"within_{t * 1000:.0f}ms"] = 100.0 * self.boundary_accuracy(t)
        return d

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


def voice_families(corpus_dir: Path, utts: Iterable[str]) -> Dict[str, str]:
    """{utt: engine} from ``<corpus_dir>/speakers.tsv`` (its ``engine`` column; speaker = the
    utterance id's first field); empty if the corpus has no such table."""
    spk_file = Path(corpus_dir) / "speakers.tsv"
    if not spk_file.is_file():
        return {}
    rows = [line.split("\t") for line in spk_file.read_text().splitlines() if line.strip()]
    if not rows or "engine" not in rows[0]:
        return {}
    col = rows[0].index("engine")
    engine = {r[0]: r[col] for r in rows[1:] if len(r) > col}
    return {u: engine.get(u.split("-")[0], "?") for u in utts}


def phone_sets(corpus_dir: Path, utts: Iterable[str]) -> Dict[str, str]:
    """{utt: reference phone set} (speakers.tsv's ``phone_set`` column: arpabet | espeak)."""
    spk_file = Path(corpus_dir) / "speakers.tsv"
    rows = [line.split("\t") for line in spk_file.read_text().splitlines() if line.strip()] \
        if spk_file.is_file() else []
    if not rows or "phone_set" not in rows[0]:
        return {}
    col = rows[0].index("phone_set")
    sets = {r[0]: r[col] for r in rows[1:] if len(r) > col}
    return {u: sets.get(u.split("-")[0], "arpabet") for u in utts}


def score_ali_dir(corpus_dir: Path, part: str, lang_dir: Path, ali_dir: Path) -> Dict[str, AlignmentScore]:
    """Score the alignments of ``part`` in any alignment directory (the k2 aligner's
    ``exp/ali_mono``, the GMM's ``exp/mono_gmm``, ...) against the corpus's reference phone
    timings (``<corpus_dir>/<part>/**/*.phones.txt``): ``"all"`` and one entry per voice family.
    Empty if the part has no reference timings."""
    from lm2am.align.pipeline import read_alignments
    from lm2am.lang import read_phone_list

    refs = read_reference_phones(sorted((Path(corpus_dir) / part).rglob("*.phones.txt")))
    if not refs:
        return {}
    for u, ps in phone_sets(corpus_dir, refs).items():
        if ps == "espeak":
            refs[u] = espeak_to_arpabet(refs[u])
    alis = {k: v[1] for k, v in read_alignments(ali_dir, part).items()}
    return score_alignments(alis, refs, read_phone_list(lang_dir), groups=voice_families(corpus_dir, refs))

"""WER scoring: per-utterance alignments, Kaldi/icefall-style reports, NIST sclite cross-check.

Files written by :func:`score_set` into a decode directory (``<set>`` = e.g. ``dev``):

* ``wer-<set>``: Kaldi's ``compute-wer`` summary line,
  ``%WER 12.34 [ 56 / 454, 3 ins, 10 del, 43 sub ]``, then ``%SER`` and the sclite result.
* ``errs-<set>.txt``: icefall's ``errs-*`` layout: totals, then ``PER-UTT DETAILS`` (each
  utterance's alignment, ``(ref->hyp)`` for errors, ``*`` for the empty side), then
  ``SUBSTITUTIONS``, ``DELETIONS``, ``INSERTIONS`` (counts, most frequent first) and
  ``PER-WORD STATS`` (``word corr tot_errs count_in_ref count_in_hyp``).
* ``ref.trn``, ``hyp.trn``: sclite ``trn`` lines ``words (uttid)``.
* ``hyp.ctm``: ``uttid 1 start duration word`` lines when word times are given (sclite ``ctm``).

What the WER is: the **unit-cost** total, as Kaldi's ``compute-wer`` and icefall count it
(``kaldialign`` minimum edit distance, every substitution, deletion and insertion costs 1), so
it is the fewest errors any alignment of each utterance can have. Where several alignments tie,
the split into ins/del/sub is kaldialign's.

NIST sclite is reported beside it, not asserted equal: sclite aligns with weighted costs
(substitution 4, insertion 3, deletion 3), so its total can exceed the unit-cost one (ref
``B C C B D D``, hyp ``D A A A B C B``: sclite 7 errors, unit cost 6; kaldialign's own
``sclite_mode`` has the same effect and is not used). :func:`sclite_wer` runs sclite itself
(Debian ``sctk``: ``sctk sclite -r ref.trn trn -h hyp.trn trn -i rm -s -o rsum stdout``,
case-sensitive like Kaldi, Sum line parsed). What must hold between the two, checked by
:func:`score_set` on every scored set (a break raises :class:`Lm2amError`): the same number of
utterances and of reference words, and lm2am's total <= sclite's (no alignment, weighted or
not, has fewer errors than the unit-cost optimum).

:func:`best_scale` picks the acoustic scale (or LM weight) with the lowest dev WER, to apply on test.
"""
from __future__ import annotations

import collections
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["UttAlignment", "WerStats", "compute_wer", "errs_text", "write_trn", "read_trn", "read_text",
           "read_references", "write_ctm", "SclitResult", "sclite_available", "require_sctk", "sclite_wer",
           "check_sclite_promises", "score_set", "best_scale"]

EPS = "*"


@dataclass
class UttAlignment:
    """One utterance's alignment: ``pairs`` of (ref word or ``*``, hyp word or ``*``)."""

    utt: str
    pairs: List[Tuple[str, str]]

    @property
    def ins(self) -> int:
        return sum(r == EPS for r, _ in self.pairs)

    @property
    def dels(self) -> int:
        return sum(h == EPS for _, h in self.pairs)

    @property
    def subs(self) -> int:
        return sum(r != h and r != EPS and h != EPS for r, h in self.pairs)

    @property
    def errors(self) -> int:
        return sum(r != h for r, h in self.pairs)

    @property
    def ref_len(self) -> int:
        return sum(r != EPS for r, _ in self.pairs)

    def text(self) -> str:
        """``a (b->x) c (d->*)``: correct words as is, errors as ``(ref->hyp)``."""
        return " ".join(r if r == h else f"({r}->{h})" for r, h in self.pairs)


@dataclass
class WerStats:
    """Totals over a set plus every utterance's alignment."""

    utts: List[UttAlignment] = field(default_factory=list)
    missing_hyps: List[str] = field(default_factory=list)

    @property
    def num_words(self) -> int:
        return sum(u.ref_len for u in self.utts)

    @property
    def ins(self) -> int:
        return sum(u.ins for u in self.utts)

    @property
    def dels(self) -> int:
        return sum(u.dels for u in self.utts)

    @property
    def subs(self) -> int:
        return sum(u.subs for u in self.utts)

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def wer(self) -> float:
        """Word error rate in percent (0 for an empty reference set without insertions)."""
        n = self.num_words
        return 100.0 * self.errors / n if n else (0.0 if self.errors == 0 else float("inf"))

    @property
    def sentence_errors(self) -> int:
        return sum(u.errors > 0 for u in self.utts)

    def summary_line(self) -> str:
        """Kaldi's ``compute-wer`` line: ``%WER 12.34 [ 56 / 454, 3 ins, 10 del, 43 sub ]``."""
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.num_words}, {self.ins} ins, "
                f"{self.dels} del, {self.subs} sub ]")

    def ser_line(self) -> str:
        n = len(self.utts)
        return f"%SER {100.0 * self.sentence_errors / n if n else 0.0:.2f} [ {self.sentence_errors} / {n} ]"


def _words(x: Union[str, Sequence[str]]) -> List[str]:
    return x.split() if isinstance(x, str) else [str(w) for w in x]


def compute_wer(refs: Mapping[str, Union[str, Sequence[str]]], hyps: Mapping[str, Union[str, Sequence[str]]]
                ) -> WerStats:
    """Align every reference utterance with its hypothesis (a missing hypothesis counts as empty,
    and is listed in ``missing_hyps``; hypotheses without a reference are ignored with a warning)."""
    import kaldialign

    stats = WerStats()
    extra = sorted(set(hyps) - set(refs))
    if extra:
        log.warning("%d hypotheses have no reference and are not scored (e.g. %s)", len(extra), extra[0])
    for utt in sorted(refs):
        ref = _words(refs[utt])
        if utt not in hyps:
            stats.missing_hyps.append(utt)
        hyp = _words(hyps.get(utt, []))
        for w in ref + hyp:
            if w == EPS:
                raise Lm2amError(f"utterance {utt}: the word '{EPS}' is reserved for alignments; remove it from the text")
        pairs = kaldialign.align(ref, hyp, EPS)
        stats.utts.append(UttAlignment(utt, [(str(r), str(h)) for r, h in pairs]))
    if stats.missing_hyps:
        log.warning("%d utterances have no hypothesis (scored as empty), e.g. %s", len(stats.missing_hyps),
                    stats.missing_hyps[0])
    return stats


def errs_text(stats: WerStats, set_name: str = "") -> str:
    """The ``errs-<set>.txt`` report (icefall's ``write_error_stats`` layout)."""
    subs: collections.Counter = collections.Counter()
    dels: collections.Counter = collections.Counter()
    ins: collections.Counter = collections.Counter()
    words: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])  # corr, err, ref, hyp
    for u in stats.utts:
        for r, h in u.pairs:
            if r == h:
                words[r][0] += 1
                words[r][2] += 1
                words[r][3] += 1
                continue
            if r == EPS:
                ins[h] += 1
                words[h][1] += 1
                words[h][3] += 1
            elif h == EPS:
                dels[r] += 1
                words[r][1] += 1
                words[r][2] += 1
            else:
                subs[(r, h)] += 1
                words[r][1] += 1
                words[r][2] += 1
                words[h][1] += 1
                words[h][3] += 1
    lines = [f"%WER = {stats.wer:.2f}" + (f" ({set_name})" if set_name else ""),
             f"Errors: {stats.ins} insertions, {stats.dels} deletions, {stats.subs} substitutions, over "
             f"{stats.num_words} reference words ({stats.num_words - stats.dels - stats.subs} correct)",
             stats.summary_line(), stats.ser_line(),
             "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
             "INSERTIONS:, PER-WORD STATS:", "", "PER-UTT DETAILS: corr or (ref->hyp)"]
    lines += [f"{u.utt}:\t{u.text()}" for u in stats.utts]
    lines += ["", "SUBSTITUTIONS: count ref -> hyp"]
    lines += [f"{c}   {r} -> {h}" for (r, h), c in sorted(subs.items(), key=lambda x: (-x[1], x[0]))]
    lines += ["", "DELETIONS: count ref"]
    lines += [f"{c}   {r}" for r, c in sorted(dels.items(), key=lambda x: (-x[1], x[0]))]
    lines += ["", "INSERTIONS: count hyp"]
    lines += [f"{c}   {h}" for h, c in sorted(ins.items(), key=lambda x: (-x[1], x[0]))]
    lines += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    lines += [f"{w}   {v[0]} {v[1]} {v[2]} {v[3]}" for w, v in sorted(words.items(), key=lambda x: (-x[1][1], x[0]))]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- file formats
def _check_id(utt: str) -> None:
    if not utt or any(c.isspace() for c in utt) or "(" in utt or ")" in utt:
        raise Lm2amError(f"utterance id {utt!r} cannot go into a trn/ctm file (no spaces or parentheses)")


def write_trn(texts: Mapping[str, Union[str, Sequence[str]]], path: Union[Path, str]) -> None:
    """sclite ``trn`` file: ``w1 w2 ... (uttid)`` per utterance, sorted by id (atomic)."""
    lines = []
    for utt in sorted(texts):
        _check_id(utt)
        words = _words(texts[utt])
        if any("(" in w or ")" in w for w in words):
            # sclite reads "(word)" as an optionally deletable word: it would change the score
            raise Lm2amError(f"utterance {utt}: a word contains a parenthesis; normalize the text first")
        lines.append(" ".join(words + [f"({utt})"]))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_trn(path: Union[Path, str]) -> Dict[str, List[str]]:
    """Read a ``trn`` file written by :func:`write_trn`."""
    out: Dict[str, List[str]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^(.*)\(([^()]*)\)\s*$", line)
        if not m:
            if line.strip():
                raise Lm2amError(f"{path} line {n}: expected 'words (uttid)', got {line!r}")
            continue
        out[m.group(2)] = m.group(1).split()
    return out


def read_text(path: Union[Path, str]) -> Dict[str, List[str]]:
    """Read a Kaldi ``text`` file (``uttid w1 w2 ...``)."""
    out: Dict[str, List[str]] = {}
    p = Path(path)
    if not p.is_file():
        raise Lm2amError(f"{p} does not exist")
    for line in p.read_text(encoding="utf-8").splitlines():
        f = line.split()
        if f:
            out[f[0]] = f[1:]
    return out


def read_references(path: Union[Path, str]) -> Dict[str, List[str]]:
    """Word sequences per utterance from a Kaldi text file, a ``.trn`` file or a lhotse cuts /
    supervisions manifest (``.jsonl[.gz]``; a cut's words are its supervisions' texts joined)."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"reference/hypothesis file {path} does not exist")
    name = path.name
    if name.endswith(".jsonl.gz") or name.endswith(".jsonl"):
        from lhotse import load_manifest_lazy

        refs: Dict[str, List[str]] = {}
        for item in load_manifest_lazy(path):
            sups = getattr(item, "supervisions", None)
            if sups is not None:  # a cut
                refs[item.id] = " ".join((s.text or "") for s in sups).split()
            else:  # a supervision segment
                refs[item.id] = (getattr(item, "text", None) or "").split()
        return refs
    if name.endswith(".trn"):
        return read_trn(path)
    return read_text(path)


def write_ctm(word_times: Mapping[str, Sequence], path: Union[Path, str], channel: str = "1") -> None:
    """CTM lines ``uttid channel start duration word`` (items with ``word``/``start``/``duration``)."""
    lines = []
    for utt in sorted(word_times):
        _check_id(utt)
        for wt in word_times[utt]:
            lines.append(f"{utt} {channel} {wt.start:.2f} {wt.duration:.2f} {wt.word}")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


# ----------------------------------------------------------------------------- sclite
@dataclass
class SclitResult:
    """Totals of sclite's ``Sum`` line (raw counts)."""

    sentences: int
    words: int
    corr: int
    subs: int
    dels: int
    ins: int
    errors: int
    sentence_errors: int

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / self.words if self.words else 0.0


def sclite_available() -> bool:
    """Whether the Debian ``sctk`` front end is on PATH."""
    return shutil.which("sctk") is not None


def require_sctk(sctk: str = "sctk") -> str:
    """The path of the NIST sctk front end; a one-line error naming the fix when it is missing."""
    exe = shutil.which(sctk)
    if exe is None:
        raise Lm2amError(f"'{sctk}' is not on PATH; install NIST sctk: apt-get install sctk (utils/setup_env.sh does)")
    return exe


def sclite_wer(ref_trn: Union[Path, str], hyp_trn: Union[Path, str], sctk: str = "sctk") -> SclitResult:
    """Score with NIST sclite (``sctk sclite ... -i rm -o rsum stdout``) and parse the Sum line."""
    exe = require_sctk(sctk)
    with tempfile.TemporaryDirectory() as tmp:
        # sclite prints a warning per id that is not an RM-style speaker id; harmless, so quiet
        # absolute paths: sclite runs in the temporary directory (relative ones would not resolve)
        proc = subprocess.run([exe, "sclite", "-r", str(Path(ref_trn).resolve()), "trn", "-h",
                               str(Path(hyp_trn).resolve()), "trn", "-i", "rm", "-s",
                               "-o", "rsum", "stdout"], capture_output=True, text=True, cwd=tmp)
    m = None
    for line in proc.stdout.splitlines():
        mm = re.match(r"^\s*\|\s*Sum(?:/Avg)?\s*\|(.*)\|\s*$", line)
        if mm:
            m = mm
    if proc.returncode != 0 or m is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise Lm2amError(f"sclite failed on {ref_trn} / {hyp_trn} (exit {proc.returncode}): {' | '.join(tail)}")
    nums = [float(x) for x in m.group(1).replace("|", " ").split()]
    if len(nums) != 8:
        raise Lm2amError(f"cannot parse sclite's Sum line: {m.group(0).strip()}")
    snt, wrd, corr, sub, dele, ins, err, serr = (int(round(x)) for x in nums)
    return SclitResult(snt, wrd, corr, sub, dele, ins, err, serr)


def check_sclite_promises(stats: WerStats, sc: SclitResult, hyp_trn: Union[Path, str]) -> None:
    """Raise :class:`Lm2amError` (one line, naming ``hyp_trn``) unless sclite scored the same
    utterances and reference words as lm2am and found at least as many errors (the unit-cost
    total is the minimum over all alignments; sclite's weighted one may be larger)."""
    what = None
    if sc.sentences != len(stats.utts):
        what = f"{sc.sentences} utterances, lm2am {len(stats.utts)}"
    elif sc.words != stats.num_words:
        what = f"{sc.words} reference words, lm2am {stats.num_words}"
    elif sc.errors < stats.errors:
        what = f"{sc.errors} errors, fewer than lm2am's unit-cost minimum {stats.errors}"
    if what:
        raise Lm2amError(f"{hyp_trn}: sclite counts {what}; the scorer is broken, report this as a bug "
                         "(or score with --no-sclite)")


# ----------------------------------------------------------------------------- a whole set
def score_set(refs: Mapping[str, Union[str, Sequence[str]]], hyps: Mapping[str, Union[str, Sequence[str]]],
              out_dir: Union[Path, str], set_name: str, word_times: Optional[Mapping[str, Sequence]] = None,
              use_sclite: bool = True) -> WerStats:
    """Score one set and write ``wer-<set>``, ``errs-<set>.txt``, ``ref.trn``, ``hyp.trn`` (and
    ``hyp.ctm``) into ``out_dir``; with ``use_sclite`` (and sctk installed) sclite scores the
    same trn files, :func:`check_sclite_promises` must pass (else nothing but the trn files is
    written) and sclite's result is appended to ``wer-<set>``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = compute_wer(refs, hyps)
    scored_hyps = {u: hyps.get(u, []) for u in refs}
    write_trn(refs, out_dir / "ref.trn")
    write_trn(scored_hyps, out_dir / "hyp.trn")
    if word_times:
        write_ctm(word_times, out_dir / "hyp.ctm")
    lines = [stats.summary_line(), stats.ser_line()]
    if use_sclite and sclite_available():
        sc = sclite_wer(out_dir / "ref.trn", out_dir / "hyp.trn")
        check_sclite_promises(stats, sc, out_dir / "hyp.trn")
        lines.append(f"sclite: %WER {sc.wer:.2f} [ {sc.errors} / {sc.words}, {sc.ins} ins, {sc.dels} del, "
                     f"{sc.subs} sub ]")
    elif use_sclite:
        log.warning("sctk is not installed: no sclite cross-check for %s", set_name)
    atomic_write_text(out_dir / f"errs-{set_name}.txt", errs_text(stats, set_name))
    atomic_write_text(out_dir / f"wer-{set_name}", "\n".join(lines) + "\n")
    log.info("%s: %s", set_name, stats.summary_line())
    return stats


def best_scale(results: Mapping[float, Union[WerStats, float]]) -> float:
    """The scale with the lowest WER (values: :class:`WerStats` or WER numbers); ties go to
    the scale closest to the middle of the swept range (least at the edge of the sweep)."""
    if not results:
        raise Lm2amError("best_scale: no results to choose from")
    wers = {float(s): (r.wer if isinstance(r, WerStats) else float(r)) for s, r in results.items()}
    scales = sorted(wers)
    mid = (scales[0] + scales[-1]) / 2.0
    return min(scales, key=lambda s: (wers[s], abs(s - mid), s))

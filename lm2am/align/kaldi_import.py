"""Import Kaldi frame alignments and turn them into lm2am's :class:`~lm2am.targets.FrameTargets`.

Inputs (what a Kaldi recipe already has, or makes in one command each):

* per-frame pdf-ids: ``ali-to-pdf exp/tri/final.mdl "ark:gunzip -c exp/tri_ali/ali.*.gz|" ark,t:pdf.txt``
  (text ``utt id1 id2 ...`` per line) or ``ark:pdf.ark`` (binary int vectors);
* per-frame phones: ``ali-to-phones --per-frame=true exp/tri/final.mdl "ark:..." ark,t:phones.txt``
  (or binary), ids of Kaldi's ``phones.txt``;
* Kaldi's ``data/lang/phones.txt`` and the transcripts (``utt -> text``).

Either file may be gzipped (``.gz``). Senones are Kaldi's pdf-ids as they are.

Phone mapping: a Kaldi phone name loses its word-position suffix (``_B``, ``_I``, ``_E``,
``_S``); the rest must name an lm2am phone (exactly, upper-cased, or with the stress digit
stripped, for a lang dir without stress). A phone that occurs in the alignment and maps to
nothing is an :class:`Lm2amError` naming it, its id and the file.

Word boundaries: with position-dependent phones (Kaldi's default), a word starts at a ``_B`` or
``_S`` phone and ends after the ``_E``/``_S`` one; the words found must be as many as the
transcript's, matched in order. Without position markers, the phone sequence is matched against
the lexicon of ``lang_dir`` (each word's pronunciations, ``<UNK>``'s for words it lacks; silence
phones between words skipped); if no match exists the error says to use position-dependent
phones. Both need phone *occurrences*: consecutive frames with one Kaldi phone id are one
occurrence, except that a return to a pdf-id already seen in the occurrence starts a new one
(HMM states are left to right, so a revisited pdf means the phone started again, e.g. the
``AH_S AH_S`` of "A A").
"""
from __future__ import annotations

import gzip
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from lm2am.ark import iter_int32_vector_ark
from lm2am.errors import Lm2amError
from lm2am.lang import read_lexicon, read_silence_phones, read_symbols
from lm2am.targets import FrameTargets, check_targets, make_frame_targets

log = logging.getLogger(__name__)

__all__ = ["import_kaldi_alignments", "map_kaldi_phones", "read_int_vectors"]

_POS_RE = re.compile(r"^(.+)_([BIES])$")
Occurrence = Tuple[int, int, int]  # (kaldi phone id, start frame, end frame exclusive)


# ----------------------------------------------------------------------------------------------
# Reading


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_int_vectors(path: Union[Path, str]) -> Dict[str, np.ndarray]:
    """Read a Kaldi int-vector archive, text (``utt 1 2 3``) or binary, optionally gzipped.

    Returns ``utt -> np.int32[T]`` in file order. Bad lines, duplicate keys and archives of
    something else (matrices, floats) raise :class:`Lm2amError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; write it with ali-to-pdf / ali-to-phones --per-frame=true")
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise Lm2amError(f"{path}: cannot read it ({type(e).__name__}: {str(e)[:80]}); "
                         "a truncated or corrupt .gz? regenerate it") from None
    out: Dict[str, np.ndarray] = {}
    sp = data.find(b" ")
    if sp > 0 and data[sp + 1:sp + 3] == b"\0B":  # binary archive: "<key> \0B..."
        for key, arr in iter_int32_vector_ark(data, str(path)):
            if key in out:
                raise Lm2amError(f"{path}: utterance {key} appears twice")
            out[key] = arr
        return out
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Lm2amError(f"{path}: neither a Kaldi binary archive nor UTF-8 text; give the output "
                         "of ali-to-pdf / ali-to-phones (ark,t: or ark:)") from None
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.replace("[", " ").replace("]", " ").split()
        if not fields:
            continue
        key = fields[0]
        try:
            arr = np.array([int(x) for x in fields[1:]], dtype=np.int32)
        except ValueError:
            raise Lm2amError(f"{path} line {n}: expected 'utt id1 id2 ...' with integer ids, got "
                             f"{line[:80]!r}; give ali-to-pdf / ali-to-phones --per-frame=true output") from None
        if key in out:
            raise Lm2amError(f"{path} line {n}: utterance {key} appears twice")
        out[key] = arr
    return out


# ----------------------------------------------------------------------------------------------
# Phones


def _strip_stress(name: str) -> str:
    return name.rstrip("0123456789") or name


def map_kaldi_phones(kaldi_phones: Mapping[str, int], lm_phones: Mapping[str, int]
                     ) -> Dict[int, Tuple[Optional[int], Optional[str]]]:
    """Kaldi phone id -> (lm2am phone id or None if unmappable, position marker or None).

    ``<eps>`` and disambiguation symbols (``#k``) map to None.
    """
    upper = {k.upper(): v for k, v in lm_phones.items()}
    out: Dict[int, Tuple[Optional[int], Optional[str]]] = {}
    for name, kid in kaldi_phones.items():
        if name == "<eps>" or name.startswith("#"):
            out[kid] = (None, None)
            continue
        m = _POS_RE.match(name)
        base, pos = (m.group(1), m.group(2)) if m else (name, None)
        lm = None
        for cand in (base, _strip_stress(base)):
            lm = lm_phones.get(cand, upper.get(cand.upper()))
            if lm is not None:
                break
        out[kid] = (lm, pos)
    return out


def _silence_ids(lang_dir: Path, lm_phones: Mapping[str, int]) -> Set[int]:
    return {lm_phones[n] for n in read_silence_phones(lang_dir) if n in lm_phones}


# ----------------------------------------------------------------------------------------------
# Words


def _occurrences(kph: np.ndarray, pdf: np.ndarray) -> List[Occurrence]:
    """Phone occurrences: runs of one Kaldi phone id, split where a pdf-id is revisited."""
    T = len(kph)
    if T == 0:
        return []
    change = np.flatnonzero((kph[1:] != kph[:-1]) | (pdf[1:] != pdf[:-1])) + 1
    seg_starts = np.concatenate([[0], change])  # segments of one (phone, pdf) pair
    occ: List[Occurrence] = []
    start = 0
    seen: Set[int] = set()
    for s in seg_starts.tolist():  # one step per HMM-state segment, not per frame
        if s > start and (kph[s] != kph[s - 1] or int(pdf[s]) in seen):
            occ.append((int(kph[s - 1]), start, s))
            start, seen = s, set()
        seen.add(int(pdf[s]))
    occ.append((int(kph[-1]), start, T))
    return occ


def _words_by_position(utt: str, occ: Sequence[Occurrence],
                       pmap: Mapping[int, Tuple[Optional[int], Optional[str]]],
                       kaldi_names: Mapping[int, str]) -> List[Tuple[int, int]]:
    spans: List[Tuple[int, int]] = []
    open_at: Optional[int] = None
    for kid, s, e in occ:
        pos = pmap[kid][1]
        bad = ((pos == "B" and open_at is not None) or (pos in ("I", "E") and open_at is None)
               or (pos in ("S", None) and open_at is not None))
        if bad:
            raise Lm2amError(f"utterance {utt}: phone {kaldi_names[kid]} at frame {s} breaks the "
                             "_B/_I/_E/_S word structure; the phone alignment is not from "
                             "ali-to-phones --per-frame=true of this model")
        if pos == "B":
            open_at = s
        elif pos == "E":
            spans.append((open_at, e))  # type: ignore[arg-type]
            open_at = None
        elif pos == "S":
            spans.append((s, e))
    if open_at is not None:
        raise Lm2amError(f"utterance {utt}: the last word (from frame {open_at}) has no _E phone; "
                         "the phone alignment is truncated")
    return spans


def _words_by_lexicon(utt: str, words: Sequence[str], occ: Sequence[Occurrence],
                      pmap: Mapping[int, Tuple[Optional[int], Optional[str]]],
                      lexicon: Mapping[str, List[Tuple[str, ...]]], lm_phones: Mapping[str, int],
                      silence: Set[int]) -> List[Tuple[int, int]]:
    """Match the transcript's pronunciations to the phone occurrences (DP over (word, occ))."""
    ph = [pmap[k][0] for k, _, _ in occ]
    prons: List[List[Tuple[int, ...]]] = []
    for w in words:
        cands = lexicon.get(w) or lexicon.get("<UNK>") or []
        ids = [tuple(lm_phones.get(p, -1) for p in pron) for pron in cands]
        if not ids:
            raise Lm2amError(f"utterance {utt}: word {w!r} is not in the lexicon (and no <UNK>); "
                             "use position-dependent Kaldi phones or add the word to the lang dir")
        prons.append(ids)
    nW, nI = len(words), len(occ)
    back: Dict[Tuple[int, int], Tuple[Tuple[int, int], Optional[int]]] = {(0, 0): ((-1, -1), None)}
    frontier: Dict[int, List[int]] = {0: [0]}  # occurrence index -> word indices reached there
    for i in range(nI + 1):
        for wi in frontier.get(i, []):
            nxt: List[Tuple[Tuple[int, int], Optional[int]]] = []
            if i < nI and ph[i] in silence:
                nxt.append(((wi, i + 1), None))
            if wi < nW:
                for pron in prons[wi]:
                    if tuple(ph[i:i + len(pron)]) == pron:
                        nxt.append(((wi + 1, i + len(pron)), wi))
            for state, w in nxt:
                if state not in back:
                    back[state] = ((wi, i), w)
                    frontier.setdefault(state[1], []).append(state[0])
    if (nW, nI) not in back:
        raise Lm2amError(f"utterance {utt}: the phone alignment does not match the lexicon "
                         "pronunciations of its transcript; Kaldi's phones.txt has no word-position "
                         "markers, so use position-dependent phones (prepare_lang.sh "
                         "--position-dependent-phones true) or the same lexicon as lm2am")
    spans: List[Tuple[int, int]] = [(0, 0)] * nW
    state = (nW, nI)
    while state != (0, 0):
        prev, w = back[state]
        if w is not None:
            spans[w] = (occ[prev[1]][1], occ[state[1] - 1][2])
        state = prev
    return spans


# ----------------------------------------------------------------------------------------------
# The import


def _fit_length(utt: str, arr: np.ndarray, n: int, tolerance: int, what: str) -> np.ndarray:
    if len(arr) == n:
        return arr
    if abs(len(arr) - n) > tolerance:
        raise Lm2amError(f"utterance {utt}: {what} has {len(arr)} frames but the features have {n}; "
                         "use features with Kaldi's frame settings (snip-edges) or allow a small "
                         "difference with frame_tolerance")
    if len(arr) > n:
        return arr[:n]
    return np.concatenate([arr, np.full(n - len(arr), arr[-1] if len(arr) else 0, dtype=arr.dtype)])


def import_kaldi_alignments(pdf_ali: Union[Path, str], phone_ali: Union[Path, str],
                            kaldi_phones: Union[Path, str], lang_dir: Union[Path, str],
                            texts: Mapping[str, str], sp: Any, *,
                            num_pdfs: Optional[int] = None,
                            num_frames: Optional[Mapping[str, int]] = None,
                            frame_tolerance: int = 0) -> Dict[str, FrameTargets]:
    """Kaldi pdf and per-frame phone alignments -> ``utt -> FrameTargets`` (module docstring).

    Args:
        pdf_ali, phone_ali: ``ali-to-pdf`` / ``ali-to-phones --per-frame=true`` output, text or
            binary ark, optionally ``.gz``.
        kaldi_phones: Kaldi's ``phones.txt``.
        lang_dir: lm2am lang dir (``phones.txt``, ``silence_phones.txt``, ``lexicon.txt``).
        texts: ``utt -> transcript``; every aligned utterance needs one (upper-cased here).
        sp: sentencepiece processor of ``lang_dir/bpe.model``.
        num_pdfs: the Kaldi model's pdf count (``tree-info``/``am-info``); default max id + 1.
        num_frames: ``utt -> feature frame count`` to check against (e.g. the cuts').
        frame_tolerance: allowed ``|alignment - features|`` frames (end trimmed or padded with
            the last frame); 0 (default) makes any difference an error.

    Utterances with a transcript but no alignment (Kaldi failed to align them) are left out
    with a log line. Errors (:class:`Lm2amError`) name the utterance and both numbers.
    """
    pdf_ali, phone_ali, kaldi_phones, lang_dir = (Path(pdf_ali), Path(phone_ali),
                                                  Path(kaldi_phones), Path(lang_dir))
    tables = _phone_tables(kaldi_phones, lang_dir)
    pdfs, phones, num_pdfs = _read_alignments(pdf_ali, phone_ali, num_pdfs)
    out: Dict[str, FrameTargets] = {}
    for utt in sorted(pdfs, key=str.encode):
        if utt not in texts:
            raise Lm2amError(f"utterance {utt} of {pdf_ali} has no transcript; pass texts for every "
                             "aligned utterance (Kaldi's data/<set>/text)")
        pdf, kph = _checked_frames(utt, pdfs[utt], phones[utt], pdf_ali, phone_ali, kaldi_phones,
                                   tables, num_frames, frame_tolerance)
        words = texts[utt].upper().split()
        occ = _occurrences(kph, pdf)
        if tables.positional:
            spans = _words_by_position(utt, occ, tables.pmap, tables.knames)
            if len(spans) != len(words):
                raise Lm2amError(f"utterance {utt}: the alignment in {phone_ali} has {len(spans)} "
                                 f"words but its transcript {len(words)}; use the transcripts the "
                                 "alignment was made with")
        else:
            spans = _words_by_lexicon(utt, words, occ, tables.pmap, tables.lexicon or {},
                                      tables.lm_phones, tables.silence)
        t = make_frame_targets(tables.lut[kph], pdf, [(w, s, e) for w, (s, e) in zip(words, spans)], sp,
                               tables.silence, phone_starts=[s for _, s, _ in occ], utt_id=utt)
        check_targets(utt, t, num_frames[utt] if num_frames is not None else len(pdf), num_pdfs,
                      tables.num_phones, int(sp.get_piece_size()))
        out[utt] = t
    unaligned = [u for u in texts if u not in pdfs]
    if unaligned:
        log.warning("kaldi import: %d of %d utterances have no alignment (first: %s); left out",
                    len(unaligned), len(texts), sorted(unaligned)[0])
    log.info("kaldi import: %d utterances, %d pdfs, %s phones, from %s", len(out), num_pdfs,
             "position-dependent" if tables.positional else "position-independent", pdf_ali)
    return out


@dataclass
class _PhoneTables:
    """Kaldi's and lm2am's phone sets and the map between them."""

    lm_phones: Dict[str, int]
    lm_phones_file: Path  # lm2am's phones.txt
    knames: Dict[int, str]  # Kaldi id -> name
    pmap: Dict[int, Tuple[Optional[int], Optional[str]]]  # :func:`map_kaldi_phones`
    positional: bool  # Kaldi phones carry word-position markers
    silence: Set[int]
    lexicon: Optional[Dict[str, List[Tuple[str, ...]]]]  # only without position markers
    num_phones: int
    lut: np.ndarray  # Kaldi id -> lm2am id (-1: none)


def _phone_tables(kaldi_phones: Path, lang_dir: Path) -> _PhoneTables:
    lm_phones = read_symbols(lang_dir / "phones.txt")
    kphones = read_symbols(kaldi_phones)
    pmap = map_kaldi_phones(kphones, lm_phones)
    positional = any(pos is not None for _, pos in pmap.values())
    lut = np.full(max(kphones.values()) + 1, -1, dtype=np.int32)
    for kid, (lm, _) in pmap.items():
        if lm is not None:
            lut[kid] = lm
    return _PhoneTables(lm_phones=lm_phones, lm_phones_file=lang_dir / "phones.txt", knames={v: k for k, v in kphones.items()}, pmap=pmap,
                        positional=positional, silence=_silence_ids(lang_dir, lm_phones),
                        lexicon=None if positional else read_lexicon(lang_dir, check_phones=True),
                        num_phones=max(lm_phones.values()) + 1, lut=lut)


def _read_alignments(pdf_ali: Path, phone_ali: Path, num_pdfs: Optional[int]
                     ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], int]:
    """Both alignments (same utterances) and the pdf count (checked, or max id + 1)."""
    pdfs = read_int_vectors(pdf_ali)
    phones = read_int_vectors(phone_ali)
    for utt in pdfs:
        if utt not in phones:
            raise Lm2amError(f"utterance {utt} is in {pdf_ali} but not in {phone_ali}; give both "
                             "alignments of the same ali.*.gz")
    for utt in phones:
        if utt not in pdfs:
            raise Lm2amError(f"utterance {utt} is in {phone_ali} but not in {pdf_ali}; give both "
                             "alignments of the same ali.*.gz")
    max_pdf = max((int(a.max()) for a in pdfs.values() if len(a)), default=-1)
    if num_pdfs is None:
        num_pdfs = max_pdf + 1
    elif max_pdf >= num_pdfs:
        utt = next(u for u, a in pdfs.items() if len(a) and a.max() == max_pdf)
        raise Lm2amError(f"{pdf_ali}: utterance {utt} has pdf id {max_pdf} but num_pdfs is {num_pdfs}; "
                         "transition-ids instead of pdf-ids? convert ali.*.gz with ali-to-pdf")
    return pdfs, phones, num_pdfs


def _checked_frames(utt: str, pdf: np.ndarray, kph: np.ndarray, pdf_ali: Path, phone_ali: Path,
                    kaldi_phones: Path, tables: _PhoneTables,
                    num_frames: Optional[Mapping[str, int]], frame_tolerance: int
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """One utterance's pdf and Kaldi phone ids, fitted to its feature frames; every phone must
    map to an lm2am phone."""
    if len(pdf) != len(kph):
        raise Lm2amError(f"utterance {utt}: {pdf_ali} has {len(pdf)} frames but {phone_ali} has "
                         f"{len(kph)}; both must come from the same alignment")
    if pdf.min(initial=0) < 0:
        raise Lm2amError(f"{pdf_ali}: utterance {utt} has a negative pdf id; regenerate it with ali-to-pdf")
    if num_frames is not None:
        if utt not in num_frames:
            raise Lm2amError(f"utterance {utt} of {pdf_ali} has no features (not among the cuts); "
                             "import alignments of the same data set")
        pdf = _fit_length(utt, pdf, num_frames[utt], frame_tolerance, str(pdf_ali))
        kph = _fit_length(utt, kph, num_frames[utt], frame_tolerance, str(phone_ali))
    lut = tables.lut
    if len(kph) and (kph.min() < 0 or kph.max() >= len(lut)):
        kid = int(kph[(kph < 0) | (kph >= len(lut))][0])
        raise Lm2amError(f"{phone_ali}: utterance {utt} has phone id {kid}, which is not in "
                         f"{kaldi_phones}; give the phones.txt of the model that aligned it")
    for kid in np.unique(kph):
        lm = tables.pmap.get(int(kid), (None, None))[0]
        if lm is None:
            name = tables.knames.get(int(kid))
            what = f"phone {name} (id {kid})" if name else f"phone id {kid}, which is not in it,"
            raise Lm2amError(f"{kaldi_phones}: {what} used by utterance {utt} in {phone_ali} has "
                             f"no lm2am phone in {tables.lm_phones_file}; use a Kaldi lang with "
                             "the same phone set (CMUdict, stress removed or kept alike)")
    return pdf, kph

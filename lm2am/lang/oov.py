"""The OOV policy: what happens to transcript words the lexicon lacks (``lang.oov_policy``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Set, Tuple

from lm2am.errors import Lm2amError
from lm2am.lang.config import LangConfig
from lm2am.lang.lang_dir import read_lexicon

log = logging.getLogger(__name__)


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

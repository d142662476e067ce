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

Modules: :mod:`.config` (:class:`LangConfig`), :mod:`.phones` (the phone set),
:mod:`.lexicon` (CMUdict, flite g2p, disambiguation symbols), :mod:`.lang_dir` (reading and
writing the symbol tables and lexicon of a lang dir), :mod:`.oov` (the OOV policy),
:mod:`.bpe` (the sentencepiece model), :mod:`.prepare` (the stage, :func:`prepare_lang`).
"""
from __future__ import annotations
from lm2am.lang.bpe import train_bpe
from lm2am.lang.config import LangConfig
from lm2am.lang.lang_dir import (read_lexicon, read_phone_list, read_silence_phones,
                                 read_symbol_list, read_symbols)
from lm2am.lang.lexicon import add_disambig, cmudict_prons, g2p_flite
from lm2am.lang.oov import OovStats, apply_oov_policy, apply_oov_policy_to_cuts
from lm2am.lang.phones import Pron, cmudict_phones
from lm2am.lang.prepare import LangReport, SplitOov, prepare_lang

__all__ = ["LangConfig", "LangReport", "OovStats", "Pron", "SplitOov", "add_disambig",
           "apply_oov_policy", "apply_oov_policy_to_cuts", "cmudict_phones", "cmudict_prons",
           "g2p_flite", "prepare_lang", "read_lexicon", "read_phone_list", "read_silence_phones",
           "read_symbol_list", "read_symbols", "train_bpe"]

"""synth-en: the embedded synthetic English corpus (flite + festival + espeak-ng speech).

:func:`make_corpus` turns a :class:`SynthConfig` into a LibriSpeech-layout corpus that lhotse's
``prepare_librispeech(corpus_dir, dataset_parts=[...])`` reads::

    <out>/<part>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac   16 kHz mono FLAC
    <out>/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt     UTTID WORDS
    <out>/<part>/<spk>/<chapter>/<spk>-<chapter>.alignment.txt UTTID ",W1,W2," "e1,e2,..."
    <out>/<part>/<spk>/<chapter>/<spk>-<chapter>.phones.txt    UTTID "SIL,HH,AH,..." "e1,e2,..."
    <out>/<part>/utt_info.tsv       utt id, speaker, duration, noise, SNR, reverb
    <out>/speakers.tsv              speaker, chapter, part, engine, voice, knobs, phone set
    <out>/lm_text/lm_text.txt       LM-only sentences (disjoint from every transcript)
    <out>/lm_text/sources.tsv       LM sentences per source
    <out>/stats.txt                 per-part statistics

Parts are ``train-synth``, ``dev-synth``, ``test-synth``, split *by base voice*: dev and test
voices never occur in training. Times in the alignment files are end times in seconds on the
final audio timeline (LibriSpeech style; ``""`` marks silence in word alignments, ``SIL`` in
phone alignments). Phone labels are ARPAbet for flite/festival speakers and espeak-ng's own
phoneme names for espeak speakers (``phone_set`` in speakers.tsv).

Everything is a function of the config (``nj`` aside): transcripts, speakers, their knobs,
augmentation choices, and the audio (flite, festival and espeak-ng are deterministic given
per-utterance seeds and fixed batches, see :mod:`lm2am.corpus.voices`).

Each part is built in a temporary directory next to its final place and renamed when complete;
a per-part done marker (``<out>/.<part>.done``, a fingerprint of the config) lets a killed run
resume without redoing finished parts. The corpus directory may hold other parts (e.g. the
real-speech ``test-asterisk``); they are left alone.

Modules: :mod:`.config` (:class:`SynthConfig`), :mod:`.plan` (speakers, transcripts and every
random choice, from the seed), :mod:`.build` (synthesis, augmentation, files, the done markers),
:mod:`.stats` (per-part statistics).
"""
from lm2am.corpus.synth_en.build import check_requirements, make_corpus
from lm2am.corpus.synth_en.config import PARTS, SynthConfig
from lm2am.corpus.synth_en.plan import Plan, Speaker, Utterance, plan_corpus
from lm2am.corpus.synth_en.stats import corpus_stats, format_stats

__all__ = ["PARTS", "Plan", "Speaker", "SynthConfig", "Utterance", "check_requirements",
           "corpus_stats", "format_stats", "make_corpus", "plan_corpus"]

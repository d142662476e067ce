"""Speech synthesizer back ends for synth-en, each returning 16 kHz audio plus reference timings.

Three engines (README.md, "The synth-en corpus", says how they are mixed):

* **flite** (``slt``, ``rms``, ``awb``, ``kal16``) through ``libflite`` with ctypes: in-process
  synthesis (no process start per utterance) and direct access to the utterance structure, so
  every phone's end time *and* the input word it belongs to are exact. The timings are the ones
  ``flite -psdur`` prints.
* **festival** (``kal_diphone``, ``ked_diphone``, ``cmu_us_slt_arctic_hts``) in batch mode: one
  ``festival -b script.scm`` per batch of utterances (per-utterance processes are 20x slower);
  the script saves each wave and a segment file (phone, end time, input-token index).
* **espeak-ng** (English accents x voice variants) through ``libespeak-ng`` with ctypes: PHONEME
  events carry the sample offset where each phoneme starts, WORD events the text position.

Reference phones from flite/festival are mapped to upper-case ARPAbet without stress
(``pau`` -> ``SIL``, ``ax`` -> ``AH``; phone set ``"arpabet"``). espeak-ng phonemes have no
clean one-to-one ARPAbet mapping (``@2``, ``I#``, ``aI@``...), so they keep espeak's own names,
pauses excepted (``_``, ``_:`` -> ``SIL``), and are marked with phone set ``"espeak"``.

Pseudo-speakers come from per-voice knobs (:class:`SpeakerSpec`): pitch (flite
``int_f0_target_mean``, festival diphone ``target_f0_mean``, espeak ``-p``), rate (flite
``duration_stretch``, festival ``Duration_Stretch`` / HTS ``-r``, espeak ``-s``) and a speed
factor with the effect of ``sox speed`` (resampling: pitch and tempo together), applied while
resampling to 16 kHz; reference times are divided by the same factor.

Determinism: festival and flite ``kal16`` are deterministic; flite's clustergen voices draw
noise from libc ``rand()``, which is seeded per utterance here; espeak-ng's output depends on
the library's internal state left by earlier utterances (there is no reset call), so callers
run each batch in a process that has not used espeak-ng before (same batch -> same audio).

Modules: :mod:`.base` (speaker specs, voice names, availability checks), :mod:`.timing`
(resampling, phone mapping, word timings), one per engine (:mod:`.flite`, :mod:`.festival`,
:mod:`.espeak`); :func:`synthesize` picks the engine.
"""
from __future__ import annotations

from typing import List, Sequence

from lm2am.corpus.voices.base import (ARPABET, ENGINES, ESPEAK_ACCENTS, ESPEAK_BAD_VARIANTS,
                                      FESTIVAL_VOICES, FLITE_VOICES, SAMPLE_RATE, SpeakerSpec,
                                      Synthesized, Timing, check_engine, espeak_variants,
                                      make_speaker, parse_voice, supports_pitch)
from lm2am.corpus.voices.espeak import espeak_knobs, synth_espeak
from lm2am.corpus.voices.festival import synth_festival
from lm2am.corpus.voices.flite import synth_flite
from lm2am.corpus.voices.timing import resample
from lm2am.errors import Lm2amError

__all__ = ["ARPABET", "ENGINES", "ESPEAK_ACCENTS", "ESPEAK_BAD_VARIANTS", "FESTIVAL_VOICES",
           "FLITE_VOICES", "SAMPLE_RATE", "SpeakerSpec", "Synthesized", "Timing", "check_engine",
           "espeak_knobs", "espeak_variants", "make_speaker", "parse_voice", "resample",
           "supports_pitch", "synth_espeak", "synth_festival", "synth_flite", "synthesize"]


def synthesize(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize a batch of normalized texts with one pseudo-speaker.

    ``seeds`` (one per text) make the noisy flite voices reproducible. Run espeak-ng batches in
    a process that has not used espeak-ng before when the audio must be reproducible (the
    library keeps state between utterances).
    """
    if len(texts) != len(seeds):
        raise ValueError("texts and seeds differ in length")
    fn = {"flite": synth_flite, "festival": synth_festival, "espeak": synth_espeak}.get(spec.engine)
    if fn is None:
        raise Lm2amError(f"unknown synthesis engine {spec.engine!r}; choose from {', '.join(ENGINES)}")
    return fn(spec, texts, seeds)

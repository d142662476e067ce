"""The ``corpus:`` section of a synth-en recipe config, checked when it is built."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from lm2am.corpus import augment as aug
from lm2am.corpus import voices as V

PARTS: Tuple[str, ...] = ("train-synth", "dev-synth", "test-synth")
SPLITS: Tuple[str, ...] = ("train", "dev", "test")


@dataclass
class SynthConfig:
    """The ``corpus:`` section of a recipe config. Defaults = the demo size (~2.4 h of training audio).

    Voices are ``engine:voice`` strings: ``flite:{slt,rms,awb,kal16}``,
    ``festival:{kal_diphone,ked_diphone,cmu_us_slt_arctic_hts}``, ``espeak:<accent>`` (en-us,
    en-gb, en-gb-scotland, en-gb-x-gbclan, en-gb-x-rp, en-gb-x-gbcwmd, en-029, en-us-nyc).
    Ranges are ``[low, high]`` lists drawn uniformly.
    """

    seed: int = 1
    num_train_utts: int = 3000
    num_dev_utts: int = 300
    num_test_utts: int = 300
    # Speakers per training transcript: > 1 reuses WordNet sentences (24k of 5-20 words) for
    # corpora larger than the text pool; dev/test transcripts are never reused.
    train_text_reuse: int = 1
    min_words: int = 5
    max_words: int = 20
    train_voices: List[str] = field(default_factory=lambda: [
        "flite:slt", "flite:rms", "flite:kal16", "festival:kal_diphone",
        "festival:cmu_us_slt_arctic_hts", "espeak:en-us", "espeak:en-gb",
        "espeak:en-gb-scotland", "espeak:en-gb-x-gbclan", "espeak:en-gb-x-gbcwmd", "espeak:en-029"])
    dev_voices: List[str] = field(default_factory=lambda: ["festival:ked_diphone",
                                                           "espeak:en-gb-x-rp"])
    test_voices: List[str] = field(default_factory=lambda: ["flite:awb", "espeak:en-us-nyc"])
    pseudo_speakers_per_voice: int = 4
    # Share of each split's utterances spoken by espeak-ng voices (a minority: espeak is far
    # less human-like than flite/festival).
    espeak_share: float = 0.15
    pitch_range: List[float] = field(default_factory=lambda: [0.85, 1.2])  # x mean F0
    rate_range: List[float] = field(default_factory=lambda: [0.9, 1.15])   # x durations
    speed_range: List[float] = field(default_factory=lambda: [0.92, 1.08])  # sox speed
    clean_share: float = 0.3  # utterances without additive noise
    noise_types: List[str] = field(default_factory=lambda: list(aug.NOISE_TYPES))
    snr_range: List[float] = field(default_factory=lambda: [5.0, 25.0])  # dB
    reverb_share: float = 0.2
    lm_sources: List[str] = field(default_factory=lambda: ["bible", "fortunes", "wordnet"])
    batch_size: int = 100  # utterances per synthesis task (one festival process each)
    nj: int = 2  # parallel processes; does not change the output

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"{name}: {msg}")

        for name in ("seed", "num_train_utts", "num_dev_utts", "num_test_utts",
                     "train_text_reuse", "min_words", "max_words", "pseudo_speakers_per_voice",
                     "batch_size", "nj"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool), name, f"expected an integer, got {v!r}")
        need(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        for name in ("num_train_utts", "num_dev_utts", "num_test_utts", "train_text_reuse",
                     "pseudo_speakers_per_voice", "batch_size", "nj"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        need(1 <= self.min_words <= self.max_words, "min_words",
             f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        seen: Dict[str, str] = {}
        for split in SPLITS:
            name = f"{split}_voices"
            voices = getattr(self, name)
            need(isinstance(voices, (list, tuple)) and len(voices) > 0, name,
                 "needs at least one voice")
            need(len(set(voices)) == len(voices), name, "lists a voice twice")
            for v in voices:
                need(isinstance(v, str), name, f"{v!r} is not a string")
                try:
                    V.parse_voice(v)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
                need(v not in seen, name, f"{v} is also in {seen.get(v)}_voices; splits are by "
                     f"base voice and must not share one")
                seen[v] = split
            need(any(not v.startswith("espeak:") for v in voices), name,
                 "needs a flite or festival voice (espeak-ng must stay a minority)")
        need(0.0 <= self.espeak_share <= 0.5, "espeak_share",
             f"must be in [0, 0.5] (espeak-ng is the minority), got {self.espeak_share}")
        for name, lo_min, hi_max in (("pitch_range", 0.5, 2.0), ("rate_range", 0.5, 2.0),
                                     ("speed_range", 0.5, 2.0), ("snr_range", -20.0, 100.0)):
            r = getattr(self, name)
            need(isinstance(r, (list, tuple)) and len(r) == 2, name, f"expected [low, high], got {r!r}")
            need(lo_min <= r[0] <= r[1] <= hi_max, name,
                 f"need {lo_min} <= low <= high <= {hi_max}, got {list(r)}")
        for name in ("clean_share", "reverb_share"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, name, f"must be in [0, 1], got {v}")
        unknown = sorted(set(self.noise_types) - set(aug.NOISE_TYPES))
        need(not unknown, "noise_types", f"unknown {unknown}; choose from {', '.join(aug.NOISE_TYPES)}")
        need(bool(self.noise_types) or self.clean_share == 1.0, "noise_types",
             "empty: set clean_share: 1.0 for a corpus without noise")
        from lm2am.corpus.text_sources import LM_SOURCES
        unknown = sorted(set(self.lm_sources) - set(LM_SOURCES))
        need(not unknown, "lm_sources", f"unknown {unknown}; choose from {', '.join(LM_SOURCES)}")

    def voices(self, split: str) -> List[str]:
        return list(getattr(self, f"{split}_voices"))

    def fingerprint_params(self) -> Dict[str, Any]:
        """Config values that change the output (``nj`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("nj")
        return d

"""Options of the lang stage."""
from __future__ import annotations

from dataclasses import dataclass


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

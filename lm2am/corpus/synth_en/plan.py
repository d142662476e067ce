"""Planning synth-en: everything random is decided here, in the parent, from the seed.

Every generator is a function of the seed and a tag (:func:`rng`), never of the order in which
other draws happened, so the plan does not depend on ``nj`` or on how the code is split.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from lm2am.corpus import augment as aug
from lm2am.corpus import voices as V
from lm2am.corpus.synth_en.config import PARTS, SPLITS, SynthConfig

_FIRST_SPEAKER_ID = 100
_FIRST_CHAPTER_ID = 1000
# Shares of the espeak-ng variant list reserved for dev and test speakers (train gets the rest),
# so espeak timbres are unseen in dev/test too, not only the accents.
_VARIANT_SHARES = {"dev": 0.15, "test": 0.15}


@dataclass
class Speaker:
    spk_id: int
    chapter: int
    part: str
    spec: V.SpeakerSpec


@dataclass
class Utterance:
    utt_id: str
    part: str
    speaker: Speaker
    text: str
    seed: int  # synthesis seed (flite's rand())
    augment: aug.AugmentParams = aug.AugmentParams()


@dataclass
class Plan:
    speakers: List[Speaker]
    utts: Dict[str, List[Utterance]]  # part -> utterances (sorted by id)
    lm_text: List[str]
    lm_sources: Dict[str, int]


def _rng(seed: int, *tags: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the tags (stable across runs and Pythons)."""
    key = zlib.crc32("/".join(map(str, tags)).encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def _int_seed(seed: int, *tags: object) -> int:
    return int(_rng(seed, *tags).integers(2 ** 31))


def _variant_lists(seed: int, variants: List[str]) -> Dict[str, List[str]]:
    """Partition the espeak-ng variants into disjoint train/dev/test lists."""
    order = [variants[i] for i in _rng(seed, "variants").permutation(len(variants))]
    out: Dict[str, List[str]] = {}
    start = 0
    for split in ("test", "dev"):
        n = max(1, int(round(_VARIANT_SHARES[split] * len(order))))
        out[split] = order[start:start + n]
        start += n
    out["train"] = order[start:]
    return out


def _make_speakers(cfg: SynthConfig) -> List[Speaker]:
    needs_espeak = any(v.startswith("espeak:") for s in SPLITS for v in cfg.voices(s))
    variants = _variant_lists(cfg.seed, V.espeak_variants()) if needs_espeak else {}
    speakers = []
    sid = 0
    for split, part in zip(SPLITS, PARTS):
        n_espeak = 0
        for voice in cfg.voices(split):
            engine, name = V.parse_voice(voice)
            for k in range(cfg.pseudo_speakers_per_voice):
                r = _rng(cfg.seed, "speaker", part, voice, k)
                pitch, rate, speed = (float(r.uniform(*cfg.pitch_range)),
                                      float(r.uniform(*cfg.rate_range)),
                                      float(r.uniform(*cfg.speed_range)))
                variant = ""
                if engine == "espeak":
                    lst = variants[split]
                    variant = lst[n_espeak % len(lst)]
                    n_espeak += 1
                spec = V.make_speaker(engine, name, variant, pitch, rate, speed)
                speakers.append(Speaker(_FIRST_SPEAKER_ID + sid, _FIRST_CHAPTER_ID + sid, part, spec))
                sid += 1
    return speakers


def _speaker_labels(n: int, speakers: List[Speaker], espeak_share: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Indices into ``speakers`` for ``n`` utterances: espeak speakers get ``espeak_share``."""
    esp = [i for i, s in enumerate(speakers) if s.spec.engine == "espeak"]
    other = [i for i, s in enumerate(speakers) if s.spec.engine != "espeak"]
    n_esp = int(round(n * espeak_share)) if esp else 0
    labels: List[int] = []
    for group, m in ((esp, n_esp), (other, n - n_esp)):
        if not group:
            continue
        q, r = divmod(m, len(group))
        for j, i in enumerate(group):
            labels += [i] * (q + (1 if j < r else 0))
    return np.asarray(labels)[rng.permutation(n)]



def _assign_texts(cfg: SynthConfig, split: str, part: str, spks: List[Speaker],
                  texts: List[str]) -> List[Tuple[str, Speaker]]:
    """(text, speaker) of each utterance of one split, in text order."""
    assign: List[Tuple[str, Speaker]] = []
    if split == "train":
        prev: List[List[int]] = [[] for _ in texts]  # speakers already given each text
        remaining = cfg.num_train_utts
        for copy in range(cfg.train_text_reuse):
            m = min(len(texts), remaining)
            remaining -= m
            rng = _rng(cfg.seed, "assign", part, copy)
            labels = _speaker_labels(m, spks, cfg.espeak_share, rng)
            _avoid_repeats(labels, prev, rng)
            for i in range(m):
                prev[i].append(int(labels[i]))
                assign.append((texts[i], spks[labels[i]]))
    else:
        labels = _speaker_labels(len(texts), spks, cfg.espeak_share, _rng(cfg.seed, "assign", part))
        assign = [(t, spks[i]) for t, i in zip(texts, labels)]
    return assign


def _part_utterances(cfg: SynthConfig, part: str, assign: List[Tuple[str, Speaker]]
                     ) -> List[Utterance]:
    """Utterance ids, synthesis seeds and augmentation of one part (sorted by id)."""
    counter: Counter = Counter()
    part_utts = []
    for text, spk in assign:
        k = counter[spk.spk_id]
        counter[spk.spk_id] += 1
        uid = f"{spk.spk_id}-{spk.chapter}-{k:04d}"
        part_utts.append(Utterance(uid, part, spk, text, _int_seed(cfg.seed, "synth", uid)))
    # Augmentation: babble comes from other speakers of the same split.
    all_ids = [u.utt_id for u in part_utts]
    spk_of = [u.speaker.spk_id for u in part_utts]
    for u in part_utts:
        r = _rng(cfg.seed, "augment", u.utt_id)
        # A random sample of candidates keeps this O(1) per utterance on large corpora.
        cand = sorted({int(i) for i in r.integers(len(all_ids), size=32)})
        pool = [all_ids[i] for i in cand if spk_of[i] != u.speaker.spk_id]
        u.augment = aug.draw_params(r, cfg.clean_share, cfg.noise_types, cfg.snr_range,
                                    cfg.reverb_share, pool)
    return sorted(part_utts, key=lambda u: u.utt_id)


def plan_corpus(cfg: SynthConfig) -> Plan:
    """Decide transcripts, speakers, utterance ids and augmentation (no synthesis)."""
    from lm2am.corpus.text_sources import load_text_pools

    n_train_texts = math.ceil(cfg.num_train_utts / cfg.train_text_reuse)
    pools = load_text_pools(cfg.seed, n_train_texts, cfg.num_dev_utts, cfg.num_test_utts,
                            min_words=cfg.min_words, max_words=cfg.max_words,
                            lm_sources=tuple(cfg.lm_sources))
    speakers = _make_speakers(cfg)
    utts: Dict[str, List[Utterance]] = {}
    for split, part in zip(SPLITS, PARTS):
        spks = [s for s in speakers if s.part == part]
        assign = _assign_texts(cfg, split, part, spks, getattr(pools, split))
        utts[part] = _part_utterances(cfg, part, assign)
    return Plan(speakers, utts, pools.lm, dict(pools.lm_sources))


def _avoid_repeats(labels: np.ndarray, prev: List[List[int]], rng: np.random.Generator) -> None:
    """Swap labels so no text is spoken twice by the same speaker (when reusing texts)."""
    n = len(labels)
    for i in range(n):
        if labels[i] not in prev[i]:
            continue
        for j in rng.permutation(n)[:50]:
            if labels[j] not in prev[i] and labels[i] not in prev[j]:
                labels[i], labels[j] = labels[j], labels[i]
                break


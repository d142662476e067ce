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
"""
from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import shutil
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from lm2am.corpus import augment as aug
from lm2am.corpus import voices as V
from lm2am.io import DoneMarker, atomic_path, atomic_write_text

log = logging.getLogger(__name__)

PARTS: Tuple[str, ...] = ("train-synth", "dev-synth", "test-synth")
_SPLITS: Tuple[str, ...] = ("train", "dev", "test")
_FIRST_SPEAKER_ID = 100
_FIRST_CHAPTER_ID = 1000
# Shares of the espeak-ng variant list reserved for dev and test speakers (train gets the rest),
# so espeak timbres are unseen in dev/test too, not only the accents.
_VARIANT_SHARES = {"dev": 0.15, "test": 0.15}
_AUG_CHUNK = 64  # utterances per augmentation task


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
    # less human-like than flite/festival, see docs/corpus.md).
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
        for split in _SPLITS:
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


# ---------------------------------------------------------------------------------------------
# Planning: everything random is decided here, in the parent, from the seed.

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
    needs_espeak = any(v.startswith("espeak:") for s in _SPLITS for v in cfg.voices(s))
    variants = _variant_lists(cfg.seed, V.espeak_variants()) if needs_espeak else {}
    speakers = []
    sid = 0
    for split, part in zip(_SPLITS, PARTS):
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


def plan_corpus(cfg: SynthConfig) -> Plan:
    """Decide transcripts, speakers, utterance ids and augmentation (no synthesis)."""
    from lm2am.corpus.text_sources import load_text_pools

    n_train_texts = math.ceil(cfg.num_train_utts / cfg.train_text_reuse)
    pools = load_text_pools(cfg.seed, n_train_texts, cfg.num_dev_utts, cfg.num_test_utts,
                            min_words=cfg.min_words, max_words=cfg.max_words,
                            lm_sources=tuple(cfg.lm_sources))
    speakers = _make_speakers(cfg)
    utts: Dict[str, List[Utterance]] = {}
    for split, part in zip(_SPLITS, PARTS):
        spks = [s for s in speakers if s.part == part]
        texts = getattr(pools, split)
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
        utts[part] = sorted(part_utts, key=lambda u: u.utt_id)
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


# ---------------------------------------------------------------------------------------------
# Worker tasks (module level: they run in pool processes)

def _fmt_times(items: Sequence[Tuple[str, float]], silence: str) -> Tuple[str, str]:
    labels = ",".join(silence if lab == "" else lab for lab, _ in items)
    # Floor to ms: ends stay monotone and never pass the audio's end.
    ends = ",".join(f"{math.floor(e * 1000 + 1e-6) / 1000:.3f}" for _, e in items)
    return labels, ends


def _synth_task(args: Tuple[V.SpeakerSpec, List[Tuple[str, str, int]], str]) -> List[Dict[str, Any]]:
    """Synthesize one batch (one speaker) and write the clean audio; return the timings."""
    spec, items, clean_dir = args
    results = V.synthesize(spec, [t for _, t, _ in items], [s for _, _, s in items])
    out = []
    for (uid, _, _), res in zip(items, results):
        sf.write(str(Path(clean_dir) / f"{uid}.flac"), aug.normalize_peak(res.audio),
                 V.SAMPLE_RATE, subtype="PCM_16")
        ph = _fmt_times(res.phones, "SIL")
        wd = _fmt_times(res.words, "") if res.words is not None else None
        out.append({"utt_id": uid, "duration": len(res.audio) / V.SAMPLE_RATE,
                    "phones": ph, "words": wd})
    return out


def _augment_task(args: Tuple[List[Tuple[str, str, aug.AugmentParams]], str, str]) -> int:
    """Augment a chunk of utterances from the clean store into their final FLAC files."""
    items, clean_dir, part_dir = args
    for uid, rel_out, params in items:
        x, _ = sf.read(str(Path(clean_dir) / f"{uid}.flac"), dtype="float32")
        sources = [sf.read(str(Path(clean_dir) / f"{b}.flac"), dtype="float32")[0]
                   for b in params.babble]
        y = aug.augment(x, params, sources)
        sf.write(str(Path(part_dir) / rel_out), y, V.SAMPLE_RATE, subtype="PCM_16")
    return len(items)


# ---------------------------------------------------------------------------------------------
# Building

def check_requirements(cfg: SynthConfig) -> None:
    """Fail early, with the Debian package to install, if an engine or tool is missing."""
    for split in _SPLITS:
        for voice in cfg.voices(split):
            V.check_engine(*V.parse_voice(voice))
    aug.check_tools(cfg.noise_types if cfg.clean_share < 1.0 else [], cfg.reverb_share > 0)


def _rel_audio(u: Utterance) -> str:
    return f"{u.speaker.spk_id}/{u.speaker.chapter}/{u.utt_id}.flac"


def _build_part(out_dir: Path, part: str, utts: List[Utterance], cfg: SynthConfig) -> None:
    """Synthesize, augment and write one part into a temp dir renamed to ``out_dir/part``."""
    ctx = multiprocessing.get_context("fork")
    # Synthesis children fork from a server that never synthesized: espeak-ng keeps internal
    # state across utterances (no reset API), so a child forked from a process that had used
    # it (e.g. a test run) would produce different audio.
    synth_ctx = multiprocessing.get_context("forkserver")
    synth_ctx.set_forkserver_preload(["lm2am.corpus.synth_en"])
    with atomic_path(out_dir / part) as tmp:
        clean = tmp / "_clean"
        clean.mkdir(parents=True)
        for spk in {u.speaker.spk_id: u.speaker for u in utts}.values():
            (tmp / str(spk.spk_id) / str(spk.chapter)).mkdir(parents=True, exist_ok=True)
        # 1. synthesis: batches of one speaker; a fresh process per batch keeps espeak-ng's
        # internal state (and so its audio) independent of what ran before in the pool.
        by_spk: Dict[int, List[Utterance]] = defaultdict(list)
        for u in utts:
            by_spk[u.speaker.spk_id].append(u)
        jobs = []
        for spk_utts in by_spk.values():
            for i in range(0, len(spk_utts), cfg.batch_size):
                b = spk_utts[i:i + cfg.batch_size]
                jobs.append((b[0].speaker.spec, [(u.utt_id, u.text, u.seed) for u in b], str(clean)))
        # Slow engines first so the pool's tail is short.
        jobs.sort(key=lambda j: (j[0].engine != "festival", -len(j[1])))
        timings: Dict[str, Dict[str, Any]] = {}
        with synth_ctx.Pool(cfg.nj, maxtasksperchild=1) as pool, \
                tqdm(total=len(utts), desc=f"synthesize {part}", unit="utt", mininterval=2) as bar:
            for res in pool.imap_unordered(_synth_task, jobs):
                for r in res:
                    timings[r["utt_id"]] = r
                bar.update(len(res))
        # 2. augmentation (needs all clean audio of the part: babble mixes other utterances)
        items = [(u.utt_id, _rel_audio(u), u.augment) for u in utts]
        chunks = [(items[i:i + _AUG_CHUNK], str(clean), str(tmp))
                  for i in range(0, len(items), _AUG_CHUNK)]
        with ctx.Pool(cfg.nj) as pool, \
                tqdm(total=len(utts), desc=f"augment {part}", unit="utt", mininterval=2) as bar:
            for n in pool.imap_unordered(_augment_task, chunks):
                bar.update(n)
        shutil.rmtree(clean)
        # 3. transcripts and reference timings, one file set per speaker/chapter
        files: Dict[Path, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
        info = ["utt_id\tspeaker\tduration\tnoise\tsnr\treverb"]
        for u in utts:
            t = timings[u.utt_id]
            base = tmp / str(u.speaker.spk_id) / str(u.speaker.chapter) / \
                f"{u.speaker.spk_id}-{u.speaker.chapter}"
            files[base]["trans"].append(f"{u.utt_id} {u.text}")
            files[base]["phones"].append(f'{u.utt_id} "{t["phones"][0]}" "{t["phones"][1]}"')
            if t["words"] is not None:
                files[base]["alignment"].append(f'{u.utt_id} "{t["words"][0]}" "{t["words"][1]}"')
            d = aug.describe(u.augment)
            info.append(f"{u.utt_id}\t{u.speaker.spk_id}\t{t['duration']:.4f}\t{d['noise']}"
                        f"\t{d['snr']}\t{d['reverb']}")
        for base, kinds in files.items():
            for kind, lines in kinds.items():
                Path(f"{base}.{kind}.txt").write_text("\n".join(lines) + "\n")
        (tmp / "utt_info.tsv").write_text("\n".join(info) + "\n")


def _speakers_tsv(plan: Plan) -> str:
    rows = ["speaker\tchapter\tpart\tengine\tvoice\tvariant\tpitch\trate\tspeed\tphone_set"]
    for s in plan.speakers:
        p = s.spec
        rows.append(f"{s.spk_id}\t{s.chapter}\t{s.part}\t{p.engine}\t{p.voice}\t"
                    f"{p.variant or '-'}\t{p.pitch:g}\t{p.rate:g}\t{p.speed:g}\t{p.phone_set}")
    return "\n".join(rows) + "\n"


def _read_tsv(path: Path) -> List[Dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def corpus_stats(out_dir: Path, plan: Plan) -> Dict[str, Dict[str, Any]]:
    """Per-part statistics read back from the written files (so resumed parts count too)."""
    spk = {str(s.spk_id): s for s in plan.speakers}
    stats: Dict[str, Dict[str, Any]] = {}
    for part in PARTS:
        rows = _read_tsv(out_dir / part / "utt_info.tsv")
        n_aligned = sum(len(p.read_text().splitlines())
                        for p in (out_dir / part).rglob("*.alignment.txt"))
        texts = {u.utt_id: u.text for u in plan.utts[part]}
        hours: Counter = Counter()
        for r in rows:
            hours[spk[r["speaker"]].spec.engine] += float(r["duration"]) / 3600
        total = sum(hours.values())
        stats[part] = {
            "utterances": len(rows),
            "hours": round(total, 3),
            "speakers": len({r["speaker"] for r in rows}),
            "base_voices": sorted({spk[r["speaker"]].spec.base_voice for r in rows}),
            "words": sum(len(texts[r["utt_id"]].split()) for r in rows),
            "unique_texts": len({texts[r["utt_id"]] for r in rows}),
            "engine_share": {e: round(h / total, 3) for e, h in sorted(hours.items())} if total else {},
            "noisy_share": round(sum(r["noise"] != "none" for r in rows) / max(len(rows), 1), 3),
            "reverb_share": round(sum(r["reverb"] != "-" for r in rows) / max(len(rows), 1), 3),
            "word_alignments": n_aligned,
        }
    return stats


def format_stats(stats: Dict[str, Dict[str, Any]], lm_lines: Optional[int] = None) -> str:
    """Human-readable table of :func:`corpus_stats` (what stats.txt holds)."""
    lines = [f"{'part':<12} {'utts':>6} {'hours':>7} {'spk':>4} {'words':>7} {'aligned':>7} "
             f"{'noisy':>6} {'reverb':>6}  engine share (by audio)"]
    for part, s in stats.items():
        share = " ".join(f"{e}={v:.2f}" for e, v in s["engine_share"].items())
        lines.append(f"{part:<12} {s['utterances']:>6} {s['hours']:>7.3f} {s['speakers']:>4} "
                     f"{s['words']:>7} {s['word_alignments']:>7} {s['noisy_share']:>6.2f} "
                     f"{s['reverb_share']:>6.2f}  {share}")
    for part, s in stats.items():
        lines.append(f"{part} base voices: {', '.join(s['base_voices'])}")
    if lm_lines is not None:
        lines.append(f"lm_text: {lm_lines} sentences")
    return "\n".join(lines) + "\n"


def make_corpus(out_dir: Path, cfg: SynthConfig) -> Dict[str, Dict[str, Any]]:
    """Generate synth-en into ``out_dir`` (LibriSpeech layout); return per-part statistics.

    Deterministic from ``cfg`` (``nj`` aside). Parts whose done marker matches the config are
    kept (resume after a kill); other parts are rebuilt in a temp dir and renamed into place.
    Raises :class:`Lm2amError` naming the Debian package if an engine or tool is missing.
    """
    out_dir = Path(out_dir)
    check_requirements(cfg)
    log.info("planning synth-en (seed %d): %d train / %d dev / %d test utterances",
             cfg.seed, cfg.num_train_utts, cfg.num_dev_utts, cfg.num_test_utts)
    plan = plan_corpus(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = cfg.fingerprint_params()
    atomic_write_text(out_dir / "speakers.tsv", _speakers_tsv(plan))
    lm_dir = out_dir / "lm_text"
    lm_dir.mkdir(exist_ok=True)
    atomic_write_text(lm_dir / "lm_text.txt", "".join(s + "\n" for s in plan.lm_text))
    atomic_write_text(lm_dir / "sources.tsv", "source\tsentences\n" + "".join(
        f"{k}\t{v}\n" for k, v in sorted(plan.lm_sources.items())))
    for part in PARTS:
        marker = DoneMarker(out_dir / f".{part}.done", params={**params, "part": part})
        if marker.is_done() and (out_dir / part / "utt_info.tsv").is_file():
            log.info("%s: already generated with this config, keeping it", part)
            continue
        for stale in out_dir.glob(f".{part}.tmp*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        # Invalidate first: if we die after replacing the part, an old marker must not vouch for it.
        marker.path.unlink(missing_ok=True)
        log.info("%s: %d utterances, %d speakers", part, len(plan.utts[part]),
                 len({u.speaker.spk_id for u in plan.utts[part]}))
        _build_part(out_dir, part, plan.utts[part], cfg)
        marker.mark()
    stats = corpus_stats(out_dir, plan)
    text = format_stats(stats, len(plan.lm_text))
    atomic_write_text(out_dir / "stats.txt", text)
    print(text, end="", flush=True)
    return stats

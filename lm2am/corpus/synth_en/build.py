"""Building synth-en: synthesis and augmentation in process pools, then the text files."""
from __future__ import annotations

import logging
import math
import multiprocessing
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from lm2am.corpus import augment as aug
from lm2am.corpus import voices as V
from lm2am.corpus.synth_en.config import PARTS, SPLITS, SynthConfig
from lm2am.corpus.synth_en.plan import Plan, Utterance, plan_corpus
from lm2am.corpus.synth_en.stats import corpus_stats, format_stats
from lm2am.io import DoneMarker, atomic_path, atomic_write_text

log = logging.getLogger(__name__)

_AUG_CHUNK = 64  # utterances per augmentation task


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
    for split in SPLITS:
        for voice in cfg.voices(split):
            V.check_engine(*V.parse_voice(voice))
    aug.check_tools(cfg.noise_types if cfg.clean_share < 1.0 else [], cfg.reverb_share > 0)


def _rel_audio(u: Utterance) -> str:
    return f"{u.speaker.spk_id}/{u.speaker.chapter}/{u.utt_id}.flac"


def _synthesize_part(part: str, utts: List[Utterance], cfg: SynthConfig,
                     clean: Path) -> Dict[str, Dict[str, Any]]:
    """Synthesize the clean audio of a part into ``clean``; return the timings by utterance id."""
    # Synthesis children fork from a server that never synthesized: espeak-ng keeps internal
    # state across utterances (no reset API), so a child forked from a process that had used
    # it (e.g. a test run) would produce different audio.
    synth_ctx = multiprocessing.get_context("forkserver")
    synth_ctx.set_forkserver_preload(["lm2am.corpus.synth_en.build"])
    # Batches of one speaker; a fresh process per batch keeps espeak-ng's internal state (and
    # so its audio) independent of what ran before in the pool.
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
    return timings


def _augment_part(part: str, utts: List[Utterance], cfg: SynthConfig, clean: Path,
                  part_dir: Path) -> None:
    """Augment every utterance of a part (babble mixes other utterances of the part)."""
    ctx = multiprocessing.get_context("fork")
    items = [(u.utt_id, _rel_audio(u), u.augment) for u in utts]
    chunks = [(items[i:i + _AUG_CHUNK], str(clean), str(part_dir))
              for i in range(0, len(items), _AUG_CHUNK)]
    with ctx.Pool(cfg.nj) as pool, \
            tqdm(total=len(utts), desc=f"augment {part}", unit="utt", mininterval=2) as bar:
        for n in pool.imap_unordered(_augment_task, chunks):
            bar.update(n)


def _write_part_texts(part_dir: Path, utts: List[Utterance],
                      timings: Dict[str, Dict[str, Any]]) -> None:
    """Transcripts and reference timings, one file set per speaker/chapter, and utt_info.tsv."""
    files: Dict[Path, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    info = ["utt_id\tspeaker\tduration\tnoise\tsnr\treverb"]
    for u in utts:
        t = timings[u.utt_id]
        base = part_dir / str(u.speaker.spk_id) / str(u.speaker.chapter) / \
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
    (part_dir / "utt_info.tsv").write_text("\n".join(info) + "\n")


def _build_part(out_dir: Path, part: str, utts: List[Utterance], cfg: SynthConfig) -> None:
    """Synthesize, augment and write one part into a temp dir renamed to ``out_dir/part``."""
    with atomic_path(out_dir / part) as tmp:
        clean = tmp / "_clean"
        clean.mkdir(parents=True)
        for spk in {u.speaker.spk_id: u.speaker for u in utts}.values():
            (tmp / str(spk.spk_id) / str(spk.chapter)).mkdir(parents=True, exist_ok=True)
        timings = _synthesize_part(part, utts, cfg, clean)
        # augmentation needs all clean audio of the part: babble mixes other utterances
        _augment_part(part, utts, cfg, clean, tmp)
        shutil.rmtree(clean)
        _write_part_texts(tmp, utts, timings)


def _speakers_tsv(plan: Plan) -> str:
    rows = ["speaker\tchapter\tpart\tengine\tvoice\tvariant\tpitch\trate\tspeed\tphone_set"]
    for s in plan.speakers:
        p = s.spec
        rows.append(f"{s.spk_id}\t{s.chapter}\t{s.part}\t{p.engine}\t{p.voice}\t"
                    f"{p.variant or '-'}\t{p.pitch:g}\t{p.rate:g}\t{p.speed:g}\t{p.phone_set}")
    return "\n".join(rows) + "\n"



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

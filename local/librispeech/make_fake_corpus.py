#!/usr/bin/env python3
"""A tiny fake LibriSpeech copy in the real layout, for tests and benchmarks (no download).

Writes <out>/LibriSpeech/ as openslr.org/12 unpacks it:

    LibriSpeech/{README.TXT,LICENSE.TXT,SPEAKERS.TXT,CHAPTERS.TXT,BOOKS.TXT}
    LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac   16 kHz FLAC
    LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt     "<utt> UPPER CASE TEXT"
    <out>/librispeech-lm-norm.txt   (with --lm-sentences N > 0; openslr.org/11's LM text)

Speech is flite (in process, voices slt/rms/awb/kal16 by speaker) reading random sentences
over a small CMUdict vocabulary, so the aligner has real phones to find. Only --pool distinct
utterances are synthesized; utterance i > pool reuses utterance i % pool's audio and text,
which makes large corpora (memory benchmarks) cheap. Deterministic from --seed.

e.g.: local/librispeech/make_fake_corpus.py --parts train-clean-5:60,dev-clean-2:20 /tmp/fake
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Dict, List, Tuple

import soundfile as sf

from lm2am.errors import Lm2amError, cli_main
from lm2am.io import atomic_write_text

# Common words, all in CMUdict: every transcript is in-vocabulary without g2p.
VOCAB = """the a of and to in is was he she it that his her they we you i had have for on with as
at by from but not this all were one there what when so out up about into time man day old
good little great long house night water eyes hand way place room door light mother father
came went said made know saw looked thought again never before after over under down back
very well only just still then here now""".split()
VOICES = ("slt", "rms", "awb", "kal16")
SPEAKERS_PER_PART = 4
CHAPTERS_PER_SPEAKER = 2


def sentences(rng: random.Random, n: int, min_words: int = 3, max_words: int = 9) -> List[str]:
    """``n`` random upper-case sentences over :data:`VOCAB`."""
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(min_words, max_words))).upper()
            for _ in range(n)]


def write_fake_librispeech(out_dir: Path, parts: Dict[str, int], seed: int = 1, pool: int = 200,
                           lm_sentences: int = 0) -> Path:
    """Write the corpus (see the module docstring); returns ``<out_dir>/LibriSpeech``."""
    from lm2am.corpus.voices import make_speaker, synth_flite

    rng = random.Random(seed)
    root = out_dir / "LibriSpeech"
    speakers: List[Tuple[int, str, str, int]] = []  # id, sex, part, minutes
    chapters: List[Tuple[int, int, str, int]] = []  # chapter, speaker, part, book
    for p_idx, (part, n_utts) in enumerate(parts.items()):
        if n_utts < 1:
            raise Lm2amError(f"--parts: part {part} needs at least one utterance, got {n_utts}")
        texts = sentences(rng, min(pool, n_utts))
        audio = {}
        spk_ids = [100 * (p_idx + 1) + s for s in range(SPEAKERS_PER_PART)]
        # Synthesize the pool voice by voice (one flite voice per speaker index).
        for v_idx, voice in enumerate(VOICES):
            idx = [i for i in range(len(texts)) if (i % SPEAKERS_PER_PART) % len(VOICES) == v_idx]
            if idx:
                for i, s in zip(idx, synth_flite(make_speaker("flite", voice), [texts[i] for i in idx],
                                                  [seed * 100003 + i for i in idx])):
                    audio[i] = s.audio
        trans: Dict[Path, List[str]] = {}
        for i in range(n_utts):
            spk = spk_ids[i % SPEAKERS_PER_PART]
            chap = spk * 10 + (i // SPEAKERS_PER_PART) % CHAPTERS_PER_SPEAKER
            d = root / part / str(spk) / str(chap)
            d.mkdir(parents=True, exist_ok=True)
            utt = f"{spk}-{chap}-{i:04d}"
            sf.write(d / f"{utt}.flac", audio[i % len(texts)], 16000)
            trans.setdefault(d / f"{spk}-{chap}.trans.txt", []).append(f"{utt} {texts[i % len(texts)]}")
        for tf, lines in trans.items():
            atomic_write_text(tf, "\n".join(lines) + "\n")
        for s_idx, spk in enumerate(spk_ids):
            speakers.append((spk, "F" if s_idx % 2 == 0 else "M", part, 1))
            chapters += [(spk * 10 + c, spk, part, 1000 + spk) for c in range(CHAPTERS_PER_SPEAKER)]
    atomic_write_text(root / "README.TXT", "Fake LibriSpeech (lm2am test corpus: flite speech).\n")
    atomic_write_text(root / "LICENSE.TXT", "Synthetic data, no license restrictions.\n")
    atomic_write_text(root / "SPEAKERS.TXT", ";ID  |SEX| SUBSET           |MINUTES| NAME\n" + "".join(
        f"{s:<5}| {sex} | {part:<17}| {m:5.2f} | Fake Reader {s}\n" for s, sex, part, m in speakers))
    atomic_write_text(root / "CHAPTERS.TXT", ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n" + "".join(
        f"{c:<7}| {s:<5}| 1.00  | {part:<17}| 0    | {b:<6}| Chapter {c} | Fake Book {b}\n" for c, s, part, b in chapters))
    atomic_write_text(root / "BOOKS.TXT", "".join(f"{b}  | Fake Book {b} | Nobody\n" for b in sorted({c[3] for c in chapters})))
    if lm_sentences > 0:
        atomic_write_text(out_dir / "librispeech-lm-norm.txt", "\n".join(sentences(rng, lm_sentences)) + "\n")
    return root


def parse_parts(spec: str) -> Dict[str, int]:
    """``train-clean-5:60,dev-clean-2:20`` -> ``{part: utterances}``."""
    out = {}
    for item in spec.split(","):
        name, _, n = item.partition(":")
        if not name or not n.isdigit():
            raise Lm2amError(f"--parts: expected NAME:UTTERANCES[,NAME:UTTERANCES...], got {item!r}")
        out[name] = int(n)
    return out


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="train-clean-5:60,dev-clean-2:20",
                   help="NAME:UTTERANCES,... (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pool", type=int, default=200, help="distinct synthesized utterances per part")
    p.add_argument("--lm-sentences", type=int, default=0, help="also write librispeech-lm-norm.txt")
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    root = write_fake_librispeech(args.out_dir, parse_parts(args.parts), args.seed, args.pool, args.lm_sentences)
    print(f"make_fake_corpus: wrote {root}")


if __name__ == "__main__":
    main()

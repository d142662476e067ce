"""WER split by recording condition and by voice: where a system's errors are.

For corpora that describe each utterance (synth-en writes ``<corpus>/<part>/utt_info.tsv``:
``utt_id speaker duration noise snr reverb``, and ``<corpus>/speakers.tsv``: ``speaker ... engine
voice ...``), :func:`synth_en_groups` gives each utterance its groups (``clean``, ``noisy``,
``reverberant`` and ``<engine>:<voice>``); :func:`wer_by_group` scores a decode directory's
``ref.trn``/``hyp.trn`` per group (unit-cost alignment, as ``wer-<part>``), and
:func:`breakdown_table` writes one Markdown row per system.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from lm2am.decode.score import WerStats, compute_wer, read_trn
from lm2am.errors import Lm2amError

#: Condition groups, in table order.
CONDITIONS = ("clean", "noisy", "reverberant")


def _read_tsv(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; it is written by the synth-en corpus stage (stage 1)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def synth_en_groups(corpus_dir: Path | str, part: str) -> Dict[str, List[str]]:
    """``group -> utterance ids`` of one synth-en part: its condition (reverberant wins over
    noisy; clean = neither) and its base voice ``engine:voice``."""
    corpus_dir = Path(corpus_dir)
    voices = {r["speaker"]: f'{r["engine"]}:{r["voice"]}' for r in _read_tsv(corpus_dir / "speakers.tsv")}
    groups: Dict[str, List[str]] = {}
    for r in _read_tsv(corpus_dir / part / "utt_info.tsv"):
        if r["reverb"] not in ("-", ""):
            cond = "reverberant"
        else:
            cond = "clean" if r["noise"] in ("none", "-", "") else "noisy"
        groups.setdefault(cond, []).append(r["utt_id"])
        groups.setdefault(voices.get(r["speaker"], "unknown"), []).append(r["utt_id"])
    return groups


def wer_by_group(decode_dir: Path | str, groups: Mapping[str, Sequence[str]]) -> Dict[str, WerStats]:
    """WER of ``decode_dir`` (its ``ref.trn``/``hyp.trn``, those of ``scale_<best_scale>/`` where
    the dev sweep wrote them) on all utterances and on each group."""
    decode_dir = Path(decode_dir)
    best = decode_dir / "best_scale"
    if best.is_file() and (decode_dir / f"scale_{best.read_text().strip()}").is_dir():
        decode_dir = decode_dir / f"scale_{best.read_text().strip()}"  # the dev-best scale's hyps
    ref, hyp = read_trn(decode_dir / "ref.trn"), read_trn(decode_dir / "hyp.trn")
    out = {"all": compute_wer(ref, {u: hyp.get(u, []) for u in ref})}
    for g, utts in groups.items():
        us = [u for u in utts if u in ref]
        if us:
            out[g] = compute_wer({u: ref[u] for u in us}, {u: hyp.get(u, []) for u in us})
    return out


def breakdown_table(rows: Mapping[str, Mapping[str, WerStats]]) -> str:
    """Markdown: one row per system, columns all, the conditions, then the voices (WER %,
    utterances in the header)."""
    first = next(iter(rows.values()), {})
    cols = ["all"] + [c for c in CONDITIONS if c in first] + sorted(
        g for g in first if g not in CONDITIONS and g != "all")
    head = ["system"] + [f"{c} ({len(first[c].utts)})" for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, stats in rows.items():
        lines.append("| " + " | ".join([name] + [f"{stats[c].wer:.2f}" if c in stats else "–"
                                                  for c in cols]) + " |")
    return "\n".join(lines) + "\n"

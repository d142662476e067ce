"""Per-part statistics of a synth-en corpus, read back from the written files."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from lm2am.corpus.synth_en.config import PARTS
from lm2am.corpus.synth_en.plan import Plan


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


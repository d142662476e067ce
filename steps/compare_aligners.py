#!/usr/bin/env python3
"""Stage: alignment accuracy of several aligners side by side (e.g. Kaldi's GMM monophone
system and lm2am's k2 aligner), against the synthesizers' own phone timings, overall and per
voice family. Writes a Markdown table (for RESULTS.md) and a PNG.

e.g.: steps/compare_aligners.py --corpus corpus --lang data/lang --parts train-synth,dev-synth \\
        --md exp/alignment_accuracy.md --png exp/plots/alignment_accuracy.png \\
        gmm=exp/mono_gmm k2=exp/ali_mono
"""
import argparse
import logging
from pathlib import Path
from typing import Dict, List, Tuple

from lm2am.align.evaluate import AlignmentScore, score_ali_dir
from lm2am.config import name_and_dir
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import write_if_changed
from lm2am.log import setup_logging

FAMILY_ORDER = ["all", "flite", "festival", "espeak"]


def _pct(x: float) -> str:
    return "–" if x != x else f"{x:.1f}"


def markdown(results: Dict[Tuple[str, str], Dict[str, AlignmentScore]], aligners: List[str], parts: List[str]) -> str:
    lines = ["# Alignment accuracy vs the synthesizers' phone timings", "",
             "Frame phone accuracy and share of phone boundaries within 10/20/40 ms of the reference "
             "(matched phones only; silences merged); utterances whose reference phones cannot be "
             "mapped to the lexicon's phone set are skipped (column *skipped*).", ""]
    for part in parts:
        lines += [f"## {part}", "",
                  "| aligner | voices | utts | skipped | frame acc % | ≤10 ms % | ≤20 ms % | ≤40 ms % | boundaries |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for fam in FAMILY_ORDER + sorted({f for (a, p), s in results.items() if p == part for f in s} - set(FAMILY_ORDER)):
            for a in aligners:
                s = results.get((a, part), {}).get(fam)
                if s is None:
                    continue
                lines.append(f"| {a} | {fam} | {s.utterances} | {s.skipped} | {_pct(100 * s.frame_accuracy)} | "
                             + " | ".join(_pct(100 * s.boundary_accuracy(t)) for t in s.tolerances)
                             + f" | {s.boundaries} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: Dict[Tuple[str, str], Dict[str, AlignmentScore]], aligners: List[str], part: str, path: Path) -> None:
    from lm2am.report.plots import pyplot, save_png

    plt = pyplot()
    fams = [f for f in FAMILY_ORDER if any(f in results.get((a, part), {}) and results[(a, part)][f].utterances
                                           for a in aligners)]
    metrics = [("frame phone accuracy %", lambda s: 100 * s.frame_accuracy),
               ("boundaries within 20 ms %", lambda s: 100 * s.boundary_accuracy(0.02))]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(len(aligners), 1)
    for ax, (title, fn) in zip(axes, metrics):
        for i, a in enumerate(aligners):
            vals = [fn(results[(a, part)][f]) if f in results.get((a, part), {}) else 0.0 for f in fams]
            ax.bar([j + i * width for j in range(len(fams))], vals, width, label=a)
        ax.set_xticks([j + width * (len(aligners) - 1) / 2 for j in range(len(fams))])
        ax.set_xticklabels(fams)
        ax.set_ylim(0, 100)
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle(f"alignment accuracy vs synthesizer timings ({part})")
    fig.tight_layout()
    save_png(fig, path)


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("corpus"))
    p.add_argument("--lang", type=Path, default=Path("data/lang"))
    p.add_argument("--parts", default="train-synth", help="comma-separated parts (the plot shows the first)")
    p.add_argument("--md", type=Path, default=Path("exp/alignment_accuracy.md"))
    p.add_argument("--png", type=Path, default=Path("exp/plots/alignment_accuracy.png"))
    p.add_argument("aligners", nargs="+", help="NAME=ALI_DIR, e.g. gmm=exp/mono_gmm k2=exp/ali_mono")
    args = p.parse_args()
    setup_logging()
    named = [name_and_dir(a, f"aligner {a!r}: expected NAME=ALI_DIR, e.g. gmm=exp/mono_gmm")
             for a in args.aligners]
    parts = [x for x in args.parts.split(",") if x]
    results: Dict[Tuple[str, str], Dict[str, AlignmentScore]] = {}
    for name, d in named:
        for part in parts:
            if not (d / f"num_jobs_{part}").is_file():
                logging.warning("%s: %s has no alignments of %s; left out", name, d, part)
                continue
            results[(name, part)] = score_ali_dir(args.corpus, part, args.lang, d)
    if not any(results.values()):
        raise Lm2amError(f"no alignments with reference timings for parts {args.parts}; run the alignment stages")
    aligners = [n for n, _ in named]
    text = markdown(results, aligners, parts)
    write_if_changed(args.md, text)
    plot(results, aligners, parts[0], args.png)
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage: senone decision tree from the aligner's training-part alignments.

Writes <tree-dir>/tree.json (readable), stats.npz, occupancy.png and prints the senone count
and occupancy figures.

e.g.: steps/build_tree.py --config conf/tiny.yaml data/fbank/cuts_train-synth.jsonl.gz data/lang exp/ali_mono exp/tree
"""
import argparse
import logging
from pathlib import Path

import numpy as np

from lm2am.align.pipeline import load_aligner, read_alignments
from lm2am.align.topo import StateMap
from lm2am.config import load_section
from lm2am.errors import cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging
from lm2am.report.plots import plot_occupancy
from lm2am.tree import TreeConfig, aligned_frames, tree_from_alignments


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (section 'tree')")
    p.add_argument("--num-leaves", type=int, help="overrides tree.num_leaves")
    p.add_argument("cuts", type=Path)
    p.add_argument("lang_dir", type=Path)
    p.add_argument("ali_dir", type=Path)
    p.add_argument("tree_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.tree_dir / "log" / "build_tree.log")
    cfg = load_section(args.config, "tree", TreeConfig) if args.config else TreeConfig()
    if args.num_leaves:
        cfg.num_leaves = args.num_leaves
    part = args.cuts.name.replace("cuts_", "").replace(".jsonl.gz", "")
    marker = DoneMarker(args.tree_dir / ".done", params=vars(cfg),
                        inputs=[args.cuts, args.ali_dir / f"num_jobs_{part}", args.ali_dir / "final.pt"])
    if marker.is_done() and (args.tree_dir / "tree.json").is_file():
        print(f"build_tree: {args.tree_dir}/tree.json up to date, skipping")
        return
    from lhotse import CutSet

    _, _, topo, phones = load_aligner(args.ali_dir)
    smap = StateMap(phones, topo)
    alis = read_alignments(args.ali_dir, part)
    cuts = CutSet.from_file(args.cuts)

    num_states = {ph: (topo.sil_num_states if ph in topo.silence_phones else topo.num_states)
                  for ph in phones if ph and ph != "<eps>" and not ph.startswith("#")}
    tree, stats = tree_from_alignments(aligned_frames(cuts, alis, smap.pdf_to_state), phones, num_states, cfg)
    args.tree_dir.mkdir(parents=True, exist_ok=True)
    stats.save(args.tree_dir / "stats.npz")
    tree.save(args.tree_dir / "tree.json")
    counts = tree.leaf_counts
    plot_occupancy(counts, args.tree_dir / "occupancy.png")
    logging.info("senone tree: %d senones from %d seen context states (num_leaves=%d); frames per senone: "
                 "min %d, median %d, max %d; %d senones with < %d frames",
                 tree.num_leaves, stats.num_contexts, cfg.num_leaves, counts.min(), np.median(counts),
                 counts.max(), int((counts < cfg.min_count).sum()), cfg.min_count)
    marker.mark()


if __name__ == "__main__":
    main()

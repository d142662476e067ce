#!/usr/bin/env python3
"""Stage: decoding graph (HCLG) from the lang dir, the senone tree and an n-gram LM.

Estimates a Kneser-Ney n-gram from the LM text pool (or takes --arpa), then builds L, G, LG,
CLG, H and HCLG as Kaldi's mkgraph.sh does and caches the result in <graph-dir>: HCLG.fst
(OpenFst, transition-ids in), HCLG.pt (k2, labels = pdf-id + 1), G.arpa, graph_info.json
(sizes, build time), plus the tables decoding needs. See lm2am/graph/hclg.py.

e.g.: steps/make_graph.py --config conf/tiny.yaml --lm-text corpus/lm_text/lm_text.txt \\
        data/lang exp/tree/tree.json data/lang/graph
"""
import argparse
import logging
from pathlib import Path

from lm2am.config import load_section, to_dict
from lm2am.data.manifests import cut_texts
from lm2am.errors import Lm2amError, cli_main
from lm2am.io import DoneMarker
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="recipe config (sections 'graph' and 'topo')")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lm-text", type=Path, help="LM text pool, one normalized sentence per line")
    src.add_argument("--arpa", type=Path, help="use this ARPA LM instead of estimating one")
    p.add_argument("--order", type=int, help="overrides graph.lm.order")
    p.add_argument("--min-counts", help="overrides graph.lm.min_counts, e.g. 1,2 (bigrams, trigrams, ...)")
    p.add_argument("--transcripts", type=Path,
                   help="training cuts whose transcripts join the LM text when graph.add_train_transcripts is true")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("tree", type=Path, help="exp/tree/tree.json")
    p.add_argument("graph_dir", type=Path)
    args = p.parse_args()
    log_file = args.graph_dir.parent / "log" / f"make_graph_{args.graph_dir.name}.log"
    setup_logging(log_file)

    from lm2am.kaldi import kaldi_wheels

    kaldi_wheels()  # kaldi_hmm_gmm before kaldifst/kaldilm: the other order hangs

    from lm2am.align.topo import HmmTopo
    from lm2am.graph import GraphConfig, make_graph

    cfg = load_section(args.config, "graph", GraphConfig) if args.config else GraphConfig()
    topo = load_section(args.config, "topo", HmmTopo) if args.config else HmmTopo()
    if args.order:
        cfg.lm.order = args.order
    if args.min_counts:
        try:
            cfg.lm.min_counts = [int(x) for x in args.min_counts.split(",") if x]
        except ValueError:
            raise Lm2amError(f"--min-counts {args.min_counts!r}: expected comma-separated integers") from None
    inputs = [args.lang_dir / f for f in ("phones.txt", "words.txt", "lexicon.txt", "lexicon_disambig.txt")]
    inputs += [args.tree, args.lm_text or args.arpa]
    if cfg.add_train_transcripts:
        if args.transcripts is None or args.arpa is not None:
            raise Lm2amError("graph.add_train_transcripts is true: pass --transcripts with the training cuts "
                             "(and --lm-text, not --arpa)")
        inputs.append(args.transcripts)
    if cfg.lm_sources is not None and args.lm_text is not None:
        inputs.append(args.lm_text.with_name("sources.tsv"))
    for f in inputs:
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; run the lang and tree stages first (or fix the path)")
    marker = DoneMarker(args.graph_dir / ".done", params={"graph": to_dict(cfg), "topo": to_dict(topo)},
                        inputs=inputs)
    if marker.is_done() and (args.graph_dir / "HCLG.pt").is_file():
        print(f"make_graph: {args.graph_dir} up to date, skipping")
        return
    extra = cut_texts(args.transcripts) if cfg.add_train_transcripts else []
    info = make_graph(args.lang_dir, args.tree, args.graph_dir, topo, cfg, lm_text=args.lm_text, arpa=args.arpa,
                      extra_sentences=extra)
    marker.mark()
    s = info["sizes"]
    logging.info("HCLG: %d states, %d arcs (k2: %d arcs), LM n-grams %s, %d pdfs, %.1f s", s["HCLG"]["states"],
                 s["HCLG"]["arcs"], s["HCLG_k2"]["arcs"], info.get("lm", {}).get("ngrams", "?"), info["num_pdfs"],
                 info["build_seconds"])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Convert lm2am's senone tree (tree.json) to a Kaldi ``tree`` file and back.

to-kaldi:   tree.json -> Kaldi ContextDependency (text by default, --binary as build-tree writes),
            written by Kaldi's own code, then read back and checked on every
            (left, centre, right, state): prints the number of mismatches (must be 0).
from-kaldi: a Kaldi tree (text or binary; triphone N=3 P=1) + phones.txt -> tree.json; HMM state
            counts per phone come from the topology (--config section 'topo', or its defaults).

e.g.: steps/convert_tree.py to-kaldi exp/tree/tree.json exp/tree/tree.kaldi
      steps/convert_tree.py from-kaldi --config conf/tiny.yaml exp/tree/tree.kaldi data/lang/phones.txt back.json
"""
import argparse
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("to-kaldi", help="tree.json -> Kaldi tree")
    a.add_argument("--binary", action="store_true", help="write Kaldi's binary form (default: text)")
    a.add_argument("tree_json", type=Path)
    a.add_argument("kaldi_tree", type=Path)
    b = sub.add_parser("from-kaldi", help="Kaldi tree -> tree.json")
    b.add_argument("--config", type=Path, help="recipe config (section 'topo': state counts, silence phones)")
    b.add_argument("--sil-phone", help="phone that utterance-edge context 0 stands for (lm2am's convention; "
                                       "default: the first topo silence phone in phones.txt)")
    b.add_argument("kaldi_tree", type=Path)
    b.add_argument("phones", type=Path, help="phones.txt of the lang dir the tree was built for")
    b.add_argument("tree_json", type=Path)
    args = p.parse_args()

    from lm2am.kaldi import kaldi_wheels

    kaldi_wheels()  # before anything imports kaldifst & co.: the other order hangs
    from lm2am.tree import ContextTree
    from lm2am.tree.kaldi_format import (load_kaldi_context_dependency, mapping_mismatches, read_kaldi_tree,
                                         write_kaldi_tree)

    if args.cmd == "to-kaldi":
        tree = ContextTree.load(args.tree_json)
        write_kaldi_tree(tree, args.kaldi_tree, binary=args.binary)
        back = read_kaldi_tree(args.kaldi_tree, tree.phones, tree.num_states, tree.sil_phone)
        bad, n = mapping_mismatches(tree, back, kaldi_cd=load_kaldi_context_dependency(args.kaldi_tree))
        print(f"convert_tree: wrote {args.kaldi_tree} ({'binary' if args.binary else 'text'}, {tree.num_leaves} pdfs); "
              f"read back: {bad} mismatches in {n} contexts")
        if bad:
            raise Lm2amError(f"{args.kaldi_tree}: {bad} contexts map to other pdfs after the round trip; "
                             "please report this with the tree.json")
        return

    from lm2am.align.topo import HmmTopo
    from lm2am.config import load_section
    from lm2am.lang import read_symbol_list

    topo = load_section(args.config, "topo", HmmTopo) if args.config else HmmTopo()
    phones = read_symbol_list(args.phones)
    if any(ph is None for ph in phones):
        raise Lm2amError(f"{args.phones}: phone ids are not dense 0..N-1; give the lang dir's phones.txt")
    ids = {ph: i for i, ph in enumerate(phones)}
    if args.sil_phone is not None and args.sil_phone not in ids:
        raise Lm2amError(f"--sil-phone {args.sil_phone}: not in {args.phones}")
    sil_name = args.sil_phone or next((s for s in topo.silence_phones if s in ids), None)
    num_states = {i: (topo.sil_num_states if ph in topo.silence_phones else topo.num_states)
                  for i, ph in enumerate(phones) if i > 0 and not ph.startswith("#")}
    tree = read_kaldi_tree(args.kaldi_tree, phones, num_states, ids.get(sil_name) if sil_name else None)
    tree.save(args.tree_json)
    print(f"convert_tree: {args.kaldi_tree} -> {args.tree_json}: {tree.num_leaves} senones, "
          f"{len(tree.roots)} phones with a root")


if __name__ == "__main__":
    main()

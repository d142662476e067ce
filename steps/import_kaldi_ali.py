#!/usr/bin/env python3
"""Stage (alternative to 7-10): frame targets from Kaldi alignments instead of lm2am's aligner.

Takes what Kaldi prints for a part (text or binary ark, optionally .gz):
  ali-to-pdf  exp/tri3_ali/final.mdl "ark:gunzip -c exp/tri3_ali/ali.*.gz|" ark,t:pdf.txt
  ali-to-phones --per-frame=true exp/tri3_ali/final.mdl "ark:gunzip -c ...|" ark,t:phones.txt
plus Kaldi's data/lang/phones.txt, and writes the same data/targets/ files stage 10 writes
(senones = Kaldi pdf-ids; monophones mapped to lm2am's phones.txt; subwords placed on the words
found from Kaldi's position-dependent phones).

e.g.: steps/import_kaldi_ali.py --num-pdfs 2016 pdf.txt phones.txt kaldi/phones.txt \
        data/fbank/cuts_train-synth.jsonl.gz data/lang data/targets
"""
import argparse
import logging
from pathlib import Path

from lm2am.errors import Lm2amError, cli_main
from lm2am.log import setup_logging


@cli_main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-pdfs", type=int, help="senone count of the Kaldi model (default: max id + 1)")
    p.add_argument("pdf_ali", type=Path)
    p.add_argument("phone_ali", type=Path)
    p.add_argument("kaldi_phones", type=Path)
    p.add_argument("cuts", type=Path, help="<fbank-dir>/cuts_<part>.jsonl.gz")
    p.add_argument("lang_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    args = p.parse_args()
    setup_logging(args.out_dir / "log" / "import_kaldi_ali.log")
    for f in (args.pdf_ali, args.phone_ali, args.kaldi_phones, args.cuts, args.lang_dir / "bpe.model"):
        if not f.is_file():
            raise Lm2amError(f"{f}: missing; check the path (Kaldi files) or run the earlier stages")
    import sentencepiece as spm
    from lhotse import CutSet

    from lm2am.align.kaldi_import import import_kaldi_alignments
    from lm2am.lang import read_phone_list
    from lm2am.targets import attach_targets, write_targets

    part = args.cuts.name.replace("cuts_", "").replace(".jsonl.gz", "")
    cuts = CutSet.from_file(args.cuts)
    sp = spm.SentencePieceProcessor(model_file=str(args.lang_dir / "bpe.model"))
    targets = import_kaldi_alignments(args.pdf_ali, args.phone_ali, args.kaldi_phones, args.lang_dir,
                                      {c.id: c.supervisions[0].text for c in cuts}, sp,
                                      num_pdfs=args.num_pdfs, num_frames={c.id: c.num_frames for c in cuts})
    num_pdfs = args.num_pdfs or 1 + max(int(t.senone.max()) for t in targets.values())
    write_targets(targets, args.out_dir, part, num_senones=num_pdfs,
                  num_phones=len(read_phone_list(args.lang_dir)), num_subwords=sp.get_piece_size(),
                  frame_shift=cuts[0].frame_shift)
    attach_targets(cuts, args.out_dir, part, missing="drop")
    logging.info("%s: targets from Kaldi alignments for %d of %d cuts", part, len(targets), len(cuts))


if __name__ == "__main__":
    main()

"""The targets stage for one part: alignments + senone tree + BPE -> stored targets
(``steps/make_targets.py``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from lm2am.targets.checks import check_targets
from lm2am.targets.rules import FrameTargets, make_frame_targets
from lm2am.targets.storage import attach_targets, write_targets
from lm2am.data.features import load_features

__all__ = ["make_targets_for_part"]


def make_targets_for_part(cuts_path: Union[Path, str], lang_dir: Union[Path, str],
                          ali_dir: Union[Path, str], tree_dir: Union[Path, str],
                          out_dir: Union[Path, str], part: str, num_plots: int = 1,
                          corpus_dir: Optional[Union[Path, str]] = None) -> Dict[str, int]:
    """The targets stage for one part: alignments + senone tree + BPE -> stored targets.

    Senones come from the tree with the tree's context convention (``lm2am.tree``): left/right
    phone of each frame's phone segment, a new segment where the phone changes or the HMM state
    goes back (a repeated phone). Cuts the aligner could not align are left out (counted).
    Returns counts (cuts, frames, unaligned).
    """
    import sentencepiece as spm
    from lhotse import CutSet
    from tqdm import tqdm

    from lm2am.align.pipeline import load_aligner, read_alignments, read_ctm
    from lm2am.align.topo import StateMap
    from lm2am.tree import ContextTree, frame_contexts

    out_dir = Path(out_dir)
    _, _, topo, phones = load_aligner(ali_dir)
    smap = StateMap(phones, topo)
    tree = ContextTree.load(Path(tree_dir) / "tree.json")
    sp = spm.SentencePieceProcessor(model_file=str(Path(lang_dir) / "bpe.model"))
    alis = read_alignments(ali_dir, part)
    cuts = CutSet.from_file(cuts_path)
    words = read_ctm(ali_dir, part, frame_shift=cuts[0].frame_shift if len(cuts) else 0.01)
    sil_ids = {i for i, p in enumerate(phones) if p in topo.silence_phones}
    counts = {"cuts": 0, "frames": 0, "unaligned": 0}
    plotted: List[str] = []

    def generate():
        for c in tqdm(cuts, total=len(cuts), desc=f"targets {part}", unit="cut", disable=None, mininterval=2):
            if c.id not in alis:
                counts["unaligned"] += 1
                continue
            states, ph = alis[c.id]
            hmm_state = smap.pdf_to_state[states]
            starts = np.flatnonzero((np.diff(ph) != 0) | (np.diff(hmm_state) < 0)) + 1
            left, right = frame_contexts(ph, hmm_state, segment_starts=_start_mask(len(ph), starts))
            senone = tree.lookup_array(left, ph, right, hmm_state).astype(np.int32)
            t = make_frame_targets(ph, senone, words.get(c.id, []), sp, sil_ids,
                                   phone_starts=np.concatenate([[0], starts]), utt_id=c.id)
            check_targets(c.id, t, c.num_frames, tree.num_leaves, len(phones), sp.get_piece_size())
            counts["cuts"] += 1
            counts["frames"] += len(senone)
            if len(plotted) < num_plots:
                plotted.append(c.id)
                _plot_targets(c, t, phones, out_dir / "plots" / f"{c.id}.png", corpus_dir)
            yield c.id, t

    write_targets(generate(), out_dir, part, num_senones=tree.num_leaves, num_phones=len(phones),
                  num_subwords=sp.get_piece_size(), frame_shift=cuts[0].frame_shift)
    attach_targets(cuts, out_dir, part, missing="drop")
    return counts


def _start_mask(T: int, starts: Any) -> Any:
    mask = np.zeros(T, dtype=bool)
    mask[starts] = True
    return mask


def _plot_targets(cut: Any, t: FrameTargets, phones: Sequence[str], path: Path,
                  corpus_dir: Optional[Union[Path, str]]) -> None:
    """fbank + phone boundaries + senone strip for one cut (reference boundaries if known)."""
    from lm2am.report.plots import plot_alignment

    ref = None
    if corpus_dir is not None:
        from lm2am.align.evaluate import read_reference_phones

        spk, chap = cut.id.split("-")[:2]
        files = list(Path(corpus_dir).glob(f"*/{spk}/{chap}/{spk}-{chap}.phones.txt"))
        refs = read_reference_phones(files) if files else {}
        if cut.id in refs:
            ref = [end for _, end in refs[cut.id]]
    plot_alignment(load_features(cut), t.phone, phones, path, senones=t.senone,
                   title=f"{cut.id}: {cut.supervisions[0].text[:80]}", ref_boundaries=ref)

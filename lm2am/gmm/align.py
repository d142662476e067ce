"""Align cuts with a trained GMM system and write the k2 aligner's files (same names, same
format: :mod:`lm2am.align.pipeline`), so every reader of an alignment directory
(``read_alignments``, ``read_ctm``, the tree and targets stages) takes a GMM directory as is:

- ``states_<name>.ark/.scp``: pdf-id per frame (= monophone-state index of ``StateMap``);
- ``phones_<name>.ark/.scp``: phones.txt id per frame;
- ``words_<name>.ctm``: word boundaries.

Alignment: Kaldi's beam, then the retry beam (``gmm.beam``, ``gmm.retry_beam_factor``), then,
unlike Kaldi (which drops the utterance), a last try with an unpruned beam, so that an utterance
is left out only when its graph cannot fit its frames at all.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Union

import numpy as np

from lm2am.align.viterbi import Alignment
from lm2am.align.pipeline import cut_inputs, load_lexicon, write_alignments
from lm2am.align.topo import StateMap
from lm2am.errors import Lm2amError
from lm2am.gmm.config import GmmConfig
from lm2am.gmm.graphs import compile_graph, read_alignment, transition_costs
from lm2am.gmm.model import GmmSystem
from lm2am.gmm.viterbi import best_path, tid_matrix, viterbi_align
from lm2am.lang import read_phone_list

log = logging.getLogger("lm2am.gmm")

UNPRUNED_BEAM = 1.0e4


def align_features(system: GmmSystem, feats: List[np.ndarray], texts: List[List[str]], utt_ids: List[str],
                   lang_dir: Union[Path, str], cfg: GmmConfig) -> List[Alignment]:
    """Viterbi alignments of GMM features (``system.transform`` applied) to their transcripts."""
    from tqdm import tqdm

    from lm2am.graph.hmm import transition_tables

    smap = StateMap(system.phones, system.topo)
    tables = transition_tables(system.tm)
    costs = transition_costs(system.tm, tables, cfg.transition_scale, cfg.self_loop_scale)
    lexicon = load_lexicon(lang_dir)
    params = system.params()
    out: List[Alignment] = []
    retried = unpruned = 0
    for utt, f, words in tqdm(list(zip(utt_ids, feats, texts)), desc="GMM align", unit="utt", disable=None):
        g = compile_graph(words, lexicon, smap, tables, costs, utt)
        pdf_ll = params.pdf_loglikes(params.component_loglikes(f))
        m = tid_matrix(pdf_ll, tables, cfg.acoustic_scale)
        path, was_retried = viterbi_align(g.fst, m, cfg.beam, cfg.beam * cfg.retry_beam_factor)
        retried += was_retried
        if path is None:
            path = best_path(g.fst, m, UNPRUNED_BEAM)
            unpruned += path is not None
        if path is None:
            log.warning("%s: no alignment (%d frames are too few for its transcript); left out", utt, f.shape[0])
            continue
        tids, marks, _ = path
        ali = read_alignment(utt, tids, marks, g, tables, smap)
        ali.loglike = float(pdf_ll[np.arange(len(tids)), ali.states].sum())
        out.append(ali)
    log.info("aligned %d of %d utterances (%d needed the retry beam, %d the unpruned beam)",
             len(out), len(utt_ids), retried, unpruned)
    return out


def align_cuts(model_dir: Union[Path, str], cuts, lang_dir: Union[Path, str], out_dir: Union[Path, str],
               name: str, cfg: GmmConfig) -> List[Alignment]:
    """Align ``cuts`` with the system in ``model_dir``; write the alignment files of ``name``."""
    system = GmmSystem.load(model_dir)
    if system.phones != read_phone_list(lang_dir):
        raise Lm2amError(f"{model_dir}/final.mdl was trained with another phones.txt than {lang_dir}; retrain it")
    cuts = list(cuts)
    ids, fbanks, texts = cut_inputs(cuts)
    feats = [system.transform(f) for f in fbanks]
    alis = align_features(system, feats, texts, ids, lang_dir, cfg)
    write_alignments(alis, out_dir, name, cuts[0].frame_shift if cuts else 0.01)
    return alis

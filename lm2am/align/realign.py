"""Neural realignment: force-align with a trained hybrid AM instead of the flat-start aligner.

Kaldi's hybrid recipes train a network on GMM alignments, realign the data with that network,
rebuild the tree and targets from the new alignments and train again. Here the first network
is lm2am's CE AM (``exp/am_ce/seed1/final.pt``) and the alignments it makes go to
``exp/ali_am`` in the aligner's own format, so the tree and targets stages read them like
``exp/ali_mono`` (``run.sh --ali-source am``).

The AM predicts senones, the training graphs (:mod:`lm2am.align.graphs`) use monophone states.
A senone serves one centre phone (one tree root per phone) but may serve several of its states
(a leaf the tree never split on the state); so each monophone state scores
``log sum_{senones s serving it} p(s|x) - log p(state)``, with the cover read off the tree the AM
was trained on and the state priors from the AM's senone priors (:func:`prepare_realign_dir`).
A subsampled AM (outputs every ``f`` frames) is run ``f`` times on inputs shifted by one frame
and the outputs are interleaved, so every 10 ms frame gets its own posterior
(:func:`full_rate_log_posteriors`) and the boundaries keep frame resolution.

``<out_dir>`` holds ``final.pt`` (kind ``am``: topology and phones, for the tree and targets
stages), ``am.pt`` (a copy of the AM: retraining overwrites the original) and ``realign.npz``
(cover and log state priors), then the usual ``states_/phones_/words_`` files per job.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import atomic_path

log = logging.getLogger("lm2am.align")

REALIGN_FILE = "realign.npz"
AM_FILE = "am.pt"


def full_rate_log_posteriors(model: Any, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(N, T, S)`` main-output log-posteriors at every input frame of CMVN'd ``x``.

    With subsampling ``f`` the model keeps frames ``f//2, f//2 + f, ...`` of its input; run on
    the input without its first ``o`` frames it gives frames ``o + f//2 + k f``. Offsets
    ``0..f-1`` cover every frame from ``f//2`` on; the first ``f//2`` frames copy frame ``f//2``.
    """
    f = int(model.cfg.subsampling)
    N, T, _ = x.shape
    if f == 1:
        return model(x, lengths, with_aux=False)["main"]
    out: Optional[torch.Tensor] = None
    for o in range(f):
        if T - o <= 0:
            break
        res = model(x[:, o:], torch.clamp(lengths - o, min=0), with_aux=False)
        main = res["main"]
        if out is None:
            out = main.new_zeros((N, T, main.shape[2]))
        idx = torch.arange(main.shape[1], device=x.device) * f + o + f // 2
        keep = idx < T
        out[:, idx[keep]] = main[:, keep]
    assert out is not None
    if f // 2 > 0:
        out[:, :f // 2] = out[:, f // 2:f // 2 + 1]
    return out


class AmStateScorer(torch.nn.Module):
    """Monophone-state scores from a hybrid AM, in the interface :func:`lm2am.align.align`
    uses (``num_pdfs``, ``emission_scores``). Takes CMVN'd features (see :func:`realign_cuts`).

    Args:
        am: the trained :class:`lm2am.am.model.AcousticModel`.
        cover: ``[num_senones, num_pdfs]`` bool, which monophone states each senone covers.
        log_prior: ``[num_pdfs]`` log prior of each monophone state.
    """

    def __init__(self, am: Any, cover: np.ndarray, log_prior: np.ndarray):
        super().__init__()
        if cover.shape[0] != am.num_senones:
            raise Lm2amError(f"the senone cover has {cover.shape[0]} senones but the AM {am.num_senones}; "
                             "realign with an AM trained on the current tree")
        self.am = am
        self.register_buffer("cover", torch.as_tensor(cover, dtype=torch.float32))
        self.register_buffer("log_prior", torch.as_tensor(log_prior, dtype=torch.float32))

    @property
    def num_pdfs(self) -> int:
        return int(self.cover.shape[1])

    @torch.no_grad()
    def emission_scores(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                        prior_scale: Optional[float] = None) -> torch.Tensor:
        """``log sum_{s covers j} p(s|x) - prior_scale * log p(j)`` per frame and state ``j``."""
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        logp = full_rate_log_posteriors(self.am, x, lengths.to(torch.long))
        # log(exp(logp) @ cover) computed stably around each frame's max
        m = logp.max(dim=2, keepdim=True).values
        scores = torch.log(torch.clamp((logp - m).exp() @ self.cover, min=1e-30)) + m
        scale = 1.0 if prior_scale is None else float(prior_scale)
        return scores - scale * self.log_prior if scale else scores


def senone_state_cover(tree: Any, smap: Any) -> np.ndarray:
    """``[num_senones, num_pdfs]`` bool: the monophone states (``smap`` pdfs) each senone of
    ``tree`` serves, over every left/right context (utterance edges included)."""
    from lm2am.tree.context import EDGE

    cover = np.zeros((tree.num_leaves, smap.num_pdfs), bool)
    ctx = np.unique(np.concatenate([[EDGE], smap.pdf_to_phone])).astype(np.int64)
    left, right = np.meshgrid(ctx, ctx, indexing="ij")
    for pdf in range(smap.num_pdfs):
        centre, state = int(smap.pdf_to_phone[pdf]), int(smap.pdf_to_state[pdf])
        sen = tree.lookup_array(left, np.full_like(left, centre), right, np.full_like(left, state))
        cover[np.unique(sen), pdf] = True
    return cover


def state_log_priors(cover: np.ndarray, senone_log_priors: np.ndarray) -> np.ndarray:
    """Monophone-state log priors: each senone's prior shared equally among the states it covers."""
    share = cover / np.maximum(cover.sum(1, keepdims=True), 1)
    p = np.exp(senone_log_priors.astype(np.float64)) @ share
    return np.log(np.maximum(p / p.sum(), 1e-10)).astype(np.float32)


def check_am_matches_tree(senone_log_priors: np.ndarray, leaf_counts: np.ndarray,
                          am_path: Path | str, tree_path: Path | str, min_corr: float = 0.8) -> float:
    """Refuse an AM trained on another tree of the same size (a rebuilt exp/tree): its senone
    priors then no longer follow the tree's leaf occupancies. Returns the correlation of the
    log priors with the log occupancies (near 1 for the AM's own tree)."""
    a = np.asarray(senone_log_priors, np.float64)
    b = np.log(np.asarray(leaf_counts, np.float64) + 1.0)
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 1.0
    if corr < min_corr:
        raise Lm2amError(f"{am_path}: its senone priors do not follow the leaf counts of {tree_path} "
                         f"(correlation {corr:.2f}); it was trained on another tree: realign with an AM "
                         "trained on this tree, or rebuild the tree it was trained on")
    return corr


def prepare_realign_dir(am_path: Path | str, tree_path: Path | str, src_ali_dir: Path | str,
                        out_dir: Path | str) -> Dict[str, Any]:
    """Set up ``out_dir`` for realignment (module docstring): a copy of the AM, the topology and
    phones of ``src_ali_dir`` (the alignments the tree came from), and the senone cover and
    state priors from ``tree_path`` (the tree the AM was trained on) and the AM's priors."""
    import dataclasses

    from lm2am.align.pipeline import load_aligner
    from lm2am.align.topo import StateMap
    from lm2am.am.checkpoint import load_model
    from lm2am.am.priors import load_priors
    from lm2am.tree import ContextTree

    am_path, out_dir = Path(am_path), Path(out_dir)
    model, info = load_model(am_path)
    tree = ContextTree.load(tree_path)
    if tree.num_leaves != int(info["num_senones"]):
        raise Lm2amError(f"{am_path} has {info['num_senones']} senones but {tree_path} {tree.num_leaves}: "
                         "realign with an AM trained on this tree")
    senone_log_priors = load_priors(am_path.parent / "priors.npy", tree.num_leaves)
    check_am_matches_tree(senone_log_priors, tree.leaf_counts, am_path, tree_path)
    _, _, topo, phones = load_aligner(src_ali_dir)
    smap = StateMap(phones, topo)
    cover = senone_state_cover(tree, smap)
    log_prior = state_log_priors(cover, senone_log_priors)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / AM_FILE) as tmp:
        shutil.copyfile(am_path, tmp)
    with atomic_path(out_dir / REALIGN_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, cover=cover, log_prior=log_prior)
    with atomic_path(out_dir / "final.pt") as tmp:
        torch.save({"kind": "am", "topo": dataclasses.asdict(topo), "phones": phones,
                    "am": str(am_path)}, tmp)
    multi = int((cover.sum(1) > 1).sum())
    log.info("%s: AM %s, tree %s: %d senones over %d monophone states (%d serve several states)",
             out_dir, am_path, tree_path, cover.shape[0], smap.num_pdfs, multi)
    return {"senones": int(cover.shape[0]), "states": int(smap.num_pdfs), "multi_state_senones": multi}


def realign_cuts(realign_dir: Path | str, cuts: Sequence, lang_dir: Path | str, name: str,
                 device: str = "cpu", batch_size: int = 16, prior_scale: float = 1.0,
                 allow_failures: bool = True) -> List[Any]:
    """Align ``cuts`` with the AM of ``realign_dir`` and write the alignment files there."""
    from lm2am.align.viterbi import align
    from lm2am.align.pipeline import cut_inputs, load_aligner, load_lexicon, write_alignments
    from lm2am.am.checkpoint import load_model
    from lm2am.am.data import speaker_means_for
    from lm2am.lang import read_phone_list

    realign_dir = Path(realign_dir)
    npz = realign_dir / REALIGN_FILE
    if not npz.is_file():
        raise Lm2amError(f"{npz}: missing; prepare the directory first (steps/realign.py --prepare)")
    _, _, topo, phones = load_aligner(realign_dir)
    if phones != read_phone_list(lang_dir):
        raise Lm2amError(f"{realign_dir}/final.pt was made with another phones.txt than {lang_dir}; prepare it again")
    am, _ = load_model(realign_dir / AM_FILE, device)
    with np.load(npz) as z:
        scorer = AmStateScorer(am, z["cover"], z["log_prior"])
    cuts = list(cuts)
    ids, feats, texts = cut_inputs(cuts)
    # the AM's input normalization, applied here: align() pads the features as given
    means = speaker_means_for(am.cfg.input_norm, cuts)
    mean, std = am.cmvn_mean.cpu().numpy(), am.cmvn_std.cpu().numpy()
    from lm2am.data.features import cut_speaker
    feats = [((x - (means[cut_speaker(c)] if means is not None else mean)) / std).astype(np.float32)
             for c, x in zip(cuts, feats)]
    alis = align(scorer, feats, texts, load_lexicon(lang_dir), phones, topo, device=device,
                 batch_size=batch_size, utt_ids=ids, prior_scale=prior_scale,
                 allow_failures=allow_failures)
    if len(alis) < len(ids):
        log.warning("%s: %d of %d utterances could not be aligned and are left out", name,
                    len(ids) - len(alis), len(ids))
    write_alignments(alis, realign_dir, name, cuts[0].frame_shift if cuts else 0.01)
    return alis

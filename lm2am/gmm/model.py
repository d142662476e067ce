"""The GMM monophone system: its tree, Kaldi objects, likelihoods and files.

Pdf numbering: the monophone tree gives every (phone, HMM state) its own pdf, numbered as the
k2 aligner's :class:`~lm2am.align.topo.StateMap` numbers monophone states, so a GMM alignment's
pdf-ids *are* the ``states`` the aligner files hold. The tree is an lm2am
:class:`~lm2am.tree.ContextTree` (one root per phone, questions on the HMM state only), so the
same code that builds the senone system's Kaldi ``TransitionModel`` and HCLG
(:mod:`lm2am.graph`) builds the monophone ones.

Files in the model directory (``exp/mono_gmm``):

- ``final.mdl``: pickle of ``{"tm", "am"}`` (Kaldi ``TransitionModel`` and ``AmDiagGmm``, pickled
  through Kaldi's own serialization) plus the topology, phone list and feature transform;
- ``tree.json``: the monophone tree (for ``steps/make_graph.py``);
- ``final.pt``: the aligner descriptor that :func:`lm2am.align.pipeline.load_aligner` reads
  (``kind: gmm``, topology, phone list), so the tree and targets stages take this directory as
  their alignment directory unchanged;
- ``history.json``: per-iteration log-likelihood per frame, Gaussians, realignment.
"""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from lm2am.align.topo import HmmTopo, StateMap
from lm2am.errors import Lm2amError
from lm2am.gmm.features import FeatureTransform
from lm2am.io import atomic_path
from lm2am.kaldi import kaldi_wheels
from lm2am.tree import STATE, ContextTree, Node


def monophone_tree(phones: Sequence[str], topo: HmmTopo) -> ContextTree:
    """A context-independent tree: pdf of (phone, state) = ``StateMap(phones, topo).pdf``."""
    smap = StateMap(list(phones), topo)
    roots = []
    for pid in sorted(smap.id_to_phone):
        n = smap.num_states(pid)
        node = Node(senone=smap.pdf(pid, n - 1))
        for s in range(n - 2, -1, -1):
            node = Node(key=STATE, values=(s,), yes=Node(senone=smap.pdf(pid, s)), no=node)
        roots.append(([pid], node))
    return ContextTree(list(phones), roots, {p: smap.num_states(p) for p in smap.id_to_phone},
                       sil_phone=smap.sil_phone if smap.sil_phone >= 0 else None,
                       info={"kind": "monophone"})


class GmmParams:
    """The GMMs of an ``AmDiagGmm`` as stacked arrays, for likelihoods of whole utterances.

    Kaldi's ``DiagGmm::LogLikelihoods``: ``gconst_k + means_invvars_k . x - 0.5 inv_vars_k . x^2``
    per component (``gconsts`` include the log weights); a pdf's likelihood is the log-sum-exp
    over its components, which are contiguous here (``offsets``).
    """

    def __init__(self, am: Any):
        g, mi, iv, offs = [], [], [], [0]
        for p in range(am.num_pdfs):
            gmm = am.get_pdf(p)
            g.append(np.asarray(gmm.gconsts, np.float64).reshape(-1))
            mi.append(np.asarray(gmm.means_invvars, np.float64))
            iv.append(np.asarray(gmm.inv_vars, np.float64))
            offs.append(offs[-1] + g[-1].size)
        self.gconsts = np.concatenate(g)
        self.means_invvars = np.concatenate(mi)
        self.inv_vars = np.concatenate(iv)
        self.offsets = np.asarray(offs, np.int64)
        self.comp_pdf = np.repeat(np.arange(am.num_pdfs), np.diff(self.offsets))

    @property
    def num_pdfs(self) -> int:
        return self.offsets.size - 1

    def component_loglikes(self, feats: np.ndarray) -> np.ndarray:
        """``[T, num_components]`` log-likelihood of every Gaussian (weights included)."""
        x = np.asarray(feats, np.float64)
        return self.gconsts + x @ self.means_invvars.T - 0.5 * (x ** 2) @ self.inv_vars.T

    def pdf_loglikes(self, comp_ll: np.ndarray) -> np.ndarray:
        """``[T, num_pdfs]`` from :meth:`component_loglikes`."""
        mx = np.maximum.reduceat(comp_ll, self.offsets[:-1], axis=1)
        s = np.add.reduceat(np.exp(comp_ll - mx[:, self.comp_pdf]), self.offsets[:-1], axis=1)
        return mx + np.log(s)


@dataclass
class GmmSystem:
    """A trained (or being trained) monophone GMM-HMM.

    Attributes:
        tm: ``kaldi_hmm_gmm.TransitionModel`` (from :func:`monophone_tree` and ``topo``).
        am: ``kaldi_hmm_gmm.AmDiagGmm``, one GMM per pdf.
        tree: the monophone :class:`ContextTree`.
        topo: the HMM topology (the ``topo:`` config section, as the k2 aligner's).
        phones: phones.txt as a list.
        transform: fbank -> GMM features.
    """

    tm: Any
    am: Any
    tree: ContextTree
    topo: HmmTopo
    phones: List[str]
    transform: FeatureTransform

    def params(self) -> GmmParams:
        return GmmParams(self.am)

    def save(self, model_dir: Union[Path, str], cfg: Any = None) -> None:
        """Write ``final.mdl``, ``tree.json`` and the aligner descriptor ``final.pt``."""
        import torch

        model_dir = Path(model_dir)
        doc = {"tm": self.tm, "am": self.am, "topo": dataclasses.asdict(self.topo), "phones": self.phones,
               "transform": dataclasses.asdict(self.transform)}
        with atomic_path(model_dir / "final.mdl") as tmp:
            tmp.write_bytes(pickle.dumps(doc))
        self.tree.save(model_dir / "tree.json")
        desc = {"kind": "gmm", "topo": dataclasses.asdict(self.topo), "phones": self.phones,
                "cfg": dataclasses.asdict(cfg) if cfg is not None else {}, "model": "final.mdl"}
        with atomic_path(model_dir / "final.pt") as tmp:
            torch.save(desc, tmp)

    @classmethod
    def load(cls, model_dir: Union[Path, str]) -> "GmmSystem":
        """Read a system written by :meth:`save`."""
        kaldi_wheels()  # unpickling needs kaldi_hmm_gmm (imported before kaldifst)
        path = Path(model_dir) / "final.mdl"
        if not path.is_file():
            raise Lm2amError(f"{path}: GMM model missing; run steps/train_gmm_mono.py first")
        doc: Dict[str, Any] = pickle.loads(path.read_bytes())
        topo = HmmTopo(**doc["topo"])
        return cls(tm=doc["tm"], am=doc["am"], tree=ContextTree.load(Path(model_dir) / "tree.json"),
                   topo=topo, phones=list(doc["phones"]), transform=FeatureTransform(**doc["transform"]))

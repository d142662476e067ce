"""Kaldi-style senone tree: decision-tree clustering of context-dependent HMM states.

What it does
------------
:class:`TreeStats` (:mod:`.stats`) holds, for every seen context state ``(left, center, right,
state)``, the sufficient statistics of one diagonal Gaussian (count, sum, sum of squares),
accumulated from frame-level alignments with :meth:`TreeStats.accumulate`. :func:`build_tree`
(:mod:`.build`) grows one tree per root (by default one root per phone, all HMM states of the
phone under it, as Kaldi's default ``roots.txt`` "shared split"): it greedily applies, across all
roots at once, the yes/no question with the largest log-likelihood gain until ``num_leaves``
leaves exist (Kaldi's ``build-tree --max-leaves``). Questions (:mod:`.questions`) ask whether the
left / right phone (or the centre phone, for roots holding several phones) lies in a phone set,
or whether the HMM state lies in a state set. Phone sets are given (:func:`read_questions`, like
Kaldi's ``questions.int`` / ``extra_questions``) or derived by top-down clustering of the phones'
pooled Gaussians (:func:`cluster_phones`, like Kaldi's ``cluster-phones``). The result,
:class:`ContextTree` (:mod:`.model`), maps any ``(left, center, right, state)``, seen or not, to
a dense senone id, saves to a readable JSON file, and converts to Kaldi's own
``ContextDependency`` (:mod:`.kaldi_format`), so Kaldi's graph tools can use the same senones.
:mod:`.stage` is the stage: statistics from the aligner's alignments, then the tree.

Context convention (alignment, targets and decoding graphs must all follow it)
-----------------------------------------------------------------------------
* Phone ids are those of ``phones.txt`` (``phones[i]`` is the name of id ``i``); id 0 is
  ``<eps>`` and never a centre phone; names starting with ``#`` (disambiguation) get no root.
* ``state`` is the 0-based HMM state index, i.e. Kaldi's pdf-class for the usual topologies.
* Triphone context (Kaldi ``N=3, P=1``). Cross-word context is real context: the last phone of a
  word has the first phone of the next word as right context, as in Kaldi's cross-word trees.
  Silence between words (optional or not) is a phone of the sequence, so the phones next to it
  see the silence phone as context.
* Utterance edges: the context beyond the first/last phone is the edge symbol ``0`` (what
  Kaldi's context FST and ``acc-tree-stats`` use). The tree treats ``0`` exactly like the
  silence phone ``sil_phone``: :meth:`ContextTree.lookup` maps a left/right ``0`` to
  ``sil_phone`` before asking questions, and the Kaldi export adds ``0`` to every phone set that
  contains ``sil_phone``. So writing the edge either as ``0`` or as the silence phone gives the
  same senone, and Kaldi-built graphs agree with lm2am's lookup. Without a silence phone
  (``sil_phone=None``) ``0`` is a context of its own that is in no phone set.
* ``no_context_phones`` (silence, noise) do not split on context: one senone per HMM state.
"""
from lm2am.tree.build import build_tree
from lm2am.tree.context import CENTER, EDGE, KEY_NAMES, LEFT, RIGHT, STATE, PhoneRef, frame_contexts
from lm2am.tree.model import ContextTree, Node, leaves
from lm2am.tree.questions import cluster_phones, read_questions, state_questions
from lm2am.tree.stage import TreeConfig, aligned_frames, tree_from_alignments
from lm2am.tree.stats import TreeStats

__all__ = [
    "EDGE", "LEFT", "CENTER", "RIGHT", "STATE", "KEY_NAMES", "PhoneRef", "TreeStats", "ContextTree",
    "Node", "leaves", "frame_contexts", "build_tree", "cluster_phones", "read_questions",
    "state_questions", "TreeConfig", "aligned_frames", "tree_from_alignments",
]

"""Decoding graph for the hybrid AM: Kaldi's ``mkgraph.sh`` in Python, then a k2 copy of it.

Steps (Kaldi's algorithms from the ``kaldifst`` / ``kaldilm`` / ``kaldi-hmm-gmm`` wheels)
------------------------------------------------------------------------------------------
1. ``G``: back-off n-gram (:mod:`lm2am.graph.ngram`, Kneser-Ney) → ARPA → ``kaldilm.arpa2fst`` with
   ``#0`` on the back-off arcs.
2. ``L_disambig``: the lexicon with optional silence (probability ``HmmTopo.sil_prob`` at the
   start and after every word; Kaldi's ``make_lexicon_fst.py --sil-prob`` layout, silence
   followed by the extra disambiguation symbol ``#N`` when phones.txt has one that the lexicon
   does not use), the ``#1..`` symbols of ``lexicon_disambig.txt`` and a ``#0:#0`` self-loop
   so G's back-off symbol passes through (``fstaddselfloops``).
3. ``LG = determinize_star(L ∘ G)`` in the log semiring, then ``minimize_encoded``.
4. ``CLG = compose_context(LG)``: triphone context (N=3, P=1) with Kaldi's edge convention (the
   context beyond an utterance edge is phone 0), i.e. the convention of :mod:`lm2am.tree`,
   whose lookup and Kaldi export treat 0 exactly like the silence phone.
5. ``Ha``: Kaldi's ``GetHTransducer`` (no self-loops), written here in Python
   (:func:`~lm2am.graph.hmm.make_h_transducer`): transition-ids come from a real Kaldi
   ``TransitionModel`` built from the tree's ``ContextDependency`` (:meth:`ContextTree.to_kaldi_context_dependency`) and
   an ``HmmTopology`` equal to :class:`~lm2am.align.topo.HmmTopo` (left-to-right, a self-loop on
   every emitting state, ``num_states`` per phone, ``sil_num_states`` for silence phones; the
   tree's own per-phone state counts must agree); pdfs of each context window come from the
   tree. Why not ``kaldi_hmm_gmm.get_h_transducer`` / ``add_self_loops``: kaldi-hmm-gmm 1.1.4
   was built against an older OpenFst than kaldifst 1.8.3 (``ArcTpl<W>`` vs
   ``ArcTpl<W, int, int>``), so its FST-typed functions cannot take or return kaldifst FSTs
   ("Unregistered type"); everything that does not touch an FST (TransitionModel, tree) is used.
6. ``HCLGa = determinize_star(Ha ∘ CLG)`` + ``minimize_encoded``; then the disambiguation ids
   become epsilon (``fstrmsymbols``) and the self-loops are added as Kaldi's
   ``add-self-loops --reorder=true`` does (:func:`~lm2am.graph.hmm.add_self_loops`, in numpy).
   ``HCLG.fst`` is the result as OpenFst binary: input = transition-ids (0 = epsilon), output = word ids.

Transition weights: with ``HmmTopo.self_loop_prob = None`` (durations left to the AM, as the
aligner does) the HMM adds no weights (self-loop scale 0); otherwise self-loops get
``scale * log p`` and leaving a state ``scale * log(1 - p)``, Kaldi's ``--self-loop-scale``
(default 0.1).

The k2 graph and THE label mapping (transition-id → pdf-id → k2 label)
----------------------------------------------------------------------
``HCLG.pt`` (``k2.Fsa.as_dict()``) is the graph the k2 decoder uses:

* ``label = pdf_id + 1`` where ``pdf_id = TransitionModel.transition_id_to_pdf_array()[tid]``
  (saved as ``tid2pdf.npy``); pdf-ids are the tree's senone ids (leaf ids of
  :class:`~lm2am.tree.ContextTree`), i.e. the column of the AM's main output. Label 0 is k2's
  epsilon and -1 marks final arcs, hence the +1. Arcs that consume no frame (transition-id 0:
  former disambiguation symbols) are removed with ``k2.remove_epsilon``, so every arc consumes
  exactly one frame (tested: every label equals ``tid2pdf[tid] + 1``).
* ``aux_labels`` = word ids of ``words.txt`` (ragged after epsilon removal: 0 or 1 word per arc).
* ``tids`` = the transition-id of each arc (phone alignments and CTM word times).
* The matching dense input has ``num_pdfs + 1`` columns: column 0 unused, column ``p + 1`` =
  scaled log-likelihood of pdf ``p`` (:func:`lm2am.decode.k2.decode` does this). The same ``+1``
  is what Kaldi's ``DecodableCtc`` expects (it reads column ``i - 1`` for label ``i``), should a Kaldi decoder be used.

The graph directory (``<lang>/graph``) holds ``HCLG.fst``, ``HCLG.pt``, ``G.arpa``,
``words.txt``, ``phones.txt``, ``lexicon.txt``, ``tree`` (Kaldi binary), ``trans_model.pkl``
(pickled ``TransitionModel``), ``tid2pdf.npy``, ``tid2phone.npy``, ``tid_starts_phone.npy`` and
``graph_info.json`` (sizes of every intermediate FST, time per step, total build time).

Size guard: after G is built and before anything is composed,
:func:`~lm2am.graph.hclg.estimate_hclg_arcs` predicts the HCLG arc count from G's; above ``GraphConfig.max_hclg_arcs`` the build stops with
a message that says how to shrink G (higher ``lm.min_counts``, lower ``lm.order``).
``determinize_star`` also gets a state limit, so an unexpected blow-up fails cleanly instead of
eating the machine's memory.

Modules: :mod:`~lm2am.graph.ngram` (Kneser-Ney n-gram), :mod:`~lm2am.graph.arpa` (ARPA files,
G), :mod:`~lm2am.graph.lang_dir` (reading the lang dir), :mod:`~lm2am.graph.lexicon` (L),
:mod:`~lm2am.graph.hmm` (transition model, H, self-loops), :mod:`~lm2am.graph.fst` (FST helpers),
:mod:`~lm2am.graph.hclg` (HCLG, the k2 graph, the stage), :mod:`~lm2am.graph.load` (loading).
k2, torch and the Kaldi wheels are imported only inside the functions that use them.
"""
from lm2am.graph.arpa import ArpaLm, arpa_to_fst, read_arpa, write_arpa
from lm2am.graph.fst import fst_size
from lm2am.graph.hclg import GraphConfig, build_hclg, estimate_hclg_arcs, k2_decoding_graph, make_graph
from lm2am.graph.hmm import (TransitionTables, add_self_loops, make_h_transducer, make_hmm_topology,
                             make_transition_model, transition_tables)
from lm2am.graph.lang_dir import Lang, read_lang
from lm2am.graph.lexicon import make_lexicon_fst
from lm2am.graph.load import DecodingGraph, load_graph
from lm2am.graph.ngram import NgramConfig, NgramModel, estimate_ngram, estimate_ngram_from_file

__all__ = ["GraphConfig", "Lang", "read_lang", "make_lexicon_fst", "make_hmm_topology",
           "make_transition_model", "TransitionTables", "transition_tables", "make_h_transducer",
           "add_self_loops", "k2_decoding_graph", "estimate_hclg_arcs", "build_hclg", "make_graph",
           "DecodingGraph", "load_graph", "fst_size", "NgramConfig", "NgramModel", "estimate_ngram",
           "estimate_ngram_from_file", "write_arpa", "read_arpa", "arpa_to_fst", "ArpaLm"]

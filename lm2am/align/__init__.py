"""Flat-start forced alignment with k2: HMM topology, training graphs, a small neural
monophone-state model, full-sum training and Viterbi alignment."""
from lm2am.align.flat_start import AlignConfig, train_flat_start
from lm2am.align.graphs import build_graph, compile_graphs, min_frames, utterance_units
from lm2am.align.model import MonoStateModel
from lm2am.align.topo import HmmTopo, StateMap
from lm2am.align.viterbi import Alignment, align

__all__ = ["AlignConfig", "Alignment", "HmmTopo", "MonoStateModel", "StateMap", "align",
           "build_graph", "compile_graphs", "min_frames", "train_flat_start", "utterance_units"]

"""Decoding with the GMM monophone system: Kaldi's ``gmm-decode-faster`` in Python.

The graph is the HCLG that :func:`lm2am.graph.hclg.make_graph` (``steps/make_graph.py``) builds for
the monophone tree of the system (``<gmm-dir>/tree.json``), so its transition-ids are those of
the system's own ``TransitionModel``; ``HCLG.fst`` (OpenFst) goes to kaldi-decoder's
``FasterDecoder`` with a ``DecodableCtc`` whose column ``tid - 1`` holds
``acoustic_scale * log p(x | pdf(tid))`` (:func:`lm2am.gmm.viterbi.tid_matrix`). The graph
carries no HMM transition weights (built with ``topo.self_loop_prob: null``, as for the hybrid
AMs), so all systems decode on the same graph structure. An utterance whose search ends in no
final state keeps its best partial path (Kaldi's ``--allow-partial``), counted in ``partial``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.errors import Lm2amError
from lm2am.gmm.config import GmmConfig
from lm2am.gmm.model import GmmSystem
from lm2am.data.features import load_features
from lm2am.kaldi import kaldi_wheels

log = logging.getLogger("lm2am.gmm")


@dataclass
class GmmDecodeResult:
    """Hypotheses per acoustic scale and timing."""

    hyps_by_scale: Dict[float, Dict[str, List[str]]] = field(default_factory=dict)
    seconds_by_scale: Dict[float, float] = field(default_factory=dict)
    likelihood_seconds: float = 0.0
    audio_seconds: float = 0.0
    partial: Dict[float, List[str]] = field(default_factory=dict)

    def rtf(self, scale: float) -> float:
        """Real-time factor of one scale's decoding (GMM likelihoods included)."""
        return (self.seconds_by_scale[scale] + self.likelihood_seconds) / max(self.audio_seconds, 1e-9)


class _Tables:
    """The ``tid2pdf`` lookup :func:`tid_matrix` needs, from the graph directory."""

    def __init__(self, tid2pdf: np.ndarray):
        self.tid2pdf = tid2pdf


def load_gmm_graph(graph_dir: Union[Path, str], system: GmmSystem):
    """``(HCLG as kaldifst.StdVectorFst, tid2pdf, words)``; checks the graph was built for this
    system's monophone tree (same transition-id -> pdf map)."""
    _, kaldifst, _ = kaldi_wheels()
    graph_dir = Path(graph_dir)
    for f in ("HCLG.fst", "tid2pdf.npy", "words.txt"):
        if not (graph_dir / f).is_file():
            raise Lm2amError(f"{graph_dir / f}: missing; build the graph with steps/make_graph.py "
                             "<lang> <gmm-dir>/tree.json <gmm-dir>/graph")
    tid2pdf = np.load(graph_dir / "tid2pdf.npy")
    own = np.asarray(system.tm.transition_id_to_pdf_array(), np.int64)
    if tid2pdf.shape != own.shape or (tid2pdf != own).any():
        raise Lm2amError(f"{graph_dir}: its transition-ids are not the GMM system's (a senone graph?); "
                         "build it from <gmm-dir>/tree.json")
    words: List[str] = []
    for line in (graph_dir / "words.txt").read_text().splitlines():
        w, i = line.split()
        i = int(i)
        words.extend([""] * (i + 1 - len(words)))
        words[i] = w
    return kaldifst.StdVectorFst.read(str(graph_dir / "HCLG.fst")), tid2pdf, words


def decode_cuts(system: GmmSystem, graph_dir: Union[Path, str], cuts, scales: Sequence[float],
                beam: float = 13.0, max_active: int = 7000) -> GmmDecodeResult:
    """Decode every cut at every acoustic scale (one FasterDecoder pass per scale)."""
    _, kaldifst, kaldi_decoder = kaldi_wheels()

    from lm2am.gmm.viterbi import tid_matrix

    hclg, tid2pdf, words = load_gmm_graph(graph_dir, system)
    tables = _Tables(tid2pdf)
    params = system.params()
    res = GmmDecodeResult()
    decoders = {s: kaldi_decoder.FasterDecoder(hclg, kaldi_decoder.FasterDecoderOptions(beam=beam, max_active=max_active))
                for s in scales}
    for s in scales:
        res.hyps_by_scale[s], res.seconds_by_scale[s], res.partial[s] = {}, 0.0, []
    for c in cuts:
        t0 = time.time()
        f = system.transform(load_features(c))
        pll = params.pdf_loglikes(params.component_loglikes(f))
        res.likelihood_seconds += time.time() - t0
        res.audio_seconds += c.duration
        for s in scales:
            t0 = time.time()
            dec = decoders[s]
            dec.decode(kaldi_decoder.DecodableCtc(tid_matrix(pll, tables, s)))
            final = dec.reached_final()
            ok, lat = dec.get_best_path(use_final_probs=final)
            hyp: List[str] = []
            if ok:
                ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(lat)
                hyp = [words[w] for w in olabels] if ok else []
            if not final:
                res.partial[s].append(c.id)
            res.hyps_by_scale[s][c.id] = hyp
            res.seconds_by_scale[s] += time.time() - t0
    return res


def decode_and_score(cuts_path: Path, gmm_dir: Path, out: Path, cfg: GmmConfig, scales: Sequence[float],
                     graph_dir: Optional[Path] = None, set_name: str = "", use_sclite: bool = True
                     ) -> Tuple[Dict[str, object], object, GmmDecodeResult]:
    """Decode the cuts of ``cuts_path`` with the GMM system in ``gmm_dir`` at every scale of
    ``scales`` (the first is the main one), score them against the cuts' transcripts and write
    what steps/decode.py writes to ``out`` (hyp.txt, score files, decode_info.json; with more
    than one scale scales.txt, best_scale and scale_<s>/). Returns ``(decode_info, WerStats of the
    main scale, GmmDecodeResult)``."""
    from lhotse import CutSet

    from lm2am.decode.score import read_references, score_set
    from lm2am.decode.stage import score_scales
    from lm2am.io import atomic_write_text

    scale = scales[0]
    graph_dir = graph_dir or gmm_dir / "graph"
    system = GmmSystem.load(gmm_dir)
    res = decode_cuts(system, graph_dir, CutSet.from_file(cuts_path), scales, cfg.decode_beam,
                      cfg.decode_max_active)
    refs = read_references(cuts_path)
    out.mkdir(parents=True, exist_ok=True)
    hyps = res.hyps_by_scale[scale]
    atomic_write_text(out / "hyp.txt", "".join(f"{u} {' '.join(w)}".rstrip() + "\n" for u, w in sorted(hyps.items())))
    stats = score_set(refs, hyps, out, set_name, use_sclite=use_sclite)
    info: Dict[str, object] = {
        "system": "gmm_mono", "gmm_dir": str(gmm_dir), "graph": str(graph_dir),
        "decoder": "kaldi_decoder.FasterDecoder", "beam": cfg.decode_beam, "max_active": cfg.decode_max_active,
        "acoustic_scale": scale, "utterances": len(hyps), "audio_seconds": round(res.audio_seconds, 2),
        "likelihood_seconds": round(res.likelihood_seconds, 2),
        "decode_seconds": round(res.seconds_by_scale[scale], 2), "rtf": round(res.rtf(scale), 5),
        "partial": res.partial[scale], "wer": stats.summary_line()}
    if len(scales) > 1:
        info["best_scale"] = score_scales(refs, scale, stats, scales[1:], res.hyps_by_scale, out, set_name)
    atomic_write_text(out / "decode_info.json", json.dumps(info, indent=1) + "\n")
    return info, stats, res

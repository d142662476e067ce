"""Kaldi's FasterDecoder (``kaldi-decoder`` wheel) over the same HCLG as :mod:`lm2am.decode.k2`: a
second, independent decoder to cross-check lm2am's k2 decoder (issue 12).

Same contract as :func:`lm2am.decode.k2.decode`: a mapping ``utt -> [T, num_pdfs]`` log-likelihood
matrix (or ``(utt, matrix)`` pairs) in, a :class:`~lm2am.decode.result.DecodeResult` out (hyps,
word times, per-frame phones, failures, real-time factor), plus the total path cost of every best path
(:attr:`KaldiDecodeResult.costs`), so the two decoders' choices can be compared under one scale.

The graph (two sources, both the graph dir of :func:`lm2am.graph.hclg.make_graph`):

* ``source="fst"`` (default): ``HCLG.fst``, the OpenFst graph that ``HCLG.pt`` was derived from
  (input = Kaldi transition-id, 0 = epsilon; output = word id). The decodable is Kaldi's
  ``decode-faster-mapped`` mapping done once per utterance in numpy: column ``tid - 1`` of the
  matrix handed to ``DecodableCtc`` (which answers ``log_likelihood(t, i)`` with
  ``matrix[t, i - 1]``: transition-ids are 1-based) holds ``scale * loglike[t, tid2pdf[tid]]``.
* ``source="k2"``: ``HCLG.pt`` itself, the very FSA the k2 decoder searches (labels ``pdf + 1``,
  epsilon-free), converted to OpenFst with ``k2.to_str(openfst=True)`` + ``kaldifst.compile``;
  then the decodable is simply ``scale * loglike`` (column ``label - 1`` = pdf). No word times
  (the OpenFst copy drops the arcs' transition-ids).

Search settings come from :class:`~lm2am.decode.config.DecodeConfig`: ``search_beam`` is Kaldi's
``--beam``, ``min/max_active_states`` its ``--min-active/--max-active``; frames of a subsampling
AM are repeated exactly as in the k2 decoder. Where Kaldi would print "did not reach a final
state" and output a partial traceback, this module behaves like the k2 decoder instead (retry
with wider beams, then an empty hypothesis listed in ``failed``), so failures compare one to one.
Costs are Kaldi's: graph cost + acoustic cost, with acoustic cost = ``-scale * loglike`` summed
over the path; :func:`lm2am.decode.compare.k2_best_path_costs` gives the k2 decoder's best-path
cost in the same units. Progress: a tqdm bar over the utterances (on a terminal only).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from lm2am.decode.config import DecodeConfig
from lm2am.decode.result import DecodeResult, Matrix, check_loglikes, expand_frames, iter_items, word_alignment
from lm2am.errors import Lm2amError
from lm2am.graph.load import DecodingGraph, load_graph
from lm2am.kaldi import kaldi_wheels

log = logging.getLogger(__name__)

__all__ = ["KaldiGraph", "KaldiDecodeResult", "load_kaldi_graph", "decode"]


@dataclass
class KaldiGraph:
    """An OpenFst HCLG for Kaldi's decoder plus the k2 graph's tables (words, phones, lexicon).

    Attributes:
        fst: ``kaldifst.StdVectorFst``.
        columns: ``None`` when the FST's input labels are ``pdf + 1`` (source "k2"); else an int
            array ``c`` with ``decodable[:, i] = loglike[:, c[i]]`` for input label ``i + 1``
            (source "fst": ``c = tid2pdf[1:]``).
        tables: the :class:`~lm2am.graph.load.DecodingGraph` of the same dir (words, num_pdfs,
            tid2phone, lexicon) for output words and word times.
        source: "fst" or "k2".
    """

    fst: object
    columns: Optional[np.ndarray]
    tables: DecodingGraph
    source: str

    @property
    def num_pdfs(self) -> int:
        return self.tables.num_pdfs


def _k2_to_openfst(fsa):
    """The k2 decoding graph (labels ``pdf + 1``, ragged word aux_labels) as a kaldifst FST."""
    import k2
    import torch

    _, kaldifst, _ = kaldi_wheels()
    aux = fsa.aux_labels
    if isinstance(aux, k2.RaggedTensor):  # 0 or 1 word per arc after epsilon removal
        aux = aux.pad(mode="constant", padding_value=0)
        aux = aux[:, 0] if aux.numel() else torch.zeros(fsa.num_arcs, dtype=torch.int32)
    aux = torch.where(fsa.labels == -1, torch.full_like(aux, -1), aux)  # final arcs: -1 as k2 wants
    out = k2.Fsa(fsa.arcs.values().clone(), aux_labels=aux.to(torch.int32))
    return kaldifst.compile(s=k2.to_str(out, openfst=True), acceptor=False)


def load_kaldi_graph(graph_dir: Union[Path, str], source: str = "fst") -> KaldiGraph:
    """Load a graph dir of :func:`lm2am.graph.hclg.make_graph` for :func:`decode` (see the module
    docstring for ``source``)."""
    _, kaldifst, _ = kaldi_wheels()
    graph_dir = Path(graph_dir)
    tables = load_graph(graph_dir)
    if source == "fst":
        path, tid2pdf = graph_dir / "HCLG.fst", graph_dir / "tid2pdf.npy"
        for f in (path, tid2pdf):
            if not f.is_file():
                raise Lm2amError(f"{f} does not exist; rebuild the graph (steps/make_graph.py) or use the "
                                 "k2 graph as source (--kaldi-graph k2)")
        fst = kaldifst.StdVectorFst.read(str(path))
        columns = np.load(tid2pdf).astype(np.int64)[1:]
        if columns.size and columns.max() >= tables.num_pdfs:
            raise Lm2amError(f"{tid2pdf}: pdf ids up to {columns.max()} but the graph has {tables.num_pdfs} pdfs; "
                             "rebuild the graph")
    elif source == "k2":
        fst, columns = _k2_to_openfst(tables.fsa), None
    else:
        raise Lm2amError(f"Kaldi graph source {source!r}: use 'fst' (HCLG.fst) or 'k2' (HCLG.pt)")
    return KaldiGraph(fst=fst, columns=columns, tables=tables, source=source)


@dataclass
class KaldiDecodeResult(DecodeResult):
    """:class:`~lm2am.decode.result.DecodeResult` plus ``costs``: utterance -> total cost of its best
    path at ``cfg.acoustic_scale`` (graph cost - scaled log-likelihood; lower is better)."""

    costs: Dict[str, float] = field(default_factory=dict)


def _decodable_matrix(m: np.ndarray, graph: KaldiGraph, scale: float) -> np.ndarray:
    """The scaled matrix handed to ``DecodableCtc`` (columns mapped for source "fst")."""
    x = m if graph.columns is None else m[:, graph.columns]
    return np.ascontiguousarray(x * scale, dtype=np.float32)


def _one_best(decoder, kaldifst, kd, mat: np.ndarray):
    """(reached_final, input labels, word ids, cost) of one utterance."""
    decoder.decode(kd.DecodableCtc(mat))
    if not decoder.reached_final():
        return False, [], [], float("inf")
    ok, lat = decoder.get_best_path()
    if not ok:
        return False, [], [], float("inf")
    ok, ilabels, olabels, w = kaldifst.get_linear_symbol_sequence(lat)
    if not ok:
        raise RuntimeError("Kaldi's best path is not linear")
    return True, list(ilabels), [o for o in olabels if o > 0], float(w.value1 + w.value2)


class _Decoders:
    """Kaldi FasterDecoders over one graph, one per beam factor (made on first use)."""

    def __init__(self, kd, fst, cfg: DecodeConfig):
        self.kd, self.fst, self.cfg = kd, fst, cfg
        self.by_factor: Dict[float, object] = {}
        self(1.0)

    def __call__(self, f: float):
        if f not in self.by_factor:
            cfg = self.cfg
            options = self.kd.FasterDecoderOptions(beam=cfg.search_beam * f, max_active=int(cfg.max_active_states * f),
                                                   min_active=cfg.min_active_states)
            self.by_factor[f] = self.kd.FasterDecoder(self.fst, options)
        return self.by_factor[f]


def _search(decoders: _Decoders, kaldifst, kd, mat: np.ndarray, cfg: DecodeConfig, utt: str):
    """``(one-best, beam factor)`` of one utterance, retried with wider beams when no final state
    is reached (the factor ends one step past the last try when all failed)."""
    f, found = 1.0, None
    for attempt in range(cfg.max_retries + 1):
        found = _one_best(decoders(f), kaldifst, kd, mat)
        if found[0]:
            break
        if attempt < cfg.max_retries:
            log.warning("utterance %s: Kaldi decoder reached no final state (beam %.1f); retrying with "
                        "beam %.1f", utt, cfg.search_beam * f, cfg.search_beam * f * cfg.retry_beam_factor)
        f *= cfg.retry_beam_factor
    return found, f


def _keep(res: "KaldiDecodeResult", utt: str, scale: float, found, f: float, graph: KaldiGraph,
          cfg: DecodeConfig, word_times: bool) -> None:
    """Store one utterance's one-best at ``scale`` (costs, failures and word times at the main scale)."""
    tb = graph.tables
    ok, ilabels, wids, cost = found
    words = [tb.words[w] for w in wids]
    res.hyps_by_scale[scale][utt] = words
    if scale != cfg.acoustic_scale:
        return
    res.hyps[utt] = words
    if not ok:
        log.warning("utterance %s: no final state even with beam %.1f; empty hypothesis", utt,
                    cfg.search_beam * f / cfg.retry_beam_factor)
        res.failed.append(utt)
        return
    res.costs[utt] = cost
    if word_times and graph.source == "fst":
        tids = np.asarray([i for i in ilabels if i > 0], np.int64)  # one per frame
        if tb.tid2phone is not None and tids.size:
            res.frame_phones[utt] = tb.tid2phone[tids]
        wt = word_alignment(words, tids, tb, cfg.frame_shift)
        if wt is not None:
            res.word_times[utt] = wt


def decode(log_likes: Union[Mapping[str, Matrix], Iterable[Tuple[str, Matrix]]], graph: KaldiGraph,
           cfg: Optional[DecodeConfig] = None, device: str = "cpu", extra_scales: Sequence[float] = (),
           word_times: bool = True) -> KaldiDecodeResult:
    """Decode every utterance with Kaldi's FasterDecoder; arguments and result as
    :func:`lm2am.decode.k2.decode` (``device`` must be "cpu": Kaldi's decoder runs on CPU).

    ``extra_scales``: FasterDecoder keeps no lattice, so every extra acoustic scale is a full
    re-decode (counted in the real-time factor, as the k2 decoder counts its rescoring).
    """
    _, kaldifst, kd = kaldi_wheels()
    cfg = cfg or DecodeConfig()
    if not str(device).startswith("cpu"):
        raise Lm2amError(f"--device {device}: Kaldi's decoder runs on CPU only; use --device cpu")
    scales = [cfg.acoustic_scale] + [float(s) for s in extra_scales if float(s) != cfg.acoustic_scale]
    res = KaldiDecodeResult(hyps_by_scale={s: {} for s in scales})
    t_start = time.time()
    n_utts = 0
    decoders = _Decoders(kd, graph.fst, cfg)
    total = len(log_likes) if isinstance(log_likes, Mapping) else None
    with tqdm(total=total, desc="Kaldi decode", unit="utt", disable=None, mininterval=2) as bar:
        for utt, m in iter_items(log_likes):
            m = np.asarray(m.detach().cpu().numpy() if hasattr(m, "detach") else m, dtype=np.float32)
            check_loglikes(utt, m, graph.num_pdfs)
            m = expand_frames(m, cfg.subsampling_factor)
            res.audio_seconds += m.shape[0] * cfg.frame_shift
            n_utts += 1
            for s in scales:
                found, f = _search(decoders, kaldifst, kd, _decodable_matrix(m, graph, s), cfg, utt)
                _keep(res, utt, s, found, f, graph, cfg, word_times)
            bar.update(1)
    res.decode_seconds = time.time() - t_start
    log.info("Kaldi FasterDecoder: %d utterances (%.1f s of audio) in %.1f s: real-time factor %.4f%s", n_utts,
             res.audio_seconds, res.decode_seconds, res.rtf, res.failed_note())
    return res

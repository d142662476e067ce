"""Kaldi's FasterDecoder (``kaldi-decoder`` wheel) over the same HCLG as :mod:`lm2am.decode`: a
second, independent decoder to cross-check lm2am's k2 decoder (issue 12).

Same contract as :func:`lm2am.decode.decode`: a mapping ``utt -> [T, num_pdfs]`` log-likelihood
matrix (or ``(utt, matrix)`` pairs) in, a :class:`~lm2am.decode.DecodeResult` out (hyps, word
times, per-frame phones, failures, real-time factor), plus the total path cost of every best path
(:attr:`KaldiDecodeResult.costs`), so the two decoders' choices can be compared under one scale.

The graph (two sources, both the graph dir of :func:`lm2am.graph.make_graph`):

* ``source="fst"`` (default): ``HCLG.fst``, the OpenFst graph that ``HCLG.pt`` was derived from
  (input = Kaldi transition-id, 0 = epsilon; output = word id). The decodable is Kaldi's
  ``decode-faster-mapped`` mapping done once per utterance in numpy: column ``tid - 1`` of the
  matrix handed to ``DecodableCtc`` (which answers ``log_likelihood(t, i)`` with
  ``matrix[t, i - 1]``, docs/platform.md) holds ``scale * loglike[t, tid2pdf[tid]]``.
* ``source="k2"``: ``HCLG.pt`` itself, the very FSA the k2 decoder searches (labels ``pdf + 1``,
  epsilon-free), converted to OpenFst with ``k2.to_str(openfst=True)`` + ``kaldifst.compile``;
  then the decodable is simply ``scale * loglike`` (column ``label - 1`` = pdf). No word times
  (the OpenFst copy drops the arcs' transition-ids).

Search settings come from :class:`~lm2am.decode.DecodeConfig`: ``search_beam`` is Kaldi's
``--beam``, ``min/max_active_states`` its ``--min-active/--max-active``; frames of a subsampling
AM are repeated exactly as in the k2 decoder. Where Kaldi would print "did not reach a final
state" and output a partial traceback, this module behaves like the k2 decoder instead (retry
with wider beams, then an empty hypothesis listed in ``failed``), so failures compare one to one.
Costs are Kaldi's: graph cost + acoustic cost, with acoustic cost = ``-scale * loglike`` summed
over the path; :func:`k2_best_path_costs` gives the k2 decoder's best-path cost in the same units.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from lm2am.decode import DecodeConfig, DecodeResult, Matrix, _items, expand_frames, word_alignment
from lm2am.errors import Lm2amError
from lm2am.graph import DecodingGraph, kaldi_wheels, load_graph

log = logging.getLogger(__name__)

__all__ = ["KaldiGraph", "KaldiDecodeResult", "load_kaldi_graph", "decode", "k2_best_path_costs", "Comparison",
           "compare_decoders"]


def _kaldi():
    """kaldifst and kaldi_decoder (imported after kaldi_hmm_gmm: lm2am.graph.kaldi_wheels)."""
    return kaldi_wheels()[1:]


@dataclass
class KaldiGraph:
    """An OpenFst HCLG for Kaldi's decoder plus the k2 graph's tables (words, phones, lexicon).

    Attributes:
        fst: ``kaldifst.StdVectorFst``.
        columns: ``None`` when the FST's input labels are ``pdf + 1`` (source "k2"); else an int
            array ``c`` with ``decodable[:, i] = loglike[:, c[i]]`` for input label ``i + 1``
            (source "fst": ``c = tid2pdf[1:]``).
        tables: the :class:`~lm2am.graph.DecodingGraph` of the same dir (words, num_pdfs,
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

    kaldifst, _ = _kaldi()
    aux = fsa.aux_labels
    if isinstance(aux, k2.RaggedTensor):  # 0 or 1 word per arc after epsilon removal
        aux = aux.pad(mode="constant", padding_value=0)
        aux = aux[:, 0] if aux.numel() else torch.zeros(fsa.num_arcs, dtype=torch.int32)
    aux = torch.where(fsa.labels == -1, torch.full_like(aux, -1), aux)  # final arcs: -1 as k2 wants
    out = k2.Fsa(fsa.arcs.values().clone(), aux_labels=aux.to(torch.int32))
    return kaldifst.compile(s=k2.to_str(out, openfst=True), acceptor=False)


def load_kaldi_graph(graph_dir: Union[Path, str], source: str = "fst") -> KaldiGraph:
    """Load a graph dir of :func:`lm2am.graph.make_graph` for :func:`decode` (see the module
    docstring for ``source``)."""
    kaldifst, _ = _kaldi()
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
    """:class:`~lm2am.decode.DecodeResult` plus ``costs``: utterance -> total cost of its best
    path at ``cfg.acoustic_scale`` (graph cost - scaled log-likelihood; lower is better)."""

    costs: Dict[str, float] = field(default_factory=dict)


def _decodable_matrix(m: np.ndarray, graph: KaldiGraph, scale: float) -> np.ndarray:
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


def decode(log_likes: Union[Mapping[str, Matrix], Iterable[Tuple[str, Matrix]]], graph: KaldiGraph,
           cfg: Optional[DecodeConfig] = None, device: str = "cpu", extra_scales: Sequence[float] = (),
           word_times: bool = True) -> KaldiDecodeResult:
    """Decode every utterance with Kaldi's FasterDecoder; arguments and result as
    :func:`lm2am.decode.decode` (``device`` must be "cpu": Kaldi's decoder runs on CPU).

    ``extra_scales``: FasterDecoder keeps no lattice, so every extra acoustic scale is a full
    re-decode (counted in the real-time factor, as the k2 decoder counts its rescoring).
    """
    kaldifst, kd = _kaldi()
    cfg = cfg or DecodeConfig()
    if not str(device).startswith("cpu"):
        raise Lm2amError(f"--device {device}: Kaldi's decoder runs on CPU only; use --device cpu")
    tb = graph.tables
    scales = [cfg.acoustic_scale] + [float(s) for s in extra_scales if float(s) != cfg.acoustic_scale]
    res = KaldiDecodeResult(hyps_by_scale={s: {} for s in scales})
    t_start = time.time()
    n_utts = 0

    def options(f: float):
        return kd.FasterDecoderOptions(beam=cfg.search_beam * f, max_active=int(cfg.max_active_states * f),
                                       min_active=cfg.min_active_states)

    decoders = {1.0: kd.FasterDecoder(graph.fst, options(1.0))}

    def decoder(f: float):
        if f not in decoders:
            decoders[f] = kd.FasterDecoder(graph.fst, options(f))
        return decoders[f]

    for utt, m in _items(log_likes):
        m = np.asarray(m.detach().cpu().numpy() if hasattr(m, "detach") else m, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != graph.num_pdfs:
            raise Lm2amError(f"utterance {utt}: log-likelihoods have shape {tuple(m.shape)} but the graph expects "
                             f"[frames, {graph.num_pdfs}] (its tree's senone count); use the AM trained with this tree")
        if not np.isfinite(m).all():
            raise Lm2amError(f"utterance {utt}: log-likelihoods contain NaN or inf; check the AM output")
        m = expand_frames(m, cfg.subsampling_factor)
        res.audio_seconds += m.shape[0] * cfg.frame_shift
        n_utts += 1
        for s in scales:
            mat = _decodable_matrix(m, graph, s)
            f, found = 1.0, None
            for attempt in range(cfg.max_retries + 1):
                found = _one_best(decoder(f), kaldifst, kd, mat)
                if found[0]:
                    break
                if attempt < cfg.max_retries:
                    log.warning("utterance %s: Kaldi decoder reached no final state (beam %.1f); retrying with "
                                "beam %.1f", utt, cfg.search_beam * f, cfg.search_beam * f * cfg.retry_beam_factor)
                f *= cfg.retry_beam_factor
            ok, ilabels, wids, cost = found
            words = [tb.words[w] for w in wids]
            res.hyps_by_scale[s][utt] = words
            if s != cfg.acoustic_scale:
                continue
            res.hyps[utt] = words
            if not ok:
                log.warning("utterance %s: no final state even with beam %.1f; empty hypothesis", utt,
                            cfg.search_beam * f / cfg.retry_beam_factor)
                res.failed.append(utt)
                continue
            res.costs[utt] = cost
            if word_times and graph.source == "fst":
                tids = np.asarray([i for i in ilabels if i > 0], np.int64)  # one per frame
                if tb.tid2phone is not None and tids.size:
                    res.frame_phones[utt] = tb.tid2phone[tids]
                wt = word_alignment(words, tids, tb, cfg.frame_shift)
                if wt is not None:
                    res.word_times[utt] = wt
    res.decode_seconds = time.time() - t_start
    log.info("Kaldi FasterDecoder: %d utterances (%.1f s of audio) in %.1f s: real-time factor %.4f%s", n_utts,
             res.audio_seconds, res.decode_seconds, res.rtf,
             f"; {len(res.failed)} failed (empty hypotheses): {', '.join(res.failed[:5])}" if res.failed else "")
    return res


def k2_best_path_costs(log_likes: Mapping[str, Matrix], graph: DecodingGraph,
                       cfg: Optional[DecodeConfig] = None) -> Dict[str, float]:
    """The k2 decoder's best-path cost per utterance (``-`` total score of k2's shortest path
    through the pruned lattice, i.e. graph cost - scaled log-likelihood, the units of
    :attr:`KaldiDecodeResult.costs`); ``inf`` where the lattice is empty. One utterance at a time,
    with the beams of ``cfg`` (meant for the few utterances where the two decoders differ)."""
    import k2
    import torch

    from lm2am.decode import _Beams, _intersect

    cfg = cfg or DecodeConfig()
    fsa = graph.fsa
    beams = _Beams(cfg.search_beam, cfg.output_beam, cfg.min_active_states, cfg.max_active_states)
    out: Dict[str, float] = {}
    for utt, m in log_likes.items():
        t = expand_frames(torch.as_tensor(np.asarray(m, np.float32)), cfg.subsampling_factor)
        lat = _intersect(graph, [t], cfg.acoustic_scale, beams, fsa.device)
        best = k2.shortest_path(lat, use_double_scores=True)
        if best.num_arcs == 0:
            out[utt] = float("inf")
            continue
        out[utt] = -float(best.get_tot_scores(use_double_scores=True, log_semiring=False)[0])
    return out


# ----------------------------------------------------------------------------- comparison
@dataclass
class Comparison:
    """Both decoders on one set (:func:`compare_decoders`).

    Attributes:
        k2, kaldi: the two decode results (``kaldi`` also holds its path costs).
        identical: utterances with the same word sequence from both.
        wer_k2, wer_kaldi: WER in percent (None without references), with their summary lines.
        diffs: per differing utterance: both hypotheses, k2's and Kaldi's best-path cost, the cost of
            a wide-beam Kaldi search (the reference best path) and a verdict.
    """

    k2: DecodeResult
    kaldi: KaldiDecodeResult
    identical: List[str]
    utts: List[str]
    wer_k2: Optional[float] = None
    wer_kaldi: Optional[float] = None
    wer_lines: Dict[str, str] = field(default_factory=dict)
    diffs: List[Dict[str, object]] = field(default_factory=list)
    wide_factor: float = 4.0

    @property
    def identical_share(self) -> float:
        return len(self.identical) / len(self.utts) if self.utts else 1.0

    def markdown(self, title: str = "k2 vs Kaldi decoder") -> str:
        """The report: a table of WER / RTF / identical share, then the differing utterances."""
        def wer(v: Optional[float]) -> str:
            return "-" if v is None else f"{v:.2f}"

        ratio = self.kaldi.rtf / self.k2.rtf if self.k2.rtf > 0 else float("nan")
        lines = [f"## {title}", "",
                 f"{len(self.utts)} utterances, {self.k2.audio_seconds:.1f} s of audio; "
                 f"identical output: {len(self.identical)}/{len(self.utts)} = {100 * self.identical_share:.1f} %; "
                 f"Kaldi/k2 decoding-time ratio {ratio:.2f}", "",
                 "| decoder | WER % | RTF | failed |", "|---|---|---|---|",
                 f"| k2 (intersect_dense_pruned) | {wer(self.wer_k2)} | {self.k2.rtf:.4f} | {len(self.k2.failed)} |",
                 f"| Kaldi FasterDecoder | {wer(self.wer_kaldi)} | {self.kaldi.rtf:.4f} | {len(self.kaldi.failed)} |",
                 ""]
        if self.wer_lines:
            lines += [f"- {k}: `{v}`" for k, v in self.wer_lines.items()] + [""]
        if self.diffs:
            lines += [f"Differing utterances (cost = graph cost - scaled log-likelihood, lower is better; "
                      f"'wide' = Kaldi with {self.wide_factor:g}x beam and active states):", "",
                      "| utt | k2 hyp | Kaldi hyp | k2 cost | Kaldi cost | wide cost | verdict |",
                      "|---|---|---|---|---|---|---|"]
            for d in self.diffs:
                lines.append(f"| {d['utt']} | {' '.join(d['k2_hyp'])} | {' '.join(d['kaldi_hyp'])} | "
                             f"{d['k2_cost']:.3f} | {d['kaldi_cost']:.3f} | {d['wide_cost']:.3f} | {d['verdict']} |")
        else:
            lines.append("No differing utterances.")
        return "\n".join(lines) + "\n"


def _verdict(c_k2: float, c_kaldi: float, c_wide: float, tol: float) -> str:
    """Why two outputs differ, judged on path costs. Neither decoder can beat a search that is
    only wider (same graph, same scores) by more than rounding, so that case is a bug."""
    if min(c_k2, c_kaldi) < c_wide - tol:
        return "SUSPECT: a path cheaper than the wide search (graphs or scores differ)"
    if abs(c_k2 - c_kaldi) <= tol:
        return "tie (equal cost, different words)"
    worse = "k2" if c_k2 > c_kaldi else "Kaldi"
    if abs(min(c_k2, c_kaldi) - c_wide) <= tol:
        return f"beam: {worse} missed the best path"
    return "beam: both missed the best path"


def compare_decoders(log_likes: Mapping[str, Matrix], graph_dir: Union[Path, str], cfg: Optional[DecodeConfig] = None,
                     refs: Optional[Mapping[str, Sequence[str]]] = None, kaldi_source: str = "fst",
                     wide_factor: float = 4.0, tol: float = 1e-2) -> Comparison:
    """Decode ``log_likes`` (held in memory) with the k2 decoder and Kaldi's FasterDecoder over the
    graph in ``graph_dir`` and compare: WER (with ``refs``), RTF, identical outputs; for each
    differing utterance the costs of both best paths and of a wider Kaldi search, and a verdict."""
    from lm2am.decode import decode as k2_decode
    from lm2am.score import compute_wer

    cfg = cfg or DecodeConfig()
    kg = load_kaldi_graph(graph_dir, kaldi_source)  # first: imports kaldi_hmm_gmm before anything else
    graph = load_graph(graph_dir)
    utts = sorted(log_likes)
    r_k2 = k2_decode({u: log_likes[u] for u in utts}, graph, cfg, word_times=False)
    r_kaldi = decode({u: log_likes[u] for u in utts}, kg, cfg, word_times=False)
    same = [u for u in utts if r_k2.hyps.get(u) == r_kaldi.hyps.get(u)]
    cmp = Comparison(k2=r_k2, kaldi=r_kaldi, identical=same, utts=utts, wide_factor=wide_factor)
    if refs is not None:
        for name, r in (("k2", r_k2), ("kaldi", r_kaldi)):
            st = compute_wer({u: refs[u] for u in utts if u in refs}, r.hyps)
            setattr(cmp, f"wer_{name}", st.wer)
            cmp.wer_lines[name] = st.summary_line()
    differ = {u: log_likes[u] for u in utts if u not in set(same)}
    if differ:
        c_k2 = k2_best_path_costs(differ, graph, cfg)
        wide_cfg = DecodeConfig(**{**cfg.__dict__, "search_beam": cfg.search_beam * wide_factor,
                                   "max_active_states": int(cfg.max_active_states * wide_factor)})
        wide = decode(differ, kg, wide_cfg, word_times=False)
        for u in differ:
            ck, ca = c_k2[u], r_kaldi.costs.get(u, float("inf"))
            cw = wide.costs.get(u, float("inf"))
            cmp.diffs.append({"utt": u, "k2_hyp": r_k2.hyps.get(u, []), "kaldi_hyp": r_kaldi.hyps.get(u, []),
                              "k2_cost": ck, "kaldi_cost": ca, "wide_cost": cw, "wide_hyp": wide.hyps.get(u, []),
                              "verdict": _verdict(ck, ca, cw, tol)})
    return cmp

"""k2 vs Kaldi decoder on one set (issue 12): WER, real-time factor, identical outputs, and for
every utterance where they differ the costs of both best paths and of a wider Kaldi search, with
a verdict (a tie, a beam error of one decoder, or a suspect difference in graphs or scores)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from lm2am.decode.config import DecodeConfig
from lm2am.decode.k2 import decode as k2_decode
from lm2am.decode.k2 import intersect
from lm2am.decode.kaldi import KaldiDecodeResult, load_kaldi_graph
from lm2am.decode.kaldi import decode as kaldi_decode
from lm2am.decode.result import DecodeResult, Matrix, expand_frames
from lm2am.decode.score import compute_wer
from lm2am.graph.load import DecodingGraph, load_graph

__all__ = ["k2_best_path_costs", "Comparison", "compare_decoders", "verdict", "compare_set"]


def k2_best_path_costs(log_likes: Mapping[str, Matrix], graph: DecodingGraph,
                       cfg: Optional[DecodeConfig] = None) -> Dict[str, float]:
    """The k2 decoder's best-path cost per utterance (``-`` total score of k2's shortest path
    through the pruned lattice, i.e. graph cost - scaled log-likelihood, the units of
    :attr:`KaldiDecodeResult.costs`); ``inf`` where the lattice is empty. One utterance at a time,
    with the beams of ``cfg`` (meant for the few utterances where the two decoders differ)."""
    import k2
    import torch

    cfg = cfg or DecodeConfig()
    fsa = graph.fsa
    beams = cfg.beams()
    out: Dict[str, float] = {}
    for utt, m in log_likes.items():
        t = expand_frames(torch.as_tensor(np.asarray(m, np.float32)), cfg.subsampling_factor)
        lat = intersect(graph, [t], cfg.acoustic_scale, beams, fsa.device)
        best = k2.shortest_path(lat, use_double_scores=True)
        if best.num_arcs == 0:
            out[utt] = float("inf")
            continue
        out[utt] = -float(best.get_tot_scores(use_double_scores=True, log_semiring=False)[0])
    return out


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


def verdict(c_k2: float, c_kaldi: float, c_wide: float, tol: float) -> str:
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
    cfg = cfg or DecodeConfig()
    kg = load_kaldi_graph(graph_dir, kaldi_source)  # first: imports kaldi_hmm_gmm before anything else
    graph = load_graph(graph_dir)
    utts = sorted(log_likes)
    r_k2 = k2_decode({u: log_likes[u] for u in utts}, graph, cfg, word_times=False)
    r_kaldi = kaldi_decode({u: log_likes[u] for u in utts}, kg, cfg, word_times=False)
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
        wide = kaldi_decode(differ, kg, wide_cfg, word_times=False)
        for u in differ:
            ck, ca = c_k2[u], r_kaldi.costs.get(u, float("inf"))
            cw = wide.costs.get(u, float("inf"))
            cmp.diffs.append({"utt": u, "k2_hyp": r_k2.hyps.get(u, []), "kaldi_hyp": r_kaldi.hyps.get(u, []),
                              "k2_cost": ck, "kaldi_cost": ca, "wide_cost": cw, "wide_hyp": wide.hyps.get(u, []),
                              "verdict": verdict(ck, ca, cw, tol)})
    return cmp


def compare_set(loglikes_scp: Path, graph_dir: Path, out_dir: Path, cfg: DecodeConfig, *,
                log_priors: Optional[Path] = None, ref: Optional[Path] = None, kaldi_source: str = "fst",
                wide_factor: float = 4.0, title: str = "k2 vs Kaldi decoder") -> str:
    """The cross-check of steps/compare_decoders.py on one set's log-likelihood scp (minus
    ``log_priors``): writes ``out_dir/compare_decoders.{md,json}``, returns the markdown."""
    import json

    from lm2am.am.priors import read_log_priors
    from lm2am.decode.score import read_references
    from lm2am.decode.stage import check_loglikes_scp, read_loglikes
    from lm2am.errors import Lm2amError
    from lm2am.io import write_if_changed

    check_loglikes_scp(loglikes_scp)
    refs = read_references(ref) if ref else None
    priors = None
    if log_priors:
        if not log_priors.is_file():
            raise Lm2amError(f"--log-priors {log_priors} does not exist")
        priors = np.asarray(read_log_priors(log_priors), np.float32).reshape(-1)
    mats = dict(read_loglikes(loglikes_scp, priors, log_priors))
    cmp = compare_decoders(mats, graph_dir, cfg, refs, kaldi_source=kaldi_source, wide_factor=wide_factor)
    md = cmp.markdown(title)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_if_changed(out_dir / "compare_decoders.md", md)
    info = {"graph": str(graph_dir), "loglikes": str(loglikes_scp), "acoustic_scale": cfg.acoustic_scale,
            "search_beam": cfg.search_beam, "max_active_states": cfg.max_active_states,
            "kaldi_graph": kaldi_source, "utterances": len(cmp.utts),
            "identical_share": round(cmp.identical_share, 4), "wer_k2": cmp.wer_k2, "wer_kaldi": cmp.wer_kaldi,
            "rtf_k2": round(cmp.k2.rtf, 5), "rtf_kaldi": round(cmp.kaldi.rtf, 5),
            "failed_k2": cmp.k2.failed, "failed_kaldi": cmp.kaldi.failed, "diffs": cmp.diffs}
    write_if_changed(out_dir / "compare_decoders.json", json.dumps(info, indent=1, default=float) + "\n")
    return md

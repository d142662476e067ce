"""The decoding stage behind ``steps/decode.py``, ``steps/compare_decoders.py`` and
``steps/decode_gmm.py``: the ``decode:`` options with command-line overrides, log-likelihoods
from a kaldiio scp (priors subtracted), the output files of one decoded set and the
acoustic-scale sweep. The Kaldi wheels must already be imported (:func:`lm2am.kaldi.kaldi_wheels`)
before ``decoder="kaldi"`` is used.

Sharded decoding (``--nj``): :func:`decode_job` decodes the ``job``-th contiguous slice of the
set's sorted utterances and keeps its one-best paths (every scale) in ``jobs/decode.<job>.pkl``;
:func:`merge_jobs` joins the slices and writes and scores the set exactly as :func:`decode_set`
does in one process (each utterance's search does not depend on the others in its batch).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from lm2am.config import load_section, to_dict
from lm2am.decode.config import DecodeConfig
from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text

__all__ = ["decode_config", "parse_scales", "check_loglikes_scp", "read_loglikes", "score_scales",
           "write_phone_alignment", "decode_set", "decode_job", "merge_jobs"]


def decode_config(config: Optional[Path], overrides: Mapping[str, Any]) -> DecodeConfig:
    """Section ``decode`` of ``config`` (defaults without one), with the command-line values of
    ``overrides`` that are not None, re-checked."""
    cfg = load_section(config, "decode", DecodeConfig) if config else DecodeConfig()
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    try:
        cfg.__post_init__()
    except ValueError as e:
        raise Lm2amError(str(e)) from None
    return cfg


def parse_scales(text: Optional[str]) -> List[float]:
    """The ``--scales`` option: comma-separated acoustic scales (empty without one)."""
    try:
        return [float(x) for x in text.split(",") if x] if text else []
    except ValueError:
        raise Lm2amError(f"--scales {text!r}: expected comma-separated numbers") from None


def check_loglikes_scp(path: Path) -> None:
    """The log-likelihood scp must exist."""
    if not path.is_file():
        raise Lm2amError(f"{path} does not exist; compute the AM's log-likelihoods first")


def read_loglikes(scp_path: Path, priors: Optional[np.ndarray] = None,
                  priors_path: Optional[Path] = None,
                  utts: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """``(utt, float32 matrix)`` of a kaldiio scp in sorted order (only ``utts``, in their order,
    if given), minus ``priors`` if given (read lazily; ``priors_path`` names them in the size
    error)."""
    import kaldiio

    scp = kaldiio.load_scp(str(scp_path))
    for utt in sorted(scp.keys()) if utts is None else utts:
        m = np.array(scp[utt], np.float32)  # a writable copy (torch warns on read-only arrays)
        if priors is not None:
            if priors.size != m.shape[1]:
                raise Lm2amError(f"{priors_path} has {priors.size} priors but {utt} has {m.shape[1]} columns")
            m = m - priors
        yield utt, m


def score_scales(refs: Mapping[str, Sequence[str]], scale: float, stats: Any, scales: Sequence[float],
                 hyps_by_scale: Mapping[float, Mapping[str, Sequence[str]]], out: Path, set_name: str) -> float:
    """Score every other scale of ``scales`` under ``out/scale_<s>/`` (``stats``: the scores of
    ``scale``), write ``scales.txt`` and ``best_scale``; return the best scale."""
    from lm2am.decode.score import best_scale, score_set

    by_scale = {scale: stats}
    for s in scales:
        if s != scale:
            by_scale[s] = score_set(refs, hyps_by_scale[s], out / f"scale_{s:g}", set_name, use_sclite=False)
    best = best_scale(by_scale)
    atomic_write_text(out / "scales.txt", "".join(f"{s:g} {by_scale[s].summary_line()}\n" for s in sorted(by_scale)))
    atomic_write_text(out / "best_scale", f"{best:g}\n")
    logging.info("%s: best acoustic scale %g: %s", set_name, best, by_scale[best].summary_line())
    return best


def write_phone_alignment(frame_phones: Mapping[str, np.ndarray], phones: Sequence[str], path: Path) -> None:
    """``ali_phones.txt``: per utterance ``utt PHONE LEN ; PHONE LEN ; ...``."""
    lines = []
    for u in sorted(frame_phones):
        ph = frame_phones[u]
        cut = np.flatnonzero(np.r_[True, ph[1:] != ph[:-1]])
        lens = np.diff(np.r_[cut, ph.size])
        lines.append(u + " " + " ; ".join(f"{phones[ph[c]]} {n}" for c, n in zip(cut, lens)) + "\n")
    atomic_write_text(path, "".join(lines))


def _load_decoder(graph_dir: Path, decoder: str, kaldi_graph: str, device: str):
    """``(decode function, graph it takes, the DecodingGraph)`` of the k2 or the Kaldi decoder."""
    if decoder == "kaldi":
        from lm2am.decode.kaldi import decode, load_kaldi_graph

        kg = load_kaldi_graph(graph_dir, kaldi_graph)
        return decode, kg, kg.tables
    from lm2am.decode.k2 import decode
    from lm2am.graph import load_graph

    graph = load_graph(graph_dir, device)
    return decode, graph, graph


def _decode(loglikes_scp: Path, graph_dir: Path, cfg: DecodeConfig, decoder: str, kaldi_graph: str,
            device: str, log_priors: Optional[Path], scales: Sequence[float],
            utts: Optional[Sequence[str]] = None):
    """``(DecodeResult, DecodingGraph)``: the utterances of the scp (or ``utts``) decoded."""
    from lm2am.am.priors import read_log_priors

    check_loglikes_scp(loglikes_scp)
    decode, dec_graph, graph = _load_decoder(graph_dir, decoder, kaldi_graph, device)
    priors = read_log_priors(log_priors) if log_priors else None
    if priors is not None and priors.size != graph.num_pdfs:
        raise Lm2amError(f"{log_priors} has {priors.size} priors but the graph {graph.num_pdfs} pdfs")
    res = decode(read_loglikes(loglikes_scp, priors, log_priors, utts), dec_graph, cfg, device=device,
                 extra_scales=list(scales))
    return res, graph


def _write_set(res: Any, phones: Optional[Sequence[str]], graph_dir: Path, out: Path, cfg: DecodeConfig,
               decoder: str, device: str, refs: Optional[Mapping[str, Sequence[str]]], set_name: str,
               scales: Sequence[float], use_sclite: bool) -> Dict[str, Any]:
    """The files of one decoded set (see :func:`decode_set`); returns ``decode_info``."""
    from lm2am.decode.score import score_set, write_ctm

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hyp.txt", "".join(f"{u} {' '.join(w)}\n".replace(" \n", "\n")
                                               for u, w in sorted(res.hyps.items())))
    if res.word_times:
        write_ctm(res.word_times, out / "hyp.ctm")
    if res.frame_phones and phones is not None:
        write_phone_alignment(res.frame_phones, phones, out / "ali_phones.txt")
    info = {"config": to_dict(cfg), "graph": str(graph_dir), "device": device, "utterances": len(res.hyps),
            "audio_seconds": round(res.audio_seconds, 2), "decode_seconds": round(res.decode_seconds, 2),
            "rtf": round(res.rtf, 5), "failed": res.failed, "decoder": decoder}
    if refs is not None:
        stats = score_set(refs, res.hyps, out, set_name, res.word_times, use_sclite=use_sclite)
        info["wer"] = stats.summary_line()
        if scales:
            info["best_scale"] = score_scales(refs, cfg.acoustic_scale, stats, scales, res.hyps_by_scale,
                                              out, set_name)
    return info


def decode_set(loglikes_scp: Path, graph_dir: Path, out: Path, cfg: DecodeConfig, *, decoder: str = "k2",
               kaldi_graph: str = "fst", device: str = "cpu", log_priors: Optional[Path] = None,
               ref: Optional[Path] = None, set_name: str = "", scales: Sequence[float] = (),
               use_sclite: bool = True) -> Tuple[Dict[str, Any], Any]:
    """Decode one set (steps/decode.py) and write ``out/``: hyp.txt, hyp.ctm, ali_phones.txt,
    decode_info.json and, with ``ref``, the score files (every scale of ``scales`` scored under
    ``scale_<s>/``, the best in ``best_scale``). Returns ``(decode_info, DecodeResult)``."""
    from lm2am.decode.score import read_references

    refs = read_references(ref) if ref else None  # a bad reference file fails before decoding
    res, graph = _decode(loglikes_scp, graph_dir, cfg, decoder, kaldi_graph, device, log_priors, scales)
    info = _write_set(res, graph.phones, graph_dir, out, cfg, decoder, device, refs, set_name, scales, use_sclite)
    atomic_write_text(out / "decode_info.json", json.dumps(info, indent=1) + "\n")
    return info, res


def _job_path(out: Path, job: int) -> Path:
    return out / "jobs" / f"decode.{job}.pkl"


def _scp_identity(loglikes_scp: Path) -> Tuple[int, int]:
    """Size and mtime of the scp: a job result made from another log-likelihood file is stale."""
    st = loglikes_scp.stat()
    return st.st_size, st.st_mtime_ns


def _job_utts(loglikes_scp: Path) -> List[str]:
    import kaldiio

    return sorted(kaldiio.load_scp(str(loglikes_scp)).keys())


def decode_job(loglikes_scp: Path, graph_dir: Path, out: Path, cfg: DecodeConfig, job: int, num_jobs: int, *,
               decoder: str = "k2", kaldi_graph: str = "fst", device: str = "cpu",
               log_priors: Optional[Path] = None, scales: Sequence[float] = ()) -> Any:
    """Decode the ``job``-th (1-based) of ``num_jobs`` contiguous slices of the set's sorted
    utterances and keep the result in ``out/jobs/decode.<job>.pkl`` for :func:`merge_jobs`."""
    import pickle

    from lm2am.jobs import split_for_job
    from lm2am.io import atomic_path

    check_loglikes_scp(loglikes_scp)
    utts = list(split_for_job(_job_utts(loglikes_scp), job, num_jobs))
    res, graph = _decode(loglikes_scp, graph_dir, cfg, decoder, kaldi_graph, device, log_priors, scales, utts)
    doc = {"job": job, "num_jobs": num_jobs, "utts": utts, "scp": _scp_identity(loglikes_scp),
           "acoustic_scale": cfg.acoustic_scale, "scales": list(scales), "decoder": decoder,
           "phones": graph.phones, "result": res}
    path = _job_path(out, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(doc))
    return res


def merge_jobs(loglikes_scp: Path, graph_dir: Path, out: Path, cfg: DecodeConfig, num_jobs: int, *,
               decoder: str = "k2", device: str = "cpu", ref: Optional[Path] = None, set_name: str = "",
               scales: Sequence[float] = (), use_sclite: bool = True) -> Tuple[Dict[str, Any], Any]:
    """Join the results of :func:`decode_job` 1..``num_jobs`` and write ``out/`` as
    :func:`decode_set` would (the same files, byte for byte, but for ``decode_info.json``'s
    times and its ``jobs``). Every job must have run on this scp with these options."""
    import pickle

    from lm2am.decode.result import DecodeResult
    from lm2am.decode.score import read_references

    check_loglikes_scp(loglikes_scp)
    refs = read_references(ref) if ref else None
    want = {"num_jobs": num_jobs, "scp": _scp_identity(loglikes_scp), "acoustic_scale": cfg.acoustic_scale,
            "scales": list(scales), "decoder": decoder}
    res = DecodeResult(hyps_by_scale={s: {} for s in [cfg.acoustic_scale, *scales]})
    utts: List[str] = []
    phones = None
    for job in range(1, num_jobs + 1):
        path = _job_path(out, job)
        if not path.is_file():
            raise Lm2amError(f"{path}: missing; decoding job {job} of {num_jobs} did not finish (see its log)")
        doc = pickle.loads(path.read_bytes())
        stale = [k for k, v in want.items() if doc.get(k) != v] + ([] if doc.get("job") == job else ["job"])
        if stale:
            raise Lm2amError(f"{path}: made with other {', '.join(stale)} than this merge; rerun the decoding jobs")
        part, phones = doc["result"], doc["phones"]
        utts += doc["utts"]
        res.hyps.update(part.hyps)
        for s, hyps in part.hyps_by_scale.items():
            res.hyps_by_scale[s].update(hyps)
        res.word_times.update(part.word_times)
        res.frame_phones.update(part.frame_phones)
        res.failed += part.failed
        res.audio_seconds += part.audio_seconds
        res.decode_seconds += part.decode_seconds
    if utts != _job_utts(loglikes_scp):
        raise Lm2amError(f"{out / 'jobs'}: the jobs' utterances are not those of {loglikes_scp}; rerun the jobs")
    info = _write_set(res, phones, graph_dir, out, cfg, decoder, device, refs, set_name, scales, use_sclite)
    info["jobs"] = num_jobs
    atomic_write_text(out / "decode_info.json", json.dumps(info, indent=1) + "\n")
    return info, res

"""How much the stored teacher posteriors keep: bytes of the ark layout against dense matrices,
and the mass, KL and entropy that top-k and the storage temperature keep, on a part's first
cuts. Written by the posterior stage as ``storage_report.txt`` (:mod:`lm2am.lm.stage`); the
layout itself is :mod:`lm2am.lm.posteriors`'."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from lm2am.lm.posteriors import (STAT_SUMS, PathLike, add_frame_stats, encode_rows, entropy_rows,
                                 topk_posteriors, topk_with_stats)
from lm2am.lm.scoring import score_sequences
from lm2am.lm.tokens import target_spans, target_tokens

__all__ = ["storage_report", "format_storage_report"]


def storage_report(model_dir: PathLike, targets_dir: PathLike, part: str, *,
                   ks: Sequence[int] = (1, 2, 4, 8, 16, 32), num_cuts: int = 50,
                   temperature: Optional[float] = None, mask_spacing: Optional[int] = None,
                   compare_spacing: Sequence[int] = (), device: Union[str, torch.device] = "cpu",
                   post_dir: Optional[PathLike] = None, temperatures: Sequence[float] = (),
                   sweep_k: Optional[int] = None) -> Dict[str, Any]:
    """Evidence for choosing ``top_k``, on the first ``num_cuts`` cuts (C-locale order).

    Per ``k``: bytes on disk of this module's layout (exact: the encoded arks' sizes) against
    dense float32 ``[T, V]`` (Kaldi matrices of the same cuts), and, over speech frames, the
    mean probability mass the top-k keep and ``KL(top-k renormalized || full) = -log(mass)``.
    (The other direction, ``KL(full || top-k)``, is infinite whenever mass is dropped, since the
    top-k distribution is 0 outside its support.) The distributions are those of
    ``mask_spacing`` (default: the teacher's). With ``compare_spacing`` (masked LM), also the
    mean ``KL(exact || spaced)`` of the full distributions for each given spacing, i.e. what
    the cheaper masking scheme costs. With ``post_dir``, the stored files' real bytes too.
    With ``temperatures``: per storage temperature, the mass the top-``sweep_k`` (default: the
    teacher's ``top_k``) keep and the mean entropy of the stored and full distributions (what
    a storage temperature below 1 concentrates, above 1 spreads).
    """
    from lm2am.lm.train import load_lm
    from lm2am.targets import read_targets

    model, meta = load_lm(Path(model_dir) / "final.pt", device)
    cfg = meta["config"]
    temp = cfg.temperature if temperature is None else float(temperature)
    spacing = cfg.mask_spacing if mask_spacing is None else int(mask_spacing)
    unit, V = meta["unit"], meta["vocab_size"]
    reader = read_targets(targets_dir, part)
    ids = sorted(reader, key=str.encode)[:num_cuts]
    tp = [target_tokens(reader[c], unit) for c in ids]
    seqs = [t for t, _ in tp]
    spans = None if cfg.mask_span == "token" else [target_spans(reader[c], unit, cfg.mask_span) for c in ids]

    def probs_of(sp: int) -> List[Optional[torch.Tensor]]:
        return score_sequences(model, seqs, lambda i, lg: torch.softmax(lg.double() / temp, -1),
                               spacing=sp, batch_tokens=cfg.eval_batch_tokens,
                               device=torch.device(device), spans=spans)

    full = probs_of(spacing)
    frames = sum(len(p) for _, p in tp)
    speech = sum(int((np.asarray(p) >= 0).sum()) for _, p in tp)
    dense = _dense_bytes(ids, tp, V)
    out: Dict[str, Any] = {"unit": unit, "vocab_size": V, "temperature": temp,
                           "mask_spacing": spacing, "mask_span": cfg.mask_span, "cuts": len(ids), "frames": frames,
                           "speech_frames": speech, "dense_bytes": dense,
                           "dense_bytes_per_frame": dense / max(frames, 1), "k": []}
    out["mean_entropy_full"] = sum(
        float((np.bincount(np.asarray(pos)[np.asarray(pos) >= 0], minlength=len(toks))
               * -(p * torch.log(p.clamp_min(1e-300))).sum(-1).numpy()).sum())
        for (toks, pos), p in zip(tp, full) if p is not None) / max(speech, 1)
    for k in ks:
        out["k"].append(_topk_entry(k, ids, tp, full, V, frames, speech, dense))
    if temperatures:
        k = cfg.top_k if sweep_k is None else int(sweep_k)
        out["temperature_sweep"] = [_temperature_entry(t, k, tp, full, temp, V, speech) for t in temperatures]
    if compare_spacing and not model.causal:
        out["spacing"] = []
        exact = full if spacing == 0 else probs_of(0)
        for sp in compare_spacing:
            other = full if sp == spacing else exact if sp == 0 else probs_of(sp)
            out["spacing"].append({"mask_spacing": sp, "kl_exact_spaced": _mean_kl(tp, exact, other, speech)})
    if post_dir is not None and (Path(post_dir) / "post_info.json").is_file():
        info = json.loads((Path(post_dir) / "post_info.json").read_text())
        out["stored"] = {k: info[k] for k in ("top_k", "bytes", "frames", "bytes_per_frame")}
    return out


TokensAndPositions = Sequence[Tuple[Sequence[int], np.ndarray]]


def _dense_bytes(ids: Sequence[str], tp: TokensAndPositions, V: int) -> int:
    """Bytes of the cuts as dense float32 Kaldi matrices ``[T, V]``."""
    import io

    from kaldiio.matio import write_array

    dense = io.BytesIO()
    for c, (_, pos) in zip(ids, tp):
        dense.write(c.encode() + b" ")
        write_array(dense, np.zeros((len(pos), V), np.float32))
    return dense.tell()


def _topk_entry(k: int, ids: Sequence[str], tp: TokensAndPositions,
                full: Sequence[Optional[torch.Tensor]], V: int, frames: int, speech: int,
                dense: int) -> Dict[str, Any]:
    """Bytes of this module's layout with top-``k`` and the mass / KL it keeps, per speech frame."""
    import io

    from kaldiio.matio import write_array

    buf = io.BytesIO()
    mass_sum = kl_sum = ent_sum = 0.0
    for c, (toks, pos), p in zip(ids, tp, full):
        if p is None:
            top = (np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
        else:
            top = topk_posteriors(torch.log(p), k, 1.0)
            mass = torch.topk(p, min(k, V), dim=-1).values.sum(-1).numpy()
            w = np.bincount(np.asarray(pos)[np.asarray(pos) >= 0], minlength=len(toks))
            mass_sum += float((w * mass).sum())
            kl_sum += float((w * -np.log(np.maximum(mass, 1e-300))).sum())
            ent_sum += float((w * entropy_rows(top[1])).sum())
        buf.write(c.encode() + b" ")
        write_array(buf, encode_rows(pos, *top))
    return {"k": k, "bytes": buf.tell(), "bytes_per_frame": buf.tell() / max(frames, 1),
            "smaller_than_dense": dense / max(buf.tell(), 1),
            "mean_kept_mass": mass_sum / max(speech, 1),
            "kl_topk_full": kl_sum / max(speech, 1),
            "mean_entropy_topk": ent_sum / max(speech, 1)}


def _temperature_entry(t: float, k: int, tp: TokensAndPositions, full: Sequence[Optional[torch.Tensor]],
                       temp: float, V: int, speech: int) -> Dict[str, Any]:
    """Kept mass at top-``k`` and mean entropies per speech frame at storage temperature ``t``
    (``full`` holds the distributions at ``temp``: their logits are ``temp * log p`` + const)."""
    sums = dict.fromkeys(STAT_SUMS, 0.0)
    for (_toks, pos), p in zip(tp, full):
        if p is not None:
            add_frame_stats(sums, pos, topk_with_stats(temp * torch.log(p.clamp_min(1e-300)), k, t))
    return {"temperature": t, "k": min(k, V), **{"mean_" + n[:-4]: v / max(speech, 1) for n, v in sums.items()}}


def _mean_kl(tp: TokensAndPositions, exact: Sequence[Optional[torch.Tensor]],
             other: Sequence[Optional[torch.Tensor]], speech: int) -> float:
    """Mean ``KL(exact || other)`` per speech frame."""
    kl_sum = 0.0
    for (toks, pos), p, q in zip(tp, exact, other):
        if p is None:
            continue
        kl = (p * (torch.log(p.clamp_min(1e-300)) - torch.log(q.clamp_min(1e-300)))).sum(-1)
        w = np.bincount(np.asarray(pos)[np.asarray(pos) >= 0], minlength=len(toks))
        kl_sum += float((w * kl.numpy()).sum())
    return kl_sum / max(speech, 1)


def format_storage_report(r: Mapping[str, Any]) -> str:
    """Human-readable table of :func:`storage_report`'s result."""
    lines = [f"{r['unit']} teacher posteriors: vocabulary {r['vocab_size']}, temperature "
             f"{r['temperature']}, {r.get('mask_span', 'token')} masking, {r['cuts']} cuts, {r['frames']} "
             f"frames ({r['speech_frames']} speech); entropy of the full distribution "
             f"{r['mean_entropy_full']:.4f} nats",
             f"dense float32: {r['dense_bytes']} bytes ({r['dense_bytes_per_frame']:.1f} bytes/frame)",
             f"{'k':>4} {'bytes':>10} {'bytes/frame':>12} {'x smaller':>10} {'kept mass':>10} "
             f"{'KL(topk||full)':>15} {'entropy':>8}"]
    for e in r["k"]:
        lines.append(f"{e['k']:>4} {e['bytes']:>10} {e['bytes_per_frame']:>12.2f} "
                     f"{e['smaller_than_dense']:>10.1f} {e['mean_kept_mass']:>10.4f} "
                     f"{e['kl_topk_full']:>15.4f} {e['mean_entropy_topk']:>8.4f}")
    lines.append("KL(full||topk) is infinite when mass is dropped; KL(topk||full) = -log(kept mass); "
                 "entropy (nats) of the renormalized top-k; all averaged over speech frames")
    for e in r.get("temperature_sweep", []):
        lines.append(f"temperature {e['temperature']:g}: top-{e['k']} keep {e['mean_kept_mass']:.4f} of the mass; "
                     f"entropy {e['mean_entropy_stored']:.4f} stored, {e['mean_entropy_full']:.4f} full (nats)")
    for e in r.get("spacing", []):
        lines.append(f"mask_spacing {e['mask_spacing']}: KL(exact || spaced) {e['kl_exact_spaced']:.4f} "
                     "nats per speech frame (temperature applied)")
    if "stored" in r:
        s = r["stored"]
        lines.append(f"stored (k={s['top_k']}): {s['bytes']} bytes, {s['bytes_per_frame']:.2f} "
                     f"bytes/frame over {s['frames']} frames")
    return "\n".join(lines) + "\n"

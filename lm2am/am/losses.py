"""Losses of every system: CE, label interpolation, and distillation to sparse top-k teachers.

Teacher posteriors arrive as top-k entries per frame (``indices``/``probs`` ``(N, T, k)``,
renormalized over the k entries, ``mask`` ``(N, T)`` False on silence and padding); they are
used as they are, never scattered into a dense ``(N, T, V)`` target:

* **CE** on hard senones: ``-log q[y]``, padding (label ``-1``) ignored.
* **Label interpolation** with target ``(1 - λ) onehot(y) + λ p_LM``: by linearity the CE to
  that target is ``(1 - λ) CE_hard + λ (-Σ_k p_k log q[idx_k])``; frames without teacher
  posteriors (silence) keep ``CE_hard``.
* **KD** of an auxiliary head with temperature ``T`` on the student:
  ``T² · KL(p || softmax(z / T)) = T² · (-Σ_k p_k log q_T[idx_k] - H(p))``, with the gather of
  the student's log-probs at the k indices; ``H(p)`` is constant for the student (same
  gradient as soft CE) but makes the reported value 0 at a perfect match. With
  ``silence_frames: include`` a frame without teacher posteriors but with a hard label gets
  the one-hot teacher there (KL = CE to the label).
* optional **CE to the hard unit label** of a head (``loss: kd+ce``).

Each loss returns ``(sum over frames, frame count)`` so epoch averages weight frames, not
batches; :func:`system_loss` combines them as ``main + Σ_h w_h (KD_h + ce_weight CE_h)`` and
reports every term and every head's frame accuracy.

Training runs each head only on the frames its terms read (:func:`head_frames`: speech frames
with teacher posteriors for ``kd`` with ``silence_frames: skip``, every labelled frame
otherwise) and, without gradient, on the remaining labelled frames for its accuracy: the loss,
the gradients and every statistic are those of the heads on all frames, at the cost of the
frames used (:func:`system_loss` reads either form).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from lm2am.am.config import UNITS, SystemConfig

Stat = Tuple[torch.Tensor, torch.Tensor]  # (sum over frames, number of frames)


def _gather(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log_probs[..., labels]`` with ``labels == -1`` read as 0 (caller masks those)."""
    return log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def ce_loss(log_probs: torch.Tensor, labels: torch.Tensor) -> Stat:
    """Cross-entropy of ``(N, T, V)`` log-probs to ``(N, T)`` labels; ``-1`` is ignored."""
    valid = labels >= 0
    nll = -_gather(log_probs, labels)
    return torch.where(valid, nll, torch.zeros_like(nll)).sum(), valid.sum()


def soft_ce(log_probs: torch.Tensor, indices: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Per-frame ``-Σ_k probs_k · log_probs[indices_k]`` (``(N, T)``), sparse over the top-k."""
    return -(probs * log_probs.gather(-1, indices.long())).sum(-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-frame entropy ``-Σ_k p_k log p_k`` of sparse teacher posteriors (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def interpolation_loss(log_probs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                       probs: torch.Tensor, mask: torch.Tensor, lam: float) -> Stat:
    """CE to ``(1 - lam) onehot(labels) + lam p_teacher`` (frames with ``mask``), else to the
    one-hot; labels ``-1`` are ignored. Equals :func:`ce_loss` for ``lam = 0``."""
    valid = labels >= 0
    hard = -_gather(log_probs, labels)
    soft = soft_ce(log_probs, indices, probs)
    use = mask & valid
    per = torch.where(use, (1.0 - lam) * hard + lam * soft, hard)
    return torch.where(valid, per, torch.zeros_like(per)).sum(), valid.sum()


def kd_loss(logits: torch.Tensor, indices: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0, labels: Optional[torch.Tensor] = None) -> Stat:
    """``T² · KL(p_teacher || softmax(logits / T))`` summed over frames with ``mask``.

    With ``labels`` given, frames without teacher posteriors (``~mask``) but with a label
    (``>= 0``) count too, with a one-hot teacher on the label (``silence_frames: include``).
    """
    log_q = torch.log_softmax(logits.float() / temperature, dim=-1)
    kl = soft_ce(log_q, indices, probs.float()) - entropy(probs.float())
    use = mask
    if labels is not None:
        extra = ~mask & (labels >= 0)
        kl = torch.where(extra, -_gather(log_q, labels), kl)
        use = mask | extra
    t2 = temperature * temperature
    return t2 * torch.where(use, kl, torch.zeros_like(kl)).sum(), use.sum()


def frame_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> Stat:
    """(correct, counted) frames: argmax of ``(N, T, V)`` scores vs labels (``-1`` ignored)."""
    valid = labels >= 0
    return ((scores.argmax(-1) == labels) & valid).sum(), valid.sum()


def _mean(stat: Stat) -> torch.Tensor:
    s, n = stat
    return s / n.clamp(min=1)


def _include_silence(system: SystemConfig, unit: str) -> bool:
    """Whether a head of ``unit`` gets the one-hot hard label on frames without a teacher."""
    return system.silence_frames == "include" and unit != "subword"


def head_frames(targets: Mapping[str, torch.Tensor],
                teacher: Mapping[str, Mapping[str, torch.Tensor]], system: SystemConfig
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Per head, the ``(N, T')`` frames its loss reads and the other labelled frames.

    The loss frames: those with a hard label of the head's unit and teacher posteriors
    (``kd`` with ``silence_frames: skip``), or every labelled frame (``kd+ce``, or ``include``
    on a senone/monophone head). The rest of the labelled frames count only in ``<head>_acc``.
    Returns ``(loss_frames, stat_frames)``, the arguments ``aux_frames`` and
    ``aux_stat_frames`` of :meth:`lm2am.am.model.AcousticModel.forward`.
    """
    loss_frames: Dict[str, torch.Tensor] = {}
    stat_frames: Dict[str, torch.Tensor] = {}
    for h in system.heads:
        labelled = targets[UNITS[h.unit]] >= 0
        if h.loss == "kd+ce" or _include_silence(system, h.unit):
            loss_frames[h.name] = labelled
        else:
            loss_frames[h.name] = teacher[h.unit]["mask"] & labelled
            stat_frames[h.name] = labelled & ~teacher[h.unit]["mask"]
    return loss_frames, stat_frames


def training_forward(net: torch.nn.Module, b: Mapping[str, Any], system: SystemConfig
                     ) -> Dict[str, Any]:
    """The network (the model or its DDP wrapper) on a batch as training runs it: each head
    on the frames its loss reads, and without gradient on its other labelled frames
    (:func:`lm2am.am.losses.head_frames`), not on every frame."""
    loss_frames, stat_frames = head_frames(b["targets"], b["teacher"], system)
    return net(b["features"], b["lengths"], aux_frames=loss_frames, aux_stat_frames=stat_frames)


def _select(frames: Optional[torch.Tensor], labels: torch.Tensor,
            teacher: Mapping[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Labels and teacher posteriors of the ``frames`` mask's frames (all with ``None``)."""
    if frames is None:
        return labels, dict(teacher)
    return labels[frames], {k: teacher[k][frames] for k in ("indices", "probs", "mask")}


def _head_accuracy(out: Mapping[str, object], name: str, logits: torch.Tensor,
                   labels: torch.Tensor, all_labels: torch.Tensor) -> Stat:
    """Frame accuracy of head ``name`` over its loss frames (``logits``/``labels``) and its
    statistics-only frames (``out["aux_stat"]``), if any: every labelled frame either way."""
    correct, n = frame_accuracy(logits, labels)
    stat = (out.get("aux_stat") or {}).get(name)
    if stat is not None:
        c2, n2 = frame_accuracy(stat, all_labels[out["aux_stat_frames"][name]])
        correct, n = correct + c2, n + n2
    return correct, n


def system_loss(out: Mapping[str, object], targets: Mapping[str, torch.Tensor],
                teacher: Mapping[str, Mapping[str, torch.Tensor]], system: SystemConfig
                ) -> Tuple[torch.Tensor, Dict[str, Stat]]:
    """The training loss of ``system`` for one batch, and every reported statistic.

    Args:
        out: :meth:`AcousticModel.forward` output (``main`` log-probs, ``aux`` logits on every
            frame, or on the ``aux_frames`` frames given to the forward, then with
            ``aux_stat`` logits of the other labelled frames for the accuracies).
        targets: subsampled per-frame labels (``senone``, ``phone``, ``subword_id``, ``-1`` on
            padding/absent) and ``silence`` (bool).
        teacher: per unit, ``indices``/``probs`` ``(N, T', k)`` and ``mask`` ``(N, T')``.
        system: main loss and heads.

    Returns:
        ``(loss, stats)``: the scalar to minimize (frame means of each term, combined with the
        head weights) and ``{name: (sum, count)}`` for ``loss``, ``main_ce``,
        ``main_interp`` (interpolation), ``main_acc``, and per head ``<head>_kd``,
        ``<head>_ce`` (``kd+ce``), ``<head>_loss`` (weighted, as added) and ``<head>_acc``.
        Accuracies are (correct, frames); a head's are over every frame with a label of its
        unit, whichever frames its loss reads.
    """
    main = out["main"]
    senone = targets["senone"]
    stats: Dict[str, Stat] = {}
    stats["main_ce"] = ce_loss(main, senone)
    if system.main_loss == "interpolation":
        t = teacher["senone"]
        stats["main_interp"] = interpolation_loss(main, senone, t["indices"], t["probs"],
                                                  t["mask"] & ~targets["silence"], system.interp_lambda)
        total = _mean(stats["main_interp"])
    else:
        total = _mean(stats["main_ce"])
    with torch.no_grad():
        stats["main_acc"] = frame_accuracy(main, senone)
    aux = out.get("aux") or {}
    frames = out.get("aux_frames") or {}
    for h in system.heads:
        logits = aux[h.name]
        all_labels = targets[UNITS[h.unit]]
        labels, t = _select(frames.get(h.name), all_labels, teacher[h.unit])
        include = _include_silence(system, h.unit)
        kd = kd_loss(logits, t["indices"], t["probs"], t["mask"] & (labels >= 0), h.temperature,
                     labels=labels if include else None)
        stats[f"{h.name}_kd"] = kd
        head = _mean(kd)
        if h.loss == "kd+ce":
            ce = ce_loss(torch.log_softmax(logits.float(), dim=-1), labels)
            stats[f"{h.name}_ce"] = ce
            head = head + h.ce_weight * _mean(ce)
        weighted = h.weight * head
        stats[f"{h.name}_loss"] = (weighted.detach(), torch.ones((), device=weighted.device))
        total = total + weighted
        with torch.no_grad():
            stats[f"{h.name}_acc"] = _head_accuracy(out, h.name, logits, labels, all_labels)
    n = (senone >= 0).sum()
    stats["loss"] = (total.detach() * n, n)
    return total, stats


def eval_stats(out: Mapping[str, object], targets: Mapping[str, torch.Tensor],
               teacher: Mapping[str, Mapping[str, torch.Tensor]], system: SystemConfig
               ) -> Dict[str, Stat]:
    """Statistics for evaluation: like :func:`system_loss` where teacher posteriors exist,
    otherwise only CE and frame accuracies (dev teachers are optional)."""
    have = set(teacher)
    if set(system.teacher_units()) <= have:
        return system_loss(out, targets, teacher, system)[1]
    stats: Dict[str, Stat] = {"main_ce": ce_loss(out["main"], targets["senone"]),
                              "main_acc": frame_accuracy(out["main"], targets["senone"])}
    for h in system.heads:
        logits = out["aux"][h.name]
        labels = targets[UNITS[h.unit]]
        stats[f"{h.name}_ce"] = ce_loss(torch.log_softmax(logits.float(), dim=-1), labels)
        stats[f"{h.name}_acc"] = frame_accuracy(logits, labels)
    return stats

"""Training of one teacher LM (:func:`train_lm`), resumable after a kill, with a dev report.

Data: the caller passes token sequences (:mod:`lm2am.lm.tokens`): the LM text pool plus the AM
training transcripts for training, held-out text for dev. Sequences longer than ``max_len`` are
cropped to a random window each epoch.

Batches: per epoch (seeded by ``seed`` and the epoch) the sequences are shuffled, sorted by
length within groups of 100 batches' worth, packed into batches of at most ``batch_tokens``
padded tokens, and the batches shuffled. The masking noise and dropout of update ``n`` are
seeded by ``(seed, n)``, so a run resumed from a checkpoint makes exactly the updates an
uninterrupted run makes.

Optimizer: AdamW, linear warm-up over ``warmup_steps`` then cosine decay to 10 % of ``lr`` at
the last update, gradient norm clipped at 1.

Files in ``out_dir``: ``checkpoint.pt`` (the AM's checkpoint format, :mod:`lm2am.checkpoint`:
model, optimizer, scheduler, position in the data, history, plus the fingerprint of the data
and config and the time spent; written atomically every ``checkpoint_every`` updates and at
each epoch end), ``final.pt`` (what the posterior stage loads: config, unit, vocabulary size,
weights), ``report.json`` (dev perplexity of the LM and of an add-one unigram model of the same
unit on the same dev tokens, sizes, time, per-epoch history), ``tensorboard/`` (training loss
and learning rate every 50 updates, train loss and dev perplexity per epoch) and
``log/train.log`` (via the caller's logging set-up). A rerun after ``final.pt`` exists retrains only if the caller removes it
(the stage script's done marker decides).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from lm2am.checkpoint import CheckpointFormat, restore_training_state, training_state
from lm2am.checkpoint import read as read_checkpoint
from lm2am.checkpoint import save as save_checkpoint
from lm2am.errors import Lm2amError
from lm2am.io import atomic_write_text
from lm2am.lm.model import LmConfig, TransformerLM
from lm2am.lm.scoring import Spans, perplexity, span_index, unigram_perplexity
from lm2am.log import TensorBoard

log = logging.getLogger(__name__)

__all__ = ["train_lm", "load_lm", "make_batches"]

#: ``final.pt`` and ``checkpoint.pt`` of a teacher LM
FORMAT = CheckpointFormat("lm2am-teacher-lm", 1, "teacher LM")


def _data_hash(seqs: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256()
    for s in seqs:
        h.update(np.asarray(s, dtype=np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def make_batches(lengths: Sequence[int], batch_tokens: int, max_len: int, rng: random.Random
                 ) -> List[List[int]]:
    """Index batches of one epoch: shuffled, length-sorted within groups, at most
    ``batch_tokens`` padded tokens per batch (lengths capped at ``max_len``), batch order
    shuffled."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    capped = [min(int(lengths[i]), max_len) for i in idx]
    mean = max(1.0, float(np.mean(capped)) if capped else 1.0)
    group = max(1, int(100 * batch_tokens / mean))
    batches: List[List[int]] = []
    for g in range(0, len(idx), group):
        chunk = sorted(idx[g:g + group], key=lambda i: min(int(lengths[i]), max_len))
        cur: List[int] = []
        width = 0
        for i in chunk:
            w = max(width, min(int(lengths[i]), max_len))
            if cur and w * (len(cur) + 1) > batch_tokens:
                batches.append(cur)
                cur, w = [], min(int(lengths[i]), max_len)
            cur.append(i)
            width = w
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def _crop(seq: np.ndarray, max_len: int, rng: random.Random, spans: Optional[np.ndarray] = None
          ) -> Tuple[np.ndarray, int, Optional[np.ndarray]]:
    """A random window of at most ``max_len`` tokens, the token before it (-1 at the start;
    a causal LM reads that token instead of ``<bos>``, as in scoring windows) and the window's
    span labels (None without ``spans``)."""
    if len(seq) <= max_len:
        return seq, -1, spans
    s = rng.randrange(len(seq) - max_len + 1)
    return (seq[s:s + max_len], int(seq[s - 1]) if s else -1,
            None if spans is None else spans[s:s + max_len])


def _masked_batch(model: TransformerLM, seqs: List[np.ndarray], mask_prob: float,
                  gen: torch.Generator, spans: Optional[Sequence[Optional[np.ndarray]]] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT-style noise: (inputs, pad mask, targets with -100 where no loss). With ``spans``
    the choice to predict and the 80/10/10 choice are made per span (all its tokens alike);
    without, per token (the same random draws as spans of one token each)."""
    B, W = len(seqs), max(len(s) for s in seqs)
    tok = torch.full((B, W), model.pad_id, dtype=torch.long)
    sid = torch.arange(W).repeat(B, 1)  # span number of each position
    for b, s in enumerate(seqs):
        tok[b, :len(s)] = torch.from_numpy(s)
        if spans is not None and spans[b] is not None:
            sid[b, :len(s)] = torch.from_numpy(span_index(spans[b]))
    pad = tok == model.pad_id
    pick = (torch.rand(B, W, generator=gen) < mask_prob).gather(1, sid) & ~pad
    num_spans = torch.where(pad, torch.zeros_like(sid), sid + 1).max(1).values
    none = ~pick.any(1)
    if none.any():  # every sequence predicts at least one span
        forced = (torch.rand(B, generator=gen) * num_spans).long().clamp(max=W - 1)
        pick[none] = (sid[none] == forced[none, None]) & ~pad[none]
    target = torch.where(pick, tok, torch.full_like(tok, -100))
    r = torch.rand(B, W, generator=gen).gather(1, sid)
    inp = tok.clone()
    inp[pick & (r < 0.8)] = model.mask_id
    rand_pos = pick & (r >= 0.8) & (r < 0.9)
    inp[rand_pos] = torch.randint(model.vocab_size, (int(rand_pos.sum()),), generator=gen)
    return inp, pad, target


def _causal_batch(model: TransformerLM, seqs: List[np.ndarray], prev: List[int]
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, W = len(seqs), max(len(s) for s in seqs)
    inp = torch.full((B, W), model.pad_id, dtype=torch.long)
    target = torch.full((B, W), -100, dtype=torch.long)
    for b, s in enumerate(seqs):
        t = torch.from_numpy(s)
        inp[b, 0] = model.bos_id if prev[b] < 0 else prev[b]
        inp[b, 1:len(s)] = t[:-1]
        target[b, :len(s)] = t
    return inp, inp == model.pad_id, target


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        prog = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * prog))
    return f


def load_lm(path: Union[str, Path], device: Union[str, torch.device] = "cpu"
            ) -> Tuple[TransformerLM, Dict[str, Any]]:
    """Load ``final.pt`` written by :func:`train_lm`: ``(model in eval mode, meta)`` where meta
    holds ``unit``, ``vocab_size`` and ``config`` (an :class:`LmConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise Lm2amError(f"teacher LM {path} does not exist; run the LM training stage "
                         "(steps/train_lm.py) first")
    try:
        d = read_checkpoint(path)
        if d.get("format") != FORMAT.name:
            raise KeyError("format")
        cfg = LmConfig(**{k: v for k, v in d["config"].items()})
        model = TransformerLM(d["vocab_size"], cfg)
        model.load_state_dict(d["model"])
    except Lm2amError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling/shape problem is a bad file
        raise Lm2amError(f"{path}: not a teacher LM of this version ({type(e).__name__}); "
                         "retrain it (steps/train_lm.py)") from None
    model.to(device).eval()
    return model, {"unit": d["unit"], "vocab_size": d["vocab_size"], "config": cfg}


@dataclass
class _Run:
    """One LM training run: what does not change while it trains."""

    unit: str
    cfg: LmConfig
    device: torch.device
    train: List[np.ndarray]
    dev: List[List[int]]
    model: TransformerLM
    opt: torch.optim.Optimizer
    sched: Any
    per_epoch: int
    total: int
    fingerprint: Dict[str, Any]  # unit, vocabulary, training config, data hash
    ckpt: Path
    train_spans: Optional[List[Optional[np.ndarray]]] = None  # mask spans (mask_span: phone)
    dev_spans: Optional[List[Optional[np.ndarray]]] = None
    tb: Optional[TensorBoard] = None

    @property
    def lengths(self) -> List[int]:
        return [len(s) for s in self.train]


@dataclass
class _Position:
    """Where training is (what ``checkpoint.pt`` restores besides model and optimizer)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds before this process


def train_lm(unit: str, train_seqs: Sequence[Sequence[int]], dev_seqs: Sequence[Sequence[int]],
             vocab_size: int, cfg: LmConfig, out_dir: Union[str, Path],
             device: Union[str, torch.device] = "cpu", progress: bool = True,
             train_spans: Spans = None, dev_spans: Spans = None) -> Dict[str, Any]:
    """Train the teacher LM of ``unit`` (module docstring) and write ``out_dir/final.pt`` and
    ``out_dir/report.json``; resumes from ``out_dir/checkpoint.pt`` if one of the same data and
    config exists. Returns the report (also logged): dev perplexity of the LM (pseudo-perplexity
    for a masked LM, computed with ``cfg.mask_spacing``) and of the add-one unigram model.

    ``train_spans``/``dev_spans``: per sequence, its tokens' mask-span labels
    (:func:`lm2am.lm.tokens.target_spans`); needed when ``cfg.mask_span`` is not ``token`` for a
    unit with spans (senone), ignored otherwise.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    train, dev, train_spans, dev_spans = _check_data(unit, train_seqs, dev_seqs, vocab_size, cfg,
                                                     train_spans, dev_spans)
    run = _build(unit, train, dev, vocab_size, cfg, device, out_dir / "checkpoint.pt")
    run.train_spans, run.dev_spans = train_spans, dev_spans
    pos = _resume(run)
    n_tok = sum(run.lengths)
    log.info("%s LM: %s, %d parameters; %d training sequences (%d tokens, %.1f per sequence), "
             "%d dev sequences; %d updates/epoch, %d updates in all; device %s", unit, cfg.arch,
             run.model.num_params(), len(train), n_tok, n_tok / len(train), len(dev), run.per_epoch,
             run.total, device)
    t0 = time.time()
    run.tb = TensorBoard(out_dir / "tensorboard")
    try:
        _fit(run, pos, t0, progress)
    finally:
        run.tb.close()
    pos.elapsed += time.time() - t0
    report = _report(run, pos, vocab_size)
    save_checkpoint({**FORMAT.header(), "unit": unit, "vocab_size": vocab_size,
                     "config": cfg.to_dict(),
                     "model": {k: v.cpu() for k, v in run.model.state_dict().items()},
                     "report": {k: v for k, v in report.items() if k != "history"}}, out_dir / "final.pt")
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    log.info("%s LM: dev %s perplexity %.2f vs unigram (add-one) %.2f on %d dev tokens",
             unit, report["dev_perplexity_kind"], report["dev_perplexity"],
             report["unigram_dev_perplexity"], report["dev_tokens"])
    print(f"{unit} LM: dev perplexity {report['dev_perplexity']:.2f} ({report['dev_perplexity_kind']}); "
          f"unigram {report['unigram_dev_perplexity']:.2f}", flush=True)
    return report


def _keep_spans(seqs: Sequence[Sequence[int]], spans: Spans, what: str, unit: str, cfg: LmConfig
                ) -> Optional[List[Optional[np.ndarray]]]:
    """The span labels of the non-empty ``seqs`` (None when the config masks tokens)."""
    if cfg.mask_span == "token" or unit != "senone":
        return None
    if spans is None or len(spans) != len(seqs):
        raise Lm2amError(f"{unit} LM: mask_span {cfg.mask_span} needs the {what} sequences' spans "
                         "(lm2am.lm.stage.lm_training_data gives them)")
    out = []
    for s, sp in zip(seqs, spans):
        if len(s):
            if sp is None or len(sp) != len(s):
                raise Lm2amError(f"{unit} LM: a {what} sequence's span labels do not match its tokens")
            out.append(np.asarray(sp, dtype=np.int64))
    return out


def _check_data(unit: str, train_seqs: Sequence[Sequence[int]], dev_seqs: Sequence[Sequence[int]],
                vocab_size: int, cfg: LmConfig, train_spans: Spans = None, dev_spans: Spans = None
                ) -> Tuple[List[np.ndarray], List[List[int]], Any, Any]:
    """Non-empty training sequences, at most ``max_dev_sentences`` dev ones, and their span
    labels (:func:`_keep_spans`); ids checked."""
    train = [np.asarray(s, dtype=np.int64) for s in train_seqs if len(s)]
    dev = [list(map(int, s)) for s in dev_seqs if len(s)][: cfg.max_dev_sentences]
    train_spans = _keep_spans(train_seqs, train_spans, "training", unit, cfg)
    dev_spans = _keep_spans(dev_seqs, dev_spans, "dev", unit, cfg)
    if dev_spans is not None:
        dev_spans = dev_spans[: cfg.max_dev_sentences]
    if not train:
        raise Lm2amError(f"no training sequences for the {unit} LM; check the LM text and lang dir")
    for name, data in (("training", train), ("dev", [np.asarray(s) for s in dev])):
        for s in data:
            if s.min() < 0 or s.max() >= vocab_size:
                raise Lm2amError(f"{unit} LM: a {name} token id is outside 0..{vocab_size - 1}; "
                                 "the sequences and the vocabulary size disagree (rerun the LM stage "
                                 "with matching lang/tree)")
    return train, dev, train_spans, dev_spans


def _build(unit: str, train: List[np.ndarray], dev: List[List[int]], vocab_size: int,
           cfg: LmConfig, device: torch.device, ckpt: Path) -> _Run:
    """Model (seeded), AdamW (no decay on embeddings and 1-D parameters), schedule."""
    fp = {"unit": unit, "vocab_size": vocab_size, "config": cfg.training_dict(),
          "data": _data_hash(train), "n": len(train)}
    torch.manual_seed(cfg.seed)
    model = TransformerLM(vocab_size, cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    lengths = [len(s) for s in train]
    per_epoch = len(make_batches(lengths, cfg.batch_tokens, cfg.max_len, random.Random(cfg.seed)))
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(min(cfg.warmup_steps, total // 2), total))
    return _Run(unit=unit, cfg=cfg, device=device, train=train, dev=dev, model=model, opt=opt,
                sched=sched, per_epoch=per_epoch, total=total, fingerprint=fp, ckpt=ckpt)


def _resume(run: _Run) -> _Position:
    """The position of ``checkpoint.pt`` (model, optimizer, schedule restored) when it was made
    for the same data and config; otherwise (none, another one, torn) the start."""
    unit, ckpt = run.unit, run.ckpt
    if not ckpt.is_file():
        return _Position()
    try:
        c = read_checkpoint(ckpt)
        if c.get("format") != FORMAT.name or c.get("version") != FORMAT.version:
            log.warning("%s LM: %s was written by another version of lm2am; starting over", unit, ckpt)
        elif c.get("fingerprint") == run.fingerprint:
            restore_training_state(c, run.model, run.opt, run.sched)
            pos = _Position(c["step"], c["epoch"], c["batch_in_epoch"], c["history"], c["elapsed"])
            log.info("%s LM: resuming from %s at update %d (epoch %d)", unit, ckpt, pos.step, pos.epoch + 1)
            return pos
        else:
            log.warning("%s LM: %s was made for other data or config; starting over", unit, ckpt)
    except Exception as e:  # noqa: BLE001 - a torn checkpoint: start over, say so
        log.warning("%s LM: cannot read %s (%s); starting over", unit, ckpt, type(e).__name__)
    return _Position()


def _save(run: _Run, pos: _Position, t0: float) -> None:
    """``checkpoint.pt`` (atomic): the training state at ``pos``."""
    save_checkpoint({**FORMAT.header(), **training_state(run.model, run.opt, run.sched),
                     "epoch": pos.epoch, "batch_in_epoch": pos.batch_in_epoch, "step": pos.step,
                     "history": pos.history, "fingerprint": run.fingerprint,
                     "config": run.cfg.to_dict(), "elapsed": pos.elapsed + time.time() - t0}, run.ckpt)


def _update(run: _Run, seqs: List[np.ndarray], prev: List[int], step: int,
            spans: Optional[List[Optional[np.ndarray]]] = None) -> float:
    """One AdamW update on ``seqs``; the noise and dropout are seeded by ``(seed, step)``."""
    cfg, model, device = run.cfg, run.model, run.device
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    torch.manual_seed(cfg.seed * 7_919 + step)  # dropout of this update
    if model.causal:
        inp, pad, target = _causal_batch(model, seqs, prev)
    else:
        inp, pad, target = _masked_batch(model, seqs, cfg.mask_prob, gen, spans)
    inp, pad, target = inp.to(device), pad.to(device), target.to(device)
    sel = target >= 0
    h = model.hidden(inp, pad)
    loss = nn.functional.cross_entropy(model.logits(h[sel]), target[sel])
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    run.opt.step()
    run.sched.step()
    return float(loss)


def _dev_perplexity(run: _Run) -> float:
    cfg = run.cfg
    return perplexity(run.model, run.dev, spacing=cfg.mask_spacing, batch_tokens=cfg.eval_batch_tokens,
                      device=run.device, spans=run.dev_spans) if run.dev else float("nan")


def _train_epoch(run: _Run, pos: _Position, t0: float, progress: bool) -> Tuple[float, bool]:
    """The rest of epoch ``pos.epoch``: ``(mean training loss, whether the epoch's batches were
    all done)``; stops early at the last update (``max_steps``)."""
    from tqdm import tqdm

    cfg = run.cfg
    rng = random.Random(cfg.seed * 1_000_003 + pos.epoch)
    batches = make_batches(run.lengths, cfg.batch_tokens, cfg.max_len, rng)
    spans = run.train_spans or [None] * len(run.train)
    crops = [_crop(s, cfg.max_len, rng, sp) for s, sp in zip(run.train, spans)]  # same rng state on resume
    run.model.train()
    bar = tqdm(total=len(batches), initial=pos.batch_in_epoch, desc=f"{run.unit} LM epoch {pos.epoch + 1}",
               disable=not progress, leave=False, mininterval=5)
    loss_sum, loss_n = 0.0, 0
    while pos.batch_in_epoch < len(batches):
        idx = batches[pos.batch_in_epoch]
        loss = _update(run, [crops[i][0] for i in idx], [crops[i][1] for i in idx], pos.step,
                       [crops[i][2] for i in idx] if run.train_spans is not None else None)
        pos.step += 1
        pos.batch_in_epoch += 1
        loss_sum += loss
        loss_n += 1
        bar.update(1)
        if pos.step % 50 == 0:
            bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}")
            run.tb.scalars("train", {"loss": loss_sum / loss_n, "lr": run.sched.get_last_lr()[0]}, pos.step)
        if pos.step % cfg.checkpoint_every == 0:
            _save(run, pos, t0)
        if pos.step >= run.total:
            break
    bar.close()
    return loss_sum / max(loss_n, 1), pos.batch_in_epoch >= len(batches)


def _fit(run: _Run, pos: _Position, t0: float, progress: bool) -> None:
    """Epochs until ``cfg.epochs`` or the last update; dev perplexity and a checkpoint after each."""
    while pos.step < run.total and pos.epoch < run.cfg.epochs:
        train_loss, epoch_done = _train_epoch(run, pos, t0, progress)
        dev_ppl = _dev_perplexity(run)
        pos.history.append({"epoch": pos.epoch + 1, "step": pos.step, "train_loss": train_loss,
                            "dev_ppl": dev_ppl, "lr": run.sched.get_last_lr()[0]})
        log.info("%s LM epoch %d: train loss %.3f, dev %s %.2f (update %d)", run.unit, pos.epoch + 1,
                 train_loss, "pseudo-perplexity" if not run.model.causal else "perplexity",
                 dev_ppl, pos.step)
        run.tb.scalars("epoch", {"train_loss": train_loss, "dev_perplexity": dev_ppl}, pos.epoch + 1)
        if epoch_done:
            pos.epoch += 1
            pos.batch_in_epoch = 0
        _save(run, pos, t0)


def _report(run: _Run, pos: _Position, vocab_size: int) -> Dict[str, Any]:
    """``report.json``: sizes, time, dev perplexity of the LM and of the add-one unigram model."""
    cfg, train, dev, history = run.cfg, run.train, run.dev, pos.history
    if history and history[-1]["step"] == pos.step:  # the last epoch's evaluation is of this model
        lm_ppl = history[-1]["dev_ppl"]
    else:
        lm_ppl = _dev_perplexity(run)
    return {
        "unit": run.unit, "arch": cfg.arch, "vocab_size": vocab_size, "parameters": run.model.num_params(),
        "train_sequences": len(train), "train_tokens": sum(run.lengths), "dev_sequences": len(dev),
        "dev_tokens": sum(len(s) for s in dev), "updates": pos.step, "epochs": len(history),
        "train_seconds": round(pos.elapsed, 1),
        "dev_perplexity": lm_ppl,
        "dev_perplexity_kind": ("causal" if run.model.causal else "pseudo (each token given all others)"
                                if run.dev_spans is None else "pseudo (each token given the other phones)"),
        "mask_spacing": cfg.mask_spacing, "mask_span": cfg.mask_span,
        "unigram_dev_perplexity": unigram_perplexity(train, dev, vocab_size),
        "history": history, "config": cfg.to_dict(),
    }

"""The teacher-LM stages behind ``steps/train_lm.py`` (training data from the LM text and the AM
transcripts, then :func:`lm2am.lm.train.train_lm`) and ``steps/compute_posteriors.py`` (sharded
posteriors, merge, storage report and heatmaps)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from lm2am.config import load_section
from lm2am.data.manifests import cut_texts
from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_write_text

__all__ = ["cut_texts", "LmData", "lm_training_data", "run_posteriors"]


def _dev_split(lm_sents: List[str], dev_cuts: Optional[Path], dev_text: Optional[Path], cfg
               ) -> Tuple[List[str], List[str]]:
    """``(training LM sentences, dev sentences)``: dev from ``dev_cuts``/``dev_text``, else every
    10th sampled LM-text sentence, up to ``cfg.max_dev_sentences`` (held out from training)."""
    from lm2am.lm.tokens import read_sentences

    if dev_cuts:
        return lm_sents, cut_texts(dev_cuts)
    if dev_text:
        return lm_sents, read_sentences(dev_text)
    held = set(range(0, len(lm_sents), 10)[:cfg.max_dev_sentences])
    return ([s for i, s in enumerate(lm_sents) if i not in held],
            [s for i, s in enumerate(lm_sents) if i in held])


class LmData(NamedTuple):
    """What a teacher LM trains on: token sequences, their mask spans (None unless the config
    masks phones of senones, :func:`lm2am.lm.tokens.target_spans`) and the vocabulary size."""

    train: List[Sequence[int]]
    dev: List[Sequence[int]]
    vocab_size: int
    train_spans: Optional[List[Any]] = None
    dev_spans: Optional[List[Any]] = None


def lm_training_data(unit: str, cfg, lang_dir: Path, tree_dir: Optional[Path] = None,
                     lm_text: Optional[Path] = None, targets_dir: Optional[Path] = None,
                     train_part: str = "train-synth", train_cuts: Optional[Path] = None,
                     dev_cuts: Optional[Path] = None, dev_text: Optional[Path] = None) -> LmData:
    """Training and dev sequences (and spans) and the vocabulary size of the ``unit`` teacher
    LM (see steps/train_lm.py for where each part comes from)."""
    from lm2am.lm.tokens import TextTokenizer, read_sentences, sample_sentences, spans_from_text, target_spans

    tree = None
    if unit == "senone":
        from lm2am.tree import ContextTree

        tree = ContextTree.load(tree_dir / "tree.json")
    tok = TextTokenizer(lang_dir, tree=tree)
    V = tok.vocab_size(unit)
    lm_sents = read_sentences(lm_text) if lm_text else []
    lm_sents = sample_sentences(lm_sents, cfg.max_lm_sentences, cfg.seed)  # spread over sources
    lm_sents, dev_sents = _dev_split(lm_sents, dev_cuts, dev_text, cfg)
    span = cfg.mask_span
    train, spans = spans_from_text(unit, lm_sents, lang_dir, tokenizer=tok, mask_span=span,
                                   sil_prob=cfg.sil_prob, seed=cfg.seed)
    n_lm = len(train)
    if cfg.include_am_text:
        if targets_dir is not None:
            from lm2am.lm.tokens import target_tokens
            from lm2am.targets import read_targets

            reader = read_targets(targets_dir, train_part)
            for t in (reader[c] for c in reader):
                seq = target_tokens(t, unit)[0]
                if seq:
                    train.append(seq)
                    if spans is not None:
                        spans.append(target_spans(t, unit, span))
        elif train_cuts is not None:
            more, more_spans = spans_from_text(unit, cut_texts(train_cuts), lang_dir, tokenizer=tok,
                                               mask_span=span, sil_prob=cfg.sil_prob, seed=cfg.seed + 1)
            train += more
            if spans is not None:
                spans += more_spans
    dev, dev_spans = spans_from_text(unit, dev_sents, lang_dir, tokenizer=tok, mask_span=span)
    logging.info("%s LM data: %d LM-text + %d AM-transcript training sequences, %d dev sequences; "
                 "vocabulary %d; masking %s spans", unit, n_lm, len(train) - n_lm, len(dev), V,
                 "phone" if spans is not None else "token")
    if not dev:
        raise Lm2amError("no dev sentences: give --dev-cuts or --dev-text (or a longer --lm-text)")
    return LmData(train, dev, V, spans, dev_spans)


def _posterior_options(model_dir: Path, config: Optional[Path]) -> Tuple[str, Dict[str, Any]]:
    """The teacher's unit, and top_k/temperature/mask_spacing from the config's ``lm`` section
    (none without a config: the teacher's own settings apply)."""
    from lm2am.lm.train import load_lm

    _, meta = load_lm(model_dir / "final.pt")
    unit = meta["unit"]
    if not config:
        return unit, {}
    from lm2am.lm.model import LmConfig

    cfg = load_section(config, "lm", LmConfig).for_unit(unit)
    return unit, {"top_k": cfg.top_k, "temperature": cfg.temperature, "mask_spacing": cfg.mask_spacing}


def run_posteriors(model_dir: Path, targets_dir: Path, part: str, out_dir: Path, *,
                   config: Optional[Path] = None, job: Optional[int] = None, num_jobs: int = 1,
                   merge: bool = False, device: str = "cpu", num_threads: int = 1,
                   report_cuts: int = 50, report_ks: str = "1,2,4,8,16,32", report_spacing: str = "4,8,16",
                   report_temperatures: str = "0.5,1,2",
                   plot: int = 1, lang_dir: Optional[Path] = None, tree_dir: Optional[Path] = None
                   ) -> Optional[str]:
    """steps/compute_posteriors.py: shard ``job`` only; or (``merge``) the merge of all shards;
    or every shard then the merge. After a merge, the storage report and heatmaps (once per
    settings). Returns the summary line of the merge (None for a single shard)."""
    import torch

    from lm2am.lm.posteriors import compute_posteriors, merge_posteriors

    torch.set_num_threads(max(1, num_threads))
    unit, opts = _posterior_options(model_dir, config)
    if job is not None:
        compute_posteriors(model_dir, targets_dir, part, out_dir, job=job, num_jobs=num_jobs, device=device, **opts)
        return None
    if not merge:
        for j in range(1, num_jobs + 1):
            compute_posteriors(model_dir, targets_dir, part, out_dir, job=j, num_jobs=num_jobs, device=device, **opts)
    info = merge_posteriors(model_dir, targets_dir, part, out_dir, num_jobs=num_jobs, **opts)
    summary = (f"{unit} posteriors {part}: {info['cuts']} cuts, {info['bytes_per_frame']} bytes/frame "
               f"(dense float32: {info['dense_float32_bytes_per_frame']})")
    marker = DoneMarker(out_dir / ".report.done",
                        {"cuts": report_cuts, "ks": report_ks, "plot": plot, "spacing": report_spacing,
                         "temperatures": report_temperatures},
                        inputs=[out_dir / "post_info.json"])
    if marker.is_done():
        return summary
    if report_cuts > 0:
        _storage_report(model_dir, targets_dir, part, out_dir, report_cuts, report_ks, report_spacing,
                        device, opts, report_temperatures)
    if plot > 0:
        _plot_posteriors(unit, targets_dir, part, out_dir, plot, lang_dir, tree_dir)
    marker.mark()
    return summary


def _storage_report(model_dir: Path, targets_dir: Path, part: str, out_dir: Path, num_cuts: int,
                    ks: str, spacing: str, device: str, opts: Dict[str, Any], temperatures: str = "") -> None:
    """``storage_report.txt``: bytes and KL of several top-k (and mask spacings, and the kept
    mass and entropies at other storage temperatures)."""
    from lm2am.lm.storage_report import format_storage_report, storage_report

    r = storage_report(model_dir, targets_dir, part, ks=[int(k) for k in ks.split(",") if k.strip()],
                       num_cuts=num_cuts, device=device, post_dir=out_dir,
                       compare_spacing=[int(x) for x in spacing.split(",") if x.strip()],
                       temperatures=[float(x) for x in temperatures.split(",") if x.strip()],
                       sweep_k=opts.get("top_k"), **{k: v for k, v in opts.items() if k != "top_k"})
    text = format_storage_report(r)
    atomic_write_text(out_dir / "storage_report.txt", text)
    logging.info("storage report (%s):\n%s", out_dir / "storage_report.txt", text)


def _plot_posteriors(unit: str, targets_dir: Path, part: str, out_dir: Path, num_cuts: int,
                     lang_dir: Optional[Path], tree_dir: Optional[Path]) -> None:
    """Heatmaps ``plots/<cut>.png`` of the first ``num_cuts`` cuts, with the reference tokens."""
    from lm2am.lm.plots_lm import plot_teacher_posteriors, unit_labels
    from lm2am.lm.tokens import target_tokens
    from lm2am.targets import read_targets

    tree = None
    if unit == "senone" and tree_dir is not None:
        from lm2am.tree import ContextTree

        tree = ContextTree.load(tree_dir / "tree.json")
    labels = unit_labels(unit, lang_dir, tree)
    reader = read_targets(targets_dir, part)
    for cut_id in sorted(reader, key=str.encode)[:num_cuts]:
        t = reader[cut_id]
        ref = {"senone": t.senone, "phone": t.phone, "subword": t.subword_id}[unit].copy()
        ref[target_tokens(t, unit)[1] < 0] = -1
        path = out_dir / "plots" / f"{cut_id}.png"
        plot_teacher_posteriors(out_dir, cut_id, path, labels=labels, reference=ref)
        logging.info("plot: %s", path)

"""AM training data: target cuts, duration-bucketed batches, CMVN'd features, subsampled
targets and (lazily) the teacher posteriors a system needs.

Inputs (per part, written by earlier stages):

* ``<targets_dir>/cuts_<part>.jsonl.gz``: the fbank cuts with per-frame targets attached as
  lhotse custom arrays (``lm2am.targets``); ``<targets_dir>/targets_<part>.json`` gives the
  vocabulary sizes.
* ``data/fbank/global_cmvn.ark``: global CMVN stats of the training part.
* teacher posteriors ``exp/lm_<unit>/post_<part>/`` (the pattern is :attr:`DataPaths.posteriors`),
  read through ``lm2am.lm.loader.load_teacher_posteriors`` (imported only when a system needs
  a teacher, so the CE baseline runs without the LM stages).

A batch (:class:`AmDataset`) is a dict::

    features  float (N, T, F)  CMVN'd, zero-padded
    lengths   long  (N,)       feature frames
    cut_ids   list of str
    targets   {senone, phone, subword_id: long (N, T'), -1 on padding (subword_id also on
               silence); silence: bool (N, T')}  subsampled with lm2am.frames.subsample
    teacher   {unit: {indices long (N, T', k), probs float (N, T', k), mask bool (N, T')}}

``T' = num_subsampled(T, subsampling)``; ``subsampling`` is the model's.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.frames import num_subsampled, subsample
from lm2am.data.features import cut_speaker, load_features

log = logging.getLogger(__name__)

#: Per-frame target arrays the AM reads from each cut (custom fields of the targets cuts).
TARGET_FIELDS: Tuple[str, ...] = ("senone", "phone", "subword_id", "silence")

PosteriorLoader = Callable[..., Any]


@dataclass
class DataPaths:
    """Where the AM stage reads its inputs (paths relative to the recipe directory).

    Attributes:
        targets_dir: ``data/targets`` (cuts with targets + ``targets_<part>.json``).
        cmvn: global CMVN stats (``data/fbank/global_cmvn.ark``).
        train_part, dev_part: part names (``dev_part`` may be empty: no validation).
        posteriors: teacher posterior directory pattern with ``{unit}`` and ``{part}``.
    """

    targets_dir: Path = Path("data/targets")
    cmvn: Path = Path("data/fbank/global_cmvn.ark")
    train_part: str = "train"
    dev_part: str = "dev"
    posteriors: str = "exp/lm_{unit}/post_{part}"

    @staticmethod
    def add_arguments(p: Any, parts: bool = True) -> None:
        """Add ``--targets-dir --cmvn --posteriors`` (and ``--train-part --dev-part``) to an
        argparse parser; :meth:`from_args` reads them back."""
        d = DataPaths()
        p.add_argument("--targets-dir", type=Path, default=d.targets_dir,
                       help="cuts with frame targets (default: %(default)s)")
        p.add_argument("--cmvn", type=Path, default=d.cmvn, help="global CMVN stats (default: %(default)s)")
        p.add_argument("--posteriors", default=d.posteriors,
                       help="teacher posterior dir pattern (default: %(default)s)")
        if parts:
            p.add_argument("--train-part", default="train-synth", help="(default: %(default)s)")
            p.add_argument("--dev-part", default="dev-synth",
                           help="'' for no validation (default: %(default)s)")

    @classmethod
    def from_args(cls, args: Any) -> "DataPaths":
        return cls(targets_dir=args.targets_dir, cmvn=args.cmvn, posteriors=args.posteriors,
                   train_part=getattr(args, "train_part", ""), dev_part=getattr(args, "dev_part", ""))

    def cuts(self, part: str) -> Path:
        return Path(self.targets_dir) / f"cuts_{part}.jsonl.gz"

    def posterior_dir(self, unit: str, part: str) -> Path:
        return Path(self.posteriors.format(unit=unit, part=part))


def load_cuts(paths: DataPaths, part: str):
    """The targets cuts of ``part`` (eager: the sampler's order must not depend on I/O)."""
    from lhotse import CutSet

    p = paths.cuts(part)
    if not p.is_file():
        raise Lm2amError(f"{p} is missing; run the targets stage for part {part!r} "
                         "(steps/make_targets.py)")
    return CutSet.from_file(p).to_eager()


def speaker_means_for(input_norm: str, cuts: Any) -> Optional[Dict[str, np.ndarray]]:
    """The per-speaker feature means of ``cuts`` when the model normalizes per speaker
    (``model.input_norm: speaker_mean``), else None (global CMVN)."""
    if input_norm != "speaker_mean":
        return None
    from lm2am.data.features import speaker_means
    return speaker_means(cuts)


def default_posterior_loader() -> PosteriorLoader:
    """``lm2am.lm.loader.load_teacher_posteriors`` (imported on first use)."""
    try:
        from lm2am.lm.loader import load_teacher_posteriors
    except ImportError as e:
        raise Lm2amError(f"cannot import lm2am.lm.loader ({e}); this system needs teacher "
                         "posteriors: run the teacher stages, or train a system without "
                         "heads or interpolation") from None
    return load_teacher_posteriors


class AmDataset(torch.utils.data.Dataset):
    """Map-style lhotse dataset: a CutSet (one sampler batch) -> the batch dict above.

    Args:
        cmvn: global ``(mean, std)`` per feature dimension.
        subsampling: the model's frame subsampling factor.
        teacher_dirs: ``unit -> posterior directory`` for the units to load (may be empty).
        posterior_loader: ``load_teacher_posteriors``-compatible callable; default: the
            teacher stage's (imported lazily, so it never loads when ``teacher_dirs`` is empty).
        vocab_sizes: ``unit -> vocabulary size`` of the heads, passed to the loader to check
            that the posteriors belong to that vocabulary.
        speaker_means: speaker -> mean of its raw features (``lm2am.data.speaker_means``);
            given, each cut's speaker mean replaces the global mean (speaker CMN; the global
            std still scales). See :func:`speaker_means_for`.
        perturber: per-cut perturbation of the raw features and their frame targets
            (:class:`lm2am.am.augment.CutPerturber`; training sets only). Frame-rate changes
            cannot be combined with teacher posteriors (stored for the original frames).
    """

    def __init__(self, cmvn: Tuple[np.ndarray, np.ndarray], subsampling: int = 1,
                 teacher_dirs: Optional[Mapping[str, Path]] = None,
                 posterior_loader: Optional[PosteriorLoader] = None,
                 vocab_sizes: Optional[Mapping[str, int]] = None,
                 perturber: Optional[Callable[..., Any]] = None,
                 speaker_means: Optional[Mapping[str, np.ndarray]] = None):
        self.perturber = perturber  # training only: lm2am.am.augment.CutPerturber
        self.speaker_means = speaker_means
        self.mean = np.asarray(cmvn[0], dtype=np.float32)
        self.inv_std = (1.0 / np.asarray(cmvn[1], dtype=np.float32)).astype(np.float32)
        self.subsampling = subsampling
        self.teacher_dirs = dict(teacher_dirs or {})
        self.posterior_loader = posterior_loader
        self.vocab_sizes = dict(vocab_sizes or {})

    def _mean_of(self, cut: Any) -> np.ndarray:
        if self.speaker_means is None:
            return self.mean
        return self.speaker_means[cut_speaker(cut)]

    def _loader(self) -> PosteriorLoader:
        if self.posterior_loader is None:
            self.posterior_loader = default_posterior_loader()
        return self.posterior_loader

    def __getitem__(self, cuts: Any) -> Dict[str, Any]:
        cuts = list(cuts)
        feats: List[np.ndarray] = []
        labels: Dict[str, List[np.ndarray]] = {k: [] for k in TARGET_FIELDS}
        for c in cuts:
            x = load_features(c)
            if x.shape[1] != self.mean.shape[0]:
                raise Lm2amError(f"cut {c.id}: {x.shape[1]}-dim features but the CMVN stats have "
                                 f"{self.mean.shape[0]} dims; recompute CMVN for these features")
            arrays = {}
            for k in TARGET_FIELDS:
                if not c.has_custom(k):
                    raise Lm2amError(f"cut {c.id} has no {k!r} targets; train on the targets "
                                     "stage's cuts (data/targets/cuts_<part>.jsonl.gz)")
                a = np.asarray(c.load_custom(k))
                if a.shape[0] != x.shape[0]:
                    raise Lm2amError(f"cut {c.id}: {k} targets have {a.shape[0]} frames but the "
                                     f"features {x.shape[0]}; rerun the targets stage")
                arrays[k] = a
            if self.perturber is not None:
                x, arrays = self.perturber(c.id, x, arrays)
            feats.append((x - self._mean_of(c)) * self.inv_std)
            for k in TARGET_FIELDS:
                labels[k].append(subsample(arrays[k], self.subsampling))
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        T = int(lengths.max()) if len(cuts) else 0
        Ts = num_subsampled(T, self.subsampling)
        x = torch.zeros(len(cuts), T, self.mean.shape[0])
        for i, f in enumerate(feats):
            x[i, :f.shape[0]] = torch.from_numpy(f)
        targets: Dict[str, torch.Tensor] = {}
        for k in TARGET_FIELDS:
            if k == "silence":
                t = torch.zeros(len(cuts), Ts, dtype=torch.bool)
            else:
                t = torch.full((len(cuts), Ts), -1, dtype=torch.long)
            for i, a in enumerate(labels[k]):
                t[i, :a.shape[0]] = torch.from_numpy(a.astype(bool if k == "silence" else np.int64))
            targets[k] = t
        cut_ids = [c.id for c in cuts]
        teacher: Dict[str, Dict[str, torch.Tensor]] = {}
        for unit, post_dir in sorted(self.teacher_dirs.items()):
            sp = self._loader()(Path(post_dir), cut_ids, [int(n) for n in lengths],
                                subsampling=self.subsampling, vocab_size=self.vocab_sizes.get(unit))
            teacher[unit] = _check_posteriors(sp, unit, post_dir, len(cuts), Ts, cut_ids)
        return {"features": x, "lengths": lengths, "cut_ids": cut_ids, "targets": targets,
                "teacher": teacher}


def _check_posteriors(sp: Any, unit: str, post_dir: Path, n: int, Ts: int,
                      cut_ids: Sequence[str]) -> Dict[str, torch.Tensor]:
    idx, probs, mask = sp.indices, sp.probs, sp.mask
    if idx.shape[:2] != (n, Ts) or probs.shape != idx.shape or mask.shape != (n, Ts):
        raise Lm2amError(f"{post_dir}: {unit} teacher posteriors of batch {cut_ids[0]}... have shape "
                         f"{tuple(idx.shape)} (mask {tuple(mask.shape)}) but the batch has {n} cuts "
                         f"x {Ts} frames; recompute the posteriors for the current features/subsampling")
    return {"indices": idx.long(), "probs": probs.float(), "mask": mask.bool()}


class _SamplerInit(torch.utils.data.Sampler):
    """torch 1.13's ``Sampler.__init__`` requires ``data_source``, which lhotse's samplers no
    longer pass (torch >= 2 made it optional); placed between lhotse's ``CutSampler`` and
    torch's ``Sampler`` in the MRO, it accepts the argument-less call."""

    def __init__(self, data_source: Any = None) -> None:
        pass


def _compat(cls: type) -> type:
    return type(cls.__name__, (cls, _SamplerInit), {"__module__": __name__})


def make_sampler(cuts: Any, max_duration: float, *, shuffle: bool, seed: int, num_buckets: int = 10,
                 world_size: int = 1, rank: int = 0):
    """lhotse ``DynamicBucketingSampler`` (duration buckets); ``state_dict()`` resumes it.

    With several processes the last incomplete round of batches is dropped (``drop_last``):
    lhotse would otherwise fill it with duplicated cuts under new ids (``<id>_dup0``), which
    have no teacher posteriors.
    """
    from lhotse.dataset import DynamicBucketingSampler

    with warnings.catch_warnings():  # eager cut sets are intended here (small, exact resume)
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet")
        return _compat(DynamicBucketingSampler)(
            cuts, max_duration=max_duration, shuffle=shuffle,
            num_buckets=min(num_buckets, max(1, len(cuts))), seed=seed, drop_last=world_size > 1,
            world_size=world_size, rank=rank, num_cuts_for_bins_estimate=min(10000, max(1, len(cuts))))


def make_eval_sampler(cuts: Any, max_duration: float, world_size: int = 1, rank: int = 0):
    """Deterministic, unshuffled batches for evaluation."""
    from lhotse.dataset import DynamicCutSampler

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet")
        return _compat(DynamicCutSampler)(cuts, max_duration=max_duration, shuffle=False,
                                          world_size=world_size, rank=rank)


def make_loader(dataset: AmDataset, sampler: Any, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """DataLoader over sampler batches (the sampler yields CutSets; ``batch_size=None``)."""
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                       num_workers=num_workers,
                                       persistent_workers=False)


def teacher_dirs(paths: DataPaths, units: Sequence[str], part: str, required: bool = True
                 ) -> Dict[str, Path]:
    """Posterior directory of each unit for ``part``; a missing one is an error when
    ``required``, otherwise left out (dev teachers are optional: losses without them)."""
    out: Dict[str, Path] = {}
    for u in units:
        d = paths.posterior_dir(u, part)
        if d.is_dir():
            out[u] = d
        elif required:
            raise Lm2amError(f"{d}: teacher posteriors for unit {u!r} of part {part!r} are missing; "
                             f"run the teacher-posterior stage for lm_{u} (or change the system)")
    return out


def batch_to(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    """Move a batch's tensors to ``device`` (nested dicts included)."""
    def mv(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.to(device, non_blocking=True)
        if isinstance(v, dict):
            return {k: mv(x) for k, x in v.items()}
        return v
    return {k: mv(v) for k, v in batch.items()}

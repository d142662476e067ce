"""Typed configs of the acoustic model stage: the model, the distillation system, training.

Three dataclasses, each loaded with :func:`lm2am.config.from_dict` (unknown keys are errors
naming the key):

* :class:`ModelConfig` -- encoder size and shape (``preset: cpu | gpu`` picks a starting point;
  the keys given next to it override the preset's values);
* :class:`SystemConfig` -- what is being compared: the main loss (CE or label interpolation)
  and the auxiliary heads (:class:`HeadConfig`: unit, attach layer, weight, temperature, ...);
* :class:`TrainConfig` -- optimizer, schedule, batches, checkpoints, averaging.

Where the values come from, later ones winning key by key:
``defaults < recipe config (section am: {model: ..., train: ...}) < system YAML (model:, train:)``.
A system YAML (``egs/<corpus>/s5/conf/systems/<name>.yaml``) has the top-level keys
``system`` (required) and optional ``model``/``train`` overrides; see :func:`load_system_file`.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from lm2am.config import from_dict, read_yaml
from lm2am.errors import Lm2amError
from lm2am.config import check_range

if TYPE_CHECKING:  # the augment module imports numpy; configs stay light
    from lm2am.am.augment import AugmentConfig

#: Units a head can predict, with the targets field holding each one's hard label.
UNITS: Dict[str, str] = {"senone": "senone", "monophone": "phone", "subword": "subword_id"}


#: Values of ``ModelConfig.input_norm``.
INPUT_NORMS: Tuple[str, ...] = ("global", "utterance_mean", "utterance", "speaker_mean")


@dataclass
class ModelConfig:
    """Encoder (a TDNN / TDNN-F stack of 1-D convolutions over time) and output layers.

    Attributes:
        preset: ``cpu`` (default values below) or ``gpu`` (:data:`MODEL_PRESETS`); other keys
            given with it override the preset's.
        feat_dim: input feature dimension (80-dim fbank).
        num_layers: encoder layers; heads attach to the output of layer ``1..num_layers``.
        hidden_dim: width of every encoder layer.
        bottleneck_dim: 0 = plain TDNN layers (conv ``hidden -> hidden``); > 0 = TDNN-F-like
            factorized layers (conv ``hidden -> bottleneck`` then ``bottleneck -> hidden``).
        input_kernel: window of the first layer (odd; frames of context = ``input_kernel // 2``).
        kernel_size: window of the later layers (odd), spread by ``dilations``.
        dilations: per-layer dilation (``num_layers`` entries, the first ignored); ``None``:
            1 for the lower half, 3 above (Kaldi's TDNN context pattern).
        dropout: dropout after every layer.
        residual: add each layer's input to its output (layers 2..; the TDNN-F bypass).
        subsampling: frame subsampling factor of the outputs (``lm2am.frames`` rule); 1 keeps
            10 ms frames, which a 3-state HMM topology needs at decoding time.
        subsample_after: layer after whose output frames are subsampled (0 = the input).
        head_bottleneck_dim: 0 = each auxiliary head is one linear layer; > 0 = linear to this
            size, ReLU, linear to the unit vocabulary.
        input_norm: normalization inside the model, after the global CMVN of the training
            part: ``global`` (none more), ``utterance_mean`` (each utterance's own mean removed)
            or ``utterance`` (each utterance's own mean and variance, as the GMM system's
            features) or ``speaker_mean`` (each speaker's mean over all its utterances of the
            part, Kaldi's ``apply-cmvn --utt2spk``; applied by the data loaders, which see
            whole parts, not by the model). Applied identically in training, evaluation and
            decoding.
        cepstral_lifter: 0 = off; K > 0 = keep only the first K cepstral coefficients of each
            (normalized) log-mel frame: a DCT-II to K coefficients and back, i.e. the spectrum
            smoothed across frequency as MFCCs are. It drops the fine harmonic structure
            (pitch) that tells training voices apart, for models that must carry over to
            unseen voices. Fixed (not trained), applied before ``input_norm``.
    """

    preset: str = "cpu"
    feat_dim: int = 80
    num_layers: int = 6
    hidden_dim: int = 256
    bottleneck_dim: int = 0
    input_kernel: int = 5
    kernel_size: int = 3
    dilations: Optional[List[int]] = None
    dropout: float = 0.1
    residual: bool = True
    subsampling: int = 1
    subsample_after: int = 1
    head_bottleneck_dim: int = 0
    input_norm: str = "global"
    cepstral_lifter: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.cepstral_lifter <= self.feat_dim:
            raise ValueError(f"cepstral_lifter must be in 0..feat_dim ({self.feat_dim}), "
                             f"got {self.cepstral_lifter}")
        check_range(self, "bottleneck_dim", 0)
        check_range(self, "head_bottleneck_dim", 0)
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.preset not in MODEL_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(MODEL_PRESETS)}, got {self.preset!r}")
        if self.num_layers < 1 or self.hidden_dim < 1 or self.feat_dim < 1:
            raise ValueError("num_layers, hidden_dim and feat_dim must be >= 1")
        if self.input_kernel % 2 != 1 or self.kernel_size % 2 != 1:
            raise ValueError("input_kernel and kernel_size must be odd")
        if self.dilations is not None and len(self.dilations) != self.num_layers:
            raise ValueError(f"dilations has {len(self.dilations)} entries but num_layers is "
                             f"{self.num_layers}; give one per layer or leave it null")
        if self.subsampling < 1:
            raise ValueError(f"subsampling must be >= 1, got {self.subsampling}")
        if not 0 <= self.subsample_after <= self.num_layers:
            raise ValueError(f"subsample_after must be in 0..{self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def layer_dilations(self) -> List[int]:
        """The dilation of each layer (the default pattern when ``dilations`` is null)."""
        if self.dilations is not None:
            return list(self.dilations)
        return [1 if i < (self.num_layers + 1) // 2 else 3 for i in range(self.num_layers)]


#: Starting points for ``model.preset``: key overrides on top of the dataclass defaults.
#: ``cpu`` (6 x 256, ~1.1M parameters with 300 senones): about 3k frames/s for training on
#: 2 shared, busy cores (an epoch of 1M frames in ~6 min; more on idle cores; dropout costs
#: ~25% of that, LayerNorm ~15%). ``gpu``: a 12-layer TDNN-F of ~20M parameters for an
#: accelerator and more data (raise ``train.max_duration`` with it).
MODEL_PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {},
    "gpu": {"num_layers": 12, "hidden_dim": 1536, "bottleneck_dim": 256, "dropout": 0.15,
            "dilations": [1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3], "head_bottleneck_dim": 256},
}


@dataclass
class HeadConfig:
    """One auxiliary output layer trained by distillation from a unit's teacher LM.

    Attributes:
        unit: ``senone`` | ``monophone`` | ``subword`` (teacher ``exp/lm_<unit>``).
        layer: encoder layer whose output the head reads, ``1..num_layers``; negative counts
            from the top (-1 = the last layer, where the main output also reads).
        weight: ``w_h`` in ``loss = main + sum_h w_h * head_loss_h``.
        temperature: ``T`` applied to the student logits: ``KL(p_teacher || softmax(z / T)) * T^2``
            (Hinton); the teacher posteriors were softened by the teacher stage already.
        loss: ``kd`` (distillation only) or ``kd+ce`` (plus ``ce_weight`` x CE to the hard unit
            label of the targets: senone, phone or subword_id).
        ce_weight: weight of that CE term inside the head loss (``kd+ce`` only).
        name: the head's name in logs and checkpoints (default: the unit).
    """

    unit: str = "senone"
    layer: int = -1
    weight: float = 0.3
    temperature: float = 2.0
    loss: str = "kd"
    ce_weight: float = 1.0
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if self.loss not in ("kd", "kd+ce"):
            raise ValueError(f"loss must be 'kd' or 'kd+ce', got {self.loss!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.weight < 0 or self.ce_weight < 0:
            raise ValueError("weight and ce_weight must be >= 0")
        if self.layer == 0:
            raise ValueError("layer counts from 1 (or from the top with -1, -2, ...), got 0")
        if self.name is None:
            self.name = self.unit

    def resolved_layer(self, num_layers: int) -> int:
        """The 1-based layer index for an encoder of ``num_layers`` layers (checked)."""
        layer = self.layer if self.layer > 0 else num_layers + 1 + self.layer
        if not 1 <= layer <= num_layers:
            raise Lm2amError(f"head {self.name!r}: layer {self.layer} does not exist in a "
                             f"{num_layers}-layer encoder; use 1..{num_layers} or -1..-{num_layers}")
        return layer


@dataclass
class SystemConfig:
    """One row of the comparison table (method.md): main output target and auxiliary heads.

    Attributes:
        name: the system's name (results table, logs).
        main_loss: ``ce`` (hard senones) or ``interpolation`` (target
            ``(1 - interp_lambda) * onehot + interp_lambda * p_LM(senone)``).
        interp_lambda: the interpolation weight (``interpolation`` only).
        heads: auxiliary output layers (dropped at decoding time).
        silence_frames: frames without an LM token (silence) in the distillation terms:
            ``skip`` leaves them out; ``include`` uses the hard label as a one-hot teacher there
            for senone/monophone heads (subwords have no silence unit and always skip them).
            Label interpolation always uses the plain one-hot target on silence frames.
    """

    name: str = "ce"
    main_loss: str = "ce"
    interp_lambda: float = 0.0
    heads: List[HeadConfig] = field(default_factory=list)
    silence_frames: str = "skip"

    def __post_init__(self) -> None:
        if self.main_loss not in ("ce", "interpolation"):
            raise ValueError(f"main_loss must be 'ce' or 'interpolation', got {self.main_loss!r}")
        if not 0.0 <= self.interp_lambda <= 1.0:
            raise ValueError(f"interp_lambda must be in [0, 1], got {self.interp_lambda}")
        if self.main_loss == "ce" and self.interp_lambda != 0.0:
            raise ValueError("interp_lambda is set but main_loss is 'ce'; set main_loss: interpolation")
        if self.silence_frames not in ("skip", "include"):
            raise ValueError(f"silence_frames must be 'skip' or 'include', got {self.silence_frames!r}")
        names = [h.name for h in self.heads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two heads are named {dup[0]!r}; give each a distinct name")
        if "main" in names:
            raise ValueError("'main' is the main output's name; rename that head")

    def teacher_units(self) -> List[str]:
        """Units whose teacher posteriors training needs (sorted, no duplicates)."""
        units = {h.unit for h in self.heads}
        if self.main_loss == "interpolation":
            units.add("senone")
        return sorted(units)


@dataclass
class TrainConfig:
    """Optimization, batching, checkpoints.

    Attributes:
        epochs: passes over the training part.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        schedule: ``warmup_cosine`` (linear warm-up, cosine decay to ``final_lr_ratio * lr``
            at the last step), ``noam`` (warm-up, then ``1/sqrt(step)``) or ``constant``.
        warmup_steps: warm-up length in optimizer steps.
        final_lr_ratio: end of the cosine decay, relative to ``lr``.
        max_duration: seconds of audio per batch (lhotse DynamicBucketingSampler), per process.
        num_buckets: duration buckets of the sampler.
        grad_clip: max gradient norm (0 disables clipping).
        seed: seeds init, dropout and batch order; CPU runs are bit-for-bit reproducible.
        checkpoint_every_steps: also checkpoint every N optimizer steps (0: per epoch only).
        keep_last: step checkpoints to keep (older ones are deleted).
        average_last_epochs: ``final.pt`` = parameter average of the last N epoch checkpoints.
        amp: mixed precision on CUDA (ignored on CPU).
        amp_dtype: ``float16`` (with a GradScaler) or ``bfloat16``.
        num_workers: DataLoader workers (0: load in the training process; deterministic).
        num_threads: torch CPU threads (0: torch's default).
        log_every_steps: a log line every N steps.
        valid: evaluate the dev part after every epoch (losses, frame accuracy per head).
        max_consecutive_nan: abort after this many batches in a row with a non-finite loss or
            gradient (each one is skipped with a warning).
        priors: ``counts`` (senone frequencies of the training targets) or ``posteriors``
            (average of the final model's posteriors over the training part).
        augment: training-time augmentation (:class:`lm2am.am.augment.AugmentConfig`: vtlp,
            time_stretch, spec_augment, ...); empty = none.
        max_hours: train on a fixed subset of the training part of at most this many hours
            (:mod:`lm2am.am.subset`: the same utterances for every system and seed, smaller
            subsets inside larger ones; priors counted on it); null = the whole part.
    """

    epochs: int = 6
    lr: float = 2e-3
    weight_decay: float = 1e-2
    schedule: str = "warmup_cosine"
    warmup_steps: int = 150
    final_lr_ratio: float = 0.05
    max_duration: float = 60.0
    num_buckets: int = 10
    grad_clip: float = 5.0
    seed: int = 1
    checkpoint_every_steps: int = 100
    keep_last: int = 2
    average_last_epochs: int = 2
    amp: bool = True
    amp_dtype: str = "float16"
    num_workers: int = 0
    num_threads: int = 0
    log_every_steps: int = 50
    valid: bool = True
    max_consecutive_nan: int = 20
    priors: str = "counts"
    augment: Dict[str, Any] = field(default_factory=dict)
    max_hours: Optional[float] = None

    def __post_init__(self) -> None:
        check_range(self, "weight_decay", 0)
        check_range(self, "max_hours", 0, lo_open=True)
        check_range(self, "warmup_steps", 0)
        check_range(self, "final_lr_ratio", 0, 1)
        check_range(self, "num_buckets", 1)
        check_range(self, "grad_clip", 0)
        check_range(self, "seed", 0)
        check_range(self, "checkpoint_every_steps", 0)
        check_range(self, "num_workers", 0)
        check_range(self, "num_threads", 0)
        check_range(self, "log_every_steps", 1)
        check_range(self, "max_consecutive_nan", 1)
        self.augment_config()  # unknown or bad augment keys fail here, naming the key
        if self.schedule not in ("warmup_cosine", "noam", "constant"):
            raise ValueError(f"schedule must be warmup_cosine, noam or constant, got {self.schedule!r}")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")
        if self.priors not in ("counts", "posteriors"):
            raise ValueError(f"priors must be 'counts' or 'posteriors', got {self.priors!r}")
        if self.epochs < 1 or self.max_duration <= 0 or self.lr <= 0:
            raise ValueError("epochs, max_duration and lr must be > 0")
        if self.average_last_epochs < 1 or self.keep_last < 1:
            raise ValueError("average_last_epochs and keep_last must be >= 1")

    def augment_config(self) -> "AugmentConfig":
        """``augment`` as a typed :class:`~lm2am.am.augment.AugmentConfig`."""
        from lm2am.am.augment import AugmentConfig

        try:
            return from_dict(AugmentConfig, self.augment, "augment")
        except Lm2amError as e:
            raise ValueError(str(e)) from None


@dataclass
class AmConfig:
    """The ``am:`` section of a recipe config: model and training defaults for every system."""

    model: Dict[str, Any] = field(default_factory=dict)
    train: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # validate now, so `check_config` reports bad keys early
        make_model_config(self.model, "am.model")
        from_dict(TrainConfig, self.train, "am.train")


def make_model_config(data: Optional[Mapping[str, Any]], where: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from a mapping, starting from its ``preset`` (default ``cpu``)."""
    data = dict(data or {})
    preset = data.get("preset", "cpu")
    if preset not in MODEL_PRESETS:
        raise Lm2amError(f"{where}.preset: unknown preset {preset!r}; use one of "
                         f"{', '.join(MODEL_PRESETS)}")
    merged = {**copy.deepcopy(MODEL_PRESETS[preset]), **data}
    return from_dict(ModelConfig, merged, where)


def _merge(*layers: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for layer in layers:
        out.update(layer or {})
    return out


def load_system_file(path: Path | str, recipe_config: Optional[Path | str] = None,
                     overrides: Optional[Mapping[str, Mapping[str, Any]]] = None
                     ) -> Tuple[SystemConfig, ModelConfig, TrainConfig]:
    """Load a system YAML (keys ``system``, optional ``model``/``train``) over the recipe
    config's ``am`` section; ``overrides`` (``{"train": {"seed": 3}}``) win over both.

    A model preset named in the system file replaces the recipe's model section (its values
    would otherwise mix two presets).
    """
    return system_from_data(read_yaml(path), str(path), recipe_config, overrides)


def system_from_data(data: Mapping[str, Any], where: str, recipe_config: Optional[Path | str] = None,
                     overrides: Optional[Mapping[str, Mapping[str, Any]]] = None
                     ) -> Tuple[SystemConfig, ModelConfig, TrainConfig]:
    """:func:`load_system_file` on a system file's content (errors start with ``where``)."""
    unknown = sorted(set(data) - {"system", "model", "train"})
    if unknown:
        raise Lm2amError(f"{where}: unknown key '{unknown[0]}'; a system file has the keys "
                         "system, model, train")
    if "system" not in data:
        raise Lm2amError(f"{where}: no 'system' section; see conf/systems/ce.yaml for an example")
    base: Dict[str, Any] = {}
    if recipe_config is not None:
        am = read_yaml(recipe_config).get("am") or {}
        base = dataclasses.asdict(from_dict(AmConfig, am, f"{recipe_config}: am"))
    overrides = overrides or {}
    model_base = base.get("model") or {}
    if "preset" in (data.get("model") or {}):
        model_base = {}
    for sec in ("model", "train"):
        if data.get(sec) is not None and not isinstance(data[sec], dict):
            raise Lm2amError(f"{where}: {sec}: expected a mapping, got {data[sec]!r}")
    model = make_model_config(_merge(model_base, data.get("model"), overrides.get("model")),
                              f"{where}: model")
    train = from_dict(TrainConfig, _merge(base.get("train"), data.get("train"), overrides.get("train")),
                      f"{where}: train")
    system = from_dict(SystemConfig, data["system"], f"{where}: system")
    for h in system.heads:
        try:
            h.resolved_layer(model.num_layers)
        except Lm2amError as e:
            raise Lm2amError(f"{where}: {e}") from None
    return system, model, train


def config_dict(system: SystemConfig, model: ModelConfig, train: TrainConfig) -> Dict[str, Any]:
    """The three configs as one plain dict (stored in checkpoints, logged at start)."""
    return {"system": dataclasses.asdict(system), "model": dataclasses.asdict(model),
            "train": dataclasses.asdict(train)}

"""The teacher LM: a small transformer over one unit's tokens, and its config section ``lm:``.

Architecture (:class:`TransformerLM`): token + learned position embeddings, a residual local
convolution over them (``conv_kernel`` tokens; causal: left context only), ``num_layers``
pre-norm transformer encoder layers (GELU), final LayerNorm, output layer tied to the token
embeddings. Why the convolution: a masked position's own input is ``<mask>``, so without it
everything must come through attention, which first has to learn where the neighbours are; on
the demo's phone LM that plateau cost hundreds of updates at unigram level, while the
convolution gives each position its neighbours from the first update (as a causal LM gets its
previous token for free). Padding is zeroed before the convolution, so batching never changes a
result. Two kinds (``arch``):

* ``masked`` (default, BERT-style): bidirectional; trained to predict randomly chosen positions
  (``mask_prob``; of those 80 % replaced by ``<mask>``, 10 % by a random token, 10 % kept) from
  the rest. Its teacher distribution for position ``i`` is ``p(x_i | x_{\\i})`` with ``x_i``
  masked. With ``mask_span: phone`` (senones) the unit of masking is a phone occurrence: all
  its HMM-state tokens are masked together in training and scoring, and position ``i`` gets
  ``p(x_i | tokens of the other phones)`` (whose context-dependent senones still hint at it).
  With single-token masking the other states of the same phone give a senone away, so that
  teacher is near one-hot.
* ``causal``: left-to-right with a ``<bos>`` prefix; position ``i``'s distribution is
  ``p(x_i | x_{<i})``. Cheaper (one forward per sequence) but sees only the left context.

Ids: ``0..V-1`` are the unit's tokens (``V`` = vocabulary size), then ``<pad>`` = ``V``,
``<mask>`` = ``V+1``, ``<bos>`` = ``V+2``. The output layer covers only ``0..V-1``, so a
teacher distribution never puts mass on a special id. Sequences longer than ``max_len`` are
read in windows (training: random crops; scoring: overlapping windows, see
:func:`lm2am.lm.scoring.plan_windows`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import nn

from lm2am.errors import Lm2amError
from lm2am.config import RangeError, check_range

__all__ = ["LmConfig", "TransformerLM", "ARCHS", "MASK_SPANS", "POSTERIOR_KEYS"]

ARCHS = ("masked", "causal")
#: What a masked LM masks as one: a token, or all tokens of one phone occurrence (``mask_span``).
MASK_SPANS = ("token", "phone")
#: LmConfig keys used only when scoring (posteriors, dev perplexity), not by training.
POSTERIOR_KEYS = ("temperature", "top_k", "mask_spacing", "eval_batch_tokens")
_UNITS = ("senone", "phone", "subword")


@dataclass
class LmConfig:
    """The ``lm:`` section of a recipe config: teacher LM size, training, posterior extraction.

    ``units`` holds per-unit overrides of any other key, e.g. ``{senone: {max_len: 512}}``.
    """

    # model
    arch: str = "masked"  # masked (bidirectional, BERT-style) | causal
    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    max_len: int = 256  # tokens per window (longer sequences: crops / overlapping windows)
    conv_kernel: int = 5  # local convolution over the embeddings (0: none); see the module doc
    # training
    mask_prob: float = 0.15  # masked LM: fraction of positions (spans) predicted per sequence
    # masked LM, training and scoring: what is masked together. token: one token (a senone is
    # then read off the other states of its phone: pseudo-ppl ~1.0); phone: all tokens of one
    # phone occurrence, so a senone is predicted from the other phones. Changes the senone
    # teacher only (a phone token is one phone; subword tokens are not phone-aligned: token)
    mask_span: str = "token"
    epochs: int = 5
    max_steps: Optional[int] = None  # stop after this many updates (None: epochs decide)
    batch_tokens: int = 4096  # padded tokens per training batch
    lr: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    seed: int = 0
    max_lm_sentences: Optional[int] = None  # cap on LM-text sentences (CI / CPU demos)
    include_am_text: bool = True  # add the AM training transcripts to the LM text
    sil_prob: float = 0.2  # senone text: SIL context at a word boundary (optional silence)
    max_dev_sentences: int = 500  # dev (pseudo-)perplexity on at most this many sentences
    checkpoint_every: int = 200  # updates between checkpoints (and at every epoch end)
    # teacher posteriors
    temperature: float = 1.0  # teacher softening: softmax(logits / T), T >= 0.1
    top_k: int = 8  # entries kept per frame (renormalized)
    mask_spacing: int = 8  # masked LM scoring: positions masked together are this far apart;
    #                        0 = one per copy (exact p(x_i | rest)); 8 is within 0.002 nats of
    #                        exact on the demo and ~n/8 times cheaper (lm2am/lm/scoring.py)
    eval_batch_tokens: int = 16384  # padded tokens per scoring batch
    units: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # per-unit overrides

    def __post_init__(self) -> None:
        check_range(self, "seed", 0)
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.mask_span not in MASK_SPANS:
            raise RangeError("mask_span", f"must be one of {', '.join(MASK_SPANS)}, got {self.mask_span!r}")
        if self.mask_span != "token" and self.arch != "masked":
            raise RangeError("mask_span", f"{self.mask_span!r} needs arch masked (a causal LM masks nothing)")
        for name in ("num_layers", "d_model", "num_heads", "ffn_dim", "max_len", "epochs",
                     "batch_tokens", "eval_batch_tokens", "top_k", "checkpoint_every",
                     "max_dev_sentences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of num_heads "
                             f"({self.num_heads})")
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 or an odd number, got {self.conv_kernel}")
        if self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")
        if self.batch_tokens < self.max_len or self.eval_batch_tokens < self.max_len:
            raise ValueError(f"batch_tokens and eval_batch_tokens must be >= max_len ({self.max_len})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")
        if not 0.0 <= self.sil_prob <= 1.0:
            raise ValueError(f"sil_prob must lie in [0, 1], got {self.sil_prob}")
        if self.temperature < 0.1:
            raise ValueError(f"temperature must be >= 0.1, got {self.temperature}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.mask_spacing < 0:
            raise ValueError("warmup_steps, weight_decay and mask_spacing must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.max_lm_sentences is not None and self.max_lm_sentences < 0:
            raise ValueError(f"max_lm_sentences must be >= 0 or null, got {self.max_lm_sentences}")
        for unit, over in self.units.items():
            if unit not in _UNITS:
                raise ValueError(f"units: unknown unit {unit!r}; use {', '.join(_UNITS)}")
            bad = sorted(set(over) - {f.name for f in dataclasses.fields(self)} | ({"units"} & set(over)))
            if bad:
                raise ValueError(f"units.{unit}: unknown key {bad[0]!r}")
            if unit == "subword" and over.get("mask_span") == "phone":
                raise RangeError("units.subword.mask_span", "'phone' does not apply to subword tokens "
                                 "(they are not phone-aligned); use token")
            if over:
                self.for_unit(unit)  # the merged values checked now (stage 0), not at stage 12

    def for_unit(self, unit: str) -> "LmConfig":
        """This config with ``units[unit]``'s overrides applied (and type-checked)."""
        from lm2am.config import from_dict

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "units"}
        if unit == "subword":  # a global mask_span: phone is for the phone-aligned units
            d["mask_span"] = "token"
        d.update(self.units.get(unit, {}))
        return from_dict(LmConfig, d, f"lm.units.{unit}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def training_dict(self) -> Dict[str, Any]:
        """The keys that shape the trained model (for done markers and resume checks): the
        posterior-extraction options can change without retraining."""
        return {k: v for k, v in self.to_dict().items() if k not in POSTERIOR_KEYS}


class TransformerLM(nn.Module):
    """Transformer LM over ``vocab_size`` unit tokens (module docstring for ids and kinds)."""

    def __init__(self, vocab_size: int, cfg: LmConfig):
        super().__init__()
        if vocab_size < 2:
            raise Lm2amError(f"vocabulary size {vocab_size} is too small for an LM")
        self.vocab_size = int(vocab_size)
        self.pad_id, self.mask_id, self.bos_id = vocab_size, vocab_size + 1, vocab_size + 2
        self.causal = cfg.arch == "causal"
        self.max_len = cfg.max_len
        d = cfg.d_model
        self.embed = nn.Embedding(vocab_size + 3, d, padding_idx=self.pad_id)
        self.pos = nn.Embedding(cfg.max_len, d)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        k = cfg.conv_kernel
        # causal: only the k-1 tokens to the left (padded on the left); masked: k//2 each side
        self.conv = nn.Conv1d(d, d, k) if k else None
        self.conv_pad = ((k - 1, 0) if self.causal else (k // 2, k // 2)) if k else (0, 0)
        self.norm = nn.LayerNorm(d)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[self.pad_id].zero_()

    def hidden(self, tokens: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, L] input ids (``pad_mask`` True on padding) -> [B, L, d] final hidden states."""
        B, L = tokens.shape
        if L > self.max_len:
            raise ValueError(f"input length {L} > max_len {self.max_len}")
        pos = torch.arange(L, device=tokens.device)
        x = self.embed(tokens) * math.sqrt(self.embed.embedding_dim) + self.pos(pos)
        if self.conv is not None:
            if pad_mask is not None:  # padding must look like the conv's zero padding
                x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
            c = self.conv(nn.functional.pad(x.transpose(1, 2), self.conv_pad))
            x = x + c.transpose(1, 2)
        x = self.drop(x)
        mask = None
        if self.causal:
            mask = torch.triu(torch.full((L, L), float("-inf"), device=tokens.device), diagonal=1)
        h = self.encoder(x, mask=mask, src_key_padding_mask=pad_mask)
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., d] -> logits over the unit's vocabulary [..., V] (tied weights)."""
        return h @ self.embed.weight[: self.vocab_size].t() + self.out_bias

    def forward(self, tokens: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [B, L, V] for every input position."""
        return self.logits(self.hidden(tokens, pad_mask))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

"""Log-likelihoods of a trained AM on a part, for decoding (lm2am.decode / steps/decode.py).

For every cut of a features manifest (``data/fbank/cuts_<part>.jsonl.gz``: features only, so
parts without targets or teacher posteriors work, e.g. ``test-asterisk``) the AM's main output
gives senone log-posteriors ``log p(s|x)`` at the model's frame rate; minus the log senone
priors ``log p(s)`` that is the hybrid AM's scaled likelihood
(:func:`lm2am.decode.result.loglikes_from_log_posteriors`). Features are normalized with the global
CMVN the model was trained with (stored in ``final.pt``; ``cmvn`` overrides it).

Priors: ``<exp_dir>/priors.npy``, written when training ends (lm2am.am.train); when it is
missing and ``train_cuts`` (the training part's targets cuts) is given, they are recomputed from
the training targets' senone counts (:func:`lm2am.am.priors.count_priors`) and saved there.

Output: a Kaldi float32 matrix ark/scp ``[frames, num_pdfs]`` keyed by cut id (scp lines sorted,
naming the final ark path), written to temporary names and renamed, plus ``<name>.json`` with
the frame counts, the model's ``subsampling_factor`` (pass it to ``steps/decode.py
--subsampling-factor``: the decoder repeats each output frame that often) and the AM's
real-time factor. A done marker (model, priors, cuts, CMVN) makes an unchanged rerun a no-op.

Frames: a model with subsampling ``f`` outputs ``num_subsampled(T, f)`` frames for ``T`` input
frames (lm2am.frames); expanded ``f`` times by the decoder that is within ``f - 1`` frames of
``T``. Both counts are checked per utterance.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from lm2am.errors import Lm2amError
from lm2am.io import DoneMarker, atomic_path, atomic_write_text
from lm2am.data.features import cut_speaker, load_features

log = logging.getLogger(__name__)

__all__ = ["LoglikesInfo", "resolve_priors", "compute_loglikes", "read_loglikes_info"]


@dataclass
class LoglikesInfo:
    """What :func:`compute_loglikes` wrote (also stored as ``<scp stem>.json``)."""

    model: str
    cuts: str
    priors: str
    scp: str
    utterances: int
    input_frames: int
    output_frames: int
    num_pdfs: int
    subsampling_factor: int
    audio_seconds: float
    seconds: float

    @property
    def rtf(self) -> float:
        """AM forward time (features loaded, CMVN, network, priors) / audio duration."""
        return self.seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0


def read_loglikes_info(scp: Path | str) -> Dict[str, Any]:
    """The JSON written next to ``scp`` by :func:`compute_loglikes`."""
    p = Path(scp).with_suffix(".json")
    if not p.is_file():
        raise Lm2amError(f"{p} is missing; compute the log-likelihoods with steps/compute_loglikes.py")
    return json.loads(p.read_text())


def resolve_priors(exp_dir: Path | str, num_senones: int, subsampling: int = 1,
                   train_cuts: Optional[Path | str] = None) -> Tuple[np.ndarray, Path]:
    """Log senone priors of the AM in ``exp_dir``: its ``priors.npy``, or (when that is missing
    and ``train_cuts`` is given) the add-one senone counts of the training targets, saved as
    ``priors.npy``. Returns ``(log_priors, path)``."""
    from lm2am.am.priors import count_priors, load_priors, save_priors

    path = Path(exp_dir) / "priors.npy"
    if path.is_file():
        return load_priors(path, num_senones), path
    if train_cuts is None:
        raise Lm2amError(f"{path}: senone priors missing; rerun training (it writes them), or pass "
                         "the training targets cuts (--train-cuts) to count them")
    from lhotse import CutSet

    train_cuts = Path(train_cuts)
    if not train_cuts.is_file():
        raise Lm2amError(f"{train_cuts}: training targets cuts missing; run the targets stage")
    log.info("%s missing: counting senone priors from %s", path, train_cuts)
    p = count_priors(CutSet.from_file(train_cuts), num_senones, subsampling)
    save_priors(path, p)
    return p, path


def _batches(cuts: List[Any], max_frames: int) -> List[List[Any]]:
    """Cuts sorted by length, grouped so that padded frames stay under ``max_frames``."""
    out: List[List[Any]] = []
    batch: List[Any] = []
    for c in sorted(cuts, key=lambda c: (c.num_frames, c.id)):
        if batch and c.num_frames * (len(batch) + 1) > max_frames:
            out.append(batch)
            batch = []
        batch.append(c)
    if batch:
        out.append(batch)
    return out


@torch.no_grad()
def compute_loglikes(model_path: Path | str, cuts_path: Path | str, out_scp: Path | str,
                     device: str = "cpu", cmvn: Optional[Path | str] = None,
                     train_cuts: Optional[Path | str] = None, max_frames: int = 20000,
                     force: bool = False) -> LoglikesInfo:
    """Write ``log p(s|x) - log p(s)`` of the AM ``model_path`` (``final.pt``) for every cut of
    ``cuts_path`` to ``out_scp`` (+ its ark and ``.json``); see the module docstring.

    Args:
        model_path: trained model; its directory holds ``priors.npy``.
        cuts_path: lhotse cuts with features (no targets needed).
        out_scp: ``.../loglikes.scp``; the ark is the same path with suffix ``.ark``.
        device: ``cpu`` or ``cuda[:n]``.
        cmvn: global CMVN stats (Kaldi format) to use instead of the ones stored in the model.
        train_cuts: training targets cuts, to count priors when ``priors.npy`` is missing.
        max_frames: padded input frames per forward batch.
        force: recompute even when the done marker says the output is up to date.
    """
    from lhotse import CutSet

    from lm2am.am.checkpoint import load_model

    model_path, cuts_path, out_scp = Path(model_path), Path(cuts_path), Path(out_scp)
    if out_scp.suffix != ".scp":
        raise Lm2amError(f"{out_scp}: the output must end in .scp (the ark goes next to it)")
    if any(ch.isspace() for ch in str(out_scp)):
        raise Lm2amError(f"{out_scp}: contains whitespace, which Kaldi scp files cannot hold; use another path")
    if not cuts_path.is_file():
        raise Lm2amError(f"{cuts_path}: cuts missing; run the features stage for this part")
    out_ark, out_json = out_scp.with_suffix(".ark"), out_scp.with_suffix(".json")
    dev = torch.device(device)
    model, info = load_model(model_path, dev)
    num_pdfs, f = int(info["num_senones"]), int(model.cfg.subsampling)
    log_priors, priors_path = resolve_priors(model_path.parent, num_pdfs, f, train_cuts)

    marker = DoneMarker(out_scp.with_name(f".{out_scp.stem}.done"), params={"max_frames": max_frames},
                        inputs=[model_path, priors_path, cuts_path] + ([Path(cmvn)] if cmvn else []))
    if not force and marker.is_done() and out_scp.is_file() and out_ark.is_file() and out_json.is_file():
        log.info("%s: log-likelihoods are up to date, skipping", out_scp)
        return LoglikesInfo(**{k: v for k, v in json.loads(out_json.read_text()).items()
                               if k in LoglikesInfo.__dataclass_fields__})

    mean, std = _cmvn_stats(model, model_path, cmvn, dev)
    priors_t = torch.as_tensor(log_priors, dtype=torch.float32, device=dev)

    cuts = list(CutSet.from_file(cuts_path))
    if not cuts:
        raise Lm2amError(f"{cuts_path}: no cuts; the part is empty")
    t0 = time.time()
    from lm2am.am.data import speaker_means_for
    spk_means = speaker_means_for(model.cfg.input_norm, cuts)
    n_in, n_out, audio = _write_loglikes(model, cuts, max_frames, mean, std, priors_t, out_scp,
                                         model_path, cuts_path, spk_means)
    seconds = time.time() - t0
    res = LoglikesInfo(model=str(model_path), cuts=str(cuts_path), priors=str(priors_path), scp=str(out_scp),
                       utterances=len(cuts), input_frames=n_in, output_frames=n_out, num_pdfs=num_pdfs,
                       subsampling_factor=f, audio_seconds=round(audio, 3), seconds=round(seconds, 3))
    atomic_write_text(out_json, json.dumps({**asdict(res), "rtf": round(res.rtf, 5)}, indent=1) + "\n")
    marker.mark()
    log.info("%s: %d utterances, %d frames (subsampling %d) of %d pdfs in %.1f s (AM real-time factor %.4f)",
             out_scp, res.utterances, n_out, f, num_pdfs, seconds, res.rtf)
    return res


def _write_loglikes(model: Any, cuts: List[Any], max_frames: int, mean: torch.Tensor,
                    std: torch.Tensor, priors: torch.Tensor, out_scp: Path, model_path: Path,
                    cuts_path: Path, spk_means: Optional[Dict[str, np.ndarray]] = None
                    ) -> Tuple[int, int, float]:
    """The ark and its scp (sorted, naming the final ark), batch by batch; returns input
    frames, output frames and audio seconds."""
    import kaldiio
    from tqdm import tqdm

    out_ark = out_scp.with_suffix(".ark")
    n_in = n_out = 0
    audio = 0.0
    with atomic_path(out_scp) as tmp_scp, atomic_path(out_ark) as tmp_ark:  # ark renamed first
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer, \
                tqdm(total=len(cuts), desc=f"loglikes {cuts_path.name}", unit="cut", disable=None) as bar:
            for batch in _batches(cuts, max_frames):
                for c, m, T in _batch_loglikes(model, batch, mean, std, priors, model_path, cuts_path,
                                               spk_means):
                    writer(c.id, m)
                    n_in += T
                    n_out += m.shape[0]
                    audio += float(c.duration)
                bar.update(len(batch))
        # the scp must name the final ark (and be sorted, C locale, as Kaldi's are)
        lines = tmp_scp.read_text().replace(f" {tmp_ark}:", f" {out_ark}:").splitlines()
        tmp_scp.write_text("".join(f"{ln}\n" for ln in sorted(lines, key=lambda s: s.encode())))
    return n_in, n_out, audio


def _cmvn_stats(model: Any, model_path: Path, cmvn: Optional[Path | str], dev: torch.device
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` to normalize with: the given stats (a warning when they differ from the
    model's), else the ones stored in the model; checked against its feature dimension."""
    if cmvn is not None:
        from lm2am.data import load_global_cmvn

        mean, std = (torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev) for a in load_global_cmvn(cmvn))
        if not (torch.allclose(mean, model.cmvn_mean, atol=1e-3) and torch.allclose(std, model.cmvn_std, atol=1e-3)):
            log.warning("%s: CMVN stats differ from the ones %s was trained with; using %s", cmvn, model_path, cmvn)
    else:
        mean, std = model.cmvn_mean, model.cmvn_std
        if bool((mean == 0).all() and (std == 1).all()):
            raise Lm2amError(f"{model_path} stores no CMVN stats; pass the training CMVN (--cmvn)")
    if mean.shape[0] != model.cfg.feat_dim:
        raise Lm2amError(f"CMVN stats have {mean.shape[0]} dims but {model_path} takes {model.cfg.feat_dim}")
    return mean, std


def _batch_loglikes(model: Any, batch: List[Any], mean: torch.Tensor, std: torch.Tensor,
                    priors: torch.Tensor, model_path: Path, cuts_path: Path,
                    spk_means: Optional[Dict[str, np.ndarray]] = None
                    ) -> List[Tuple[Any, np.ndarray, int]]:
    """``(cut, float32 [frames, num_pdfs] log-likelihoods, input frames)`` of each cut of a
    batch; frame counts and finiteness checked. With ``spk_means`` (speaker CMN) each cut's
    speaker mean replaces the global ``mean``."""
    from lm2am.decode.result import loglikes_from_log_posteriors
    from lm2am.frames import num_subsampled

    dev, f = mean.device, int(model.cfg.subsampling)
    feats = []
    for c in batch:
        if not c.has_features:
            raise Lm2amError(f"{cuts_path}: cut {c.id} has no features; use the features "
                             "stage's cuts (data/fbank/cuts_<part>.jsonl.gz)")
        x = load_features(c)
        if x.ndim != 2 or x.shape[1] != model.cfg.feat_dim:
            raise Lm2amError(f"cut {c.id}: features of shape {x.shape} but {model_path} takes "
                             f"{model.cfg.feat_dim}-dim features")
        x = np.asarray(x, np.float32)
        if spk_means is not None:  # shift so that the global "- mean" below removes the speaker's
            x = x - (spk_means[cut_speaker(c)] - mean.cpu().numpy())
        feats.append(torch.from_numpy(x))
    lengths = torch.tensor([x.shape[0] for x in feats], dtype=torch.long)
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(dev)
    x = (x - mean) / std  # padding is zeroed inside the model
    out = model(x, lengths.to(dev), with_aux=False)
    ll = loglikes_from_log_posteriors(out["main"], priors).float().cpu().numpy()
    out_len = out["lengths"].cpu().tolist()
    res = []
    for i, c in enumerate(batch):
        T, Ts = int(lengths[i]), int(out_len[i])
        if Ts != num_subsampled(T, f) or abs(Ts * f - T) >= f:
            raise Lm2amError(f"cut {c.id}: the AM gave {Ts} frames for {T} input frames, expected "
                             f"{num_subsampled(T, f)} (subsampling {f}); a model/frames mismatch")
        m = ll[i, :Ts]
        if not np.isfinite(m).all():
            raise Lm2amError(f"cut {c.id}: non-finite log-likelihoods from {model_path}; "
                             "the model or its priors are broken")
        res.append((c, np.ascontiguousarray(m, dtype=np.float32), T))
    return res

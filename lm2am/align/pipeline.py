"""The alignment stages over files: train the flat-start aligner on a part's cuts, align cuts
job by job, and read the alignments back.

Artifacts in the aligner directory (``exp/ali_mono``):

- ``final.pt``: model state, its sizes, the ``AlignConfig``/``HmmTopo`` it was trained with and
  the phone table; ``history.json``: log-likelihood per frame by training round (also in
  ``tensorboard/``).
- ``states_<part>.<job>.ark/.scp`` and ``phones_<part>.<job>.ark/.scp``: Kaldi int-vector arks
  (monophone-state index and phones.txt id per frame; readable with Kaldi's
  ``copy-int-vector``), keyed by cut id.
- ``words_<part>.<job>.ctm``: word boundaries, CTM lines ``utt 1 start dur WORD`` (seconds).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from lm2am.align.flat_start import AlignConfig, train_flat_start
from lm2am.align.model import MonoStateModel
from lm2am.align.topo import HmmTopo
from lm2am.align.viterbi import Alignment, align
from lm2am.errors import Lm2amError
from lm2am.io import atomic_path, atomic_write_text
from lm2am.lang import read_phone_list
from lm2am.data.features import load_features

log = logging.getLogger("lm2am.align")


def load_lexicon(lang_dir: Path | str) -> Dict[str, List[List[str]]]:
    """word -> every pronunciation of ``lang_dir/lexicon.txt`` (file order), the form the
    training graphs take (each pronunciation an alternative: :mod:`lm2am.align.graphs`)."""
    from lm2am.lang import read_lexicon

    return {w: [list(p) for p in prons] for w, prons in read_lexicon(lang_dir, check_phones=True).items()}


def cut_inputs(cuts) -> Tuple[List[str], List[np.ndarray], List[List[str]]]:
    """(ids, features, words) of each cut (one supervision per cut)."""
    from tqdm import tqdm

    ids, feats, texts = [], [], []
    for c in tqdm(cuts, desc="load features", unit="cut", disable=None, leave=False):
        ids.append(c.id)
        feats.append(load_features(c))
        texts.append(c.supervisions[0].text.split())
    return ids, feats, texts


def train_aligner(cuts, lang_dir: Path | str, out_dir: Path | str, cfg: AlignConfig,
                  topo: HmmTopo, max_utts: Optional[int] = None, device: str = "cpu",
                  source: str = "train_aligner") -> List[dict]:
    """Flat-start training on ``cuts`` (at most ``max_utts``, evenly spread); writes ``final.pt``
    and ``history.json`` in ``out_dir`` atomically (TensorBoard scalars in ``tensorboard/``) and
    returns the history. ``source`` (e.g. the cuts file) is named in messages."""
    import torch

    out_dir = Path(out_dir)
    cuts = list(cuts)
    if max_utts is not None and len(cuts) > max_utts:
        step = len(cuts) / max_utts
        cuts = [cuts[int(i * step)] for i in range(max_utts)]
    ids, feats, texts = cut_inputs(cuts)
    phones = read_phone_list(lang_dir)
    model, history = train_flat_start(feats, texts, load_lexicon(lang_dir), phones, topo, cfg,
                                      device=device, utt_ids=ids, tb_dir=out_dir / "tensorboard", source=source)
    log.info("log-likelihood per frame by round: %s",
             " ".join(f"{h['loglike_per_frame']:.3f}" for h in history))
    ckpt = {"state_dict": model.cpu().state_dict(), "feat_dim": model.feat_dim,
            "num_pdfs": model.num_pdfs, "cfg": dataclasses.asdict(cfg),
            "topo": dataclasses.asdict(topo), "phones": phones}
    with atomic_path(out_dir / "final.pt") as tmp:
        torch.save(ckpt, tmp)
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")
    return history


def load_aligner(model_dir: Path | str) -> Tuple[Optional[MonoStateModel], Optional[AlignConfig], HmmTopo, List[str]]:
    """Load ``final.pt`` written by :func:`train_aligner`; for a GMM directory (``exp/mono_gmm``)
    or a realignment's (``exp/ali_am``), whose ``final.pt`` only describes their alignments,
    the model and config are None."""
    import torch

    path = Path(model_dir) / "final.pt"
    if not path.is_file():
        raise Lm2amError(f"{path}: aligner model missing; run the aligner training stage first")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    topo = HmmTopo(**ckpt["topo"])
    if ckpt.get("kind") in ("gmm", "am"):  # a GMM system's or a realignment's directory
        return None, None, topo, ckpt["phones"]  # (lm2am.gmm, lm2am.align.realign): no aligner network
    cfg = AlignConfig(**ckpt["cfg"])
    model = MonoStateModel(ckpt["feat_dim"], ckpt["num_pdfs"], cfg.hidden_dim, cfg.num_layers,
                           cfg.kernel_size, cfg.input_norm)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, cfg, topo, ckpt["phones"]


def align_cuts(model_dir: Path | str, cuts, lang_dir: Path | str, out_dir: Path | str,
               name: str, device: str = "cpu", allow_failures: bool = True) -> List[Alignment]:
    """Align ``cuts`` and write ``states_<name>``/``phones_<name>`` arks and ``words_<name>.ctm``.

    Utterances with no path (too short for their transcript) are dropped with a warning when
    ``allow_failures``; the count is logged.
    """
    model, cfg, topo, phones = load_aligner(model_dir)
    if model is None:
        raise Lm2amError(f"{model_dir} holds a GMM system; align with steps/align_gmm.py")
    if phones != read_phone_list(lang_dir):
        raise Lm2amError(f"{model_dir}/final.pt was trained with another phones.txt than {lang_dir}; retrain the aligner")
    ids, feats, texts = cut_inputs(cuts)
    alis = align(model, feats, texts, load_lexicon(lang_dir), phones, topo, device=device,
                 batch_size=cfg.batch_size, utt_ids=ids, allow_failures=allow_failures)
    if len(alis) < len(ids):
        log.warning("%s: %d of %d utterances could not be aligned and are left out", name,
                    len(ids) - len(alis), len(ids))
    write_alignments(alis, out_dir, name, cuts[0].frame_shift if len(cuts) else 0.01)
    return alis


def write_alignments(alis: List[Alignment], out_dir: Path | str, name: str, frame_shift: float) -> None:
    """``states_<name>``/``phones_<name>`` arks + scps and ``words_<name>.ctm`` (module
    docstring), for the k2 aligner and the GMM system alike."""
    import kaldiio

    out_dir = Path(out_dir)
    for kind in ("states", "phones"):
        ark = out_dir / f"{kind}_{name}.ark"
        # The scp must name the final ark, so write both to temp names and fix the scp's path.
        with atomic_path(ark) as tmp_ark, atomic_path(ark.with_suffix(".scp")) as tmp_scp:
            kaldiio.save_ark(str(tmp_ark), {a.utt_id: getattr(a, kind).astype(np.int32) for a in alis},
                             scp=str(tmp_scp))
            tmp_scp.write_text(tmp_scp.read_text().replace(f" {tmp_ark}:", f" {ark}:"))
    lines = [f"{a.utt_id} 1 {s * frame_shift:.2f} {(e - s) * frame_shift:.2f} {w}"
             for a in alis for w, s, e in a.words]
    atomic_write_text(out_dir / f"words_{name}.ctm", "\n".join(lines) + ("\n" if lines else ""))


def _job_files(ali_dir: Path, part: str, pattern: str) -> List[Path]:
    nj_file = ali_dir / f"num_jobs_{part}"
    if not nj_file.is_file():
        raise Lm2amError(f"{nj_file}: missing, so part {part} was not aligned; run the alignment stage")
    nj = int(nj_file.read_text())
    files = [ali_dir / pattern.format(part=part, job=j) for j in range(1, nj + 1)]
    for f in files:
        if not f.is_file():
            raise Lm2amError(f"{f}: missing (num_jobs_{part} says {nj} jobs); rerun the alignment stage")
    return files


def read_alignments(ali_dir: Path | str, part: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{cut id: (states, phones)} over every job's arks of ``part``."""
    import kaldiio

    ali_dir = Path(ali_dir)
    out: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for scp in _job_files(ali_dir, part, "states_{part}.{job}.scp"):
        states = kaldiio.load_scp(str(scp))
        phones = kaldiio.load_scp(str(scp.with_name(scp.name.replace("states_", "phones_", 1))))
        for k in states:
            out[k] = (np.asarray(states[k]), np.asarray(phones[k]))
    return out


def read_ctm(ali_dir: Path | str, part: str, frame_shift: float = 0.01) -> Dict[str, List[Tuple[str, int, int]]]:
    """{cut id: [(word, start frame, end frame)]} from every job's ``words_<part>.<job>.ctm``."""
    out: Dict[str, List[Tuple[str, int, int]]] = {}
    for ctm in _job_files(Path(ali_dir), part, "words_{part}.{job}.ctm"):
        for n, line in enumerate(ctm.read_text().splitlines(), 1):
            try:
                utt, _, start, dur, word = line.split()
                s = int(round(float(start) / frame_shift))
                out.setdefault(utt, []).append((word, s, s + int(round(float(dur) / frame_shift))))
            except ValueError:
                raise Lm2amError(f"{ctm} line {n}: expected 'utt 1 start dur word'; regenerate the alignments") from None
    return out

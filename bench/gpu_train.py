#!/usr/bin/env python3
"""AM training throughput (frames/s) of CE vs the hierarchical KD system, fp32 vs AMP.

Random features, random hard targets and random sparse top-k teacher tensors, so nothing but
the model and the losses is exercised: the forward as training runs it
(:func:`lm2am.am.losses.training_forward`), :func:`lm2am.am.losses.system_loss`, the
backward and an AdamW step, timed per step after warm-up (CUDA synchronized).

Standalone on purpose: it imports only ``lm2am.am.config``, ``lm2am.am.model`` and
``lm2am.am.losses`` (plus torch and numpy), none of which load k2, lhotse or kaldiio, so it
runs on a GPU machine with any torch 2.x and without the recipe's stack::

    python bench/gpu_train.py --device cuda --out gpu_train.md          # gpu preset, bf16 AMP
    python bench/gpu_train.py --device cpu --tiny --out /tmp/gpu.md     # a quick CPU check

Prints a markdown table (also written to ``--out``): per system and precision, ms per step,
frames per second and the ratio to CE at the same precision.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's lm2am, uninstalled

from lm2am.am.config import HeadConfig, SystemConfig, make_model_config  # noqa: E402
from lm2am.am.losses import system_loss, training_forward  # noqa: E402
from lm2am.am.model import build_model  # noqa: E402

#: Sizes of the synth-en demo tree/BPE (senones, phones incl. SIL, subword pieces).
VOCAB = {"senone": 2000, "monophone": 42, "subword": 500}
TINY_VOCAB = {"senone": 80, "monophone": 42, "subword": 100}


def systems() -> Dict[str, SystemConfig]:
    """CE and the hierarchical system of conf/systems/hier.yaml (monophone low, senone middle,
    subword top)."""
    hier = SystemConfig(name="hier", heads=[
        HeadConfig(unit="monophone", layer=2, weight=0.3, temperature=2.0),
        HeadConfig(unit="senone", layer=4, weight=0.3, temperature=2.0),
        HeadConfig(unit="subword", layer=-1, weight=0.3, temperature=2.0)])
    return {"ce": SystemConfig(name="ce"), "hier": hier}


def random_batch(n: int, t: int, feat_dim: int, vocab: Dict[str, int], k: int, device: torch.device
                 ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor], Dict[str, Dict[str, torch.Tensor]]]:
    """Features, lengths, hard targets and sparse teachers shaped like an ``AmDataset`` batch."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, t, feat_dim, generator=g)
    lengths = torch.full((n,), t, dtype=torch.long)
    silence = torch.rand(n, t, generator=g) < 0.15
    targets = {"senone": torch.randint(0, vocab["senone"], (n, t), generator=g),
               "phone": torch.randint(0, vocab["monophone"], (n, t), generator=g),
               "subword_id": torch.randint(0, vocab["subword"], (n, t), generator=g),
               "silence": silence}
    targets["subword_id"][silence] = -1
    teacher = {}
    for unit, v in vocab.items():
        kk = min(k, v)
        probs = torch.rand(n, t, kk, generator=g)
        teacher[unit] = {"indices": torch.randint(0, v, (n, t, kk), generator=g),
                         "probs": probs / probs.sum(-1, keepdim=True), "mask": ~silence}
    mv = lambda x: x.to(device, non_blocking=True)  # noqa: E731
    return (mv(feats), mv(lengths), {k_: mv(v) for k_, v in targets.items()},
            {u: {k_: mv(v) for k_, v in d.items()} for u, d in teacher.items()})


def time_system(name: str, system: SystemConfig, args: argparse.Namespace, amp: bool,
                device: torch.device) -> Dict[str, float]:
    """ms/step and frames/s of one system at one precision."""
    torch.manual_seed(0)
    vocab = TINY_VOCAB if args.tiny else VOCAB
    mcfg = make_model_config({"preset": "cpu", "hidden_dim": 64} if args.tiny else {"preset": args.preset})
    model = build_model(mcfg, vocab["senone"], system.heads, vocab).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    feats, lengths, targets, teacher = random_batch(args.batch, args.frames, mcfg.feat_dim, vocab,
                                                    args.top_k, device)
    frames = int(lengths.sum())
    batch = {"features": feats, "lengths": lengths, "targets": targets, "teacher": teacher}

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = training_forward(model, batch, system)  # heads on their loss frames
        loss, _ = system_loss(out, targets, teacher, system)  # losses in fp32, as in train.py
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    sec = (time.perf_counter() - t0) / args.steps
    return {"ms_per_step": 1000 * sec, "frames_per_s": frames / sec,
            "params_M": model.num_params() / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    p.add_argument("--preset", default="gpu", help="model preset, cpu or gpu (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="utterances per batch (default: %(default)s)")
    p.add_argument("--frames", type=int, default=1000, help="frames per utterance (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=8, help="teacher entries per frame (default: %(default)s)")
    p.add_argument("--steps", type=int, default=30, help="timed steps (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: %(default)s)")
    p.add_argument("--tiny", action="store_true", help="tiny model and vocabularies (a CPU check)")
    p.add_argument("--no-amp", action="store_true", help="fp32 only")
    p.add_argument("--out", type=Path, required=True, help="markdown table written here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"ERROR: --device {args.device}: CUDA is not available here; use --device cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # "fp32" means fp32
        torch.backends.cudnn.allow_tf32 = False
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    precisions = [("fp32", False)] + ([] if args.no_amp else [("bf16 AMP", True)])
    if device.type == "cpu":  # AMP is a CUDA feature here (train.py ignores it on CPU too)
        precisions = [("fp32", False)]
    rows: List[Dict[str, object]] = []
    for prec, amp in precisions:
        base = None
        for name, system in systems().items():
            r = time_system(name, system, args, amp, device)
            base = base or r["ms_per_step"]
            rows.append({"system": name, "precision": prec, **r, "vs_ce": r["ms_per_step"] / base})
            print(f"  {name} {prec}: {r['ms_per_step']:.1f} ms/step", file=sys.stderr, flush=True)
    fp32 = {r["system"]: r["frames_per_s"] for r in rows if r["precision"] == "fp32"}
    lines = [f"AM training throughput on {where}; torch {torch.__version__}; preset "
             f"{'tiny' if args.tiny else args.preset}, batch {args.batch} x {args.frames} frames, "
             f"top-k {args.top_k}, {args.steps} timed steps", "",
             "| system | precision | params (M) | ms/step | frames/s | time vs CE | speed vs fp32 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['precision']} | {r['params_M']:.2f} | {r['ms_per_step']:.1f} | "
                     f"{r['frames_per_s']:,.0f} | {r['vs_ce']:.3f} | {r['frames_per_s'] / fp32[r['system']]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    if args.json:
        args.json.write_text(json.dumps({"device": where, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark 2: teacher posterior storage and read throughput.

* Storage: bytes per frame of the stored top-k arks (``post_info.json`` of stage 13, checked
  against the ark sizes on disk) against dense float32 ``[T, V]`` (4 V bytes per frame) for
  each unit. Target: >= 10x smaller.
* Read throughput: for the same sampler batches of the train part, the time to read the
  features alone (``cut.load_features()``, what every AM batch costs anyway) and the time of
  ``lm2am.lm.loader.load_teacher_posteriors`` for the posteriors; frames per second of each, and
  the posteriors' time as a fraction of the features'. Target: posteriors add <= 20%. Reported
  for one unit (senone, what aux_senone / interpolation read) and for all three (hier).
  Passes alternate (features, posteriors, features, ...) and the median is kept; the first pass
  of each is a warm-up (OS page cache, reader caches), so both are measured warm.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

from bench.common import Context, Row, Timer, in_dir, median

UNITS = ("monophone", "senone", "subword")
TARGET_SMALLER = 10.0
TARGET_OVERHEAD = 0.20


def storage_rows(recipe: Path) -> List[Row]:
    rows = []
    for unit in UNITS:
        d = recipe / "exp" / f"lm_{unit}" / "post_train-synth"
        info = json.loads((d / "post_info.json").read_text())
        on_disk = sum(p.stat().st_size for p in d.glob("post.*.ark"))
        frames = int(info["frames"])
        bpf = on_disk / frames
        dense = 4.0 * int(info["vocab_size"])
        smaller = dense / bpf
        rows.append(Row("posterior storage", f"{unit}: bytes/frame, top-{info['top_k']} arks", bpf, "B",
                        dense, f"dense float32 (V={info['vocab_size']})", bpf / dense,
                        target=">= 10x smaller", met=smaller >= TARGET_SMALLER,
                        note=f"{smaller:.0f}x smaller; {on_disk:,} bytes over {frames:,} frames "
                             f"({100 * int(info.get('speech_frames', frames)) / frames:.0f}% speech)"))
    return rows


def _batches(quick: bool) -> List[List[Any]]:
    from lm2am.am.data import DataPaths, load_cuts, make_sampler

    cuts = load_cuts(DataPaths(), "train-synth")
    s = make_sampler(cuts, 60.0, shuffle=True, seed=1)
    s.set_epoch(0)
    return [list(b) for b in s]


def read_rows(recipe: Path, quick: bool) -> List[Row]:
    from lm2am.lm.loader import load_teacher_posteriors

    batches = _batches(quick)
    dirs = {u: Path("exp") / f"lm_{u}" / "post_train-synth" for u in UNITS}
    nframes = sum(c.num_frames for b in batches for c in b)
    lens = [[c.num_frames for c in b] for b in batches]

    def feats() -> float:
        t = Timer()
        for b in batches:
            with t:
                for c in b:
                    c.load_features()
        return t.total

    def posts(units: List[str]) -> float:
        t = Timer()
        for b, n in zip(batches, lens):
            ids = [c.id for c in b]
            with t:
                for u in units:
                    load_teacher_posteriors(dirs[u], ids, n)
        return t.total

    passes = 2 if quick else 7
    f_s, s_s, h_s = [], [], []
    for i in range(passes + 1):
        f, s, h = feats(), posts(["senone"]), posts(list(UNITS))
        if i:  # pass 0 warms the page cache and the readers
            f_s.append(f), s_s.append(s), h_s.append(h)
    f, s, h = median(f_s), median(s_s), median(h_s)
    rows = [Row("posterior read", "features alone: frames/s", nframes / f, "frames/s",
                note=f"{len(batches)} batches, {nframes:,} frames, median of {passes} warm passes")]
    for name, t in (("senone posteriors", s), ("3 units (hier)", h)):
        rows.append(Row("posterior read", f"{name}: frames/s (ratio = read time / feature read time)",
                        nframes / t, "frames/s", nframes / f, "features frames/s", ratio=t / f,
                        target="adds <= 20% to feature loading", met=(t / f) <= TARGET_OVERHEAD,
                        note=f"adds {100 * t / f:.1f}% to the feature loading time "
                             f"({1000 * t / len(batches):.1f} ms vs {1000 * f / len(batches):.1f} ms per batch)"))
    return rows


def _profile(batches_dirs) -> str:
    """cProfile of the 3-unit posterior reads of every batch, twice (top functions, self time)."""
    import cProfile
    import io
    import pstats

    from lm2am.lm.loader import load_teacher_posteriors

    batches, dirs = batches_dirs
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(2):
        for b in batches:
            for u in UNITS:
                load_teacher_posteriors(dirs[u], [c.id for c in b], [c.num_frames for c in b])
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(10)
    return "\n".join(ln for ln in out.getvalue().splitlines() if ln.strip())


def run(ctx: Context) -> List[Row]:
    with in_dir(ctx.recipe):
        rows = storage_rows(ctx.recipe) + read_rows(ctx.recipe, ctx.quick)
        if any(r.met is False for r in rows) and not ctx.quick:
            dirs = {u: Path("exp") / f"lm_{u}" / "post_train-synth" for u in UNITS}
            ctx.profiles["posterior read"] = (
                "lm2am.lm.loader.load_teacher_posteriors, 3 units x every batch, 2 passes "
                "(cProfile, by self time):\n" + _profile((_batches(False), dirs)))
        return rows

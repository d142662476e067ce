"""Benchmark 4: decoding real-time factor on CPU, and graph compile time.

Graph: the tiny recipe's HCLG (``graph.lm`` of conf/tiny.yaml: a bigram of the LM text pool,
80-senone tree). Compile time is measured by rebuilding it with ``steps/make_graph.py`` in a
child process (wall time and peak memory; skipped in --quick, where the recipe build's own
time from ``graph_info.json`` is shown instead). With ``--demo-graph DIR`` (a recipe's
``data/lang/graph``) that graph is decoded too, with the recipe's CE AM
(``<recipe>/exp/am_ce/seed1``) on its dev part, if those exist.

RTF: the stage-14 CE AM of the tiny recipe computes the log-likelihoods of the dev and test
parts the way stage 16 does (``lm2am.am.loglikes.compute_loglikes``: the model's CMVN and input
normalization, minus its log priors), then ``lm2am.decode.decode`` (k2 ``intersect_dense_pruned``
with the recipe config's ``decode`` beams) searches the graph. Reported: search-only RTF (what
``DecodeResult.rtf`` says) and end-to-end RTF including the AM forward, both against the audio
duration; WER of the hypotheses for context. Then Kaldi's FasterDecoder decodes the same
log-likelihoods over the same graph with the same beam and max-active limit
(``lm2am.decode.compare``): k2's search time over Kaldi's, target <= 1 at equal WER (k2's WER at
most 0.5 points above Kaldi's). The tiny CE AM (2 epochs on 3 minutes of audio) is weak, so its
posteriors are flat and the search explores far more than with a real AM; a row with near-one-hot
"oracle" log-likelihoods of the target senones (acoustic scale 2, the check of
tests/test_recipe.py) shows the search cost with a confident AM on the same graph. The demo rows
(``--demo-graph``, ``--demo-am``, ``--demo-config``) are the ones that say how the decoders compare
with a real AM.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import List, Optional

import torch

from bench.common import PY, Context, Row, in_dir, measured_run

TARGET_RTF = 0.1


def compile_rows(ctx: Context) -> List[Row]:
    info_path = ctx.recipe / "data" / "lang" / "graph" / "graph_info.json"
    if ctx.quick:
        info = json.loads(info_path.read_text())
        return [Row("decoding", "graph compile time (tiny bigram, recipe build; not re-measured in --quick)",
                    float(info["build_seconds"]), "s",
                    note=f"HCLG {info['sizes']['HCLG']['states']:,} states, {info['sizes']['HCLG']['arcs']:,} arcs")]
    out = ctx.scratch / "graph_tiny"
    if out.exists():
        shutil.rmtree(out)
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    r = measured_run([PY, "steps/make_graph.py", "--config", "conf/tiny.yaml", "--lm-text",
                      "corpus/lm_text/lm_text.txt", "data/lang", "exp/tree/tree.json", str(out)],
                     cwd=ctx.recipe, log=ctx.scratch / "make_graph.log")
    info = json.loads((out / "graph_info.json").read_text())
    secs = info.get("seconds", {})
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in secs.items() if isinstance(v, (int, float)))
    g = float(info.get("seconds_G", 0.0))
    rows = [Row("decoding", "graph compile time (tiny bigram HCLG, steps/make_graph.py)", r["seconds"], "s",
                g or None, "n-gram G estimation alone (s)",
                note=f"peak RSS {r['max_rss_mib']:.0f} MiB; HCLG {info['sizes']['HCLG']['states']:,} states, "
                     f"{info['sizes']['HCLG']['arcs']:,} arcs; stages (s): {breakdown}")]
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _profile_decode(loglikes, graph, cfg) -> str:
    """cProfile of decoding a few utterances (top functions by cumulative time)."""
    import cProfile
    import io
    import pstats

    from lm2am.decode import decode

    pr = cProfile.Profile()
    pr.enable()
    res = decode(loglikes, graph, cfg)
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("cumulative").print_stats(12)
    head = (f"{len(loglikes)} utterances, RTF {res.rtf:.3f}; the k2 search (intersect_dense_pruned) is "
            "one C++ call, so its share shows as that call's time:\n")
    return head + "\n".join(ln for ln in out.getvalue().splitlines() if ln.strip())


def _oracle_row(name: str, graph, parts: List[str], refs, ids: List[str]) -> Row:
    """RTF with near-one-hot log-likelihoods of the utterances' own target senones at acoustic
    scale 2 (as tests/test_recipe.py's oracle check): the search cost with a confident AM."""
    import numpy as np

    from lm2am.decode import DecodeConfig, decode
    from lm2am.decode.score import compute_wer
    from lm2am.targets import read_targets

    want = set(ids)
    mats = []
    for part in parts:
        for utt, t in read_targets("data/targets", part).items():
            if utt in want:
                m = np.full((t.num_frames, graph.num_pdfs), np.log(0.1 / graph.num_pdfs), dtype=np.float32)
                m[np.arange(t.num_frames), t.senone] = np.log(0.9)
                mats.append((utt, m))
    res = decode(mats, graph, DecodeConfig(acoustic_scale=2.0))
    wer = compute_wer({u: refs[u] for u, _ in mats}, res.hyps)
    return Row("decoding", f"{name}: RTF, search only, oracle senone log-likes (CPU)", res.rtf, "x real time",
               note=f"near-one-hot log-likelihoods of the target senones, acoustic scale 2: the search cost "
                    f"with a confident AM; {len(mats)} utterances, {res.audio_seconds:.0f} s audio, "
                    f"WER {wer.wer:.1f}%")


def _rtf_rows(name: str, graph_dir: Path, am_dir: Path, cut_files: List[Path], max_utts: Optional[int],
              scratch: Path, decode_cfg: Optional[dict] = None, oracle_targets: Optional[List[str]] = None,
              profile: Optional[dict] = None) -> List[Row]:
    """Search RTF of the k2 decoder, end-to-end RTF with the AM forward, and k2 against Kaldi's
    FasterDecoder on the same log-likelihoods (``decode_cfg``: the recipe's ``decode`` section)."""
    from lhotse import CutSet

    from lm2am.am.loglikes import compute_loglikes
    from lm2am.decode import DecodeConfig, decode
    from lm2am.decode.stage import read_loglikes
    from lm2am.graph import load_graph
    from lm2am.decode.score import compute_wer

    t0 = time.perf_counter()
    graph = load_graph(graph_dir)
    load_s = time.perf_counter() - t0
    cuts = CutSet.from_cuts([c for f in cut_files for c in CutSet.from_file(f)][:max_utts])
    scratch.mkdir(parents=True, exist_ok=True)
    cuts_path = scratch / f"{name.replace(' ', '_')}_cuts.jsonl.gz"
    cuts.to_file(cuts_path)
    # the stage's own path (global CMVN stored in the model, its input normalization, priors)
    info = compute_loglikes(am_dir / "final.pt", cuts_path, scratch / f"{name.replace(' ', '_')}_ll.scp", force=True)
    loglikes = [(u, torch.from_numpy(m)) for u, m in read_loglikes(Path(info.scp))]
    refs = {c.id: c.supervisions[0].text for c in cuts}
    cfg = DecodeConfig(**{**(decode_cfg or {}), "subsampling_factor": info.subsampling_factor})
    decode(loglikes[:1], graph, cfg)  # warm-up: k2 first-call costs
    res = decode(loglikes, graph, cfg)
    audio = res.audio_seconds
    wer = compute_wer(refs, res.hyps)
    rtf_total = (res.decode_seconds + info.seconds) / audio
    rows = []
    if res.rtf > TARGET_RTF and profile is not None:
        profile[f"decoding ({name})"] = _profile_decode(loglikes[:4], graph, cfg)
    if oracle_targets is not None:
        rows.append(_oracle_row(name, graph, oracle_targets, refs, [c.id for c in cuts]))
    rows += [
        Row("decoding", f"{name}: RTF, search only (CPU)", res.rtf, "x real time", target="<= 0.1",
            met=res.rtf <= TARGET_RTF,
            note=f"AM {am_dir} (acoustic scale {cfg.acoustic_scale}, beam {cfg.search_beam}, max active "
                 f"{cfg.max_active_states}); {len(cuts)} utterances, {audio:.0f} s audio, "
                 f"{res.decode_seconds:.1f} s; WER {wer.wer:.1f}% ({len(res.failed)} failed); graph load {load_s:.1f} s"),
        Row("decoding", f"{name}: RTF, AM forward + search (CPU)", rtf_total, "x real time",
            note=f"AM forward {info.seconds:.1f} s (lm2am.am.loglikes.compute_loglikes)"),
    ]
    return rows + [_kaldi_row(name, dict(loglikes), graph_dir, cfg, refs)]


def _kaldi_row(name: str, loglikes: dict, graph_dir: Path, cfg, refs: dict) -> Row:
    """k2's search time over Kaldi's FasterDecoder's on the same log-likelihoods, graph and beams
    (lm2am.decode.compare: both decode the set one after the other in this process). "Equal
    WER" is met when k2's WER is at most 0.5 points above Kaldi's."""
    from lm2am.decode.compare import compare_decoders

    cmp = compare_decoders({u: m.numpy() for u, m in loglikes.items()}, graph_dir, cfg,
                           {u: r.split() for u, r in refs.items()})
    ratio = cmp.k2.decode_seconds / cmp.kaldi.decode_seconds if cmp.kaldi.decode_seconds > 0 else float("nan")
    equal_wer = cmp.wer_k2 is not None and cmp.wer_kaldi is not None and cmp.wer_k2 <= cmp.wer_kaldi + 0.5
    return Row("decoding", f"{name}: k2 search time / Kaldi FasterDecoder's (same log-likes, graph, beams)",
               cmp.k2.rtf, "x real time", cmp.kaldi.rtf, "Kaldi FasterDecoder RTF", ratio,
               target="<= 1 at equal WER", met=ratio <= 1.0 and equal_wer,
               note=f"WER k2 {cmp.wer_k2:.2f}% vs Kaldi {cmp.wer_kaldi:.2f}%; identical output "
                    f"{100 * cmp.identical_share:.0f}% of {len(cmp.utts)} utterances; beam {cfg.search_beam}, "
                    f"max active {cfg.max_active_states}, acoustic scale {cfg.acoustic_scale}")


def _decode_section(config: Path) -> dict:
    """The ``decode`` section of a recipe config as DecodeConfig keyword arguments."""
    from lm2am.config import load_section, to_dict
    from lm2am.decode import DecodeConfig

    return to_dict(load_section(config, "decode", DecodeConfig))


def run(ctx: Context) -> List[Row]:
    rows = compile_rows(ctx)
    with in_dir(ctx.recipe):
        rows += _rtf_rows("tiny bigram graph", Path("data/lang/graph"), Path("exp/am_ce/seed1"),
                          [Path("data/fbank/cuts_dev-synth.jsonl.gz"), Path("data/fbank/cuts_test-synth.jsonl.gz")],
                          4 if ctx.quick else None, ctx.scratch / "decoding", _decode_section(Path("conf/tiny.yaml")),
                          ["dev-synth", "test-synth"], None if ctx.quick else ctx.profiles)
    if ctx.demo_graph is not None:
        graph_dir = ctx.demo_graph.resolve()
        demo = graph_dir.parents[2]  # <recipe>/data/lang/graph
        am = (ctx.demo_am or demo / "exp" / "am_ce" / "seed1").resolve()
        config = (ctx.demo_config or demo / "conf" / "demo.yaml").resolve()
        cuts = demo / "data" / "fbank" / "cuts_dev-synth.jsonl.gz"
        missing = [p for p in (graph_dir / "HCLG.pt", am / "final.pt", am / "priors.npy", cuts, config)
                   if not p.exists()]
        if missing:
            rows.append(Row("decoding", "demo graph: RTF", float("nan"),
                            note=f"skipped: {', '.join(str(m) for m in missing)} missing"))
        else:
            with in_dir(demo):
                rows += _rtf_rows("demo graph", graph_dir, am, [cuts], 40 if ctx.quick else 200,
                                  ctx.scratch / "decoding_demo", _decode_section(config))
    return rows

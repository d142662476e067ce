"""The teacher LMs' quality beside the AM results: the "Teacher LMs" section of RESULTS.md.

One row per teacher (``exp/lm_<unit>/report.json``, stage 12) and posterior part
(``exp/lm_<unit>/post_<part>/post_info.json``, stage 13):

* dev (pseudo-)perplexity of the LM and of the add-one unigram model on the same dev tokens,
  and their ratio (how much the context tells the teacher; 1 = nothing);
* the masking (``mask_span``), storage temperature and ``top_k``;
* over the part's speech frames (each token weighted by its frames): the mass the top-k keep of
  the full distribution, and the mean entropy (nats) of the stored (renormalized top-k) and
  of the full distribution. A near-one-hot teacher has entropy ~0 and perplexity ~1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

__all__ = ["teacher_rows", "teachers_markdown"]


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def teacher_rows(exp_dir: Path | str) -> List[Dict[str, Any]]:
    """Per teacher dir ``exp_dir/lm_*`` with a ``report.json`` and per posterior part
    (``post_*/post_info.json``; a teacher without posteriors gives one row without them), the
    figures of the module docstring; missing values are None."""
    rows: List[Dict[str, Any]] = []
    for d in sorted(Path(exp_dir).glob("lm_*")):
        rep = _read_json(d / "report.json")
        if not rep:
            continue
        ppl, uni = rep.get("dev_perplexity"), rep.get("unigram_dev_perplexity")
        base = {"teacher": d.name[3:], "dev_perplexity": ppl, "unigram_dev_perplexity": uni,
                "ratio": ppl / uni if ppl and uni else None,
                "mask_span": rep.get("mask_span", "token"), "arch": rep.get("arch")}
        infos = [(p.parent.name[5:], _read_json(p)) for p in sorted(d.glob("post_*/post_info.json"))]
        for part, info in infos or [(None, {})]:
            rows.append({**base, "part": part, "top_k": info.get("top_k"),
                         "temperature": info.get("temperature"),
                         **{k: info.get(k) for k in ("mean_kept_mass", "mean_entropy_stored",
                                                     "mean_entropy_full")}})
    return rows


def _fmt(v: Any, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def teachers_markdown(exp_dir: Path | str) -> str:
    """The "Teacher LMs" Markdown section (empty string when there is no teacher)."""
    rows = teacher_rows(exp_dir)
    if not rows:
        return ""
    cols = ["teacher", "masking", "dev ppl", "unigram ppl", "ppl / unigram", "part", "T", "k",
            "kept mass", "entropy stored", "entropy full"]
    lines = ["## Teacher LMs", "",
             "Dev (pseudo-)perplexity of each teacher vs an add-one unigram model on the same tokens "
             "(stage 12), and over each posterior part's speech frames (stage 13, each token weighted "
             "by its frames) the mass the stored top-k keep at the storage temperature T and the mean "
             "entropy (nats) of the stored and of the full distributions. Perplexity ~1 and entropy ~0: "
             "a near-one-hot teacher.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["teacher"], "causal" if r["arch"] == "causal" else f"masked, {r['mask_span']}",
            _fmt(r["dev_perplexity"], 2), _fmt(r["unigram_dev_perplexity"], 2), _fmt(r["ratio"], 3),
            r["part"] or "–", _fmt(r["temperature"], 2), _fmt(r["top_k"], 0), _fmt(r["mean_kept_mass"], 3),
            _fmt(r["mean_entropy_stored"], 3), _fmt(r["mean_entropy_full"], 3)]) + " |")
    return "\n".join(lines) + "\n"

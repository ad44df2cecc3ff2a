"""pytest plugin: the test bed's servers as fixtures.

Load it exactly once, from the top-level ``tests/conftest.py``::

    pytest_plugins = ["testbed.fixtures"]

Servers are session-scoped and start lazily, only when a test requests
them, so a unit-test run pays nothing.  Each pytest process (each xdist
worker) gets its own stack on kernel-chosen ports.  Per-test isolation
comes from fresh IMAP folders and fresh databases, not from restarts.
A missing server binary fails the tests (naming the Debian package to
install) instead of skipping them, because a suite that silently skips
its server tests proves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from ._proc import MissingBinaryError
from .certs import CertBundle, make_certs
from .dovecot import Dovecot
from .postgres import PostgresCluster
from .smtp_relay import SmtpRelay

DEFAULT_USERS: dict[str, str] = {
    "support@example.test": "support-pw",
    "sales@example.test": "sales-pw",
    "customer@example.test": "customer-pw",
    "forwarded@example.test": "forwarded-pw",
}
"""Mailbox users created on every Dovecot instance (address -> password)."""

SUPPORT = ("support@example.test", "support-pw")

_T = TypeVar("_T")

#: Start/stop durations in seconds, shown in the terminal summary.
TIMINGS: dict[str, float] = {}


def _timed(label: str, start: Callable[[], _T]) -> _T:
    """Run ``start``, record how long it took, and turn a missing binary into a failure."""
    t0 = time.perf_counter()
    try:
        result = start()
    except MissingBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)
    TIMINGS[label] = time.perf_counter() - t0
    return result


def _stop_timed(label: str, stop: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    stop()
    TIMINGS[label] = time.perf_counter() - t0


@pytest.fixture(scope="session")
def certs() -> Iterator[CertBundle]:
    """Throwaway CA + localhost leaf; ``certs.client_context()`` trusts only that CA."""
    bundle = _timed("certs", make_certs)
    yield bundle
    bundle.remove()


@pytest.fixture(scope="session")
def dovecot(certs: CertBundle) -> Iterator[Dovecot]:
    """Dovecot with IMAP, IMAPS and LMTP on 127.0.0.1 and the :data:`DEFAULT_USERS`."""
    server = _timed("dovecot start", lambda: Dovecot(certs, DEFAULT_USERS))
    yield server
    _stop_timed("dovecot stop", server.stop)


@pytest.fixture(scope="session")
def smtp_relay(dovecot: Dovecot, certs: CertBundle) -> Iterator[SmtpRelay]:
    """The submission relay; local recipients end up in Dovecot over LMTP.

    It shares ``dovecot.users``, so ``dovecot.add_user`` also makes a new
    user able to AUTH here and receive mail.  Recorded messages accumulate
    over the session: match on a unique Message-ID, or call ``clear()``.
    """
    relay = _timed("smtp start", lambda: SmtpRelay(dovecot.users, certs, dovecot.lmtp_port))
    yield relay
    _stop_timed("smtp stop", relay.stop)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster per session; request ``pg_url`` in tests instead."""
    cluster = _timed("postgres initdb+start", PostgresCluster)
    yield cluster
    _stop_timed("postgres stop", cluster.stop)


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture
def fresh_folder(dovecot: Dovecot) -> Iterator[str]:
    """A new, uniquely named IMAP folder of the support user; deleted afterwards."""
    user, password = SUPPORT
    name = dovecot.create_folder(user, password)
    yield name
    dovecot.delete_folder(user, name, password)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each server took to start and stop (only if any ran)."""
    if TIMINGS:
        parts = ", ".join(f"{label} {secs:.3f}s" for label, secs in TIMINGS.items())
        terminalreporter.write_line(f"testbed: {parts}")

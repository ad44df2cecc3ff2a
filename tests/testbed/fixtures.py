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

import os
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ._proc import MissingBinaryError
from .certs import CertBundle, make_certs
from .dovecot import Dovecot
from .graph import FakeGraph
from .idp import FakeIdP, HeadlessBrowser
from .postfix import Postfix
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
def namespaced_dovecot(certs: CertBundle) -> Iterator[Dovecot]:
    """A Dovecot that names folders the way Courier and Cyrus do: ``INBOX.Archive``.

    Personal namespace ``INBOX.``, separator ``.`` (TESTBED.md "IMAP namespaces"),
    so the tests need neither package, which both conflict with dovecot-imapd.
    """
    server = _timed(
        "namespaced dovecot start",
        lambda: Dovecot(certs, DEFAULT_USERS, separator=".", prefix="INBOX."),
    )
    yield server
    _stop_timed("namespaced dovecot stop", server.stop)


@pytest.fixture(scope="session")
def pop3_dovecot(certs: CertBundle) -> Iterator[Dovecot]:
    """A Dovecot that also serves POP3 (for STLS) and POP3S on the same INBOX as IMAP.

    Its own instance, so the other tests need no dovecot-pop3d; tests APPEND
    over IMAP and read over POP3 (TESTBED.md "Dovecot POP3").
    """
    server = _timed("pop3 dovecot start", lambda: Dovecot(certs, DEFAULT_USERS, pop3=True))
    yield server
    _stop_timed("pop3 dovecot stop", server.stop)


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
def idp_server(certs: CertBundle) -> Iterator[FakeIdP]:
    """The session's one :class:`FakeIdP` (http + https); tests normally request ``idp``."""
    server = _timed("idp start", lambda: FakeIdP(certs))
    yield server
    _stop_timed("idp stop", server.stop)


@pytest.fixture
def idp(idp_server: FakeIdP) -> Iterator[FakeIdP]:
    """The shared fake identity provider, with its tunables reset after the test.

    Function-scoped so that ``idp.access_ttl = 2`` or
    ``idp.auto_approve_as = ...`` in one test cannot leak into the next;
    tokens and the request log are shared across the session (mint fresh
    tokens per test; ``idp.clear_log()`` if a test counts requests).
    """
    yield idp_server
    idp_server.reset_settings()


@pytest.fixture(scope="session")
def graph_server(certs: CertBundle, idp_server: FakeIdP) -> Iterator[FakeGraph]:
    """The session's one fake Microsoft Graph (https), trusting the fake IdP's tokens."""
    server = _timed("graph start", lambda: FakeGraph(certs, idp_server))
    yield server
    _stop_timed("graph stop", server.stop)


@pytest.fixture
def graph(graph_server: FakeGraph, idp: FakeIdP) -> Iterator[FakeGraph]:
    """The fake Graph with its page size and faults reset after the test.

    Mailboxes and the request log are shared across the session: give each
    test its own mailbox address.
    """
    yield graph_server
    graph_server.reset()


@pytest.fixture(scope="session")
def oauth_dovecot(certs: CertBundle, idp_server: FakeIdP) -> Iterator[Dovecot]:
    """A second Dovecot whose XOAUTH2/OAUTHBEARER logins are validated by the fake IdP.

    Separate from ``dovecot`` so tests that never use OAuth neither start the
    IdP nor see XOAUTH2 in CAPABILITY.  Same :data:`DEFAULT_USERS` (PLAIN
    and LOGIN still work); validation is Google-style tokeninfo over http.
    """
    conf = idp_server.dovecot_oauth2_conf("tokeninfo")
    server = _timed("oauth dovecot start", lambda: Dovecot(certs, DEFAULT_USERS, oauth2_conf=conf))
    yield server
    _stop_timed("oauth dovecot stop", server.stop)


@pytest.fixture(scope="session")
def oauth_smtp_relay(
    oauth_dovecot: Dovecot, certs: CertBundle, idp_server: FakeIdP
) -> Iterator[SmtpRelay]:
    """A relay offering XOAUTH2/OAUTHBEARER (checked with the IdP) that delivers into ``oauth_dovecot``."""
    relay = _timed(
        "oauth smtp start",
        lambda: SmtpRelay(oauth_dovecot.users, certs, oauth_dovecot.lmtp_port, idp=idp_server),
    )
    yield relay
    _stop_timed("oauth smtp stop", relay.stop)


def _system_ca_file() -> Path:
    """The trust store the environment already uses for requests, else Debian's, else certifi's."""
    for candidate in (
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("CURL_CA_BUNDLE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and os.path.isfile(candidate):
            return Path(candidate)
    import certifi

    return Path(certifi.where())


@pytest.fixture(scope="session")
def test_ca_bundle(certs: CertBundle) -> Path:
    """A PEM bundle of the system CAs plus the test CA (built once per session)."""
    bundle = certs.directory / "system-plus-test-ca.pem"
    system = _system_ca_file().read_bytes()
    bundle.write_bytes(system.rstrip(b"\n") + b"\n" + certs.ca_pem.read_bytes())
    return bundle


@pytest.fixture
def trust_test_ca(test_ca_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make requests-based clients (msal, google-auth, oauthlib) trust the test CA.

    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are set in this environment and
    requests lets them override ``Session.verify``, so passing ``verify=ca``
    is not enough; pointing both at system CAs + test CA is.  Returns the
    bundle path.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca_bundle))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(test_ca_bundle))
    return test_ca_bundle


@pytest.fixture
def headless_browser(certs: CertBundle, monkeypatch: pytest.MonkeyPatch) -> HeadlessBrowser:
    """Make :mod:`webbrowser` open URLs with a :class:`HeadlessBrowser` only.

    It is registered as ``"deskctl-headless"`` and as the sole, preferred
    browser, so ``webbrowser.open(url)`` in deskctl code also lands here and
    a test can never launch a real browser.  Restored after the test.
    """
    browser = HeadlessBrowser(certs)
    # Private module state: swapped wholesale so the real browsers vanish for
    # this test and come back afterwards.
    monkeypatch.setattr(webbrowser, "_browsers", {})
    monkeypatch.setattr(webbrowser, "_tryorder", [])
    webbrowser.register(browser.name, None, browser, preferred=True)
    return browser


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


@pytest.fixture(scope="session")
def postfix() -> Iterator[Postfix]:
    """A real Postfix on 127.0.0.1 that relays nowhere; tests add their own aliases."""
    server = _timed("postfix start", Postfix)
    yield server
    _stop_timed("postfix stop", server.stop)


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

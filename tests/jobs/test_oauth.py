"""Direct connections with OAuth: sign in once, then cron runs for months unattended.

Nothing here reaches Microsoft or Google: a local identity provider (tests/testbed/idp.py)
speaks the real protocols, Dovecot checks IMAP XOAUTH2 tokens against it, and the
SMTP relay checks SMTP XOAUTH2 the same way.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from conftest import Run
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.idp import FakeIdP
from testbed.smtp_relay import SmtpRelay

SUPPORT = "support@example.test"


@pytest.fixture
def o365(
    desk: Run,
    idp: FakeIdP,
    oauth_dovecot: Dovecot,
    oauth_smtp_relay: SmtpRelay,
    certs: CertBundle,
    trust_test_ca: Path,
) -> str:  # type: ignore[no-untyped-def]
    """An Office 365 direct connection, pointed at the local identity provider."""
    folder = oauth_dovecot.create_folder(SUPPORT)
    result = desk(
        "channel", "add", "office", "--kind", "o365", "--address", SUPPORT, "--client-id", "test-client",
        "--authority", idp.authority("contoso"), "--host", "localhost", "--port", str(oauth_dovecot.imaps_port),
        "--ca-file", str(certs.ca_pem), "--folder", folder, "--smtp-host", "localhost",
        "--smtp-port", str(oauth_smtp_relay.starttls_port), "--smtp-security", "starttls",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return folder


def login_office(desk: Run, idp: FakeIdP) -> Run:
    idp.auto_approve_device_as = SUPPORT
    result = desk("channel", "login", "office")
    assert result.exit_code == 0, result.stderr
    assert "enter" in result.stderr.lower() or "code" in result.stderr.lower()
    return desk


def test_o365_sign_in_fetch_reply_and_send_end_to_end(
    desk: Run,
    o365: str,
    idp: FakeIdP,
    oauth_dovecot: Dovecot,
    oauth_smtp_relay: SmtpRelay,
    isolated_home: Path,
) -> None:
    shown = desk("--json", "channel", "show", "office-smtp").json()
    assert shown["kind"] == "o365" and shown["security"] == "starttls"
    assert desk("--json", "channel", "show", "office").json()["reply_via"] == "office-smtp"
    assert SUPPORT in {f["pattern"] for f in desk("--json", "filter", "list").json()["filters"]}

    login_office(desk, idp)
    token_file = isolated_home / "tokens" / "office.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    oauth_dovecot.deliver(
        make_mail(subject="Teams crashes", sender="dana@example.org", to=SUPPORT), o365, SUPPORT
    )
    fetched = desk("--json", "fetch")
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.json()["channels"][0]["tickets_created"] == 1
    (ticket,) = desk("--json", "ticket", "list").json()["tickets"]
    desk("ticket", "show", str(ticket["number"]))
    desk("ticket", "reply", str(ticket["number"]), "--body", "Please reinstall.")
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stderr
    delivered = oauth_smtp_relay.wait_for(lambda m: "dana@example.org" in m.rcpt_tos)
    assert delivered.auth_user == SUPPORT and SUPPORT in oauth_smtp_relay.oauth_logins


def test_an_expired_access_token_is_refreshed_silently_and_the_rotated_token_saved(
    desk: Run, o365: str, idp: FakeIdP, isolated_home: Path, oauth_dovecot: Dovecot
) -> None:
    idp.access_ttl = 2
    login_office(desk, idp)
    token_file = isolated_home / "tokens" / "office.json"
    before = json.loads(token_file.read_text())
    old_refresh = next(iter(before["RefreshToken"].values()))["secret"]
    time.sleep(2.5)
    oauth_dovecot.deliver(make_mail(subject="later", to=SUPPORT), o365, SUPPORT)
    refreshes = idp.refresh_grants
    quiet = desk("-q", "fetch")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.count("\n") == 1 and " fetch: 1 fetched, 1 new tickets" in quiet.stdout
    assert idp.refresh_grants > refreshes
    after = json.loads(token_file.read_text())
    new_refresh = next(iter(after["RefreshToken"].values()))["secret"]
    assert new_refresh != old_refresh, "the rotated refresh token was saved"
    assert idp.token_record(old_refresh).replaced_by is not None
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_a_revoked_sign_in_exits_5_and_says_how_to_fix_it(
    desk: Run, o365: str, idp: FakeIdP, db_url: str
) -> None:
    idp.access_ttl = 1
    login_office(desk, idp)
    time.sleep(1.5)
    idp.revoke_all_for(SUPPORT)
    result = desk("fetch")
    assert result.exit_code == 5
    assert "run `deskctl channel login office`" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
    listed = desk("--json", "channel", "list").json()["incoming"][0]
    assert "deskctl channel login office" in listed["last_error"]


def test_not_signed_in_yet_is_a_clear_configuration_error(desk: Run, o365: str) -> None:
    result = desk("channel", "test", "office")
    assert result.exit_code == 5 and "not signed in yet" in result.stderr
    doctor = desk("--json", "doctor")
    assert doctor.exit_code == 5
    assert any(f["check"] == "oauth" for f in doctor.json()["findings"])


def test_no_token_ever_appears_in_the_logs(
    desk: Run, o365: str, idp: FakeIdP, isolated_home: Path, oauth_dovecot: Dovecot
) -> None:
    login_office(desk, idp)
    oauth_dovecot.deliver(make_mail(subject="logs", to=SUPPORT), o365, SUPPORT)
    result = desk("-vv", "fetch")
    assert result.exit_code == 0
    cache = json.loads((isolated_home / "tokens" / "office.json").read_text())
    secrets = [
        v["secret"] for section in ("AccessToken", "RefreshToken") for v in cache[section].values()
    ]
    assert secrets and all(s not in result.stderr and s not in result.stdout for s in secrets)
    assert "DEBUG" in result.stderr, "the test must see the most verbose logs"


def test_gmail_oauth_signs_in_through_the_browser_link_and_fetches(
    desk: Run,
    idp: FakeIdP,
    oauth_dovecot: Dovecot,
    certs: CertBundle,
    trust_test_ca: Path,
    headless_browser,
    tmp_path: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    folder = oauth_dovecot.create_folder(SUPPORT)
    secrets_file = idp.write_google_client_secrets(tmp_path / "client_secret.json")
    added = desk(
        "channel", "add", "gmail", "--kind", "gmail", "--auth", "oauth", "--client-secrets", str(secrets_file),
        "--address", SUPPORT, "--host", "localhost", "--port", str(oauth_dovecot.imaps_port),
        "--ca-file", str(certs.ca_pem), "--folder", folder,
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    idp.auto_approve_as = SUPPORT
    monkeypatch.setenv("DESKCTL_BROWSER", headless_browser.name)
    login = desk("channel", "login", "gmail")
    assert login.exit_code == 0, login.stderr
    token_file = isolated_home / "tokens" / "gmail.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    oauth_dovecot.deliver(make_mail(subject="From Gmail", to=SUPPORT), folder, SUPPORT)
    fetched = desk("--json", "fetch")
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.json()["channels"][0]["tickets_created"] == 1

    idp.revoke_all_for(SUPPORT)
    info = json.loads(token_file.read_text())
    info["expiry"] = "2000-01-01T00:00:00Z"
    token_file.write_text(json.dumps(info))
    refused = desk("fetch")
    assert refused.exit_code == 5 and "deskctl channel login gmail" in refused.stderr

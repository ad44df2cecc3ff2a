"""Self-tests of the OAuth part of the test bed: real client libraries against FakeIdP.

These prove what deskctl's OAuth tests will rely on: msal's device flow and
google-auth-oauthlib's loopback flow complete against the fake IdP, the
resulting access tokens open IMAP (Dovecot's oauth2 passdb) and SMTP (the
relay's XOAUTH2/OAUTHBEARER), and revoked, expired and rotated-away tokens
are refused the way the real providers refuse them.
"""

from __future__ import annotations

import imaplib
import json
import smtplib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import InstalledAppFlow
from imap_tools import AND, H

from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.idp import DEFAULT_CLIENT_ID, FakeIdP, HeadlessBrowser
from testbed.smtp_relay import SmtpRelay, oauthbearer_authobject, xoauth2_authobject

SUPPORT = "support@example.test"
SALES = "sales@example.test"
MS_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
GOOGLE_SCOPES = ["openid", "https://mail.google.com/"]


def _msal_app(idp: FakeIdP, **kwargs: Any) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        DEFAULT_CLIENT_ID,
        authority=idp.authority("test-tenant"),
        instance_discovery=False,  # else msal asks login.microsoftonline.com first
        **kwargs,
    )


def _device_flow_token(idp: FakeIdP, app: msal.PublicClientApplication, user: str) -> dict:
    """Run msal's device flow, approving it from another thread like a user would."""
    flow = app.initiate_device_flow(scopes=MS_SCOPES)
    assert "user_code" in flow, flow
    timer = threading.Timer(0.2, idp.approve_device_code, (flow["user_code"], user))
    timer.start()
    try:
        result = app.acquire_token_by_device_flow(flow)
    finally:
        timer.cancel()
    assert "access_token" in result, result
    return dict(result)


@pytest.fixture
def smtp_tls(oauth_smtp_relay: SmtpRelay, certs: CertBundle) -> Iterator[smtplib.SMTP_SSL]:
    with smtplib.SMTP_SSL(
        "localhost", oauth_smtp_relay.smtps_port, timeout=10, context=certs.client_context()
    ) as s:
        s.ehlo()
        yield s


# -- msal ----------------------------------------------------------------------


def test_msal_device_flow_token_logs_in_to_imap(
    idp: FakeIdP, oauth_dovecot: Dovecot, trust_test_ca: Path
) -> None:
    app = _msal_app(idp)
    result = _device_flow_token(idp, app, SUPPORT)

    assert result["id_token_claims"]["preferred_username"] == SUPPORT
    [account] = app.get_accounts()
    assert account["username"] == SUPPORT
    assert account["home_account_id"].count(".") == 1  # uid.utid from client_info
    assert idp.find_requests("/test-tenant/oauth2/v2.0/devicecode", method="POST")

    with oauth_dovecot.mailbox_xoauth2(SUPPORT, result["access_token"]) as mb:
        assert mb.folder.exists("INBOX")


def test_msal_with_private_session_instead_of_env(idp: FakeIdP, certs: CertBundle) -> None:
    """The other fix for REQUESTS_CA_BUNDLE: a session that ignores the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(certs.ca_pem)
    idp.auto_approve_device_as = SALES
    app = _msal_app(idp, http_client=session)
    flow = app.initiate_device_flow(scopes=MS_SCOPES)
    result = app.acquire_token_by_device_flow(flow)  # approved at once: first poll wins
    assert idp.valid_access(result["access_token"]) == SALES


def test_msal_refresh_rotates_and_old_refresh_token_is_invalid_grant(
    idp: FakeIdP, trust_test_ca: Path
) -> None:
    idp.auto_approve_device_as = SUPPORT
    cache = msal.SerializableTokenCache()
    app = _msal_app(idp, token_cache=cache)
    first = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=MS_SCOPES))
    old_rt = first["refresh_token"]
    [account] = app.get_accounts()

    # Served from the cache without any HTTP call
    before = idp.refresh_grants
    cached = app.acquire_token_silent(MS_SCOPES, account)
    assert cached is not None and cached["access_token"] == first["access_token"]
    assert idp.refresh_grants == before

    refreshed = app.acquire_token_silent(MS_SCOPES, account, force_refresh=True)
    assert refreshed is not None and refreshed["access_token"] != first["access_token"]
    assert idp.refresh_grants == before + 1
    assert idp.token_record(old_rt).replaced_by is not None  # type: ignore[union-attr]

    # The persisted cache (what deskctl stores) holds the rotated token
    app2 = _msal_app(idp, token_cache=msal.SerializableTokenCache())
    app2.token_cache.deserialize(cache.serialize())  # type: ignore[attr-defined]
    [account2] = app2.get_accounts()
    assert app2.acquire_token_silent(MS_SCOPES, account2, force_refresh=True) is not None

    stale = app.acquire_token_by_refresh_token(old_rt, MS_SCOPES)
    assert stale.get("error") == "invalid_grant", stale


def test_short_access_ttl_makes_msal_refresh(idp: FakeIdP, trust_test_ca: Path) -> None:
    # msal treats tokens expiring within 5 minutes as stale, so any short TTL
    # forces a refresh on every acquire_token_silent.
    idp.access_ttl = 2
    idp.auto_approve_device_as = SUPPORT
    app = _msal_app(idp)
    first = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=MS_SCOPES))
    assert first["expires_in"] == 2
    [account] = app.get_accounts()
    again = app.acquire_token_silent(MS_SCOPES, account)
    assert again is not None and again["access_token"] != first["access_token"]
    assert idp.valid_access(first["access_token"]) == SUPPORT  # still valid for ~2 s


def test_revoked_refresh_token_surfaces_as_invalid_grant(idp: FakeIdP, trust_test_ca: Path) -> None:
    idp.auto_approve_device_as = SALES
    app = _msal_app(idp)
    app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=MS_SCOPES))
    assert idp.revoke_all_for(SALES) >= 2
    [account] = [a for a in app.get_accounts() if a["username"] == SALES]
    result = app.acquire_token_silent_with_error(MS_SCOPES, account, force_refresh=True)
    assert result is not None and result["error"] == "invalid_grant"


def test_device_flow_denied_and_expired(idp: FakeIdP, trust_test_ca: Path) -> None:
    app = _msal_app(idp)
    flow = app.initiate_device_flow(scopes=MS_SCOPES)
    idp.deny_device_code(flow["user_code"])
    assert app.acquire_token_by_device_flow(flow)["error"] == "access_denied"

    flow = app.initiate_device_flow(scopes=MS_SCOPES)
    idp.expire(flow["device_code"])
    assert app.acquire_token_by_device_flow(flow)["error"] == "expired_token"


def test_wait_for_device_code_finds_a_flow_started_elsewhere(
    idp: FakeIdP, trust_test_ca: Path
) -> None:
    app = _msal_app(idp)
    results: list[dict] = []

    def sign_in() -> None:  # stands in for deskctl printing the code and polling
        flow = app.initiate_device_flow(scopes=MS_SCOPES)
        results.append(app.acquire_token_by_device_flow(flow))

    worker = threading.Thread(target=sign_in)
    worker.start()
    idp.approve_device_code(idp.wait_for_device_code(timeout=10), SUPPORT)
    worker.join(15)
    assert idp.valid_access(results[0]["access_token"]) == SUPPORT


def test_confidential_client_credentials(idp: FakeIdP, trust_test_ca: Path) -> None:
    idp.register_client("daemon-app", "s3cret")
    app = msal.ConfidentialClientApplication(
        "daemon-app",
        client_credential="s3cret",
        authority=idp.authority(),
        instance_discovery=False,
    )
    assert "access_token" in app.acquire_token_for_client(["https://graph.example/.default"])
    refused = app.acquire_token_for_client(["https://graph.example/Mail.Read"])
    assert refused["error"] == "invalid_scope" and "AADSTS1002012" in refused["error_description"]
    bad = msal.ConfidentialClientApplication(
        "daemon-app", client_credential="wrong", authority=idp.authority(), instance_discovery=False
    )
    assert bad.acquire_token_for_client(["x/.default"])["error"] == "invalid_client"


def test_msal_refuses_an_http_authority(idp: FakeIdP) -> None:
    with pytest.raises(ValueError):
        msal.PublicClientApplication(
            DEFAULT_CLIENT_ID, authority=f"{idp.base_url}/test-tenant", instance_discovery=False
        )


def test_discovery_documents(idp: FakeIdP) -> None:
    for path in ("/.well-known/openid-configuration", "/t1/v2.0/.well-known/openid-configuration"):
        with urllib.request.urlopen(idp.base_url + path, timeout=5) as resp:
            doc = json.load(resp)
        for key in (
            "token_endpoint",
            "device_authorization_endpoint",
            "authorization_endpoint",
            "introspection_endpoint",
        ):
            assert doc[key].startswith(idp.base_url), (path, key)
    assert doc["token_endpoint"] == f"{idp.base_url}/t1/oauth2/v2.0/token"
    assert doc["issuer"] == f"{idp.base_url}/t1/v2.0"


# -- IMAP --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["garbage", "revoked", "expired", "other user"])
def test_bad_tokens_are_refused_by_dovecot(idp: FakeIdP, oauth_dovecot: Dovecot, how: str) -> None:
    token = idp.issue_access_token(SALES if how == "other user" else SUPPORT)
    if how == "garbage":
        token = "not-a-token"
    elif how == "revoked":
        idp.revoke(token)
    elif how == "expired":
        idp.expire(token)
    with pytest.raises(imaplib.IMAP4.error):  # not MailboxLoginError, see TESTBED.md
        oauth_dovecot.mailbox_xoauth2(SUPPORT, token)


def test_access_token_expires_on_its_own(idp: FakeIdP, oauth_dovecot: Dovecot) -> None:
    token = idp.issue_access_token(SUPPORT, ttl=0.3)
    with oauth_dovecot.mailbox_xoauth2(SUPPORT, token):
        pass
    time.sleep(0.4)
    assert idp.valid_access(token) is None
    with pytest.raises(imaplib.IMAP4.error):
        oauth_dovecot.mailbox_xoauth2(SUPPORT, token)


def test_imap_oauthbearer_and_passwords_stay_apart(idp: FakeIdP, oauth_dovecot: Dovecot) -> None:
    token = idp.issue_access_token(SUPPORT)
    mb = oauth_dovecot.mailbox_xoauth2(SUPPORT, token)  # just for a connected client
    mb.logout()
    client = imaplib.IMAP4("127.0.0.1", oauth_dovecot.imap_port, timeout=10)
    try:
        sasl = f"n,a={SUPPORT},\x01auth=Bearer {token}\x01\x01".encode()
        typ, _ = client.authenticate("OAUTHBEARER", lambda _challenge: sasl)
        assert typ == "OK"
    finally:
        client.logout()
    # a password given as a bearer token must not work (mechanisms= filters)
    with pytest.raises(imaplib.IMAP4.error):
        oauth_dovecot.mailbox_xoauth2(SUPPORT, oauth_dovecot.users[SUPPORT])
    with oauth_dovecot.mailbox(SUPPORT, oauth_dovecot.users[SUPPORT]):
        pass  # PLAIN still works on the OAuth instance


def test_dovecot_introspection_over_https(idp: FakeIdP, certs: CertBundle) -> None:
    """The other validation style: RFC 7662 POST to the https listener.

    Its own short-lived instance (about 1.2 s with the stop), because the
    session's ``oauth_dovecot`` uses tokeninfo over http.
    """
    conf = lambda tls: idp.dovecot_oauth2_conf("introspect", ca_file=tls.ca_pem)  # noqa: E731
    with Dovecot(certs, {SUPPORT: "pw"}, oauth2_conf=conf) as server:
        assert (
            "introspection_url = https://" in (server.base / "dovecot-oauth2.conf.ext").read_text()
        )
        before = idp.counters["introspect"]
        token = idp.issue_access_token(SUPPORT)
        with server.mailbox_xoauth2(SUPPORT, token):
            pass
        assert idp.counters["introspect"] == before + 1
        assert idp.find_requests("/introspect")[-1].scheme == "https"
        idp.revoke(token)
        with pytest.raises(imaplib.IMAP4.error):
            server.mailbox_xoauth2(SUPPORT, token)


# -- google-auth --------------------------------------------------------------------


def test_google_credentials_refresh_over_http(idp: FakeIdP) -> None:
    rt = idp.issue_refresh_token(SUPPORT, client_id="g-client")
    creds = Credentials(
        None,
        refresh_token=rt,
        token_uri=idp.token_url(),  # plain http: google-auth does not insist on https
        client_id="g-client",
        client_secret="g-secret",
    )
    creds.refresh(Request())
    assert creds.token is not None and idp.valid_access(creds.token) == SUPPORT
    assert creds.refresh_token != rt  # rotated, and google-auth kept the new one
    assert creds.expiry is not None

    stale = Credentials(
        None, refresh_token=rt, token_uri=idp.token_url(), client_id="g-client", client_secret="x"
    )
    with pytest.raises(RefreshError, match="invalid_grant"):
        stale.refresh(Request())


def test_google_token_file_round_trip(idp: FakeIdP) -> None:
    """What deskctl stores: from_authorized_user_info -> refresh -> to_json -> again.

    google-auth 2.63's ``from_authorized_user_info`` *always* replaces the
    file's ``token_uri`` with Google's (it says "always overrides"), so code
    that must reach another token endpoint has to call ``with_token_uri``.
    """
    info = idp.google_authorized_user_info(SALES)
    loaded = Credentials.from_authorized_user_info(info, GOOGLE_SCOPES)
    assert loaded.token_uri == "https://oauth2.googleapis.com/token"  # not info["token_uri"]
    creds = loaded.with_token_uri(info["token_uri"])
    assert not creds.valid
    creds.refresh(Request())
    stored = json.loads(creds.to_json())
    assert stored["token_uri"] == idp.token_url()
    again = Credentials.from_authorized_user_info(stored, GOOGLE_SCOPES).with_token_uri(
        stored["token_uri"]
    )
    assert again.refresh_token == creds.refresh_token != info["refresh_token"]
    again.refresh(Request())  # the stored, rotated refresh token works
    assert again.token is not None and idp.valid_access(again.token) == SALES


def test_installed_app_flow_over_https(
    idp: FakeIdP,
    oauth_dovecot: Dovecot,
    trust_test_ca: Path,
    headless_browser: HeadlessBrowser,
    tmp_path: Path,
) -> None:
    idp.auto_approve_as = SUPPORT
    secrets_file = idp.write_google_client_secrets(tmp_path / "client_secrets.json")
    flow = InstalledAppFlow.from_client_secrets_file(str(secrets_file), GOOGLE_SCOPES)
    creds = flow.run_local_server(
        port=0, browser=headless_browser.name, open_browser=True, timeout_seconds=15
    )
    [visit] = headless_browser.wait()
    assert visit.status == 200, visit
    assert visit.final_url is not None and visit.final_url.startswith("http://localhost:")
    auth_request = idp.find_requests("/auth")[-1]
    assert auth_request.query["code_challenge_method"] == "S256"  # PKCE was used and checked
    assert creds.refresh_token
    assert idp.valid_access(creds.token) == SUPPORT
    with oauth_dovecot.mailbox_xoauth2(SUPPORT, creds.token) as mb:
        assert mb.folder.exists("INBOX")


def test_authorization_denied_redirects_with_error(idp: FakeIdP, certs: CertBundle) -> None:
    redirect = "http://127.0.0.1:9/cb"
    query = urllib.parse.urlencode(
        {"response_type": "code", "client_id": "c", "redirect_uri": redirect, "state": "s1"}
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=certs.client_context())
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(f"{idp.auth_url()}?{query}", timeout=5)
    assert info.value.code == 302
    location = info.value.headers["Location"]
    assert location.startswith(redirect)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query) == {
        "error": ["access_denied"],
        "state": ["s1"],
    }


def test_validation_endpoints(idp: FakeIdP) -> None:
    token = idp.issue_access_token(SALES)
    with urllib.request.urlopen(f"{idp.base_url}/tokeninfo?access_token={token}") as resp:
        assert json.load(resp)["email"] == SALES
    data = urllib.parse.urlencode({"token": token}).encode()
    with urllib.request.urlopen(f"{idp.base_url}/introspect", data=data) as resp:
        info = json.load(resp)
    assert info["active"] is True and info["username"] == SALES
    idp.revoke(token)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{idp.base_url}/tokeninfo?access_token={token}")
    assert error.value.code == 400
    with urllib.request.urlopen(f"{idp.base_url}/introspect", data=data) as resp:
        assert json.load(resp) == {"active": False}


# -- SMTP ---------------------------------------------------------------------------


def test_smtp_xoauth2_sends_mail_into_oauth_dovecot(
    idp: FakeIdP, oauth_smtp_relay: SmtpRelay, oauth_dovecot: Dovecot, smtp_tls: smtplib.SMTP_SSL
) -> None:
    assert "XOAUTH2" in smtp_tls.esmtp_features["auth"].split()
    token = idp.issue_access_token(SUPPORT)
    code, _ = smtp_tls.auth("XOAUTH2", xoauth2_authobject(SUPPORT, token), initial_response_ok=True)
    assert code == 235
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SUPPORT, SALES, "via xoauth2"
    msg["Message-ID"] = make_msgid(domain="example.test")
    msg.set_content("hi\n")
    smtp_tls.send_message(msg)
    record = oauth_smtp_relay.wait_for(lambda m: m.message()["Message-ID"] == msg["Message-ID"])
    assert record.auth_user == SUPPORT and record.delivered_to == [SALES]
    with oauth_dovecot.mailbox_xoauth2(SALES, idp.issue_access_token(SALES)) as mb:
        assert len(list(mb.fetch(AND(header=H("Message-ID", msg["Message-ID"]))))) == 1


@pytest.mark.parametrize("how", ["revoked", "other user"])
def test_smtp_xoauth2_bad_token_gets_gmail_style_535(
    idp: FakeIdP, smtp_tls: smtplib.SMTP_SSL, how: str
) -> None:
    token = idp.issue_access_token(SALES if how == "other user" else SUPPORT)
    if how == "revoked":
        idp.revoke(token)
    authobject = xoauth2_authobject(SUPPORT, token)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp_tls.auth("XOAUTH2", authobject, initial_response_ok=True)
    assert info.value.smtp_code == 535
    assert b"5.7.8" in info.value.smtp_error
    [challenge] = authobject.challenges  # the 334 error challenge, decoded
    error = json.loads(challenge)
    assert error["status"] == "401"
    # the session is still usable: a good token works afterwards
    good = idp.issue_access_token(SUPPORT)
    code, _ = smtp_tls.auth("XOAUTH2", xoauth2_authobject(SUPPORT, good), initial_response_ok=True)
    assert code == 235


def test_smtp_oauthbearer_and_starttls_listener(
    idp: FakeIdP, oauth_smtp_relay: SmtpRelay, certs: CertBundle
) -> None:
    token = idp.issue_access_token(SALES)
    with smtplib.SMTP("localhost", oauth_smtp_relay.starttls_port, timeout=10) as s:
        s.starttls(context=certs.client_context())
        s.ehlo()
        assert {"XOAUTH2", "OAUTHBEARER"} <= set(s.esmtp_features["auth"].split())
        code, _ = s.auth(
            "OAUTHBEARER", oauthbearer_authobject(SALES, token), initial_response_ok=True
        )
        assert code == 235
    idp.revoke(token)
    with smtplib.SMTP("localhost", oauth_smtp_relay.starttls_port, timeout=10) as s:
        s.starttls(context=certs.client_context())
        # auth() sends no EHLO itself and takes aiosmtpd's "503 send EHLO first"
        # for success (503 also means "already authenticated"), so EHLO first.
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.auth("OAUTHBEARER", oauthbearer_authobject(SALES, token), initial_response_ok=True)
        assert info.value.smtp_code == 535


def test_plain_relay_does_not_offer_xoauth2(smtp_relay: SmtpRelay, certs: CertBundle) -> None:
    with smtplib.SMTP_SSL(
        "localhost", smtp_relay.smtps_port, timeout=10, context=certs.client_context()
    ) as s:
        s.ehlo()
        assert "XOAUTH2" not in s.esmtp_features["auth"]

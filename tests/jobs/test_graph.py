"""Office 365 over Microsoft Graph: no IMAP, no SMTP AUTH, the same tickets.

Nothing here reaches Microsoft: the fake Graph (tests/testbed/graph.py) serves
the mail endpoints deskctl uses over HTTPS with the test CA, and accepts only
tokens the fake identity provider (tests/testbed/idp.py) issued through msal's
real device-code and client-credentials flows.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import time
import uuid
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path

import pytest
from jobs.conftest import count, deskctl_process, kill_while_storing

from conftest import Run
from mailfactory import make_mail
from testbed.certs import CertBundle, make_certs
from testbed.graph import FakeGraph
from testbed.idp import FakeIdP

CLIENT = "graph-test-client"
#: Every header of a reply deskctl composes, and no other.
OUR_HEADERS = (
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
    "x-deskctl-loop", "mime-version", "content-type",
)  # fmt: skip


def new_address(prefix: str = "support") -> str:
    """A mailbox of this test's own: the fake Graph lives for the whole session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.test"


def add_office(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    address: str,
    *extra: str,
    name: str = "office",
    graph_url: str | None = None,
) -> None:
    graph.mailbox(address)
    added = desk(
        "channel", "add", name, "--kind", "o365", "--transport", "graph", "--address", address,
        "--client-id", CLIENT, "--authority", idp.authority("contoso"),
        "--graph-url", graph_url or graph.base_url, "--ca-file", str(certs.ca_pem), *extra,
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr


def sign_in(desk: Run, idp: FakeIdP, address: str, name: str = "office") -> None:
    idp.auto_approve_device_as = address
    login = desk("channel", "login", name)
    assert login.exit_code == 0, login.stderr


def signed_in_office(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    *extra: str,
    graph_url: str | None = None,
) -> str:
    """An o365 channel ``office`` over Graph on a fresh mailbox, signed in; its address."""
    address = new_address()
    add_office(desk, idp, graph, certs, address, *extra, graph_url=graph_url)
    sign_in(desk, idp, address)
    return address


@pytest.fixture
def office(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> str:
    """A signed-in o365 channel over Graph on a fresh mailbox; returns its address."""
    address = signed_in_office(desk, idp, graph, certs)
    return address


def add_shared_app(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, secret: str, *secret_ref: str
) -> str:
    """A channel ``shared`` signed in as an app of its own with admin consent; its address."""
    client = f"app-{uuid.uuid4().hex[:6]}"
    idp.register_client(client, secret)
    graph.grant_app(client, "Mail.ReadWrite", "Mail.Send")
    address = new_address("shared")
    graph.mailbox(address)
    added = desk(
        "channel", "add", "shared", "--kind", "o365", "--transport", "graph", "--auth", "app-only",
        "--address", address, "--client-id", client, "--authority", idp.authority("contoso"),
        *secret_ref, "--graph-url", graph.base_url, "--ca-file", str(certs.ca_pem),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    return address


def questions(n: int, tag: str, to: str) -> list[bytes]:
    return [
        make_mail(subject=f"{tag} {i}", message_id=f"<{tag}-{i}-{uuid.uuid4().hex}@x>", to=to)
        for i in range(n)
    ]


def fetch(desk: Run, *args: str) -> dict:  # type: ignore[type-arg]
    result = desk("--json", "fetch", *args)
    assert result.exit_code == 0, result.stderr
    return dict(result.json()["channels"][0])


def test_a_graph_channel_sets_up_both_directions_and_is_named_in_help(
    desk: Run, office: str, isolated_home: Path
) -> None:
    shown = desk("--json", "channel", "show", "office").json()
    assert shown["kind"] == "o365" and shown["transport"] == "graph"
    assert shown["host"] is None and shown["reply_via"] == "office-graph"
    outgoing = desk("--json", "channel", "show", "office-graph").json()
    assert outgoing["transport"] == "graph" and outgoing["host"] is None
    assert outgoing["from"]["email"] == office
    token_file = isolated_home / "tokens" / "office.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "Mail.ReadWrite" in token_file.read_text(), "the Graph scopes were granted"
    helped = desk("channel", "add", "--help")
    assert "--transport" in helped.stdout and "graph" in helped.stdout


def test_graph_is_for_o365_only(desk: Run) -> None:
    refused = desk(
        "channel", "add", "x", "--kind", "imap", "--transport", "graph", "--address", "x@example.test",
        "--host", "localhost", "--password-env", "NOPE",
    )  # fmt: skip
    assert refused.exit_code == 2 and "--transport graph is for --kind o365" in refused.stderr


def test_first_fetch_makes_tickets_and_a_rerun_doubles_nothing(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    for raw in questions(3, "first", office):
        graph.deliver(office, raw)
    first = fetch(desk)
    assert first["tickets_created"] == 3 and first["error"] is None
    assert fetch(desk)["fetched"] == 0
    graph.deliver(office, make_mail(subject="later", to=office))
    later = fetch(desk)
    assert later["fetched"] == 1 and later["tickets_created"] == 1
    assert count(db_url, "SELECT count(*) FROM tickets") == 4
    assert count(db_url, "SELECT count(*) FROM fetched_keys") == 4
    deltas = graph.calls("GET", f"/users/{office}") + graph.calls("GET", "/me/mailFolders")
    assert any("$deltatoken" in r.query for r in deltas), "later rounds start from the delta link"
    assert len(graph.calls("GET", "/$value")) >= 4
    assert all(not m.is_read for m in graph.messages(office)), "keep leaves the mail as it was"


def test_mail_a_colleague_already_answered_elsewhere_dedupes_by_content(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    raw = make_mail(subject="twice", to=office)
    graph.deliver(office, raw)
    graph.deliver(office, raw)
    report = fetch(desk)
    assert report["fetched"] == 2 and report["tickets_created"] == 1
    assert report["skipped_duplicates"] == 1


def test_paging_over_several_pages_gets_every_mail(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    graph.page_size = 3
    for raw in questions(11, "paged", office):
        graph.deliver(office, raw)
    before = graph.counters["delta"]
    assert fetch(desk)["tickets_created"] == 11
    assert graph.counters["delta"] - before == 4, "four pages of at most three"
    assert count(db_url, "SELECT count(DISTINCT message_id) FROM messages") == 11


def test_a_throttled_fetch_still_gets_every_mail(desk: Run, office: str, graph: FakeGraph) -> None:
    for raw in questions(4, "throttled", office):
        graph.deliver(office, raw)
    before = graph.counters["throttled:429"], graph.counters["throttled:503"]
    graph.throttle(2, status=429, path_contains="/delta")
    graph.throttle(1, status=503, path_contains="/$value")
    started = time.monotonic()
    report = fetch(desk)
    assert report["tickets_created"] == 4 and report["error"] is None
    assert graph.counters["throttled:429"] - before[0] == 2
    assert graph.counters["throttled:503"] - before[1] == 1
    assert time.monotonic() - started >= 3, "Retry-After: 1 was honoured each time"


def test_throttled_past_the_retries_exits_6_and_the_next_run_gets_the_mail(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    graph.deliver(office, make_mail(subject="busy", to=office))
    graph.throttle(50, status=503, retry_after=0)
    busy = desk("fetch")
    assert busy.exit_code == 6, busy.stderr
    assert "ServiceUnavailable" in busy.stderr
    graph.reset()
    assert fetch(desk)["tickets_created"] == 1


def test_a_download_cut_off_halfway_stores_nothing_of_it_and_the_rerun_gets_it_whole(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    for raw in questions(3, "cut", office):
        graph.deliver(office, raw)
    graph.cut_downloads(1)
    cut = desk("--json", "fetch")
    assert cut.exit_code == 6, cut.stderr
    assert "broke off a message download" in cut.json()["channels"][0]["error"]
    assert count(db_url, "SELECT count(*) FROM quarantine") == 0
    assert fetch(desk)["tickets_created"] == 3
    assert count(db_url, "SELECT count(DISTINCT message_id) FROM messages") == 3


def test_a_message_graph_cannot_find_is_skipped_and_read_next_time_if_it_is_there(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    for raw in questions(3, "missing", office):
        graph.deliver(office, raw)
    graph.refuse(
        1, 404, "ErrorItemNotFound", "The specified object was not found in the store.", "/$value"
    )
    first = fetch(desk)
    assert first["tickets_created"] == 2 and first["error"] is None
    assert fetch(desk)["tickets_created"] == 1, "the delta link was not moved past it"
    assert fetch(desk)["fetched"] == 0


def test_an_expired_delta_link_lists_the_folder_again_and_stores_nothing_twice(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    for raw in questions(3, "resync", office):
        graph.deliver(office, raw)
    assert fetch(desk)["tickets_created"] == 3
    graph.expire_delta_tokens()
    graph.deliver(office, make_mail(subject="after the resync", to=office))
    downloads = len(graph.calls("GET", "/$value"))
    gone = graph.counters["delta:gone"]
    report = fetch(desk)
    assert graph.counters["delta:gone"] == gone + 1
    assert report["fetched"] == 1 and report["tickets_created"] == 1
    assert len(graph.calls("GET", "/$value")) == downloads + 1, "stored mail is not downloaded"
    assert count(db_url, "SELECT count(*) FROM messages") == 4


def test_seen_marks_mail_read_once_stored_and_only_once(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    address = signed_in_office(desk, idp, graph, certs, "--after-fetch", "seen")
    for raw in questions(3, "seen", address):
        graph.deliver(address, raw)
    assert fetch(desk)["tickets_created"] == 3
    assert all(m.is_read for m in graph.messages(address))
    patches = len(graph.calls("PATCH", address)) + len(graph.calls("PATCH", "/me/"))
    # Marking them read changed them: the next delta lists them again, stored and acted on.
    again = fetch(desk)
    assert again["fetched"] == 0
    assert len(graph.calls("PATCH", address)) + len(graph.calls("PATCH", "/me/")) == patches


def test_move_takes_stored_mail_to_a_folder_found_by_name(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    address = new_address()
    graph.mailbox(address)
    graph.add_folder(address, "Done", parent="inbox")
    add_office(desk, idp, graph, certs, address, "--after-fetch", "move:Inbox/Done")
    sign_in(desk, idp, address)
    for raw in questions(2, "moved", address):
        graph.deliver(address, raw)
    assert fetch(desk)["tickets_created"] == 2
    assert graph.messages(address) == []
    box = graph.mailbox(address)
    (done,) = [f for f in box.folders.values() if f.display_name == "Done"]
    assert len(graph.messages(address, done.id)) == 2
    assert fetch(desk)["fetched"] == 0


def test_a_move_to_a_missing_folder_keeps_the_mail_and_says_how_to_fix_it(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    address = signed_in_office(desk, idp, graph, certs, "--after-fetch", "move:Handled")
    graph.deliver(address, make_mail(subject="stays", to=address))
    result = desk("--json", "fetch")
    assert result.exit_code == 5
    report = result.json()["channels"][0]
    assert report["tickets_created"] == 1
    assert "no folder 'Handled'" in report["error"] and "channel set office" in report["error"]
    assert len(graph.messages(address)) == 1
    graph.add_folder(address, "Handled")
    fixed = desk("--json", "fetch")
    assert fixed.exit_code == 0, fixed.stderr
    assert fixed.json()["channels"][0]["fetched"] == 0
    assert graph.messages(address) == [], "the stored mail is moved once the folder is there"


def test_fetch_killed_at_random_points_loses_and_doubles_nothing(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path, db_url: str
) -> None:
    address = signed_in_office(desk, idp, graph, certs, "--after-fetch", "move:archive")
    for raw in questions(80, "kill", address):
        graph.deliver(address, raw)
    kills = kill_while_storing(db_url, "-q", "fetch", seed=15, kills=5)
    final = desk("--json", "fetch")
    assert final.exit_code == 0, final.stderr
    seen = f"after {kills} kills"
    assert count(db_url, "SELECT count(*) FROM messages") == 80, seen
    assert count(db_url, "SELECT count(DISTINCT message_id) FROM messages") == 80, seen
    assert graph.messages(address) == [], "every stored message was moved, " + seen
    assert len(graph.messages(address, "archive")) == 80, seen


def test_a_revoked_sign_in_exits_5_and_says_how_to_fix_it(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    address = new_address()
    add_office(desk, idp, graph, certs, address)
    idp.access_ttl = 1
    sign_in(desk, idp, address)
    time.sleep(1.5)
    idp.revoke_all_for(address)
    result = desk("fetch")
    assert result.exit_code == 5, result.stderr
    assert "invalid_grant" in result.stderr
    assert "run `deskctl channel login office`" in result.stderr


def test_an_access_token_revoked_before_it_expired_is_replaced_once_and_the_fetch_goes_on(
    desk: Run, office: str, idp: FakeIdP, graph: FakeGraph
) -> None:
    graph.deliver(office, make_mail(subject="after a password change", to=office))
    for token in idp.tokens_for(office, "access"):
        idp.revoke(token)  # msal's cache still holds it as valid for an hour
    refreshes = idp.refresh_grants
    report = fetch(desk)
    assert report["tickets_created"] == 1 and report["error"] is None
    assert idp.refresh_grants == refreshes + 1


def test_a_token_graph_keeps_refusing_exits_5_with_graphs_words(
    desk: Run, office: str, idp: FakeIdP, graph: FakeGraph
) -> None:
    graph.refuse(
        2, 401, "InvalidAuthenticationToken", "Access token validation failure.", "/mailFolders"
    )
    result = desk("fetch")
    assert result.exit_code == 5, result.stderr
    assert "InvalidAuthenticationToken" in result.stderr
    assert "deskctl channel login office" in result.stderr


def test_graph_down_exits_6(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    signed_in_office(desk, idp, graph, certs, graph_url=f"https://127.0.0.1:{closed}/v1.0")
    result = desk("fetch")
    assert result.exit_code == 6, result.stderr
    assert f"cannot reach Microsoft Graph at 127.0.0.1:{closed}" in result.stderr


def test_graph_is_verified_against_the_channel_ca_not_the_environment(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    tmp_path: Path,
) -> None:
    # REQUESTS_CA_BUNDLE trusts the test CA (msal needs it for the IdP); a
    # channel that names another CA must still refuse Graph's certificate.
    other = make_certs(tmp_path / "other-ca")
    address = new_address()
    graph.mailbox(address)
    added = desk(
        "channel", "add", "office", "--kind", "o365", "--transport", "graph", "--address", address,
        "--client-id", CLIENT, "--authority", idp.authority("contoso"), "--graph-url", graph.base_url,
        "--ca-file", str(other.ca_pem),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    sign_in(desk, idp, address)
    result = desk("fetch")
    assert result.exit_code == 6, result.stderr
    assert "TLS verification failed for Microsoft Graph" in result.stderr


def test_mail_over_the_size_limit_is_spooled_and_quarantined(
    desk: Run, office: str, graph: FakeGraph, isolated_home: Path
) -> None:
    big = make_mail(
        subject="huge scan",
        to=office,
        attachments=[("a.bin", "application/octet-stream", b"x" * 200_000)],
    )
    graph.deliver(office, big)
    graph.deliver(office, make_mail(subject="small", to=office))
    result = desk("--json", "fetch", "--max-size", "100000")
    assert result.exit_code == 7, result.stderr
    report = result.json()["channels"][0]
    assert report["quarantined"] == 1 and report["tickets_created"] == 1
    (spooled,) = list((isolated_home / "spool").iterdir())
    assert spooled.read_bytes() == big
    assert fetch(desk)["fetched"] == 0, "listed once in the quarantine, not again"


def test_app_only_reads_a_shared_mailbox_through_users_address(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = f"app-{uuid.uuid4().hex[:6]}"
    idp.register_client(client, "app-secret")
    graph.grant_app(client, "Mail.ReadWrite", "Mail.Send")
    address = new_address("shared")
    graph.mailbox(address)
    monkeypatch.setenv("APP_SECRET", "app-secret")
    added = desk(
        "channel", "add", "shared", "--kind", "o365", "--transport", "graph", "--auth", "app-only",
        "--address", address, "--client-id", client, "--authority", idp.authority("contoso"),
        "--password-env", "APP_SECRET", "--graph-url", graph.base_url, "--ca-file", str(certs.ca_pem),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert "client credentials" in desk("--json", "channel", "show", "shared").json()["secret"]
    login = desk("channel", "login", "shared")
    assert login.exit_code == 2 and "no sign-in to do" in login.stderr
    findings = desk("--json", "doctor").json()["findings"]
    assert not [f for f in findings if f["check"] == "oauth"], "the app has no sign-in to go stale"
    graph.deliver(address, make_mail(subject="to the shared box", to=address))
    report = fetch(desk)
    assert report["tickets_created"] == 1
    listed = graph.calls("GET", f"/v1.0/users/{address}/mailFolders/")
    assert any(r.path.endswith("/messages/delta") for r in listed)
    assert graph.calls("GET", f"/v1.0/users/{address}/messages/"), "each mail read from /users"
    token_file = isolated_home / "tokens" / "shared.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    grants = idp.counters["grant:client_credentials:ok"]
    graph.deliver(address, make_mail(subject="again", to=address))
    assert fetch(desk)["tickets_created"] == 1
    assert idp.counters["grant:client_credentials:ok"] == grants, "the cached app token is reused"

    desk("ticket", "show", "1")
    desk("ticket", "reply", "1", "--body", "From the shared box.")
    sent = desk("--json", "send-outbox")
    assert sent.json()["sent"] == 1, sent.stdout
    assert graph.calls("POST", f"/v1.0/users/{address}/sendMail")
    assert graph.sent[-1][0] == address

    monkeypatch.setenv("APP_SECRET", "wrong")
    token_file.unlink()
    refused = desk("fetch")
    assert refused.exit_code == 5 and "invalid_client" in refused.stderr
    assert "AADSTS7000215" in refused.stderr and "check --client-id" in refused.stderr


def test_app_only_without_the_admins_consent_exits_5_naming_the_permission(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = f"app-{uuid.uuid4().hex[:6]}"
    idp.register_client(client, "app-secret")
    address = new_address("shared")
    graph.mailbox(address)
    monkeypatch.setenv("APP_SECRET", "app-secret")
    added = desk(
        "channel", "add", "shared", "--kind", "o365", "--transport", "graph", "--auth", "app-only",
        "--address", address, "--client-id", client, "--tenant", "contoso", "--authority",
        idp.authority("contoso"), "--password-env", "APP_SECRET", "--graph-url", graph.base_url,
        "--ca-file", str(certs.ca_pem),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    refused = desk("fetch")
    assert refused.exit_code == 5
    assert "ErrorAccessDenied" in refused.stderr and "Mail.ReadWrite" in refused.stderr


def test_round_trip_customer_mail_in_reply_out_through_sendmail_answer_threads(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    question = make_mail(
        subject="VPN drops every hour", sender="Dana <dana@example.org>", to=office,
        message_id="<vpn-1@example.org>",
    )  # fmt: skip
    graph.deliver(office, question)
    assert fetch(desk)["tickets_created"] == 1
    (ticket,) = desk("--json", "ticket", "list").json()["tickets"]
    number = str(ticket["number"])
    desk("ticket", "show", number)
    queued = desk("ticket", "reply", number, "--body", "Please update the client.")
    assert queued.exit_code == 0, queued.stderr
    before = len(graph.sent)
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stderr
    (mailbox, raw), *_ = graph.sent[before:]
    assert mailbox == office
    reply = message_from_bytes(raw)
    shown = desk("--json", "ticket", "show", number).json()
    ours = next(m for m in shown["messages"] if m["direction"] == "out")
    our_id = f"<{ours['message_id']}>"
    assert reply["Message-ID"] == our_id
    assert reply["In-Reply-To"] == "<vpn-1@example.org>"
    assert "<vpn-1@example.org>" in reply["References"]
    assert reply["To"].endswith("dana@example.org>") or "dana@example.org" in reply["To"]
    filed = graph.messages(office, "sentitems")
    assert [m.raw for m in filed if m.raw == raw], "Exchange filed the reply in Sent Items"

    answer = make_mail(
        subject="Re: it works now", sender="Dana <dana@example.org>", to=office,
        in_reply_to=our_id, references=f"<vpn-1@example.org> {our_id}",
    )  # fmt: skip
    graph.deliver(office, answer)
    report = fetch(desk)
    assert report["messages_added"] == 1 and report["tickets_created"] == 0
    assert count(db_url, "SELECT count(*) FROM tickets") == 1
    assert len(desk("--json", "ticket", "show", number).json()["messages"]) == 3


def queue_a_reply(desk: Run, graph: FakeGraph, office: str, customer: str) -> None:
    """A customer's mail fetched as ticket 1, and an agent's reply to it in the outbox."""
    graph.deliver(office, make_mail(subject="help", sender=customer, to=office))
    assert fetch(desk)["tickets_created"] == 1
    desk("ticket", "show", "1")
    assert desk("ticket", "reply", "1", "--body", "On it.").exit_code == 0


def test_a_throttled_send_waits_and_sends_once_and_a_busy_service_defers(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    queue_a_reply(desk, graph, office, "kim@example.org")
    graph.throttle(50, status=503, retry_after=0, path_contains="/sendMail")
    busy = desk("--json", "send-outbox")
    assert busy.exit_code == 6 and busy.json()["deferred"] == 1, busy.stdout
    graph.reset()
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "queued" and "ServiceUnavailable" in item["last_error"], item
    before = len(graph.sent)
    graph.throttle(1, status=429, path_contains="/sendMail")
    retried = desk("outbox", "retry", str(item["id"]))
    assert retried.exit_code == 0, retried.stderr
    sent = desk("--json", "send-outbox")
    assert sent.json()["sent"] == 1, sent.stdout
    assert len(graph.sent) == before + 1


def test_channel_test_signs_in_opens_the_folder_and_sends_nothing(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    graph.deliver(office, make_mail(subject="counted", to=office))
    incoming = desk("--json", "channel", "test", "office")
    assert incoming.exit_code == 0, incoming.stderr
    assert incoming.json()["messages"] == 1
    assert "signed in to Microsoft Graph as the signed-in user" in incoming.json()["summary"]
    sent = len(graph.sent)
    outgoing = desk("channel", "test", "office-graph")
    assert outgoing.exit_code == 0, outgoing.stderr
    assert "sendMail" in outgoing.stdout and len(graph.sent) == sent


def test_over_graph_mail_is_moved_not_deleted(desk: Run, office: str) -> None:
    refused = desk("channel", "set", "office", "--after-fetch", "delete")
    assert refused.exit_code == 2 and "move:deleteditems" in refused.stderr
    assert desk("channel", "set", "office", "--after-fetch", "move:deleteditems").exit_code == 0


def test_dry_run_and_limit_leave_the_rest_for_the_next_run(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path, db_url: str
) -> None:
    address = signed_in_office(desk, idp, graph, certs, "--after-fetch", "seen")
    for raw in questions(5, "limited", address):
        graph.deliver(address, raw)
    dry = fetch(desk, "--dry-run")
    assert dry["tickets_created"] == 5
    assert count(db_url, "SELECT count(*) FROM tickets") == 0
    assert not any(m.is_read for m in graph.messages(address)), "a dry run touches nothing"
    assert fetch(desk, "--limit", "2")["tickets_created"] == 2
    assert sum(m.is_read for m in graph.messages(address)) == 2
    assert fetch(desk)["tickets_created"] == 3, "the delta link was kept back for the rest"
    assert all(m.is_read for m in graph.messages(address))


def test_a_reply_graph_refuses_fails_for_good_in_graphs_words(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    queue_a_reply(desk, graph, office, "lee@example.org")
    graph.refuse(
        1, 400, "ErrorInvalidRecipients", "At least one recipient isn't valid.", "/sendMail"
    )
    result = desk("--json", "send-outbox")
    assert result.json()["failed"] == 1, result.stdout
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "failed" and "ErrorInvalidRecipients" in item["last_error"]


def test_two_fetches_started_together_store_each_message_once(
    desk: Run, office: str, graph: FakeGraph, db_url: str
) -> None:
    for raw in questions(40, "race", office):
        graph.deliver(office, raw)
    procs = [deskctl_process("--json", "fetch") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    assert count(db_url, "SELECT count(*) FROM messages") == 40
    assert count(db_url, "SELECT count(*) FROM tickets") == 40


def test_channel_list_names_graph_as_the_outgoing_server(desk: Run, office: str) -> None:
    listed = desk("channel", "list")
    (row,) = [
        line for line in listed.stdout.splitlines() if line.strip().startswith("office-graph")
    ]
    assert "Microsoft Graph" in row and "local" not in row


def test_links_to_another_host_are_never_followed_and_the_token_stays_home(
    desk: Run, office: str, graph: FakeGraph, certs: CertBundle, idp: FakeIdP
) -> None:
    elsewhere = FakeGraph(certs, idp)  # a listener that records what reaches it
    try:
        host = elsewhere.base_url.split("/")[2]
        for raw in questions(3, "hijack", office):
            graph.deliver(office, raw)
        graph.page_size, graph.link_host = 2, host  # page 1's nextLink points away
        result = desk("fetch")
        assert result.exit_code != 0 and "was not followed" in result.stderr, result.stderr
        assert host in result.stderr
        graph.page_size = 10  # one page: only the saved deltaLink points away
        assert fetch(desk)["tickets_created"] == 3
        graph.reset()
        graph.deliver(office, make_mail(subject="after the bad link", to=office))
        assert fetch(desk)["tickets_created"] == 1, "the foreign delta link was not used"
        assert elsewhere.requests == [], "no request, and no bearer token, went elsewhere"
    finally:
        elsewhere.stop()


def test_a_gateways_html_page_instead_of_json_exits_6_and_the_next_run_goes_on(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    graph.deliver(office, make_mail(subject="behind a proxy", to=office))
    graph.answer_html(1, 200, "/messages/delta")
    portal = desk("fetch")
    assert portal.exit_code == 6, portal.stderr
    assert "not Graph's JSON (text/html)" in portal.stderr and "Traceback" not in portal.stderr
    graph.answer_html(1, 502, "/mailFolders")
    gateway = desk("fetch")
    assert gateway.exit_code == 6 and "502" in gateway.stderr, gateway.stderr
    assert fetch(desk)["tickets_created"] == 1


def test_a_reply_over_sendmails_4_mb_fails_for_good_without_uploading_it(
    desk: Run, office: str, graph: FakeGraph, tmp_path: Path
) -> None:
    queue_a_reply(desk, graph, office, "big@example.org")
    log = tmp_path / "trace.bin"
    log.write_bytes(os.urandom(3_300_000))  # 4.4 MiB once base64'd in the MIME, again for sendMail
    desk("ticket", "show", "1")
    queued = desk("ticket", "reply", "1", "--body", "The trace.", "--attach", str(log))
    assert queued.exit_code == 0, queued.stderr
    posts = len(graph.calls("POST", "/sendMail"))
    result = desk("--json", "send-outbox")
    assert result.json()["sent"] == 1 and result.json()["failed"] == 1, result.stdout
    assert len(graph.calls("POST", "/sendMail")) == posts + 1, "only the small reply went up"
    failed = [
        i for i in desk("--json", "outbox", "list").json()["outbox"] if i["state"] == "failed"
    ]
    assert "over Microsoft Graph's 4 MiB limit" in failed[0]["last_error"], failed


def test_the_apps_secret_and_tokens_never_show_even_at_vv_and_a_failing_secret_command_exits_5(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    isolated_home: Path,
    tmp_path: Path,
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    address = add_shared_app(
        desk, idp, graph, certs, secret, "--password-cmd", f"cat {secret_file}"
    )
    graph.deliver(address, make_mail(subject="loud logs", to=address))
    loud = desk("-vv", "fetch")
    assert loud.exit_code == 0, loud.stderr
    token = graph.calls("GET", f"/v1.0/users/{address}/")[0].headers["authorization"][7:]
    for shown in (loud.stdout, loud.stderr, desk("-vv", "channel", "test", "shared").stderr):
        assert secret not in shown
        assert token not in shown
    tokens = isolated_home / "tokens" / "shared.json"
    assert secret not in tokens.read_text()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.parent.stat().st_mode) & 0o077 == 0

    tokens.unlink()
    secret_file.unlink()  # the secret manager fails: cat exits 1
    failed = desk("-vv", "fetch")
    assert failed.exit_code == 5, failed.stderr
    assert "--password-cmd" in failed.stderr or "command" in failed.stderr, failed.stderr
    assert secret not in failed.stderr


def test_a_message_graph_will_not_hand_out_holds_back_none_of_the_others(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    first, *_ = [graph.deliver(office, raw) for raw in questions(3, "poison", office)]
    graph.refuse(50, 400, "ErrorInvalidRequest", "The item cannot be read as MIME.", first)
    stuck = desk("--json", "fetch")
    assert stuck.exit_code == 5 and "ErrorInvalidRequest" in stuck.stderr, stuck.stderr
    assert stuck.json()["channels"][0]["tickets_created"] == 2, "the mail behind it came in"
    graph.reset()
    assert fetch(desk)["tickets_created"] == 1, "asked for again, and read once it could be"


def test_channel_test_puts_a_refusal_in_graphs_words(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    graph.refuse(1, 400, "ErrorInvalidRequest", "The mailbox is being moved.", "/mailFolders")
    tested = desk("channel", "test", "office")
    assert tested.exit_code == 5, tested.stderr
    assert "400 ErrorInvalidRequest: The mailbox is being moved." in tested.stderr
    assert "internal error" not in tested.stderr


def test_a_hostile_customers_headers_put_nothing_but_ours_in_the_reply_graph_receives(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    hostile = (
        b"From: =?utf-8?q?Eve=0D=0ABcc:_evil1@attacker.example?= <eve@example.org>\r\n"
        b"To: " + office.encode() + b"\r\n"
        b"Subject: =?utf-8?q?help=0D=0ABcc:_evil2@attacker.example=0D=0AX-Evil:_1?=\r\n"
        b"Message-ID: <inj-" + uuid.uuid4().hex.encode() + b"@example.org>\r\n"
        b"\tBcc: evil3@attacker.example\r\n"
        b"Reply-To: eve@example.org\r\n\tBcc: evil4@attacker.example\r\n"
        b"Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease help.\r\n"
    )
    graph.deliver(office, hostile)
    assert fetch(desk)["tickets_created"] == 1
    (ticket,) = desk("--json", "ticket", "list").json()["tickets"]
    desk("ticket", "show", str(ticket["number"]))
    queued = desk("ticket", "reply", str(ticket["number"]), "--body", "On it.")
    assert queued.exit_code == 0, queued.stderr
    before = len(graph.sent)
    assert desk("--json", "send-outbox").json()["sent"] == 1
    (_mailbox, raw), *_ = graph.sent[before:]
    reply = message_from_bytes(raw)
    assert sorted(k.lower() for k in reply) == sorted(OUR_HEADERS), reply.keys()
    addressed = getaddresses(reply.get_all("To", []) + reply.get_all("Cc", []))
    assert [a for _, a in addressed] == ["eve@example.org"], "the customer, nobody else"
    assert "attacker" not in reply["In-Reply-To"] + reply["References"]


def test_the_readmes_graph_examples_work_as_written_with_only_the_urls_and_ca_adapted(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    tmp_path: Path,
) -> None:
    """The README's lines, word for word, then the fake's URLs and CA: a new user's first hour."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("# Office 365 through Microsoft Graph")
    lines = readme[start : readme.index("deskctl channel add-outgoing", start)]
    commands = [
        shlex.split(c.split("   #")[0].split("  #")[0])
        for c in lines.replace("\\\n", " ").splitlines()
        if c.startswith("deskctl ")
    ]
    assert [c[1:3] for c in commands] == [
        ["channel", "add"],
        ["channel", "login"],
        ["channel", "add"],
    ]
    adapted = [
        "--authority", idp.authority("contoso.com"), "--graph-url", graph.base_url,
        "--ca-file", str(certs.ca_pem),
    ]  # fmt: skip
    client = commands[0][commands[0].index("--client-id") + 1]
    idp.register_client(client)
    secret = tmp_path / "pass"
    secret.write_text("#!/bin/sh\necho app-secret\n")
    secret.chmod(0o700)
    for address in ("support@contoso.com", "help@contoso.com"):
        graph.mailbox(address)
        graph.deliver(address, make_mail(subject=f"first hour {address}", to=address))
    added = desk(*commands[0][1:], *adapted)
    assert added.exit_code == 0, added.stderr
    idp.auto_approve_device_as = "support@contoso.com"
    login = desk(*commands[1][1:])
    assert login.exit_code == 0, login.stderr
    shared = [secret.as_posix() if a.startswith("pass show") else a for a in commands[2][1:]]
    idp.register_client(client, "app-secret")  # the same app, now with its secret
    graph.grant_app(client, "Mail.ReadWrite", "Mail.Send")
    added = desk(*shared, *adapted)
    assert added.exit_code == 0, added.stderr
    for name in ("office365", "shared"):
        tested = desk("channel", "test", name)
        assert tested.exit_code == 0, tested.stderr
    result = desk("--json", "fetch")
    assert result.exit_code == 0, result.stderr
    assert [c["tickets_created"] for c in result.json()["channels"]] == [1, 1]
    assert graph.messages("support@contoso.com", "archive"), "--after-fetch move:archive"


def test_a_dry_run_sends_graph_no_change_at_all(
    desk: Run, idp: FakeIdP, graph: FakeGraph, certs: CertBundle, trust_test_ca: Path
) -> None:
    address = signed_in_office(desk, idp, graph, certs, "--after-fetch", "move:archive")
    for raw in questions(3, "dry", address):
        graph.deliver(address, raw)
    changes = len(graph.calls("PATCH")) + len(graph.calls("POST"))
    assert fetch(desk, "--dry-run")["tickets_created"] == 3
    assert len(graph.calls("PATCH")) + len(graph.calls("POST")) == changes
    assert len(graph.messages(address)) == 3 and not graph.messages(address, "archive")


def test_delta_pages_in_a_circle_end_the_run_instead_of_holding_it_for_ever(
    desk: Run, office: str, graph: FakeGraph
) -> None:
    for raw in questions(5, "circle", office):
        graph.deliver(office, raw)
    graph.page_size, graph.circle = 2, True
    circling = desk("fetch")
    assert circling.exit_code == 5 and "already read" in circling.stderr, circling.stderr
    graph.reset()
    assert fetch(desk)["tickets_created"] == 5


def test_an_app_token_graph_refuses_before_it_expires_is_replaced_by_a_fresh_grant(
    desk: Run,
    idp: FakeIdP,
    graph: FakeGraph,
    certs: CertBundle,
    trust_test_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_SECRET", "app-secret")
    address = add_shared_app(desk, idp, graph, certs, "app-secret", "--password-env", "APP_SECRET")
    assert fetch(desk)["tickets_created"] == 0
    token = graph.calls("GET", f"/v1.0/users/{address}/")[-1].headers["authorization"][7:]
    idp.revoke(token)  # msal's cache holds it as valid for the rest of its hour
    grants = idp.counters["grant:client_credentials:ok"]
    graph.deliver(address, make_mail(subject="after the revocation", to=address))
    report = fetch(desk)
    assert report["tickets_created"] == 1 and report["error"] is None
    assert idp.counters["grant:client_credentials:ok"] == grants + 1
    desk("ticket", "show", "1")
    assert desk("ticket", "reply", "1", "--body", "Still here.").exit_code == 0
    idp.revoke(graph.calls("GET", f"/v1.0/users/{address}/")[-1].headers["authorization"][7:])
    assert desk("--json", "send-outbox").json()["sent"] == 1, "sendMail takes a fresh one too"
    assert idp.counters["grant:client_credentials:ok"] == grants + 2

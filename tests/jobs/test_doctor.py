"""doctor after a failing fetch and with replies that do not leave: what, since when, the fix."""

from __future__ import annotations

from pathlib import Path

from conftest import Run, add_maildir_channel, maildir, run_sql
from mailfactory import make_mail


def findings(desk: Run) -> tuple[int, dict[str, str]]:
    result = desk("--json", "doctor")
    return result.exit_code, {f["check"]: f["message"] for f in result.json()["findings"]}


def test_doctor_reports_a_failing_fetch_and_replies_that_do_not_leave(
    desk: Run, tmp_path: Path, db_url: str
) -> None:
    box = maildir(tmp_path, "box")
    add_maildir_channel(desk, box, name="box")
    assert desk("fetch").exit_code == 0
    assert findings(desk)[0] == 0

    (box / "cur").rmdir()
    assert desk("fetch").exit_code == 5
    code, found = findings(desk)
    assert code == 6, found  # only mail not moving: no configuration problem
    assert found["fetch-failed"].startswith("channel box: the last fetch failed at ")
    assert "failing since its last success at " in found["fetch-failed"]
    assert "is not a Maildir" in found["fetch-failed"]
    assert "deskctl channel test box" in found["fetch-failed"]
    (box / "cur").mkdir()
    assert desk("fetch").exit_code == 0
    assert "fetch-failed" not in findings(desk)[1]

    out = ("channel", "add-outgoing", "gone", "--kind", "smtp", "--host", "127.0.0.1")
    assert desk(*out, "--port", "1", "--from", "box@example.test").exit_code == 0
    assert desk("channel", "map", "box", "--reply-via", "gone").exit_code == 0
    raw = make_mail(sender="ada@example.org")
    assert desk("ingest", "--channel", "box", "-", stdin=raw).exit_code == 0
    assert desk("ticket", "reply", "1", "--force", "--body", "On it.").exit_code == 0
    assert desk("send-outbox").exit_code == 6  # deferred: connection refused
    code, found = findings(desk)
    assert code == 6 and found["outbox-retrying"].startswith("outbox item 1 is retried (attempt 1")

    run_sql(db_url, "UPDATE outbox_items SET attempts = 0, last_error = NULL,"
            " next_attempt_at = '2020-01-01 00:00:00'")  # fmt: skip
    code, found = findings(desk)
    assert code == 6 and "outbox item 1 has been due since 2020-01-01" in found["outbox-stuck"]
    assert "deskctl send-outbox" in found["outbox-stuck"]

    run_sql(db_url, "UPDATE outbox_items SET state = 'failed', last_error = '550 no such user'")
    code, found = findings(desk)
    assert code == 6 and found["outbox-failed"].startswith("1 reply failed (outbox 1)")
    assert "550 no such user" in found["outbox-failed"]
    human = desk("doctor")
    assert human.exit_code == 6 and "warning: 1 reply failed" in human.stdout


def test_doctor_names_a_channel_whose_secret_fails_once(desk: Run) -> None:
    broken = desk("channel", "add", "broken", "--kind", "imap", "--host", "127.0.0.1",
                  "--address", "broken@example.test", "--password-cmd", "false")  # fmt: skip
    assert broken.exit_code == 0, broken.stderr
    assert desk("fetch").exit_code == 5
    finding = findings(desk)[1]["fetch-failed"]
    assert finding.startswith("channel broken: the last fetch failed at "), finding
    assert finding.endswith(": password command exited 1; try `deskctl channel test broken`"), (
        finding
    )
    assert finding.count("channel broken") == 1, finding

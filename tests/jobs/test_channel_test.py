"""channel test on outgoing channels: connect, TLS, EHLO, AUTH on the test relay, no mail sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs.conftest import AddSmtp, new_user

from conftest import Run
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay


def test_an_smtp_channel_with_a_good_and_a_wrong_password(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    add_smtp: AddSmtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = new_user(dovecot, "tester")
    add_smtp("out", agent)
    good = desk("channel", "test", "out")
    assert good.exit_code == 0, good.stderr
    assert f"logged in as {agent[0]}; no mail sent" in good.stdout
    assert "EHLO ok" in good.stdout and f":{smtp_relay.smtps_port} (ssl)" in good.stdout
    assert desk("--json", "channel", "test", "out").json()["ok"] is True
    assert sent_by(smtp_relay, agent[0]) == []

    monkeypatch.setenv("SMTP_PW_OUT", "not-the-password")
    wrong = desk("channel", "test", "out")
    assert wrong.exit_code == 5
    assert wrong.stderr.startswith(f"deskctl: error: SMTP login refused for {agent[0]} at ")
    assert len(wrong.stderr.splitlines()) == 1
    assert sent_by(smtp_relay, agent[0]) == []


def sent_by(relay: SmtpRelay, user: str) -> list[object]:
    """What the relay took (or refused) from a session logged in as ``user``."""
    return [m for m in [*relay.messages, *relay.rejected] if m.auth_user == user]


def test_an_smtp_server_that_is_not_there_is_exit_6(desk: Run) -> None:
    out = ("channel", "add-outgoing", "gone", "--kind", "smtp", "--host", "127.0.0.1")
    assert desk(*out, "--port", "1", "--from", "desk@example.test").exit_code == 0
    result = desk("channel", "test", "gone")
    assert result.exit_code == 6 and len(result.stderr.splitlines()) == 1


def sendmail(folder: Path, script: str) -> None:
    folder.mkdir()
    program = folder / "sendmail"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)


def test_the_local_sendmail_is_there_and_runs(
    desk: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``local`` is the sendmail channel db upgrade creates; only its queue is read."""
    calls = tmp_path / "calls"
    sendmail(tmp_path / "ok", f'echo "$@" >> {calls}\necho "Mail queue is empty"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'ok'}:/usr/bin:/bin")
    result = desk("channel", "test", "local")
    assert result.exit_code == 0, result.stderr
    assert "runs (its queue is readable); no mail sent" in result.stdout
    assert calls.read_text() == "-bp\n"

    sendmail(tmp_path / "down", 'echo "postqueue: fatal: mail system is down" >&2\nexit 69\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'down'}:/usr/bin:/bin")
    down = desk("channel", "test", "local")
    assert down.exit_code == 5
    assert "-bp exited 69: postqueue: fatal: mail system is down" in down.stderr

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    missing = desk("channel", "test", "local")
    assert missing.exit_code == 5 and "sendmail not found" in missing.stderr

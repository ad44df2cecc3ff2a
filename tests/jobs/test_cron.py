"""crontab.example, copied as it is, under the environment cron really gives a job.

Cron runs each line with ``/bin/sh -c`` and almost nothing else: PATH=/usr/bin:/bin,
HOME, SHELL, LOGNAME, plus the crontab's own assignments. The test reads the
example's lines and runs them so; the only changes are the ones an
administrator makes too: where DESKCTL_HOME is, where deskctl is installed,
and (as an installation's mail system would) which Postfix sendmail talks to.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
from jobs.conftest import fill

from conftest import BACKEND, Run
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.fixtures import SUPPORT
from testbed.launcher import REPO, write_launcher
from testbed.postfix import Postfix

ASSIGNMENT = re.compile(r"^([A-Z_]+)=(.*)$")
JOB = re.compile(r"^(\S+\s+){5}(?P<command>.+)$")


def crontab() -> tuple[dict[str, str], dict[str, str]]:
    """The example's environment lines, and its job lines by the deskctl job they run."""
    env: dict[str, str] = {}
    jobs: dict[str, str] = {}
    for line in (REPO / "crontab.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := ASSIGNMENT.match(line):
            env[match[1]] = match[2]
        elif match := JOB.match(line):
            command = match["command"]
            words = command.split()
            jobs[words[words.index("-q") + 1]] = command
    return env, jobs


def test_the_example_has_what_cron_lacks() -> None:
    env, jobs = crontab()
    assert env["SHELL"] == "/bin/sh" and "/usr/bin" in env["PATH"].split(":")
    assert "DESKCTL_HOME" in env
    assert set(jobs) == {"fetch", "send-outbox"}
    for command in jobs.values():
        assert " -q " in command and '>>"$DESKCTL_HOME/' in command, command
        assert command.startswith("umask 077; "), "the shell creates the log, not deskctl"


def test_crontab_lines_fetch_and_send_under_crons_environment(
    run_deskctl: Run,
    isolated_home: Path,
    tmp_path: Path,
    dovecot: Dovecot,
    certs: CertBundle,
    fresh_folder: str,
    postfix: Postfix,
    empty_db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, jobs = crontab()
    bindir = tmp_path / "bin"  # "if deskctl is not in /usr/local/bin, add its folder"
    bindir.mkdir()
    write_launcher(bindir)
    user = pwd.getpwuid(os.geteuid())
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "SHELL": "/bin/sh",
                "LOGNAME": user.pw_name, **env}  # fmt: skip
    cron_env["PATH"] = f"{bindir}:{env['PATH']}"
    cron_env["DESKCTL_HOME"] = str(isolated_home)
    cron_env["MAIL_CONFIG"] = str(postfix.etc)  # this host's Postfix is the test instance
    if BACKEND == "postgres":  # the example's commented DESKCTL_DB line, filled in
        cron_env["DESKCTL_DB"] = empty_db_url
        monkeypatch.setenv("DESKCTL_DB", empty_db_url)

    def cron(job: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", jobs[job]],
            env=cron_env,
            cwd=user.pw_dir,
            umask=0o022,  # cron's usual one: a log created under it alone would be 0644
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # Set up as the README says, with the secret in a file: cron has no shell variables.
    assert run_deskctl("db", "upgrade").exit_code == 0
    secret = tmp_path / "support.pw"
    secret.write_text(SUPPORT[1] + "\n")
    secret.chmod(0o600)
    added = run_deskctl(
        "channel", "add", "support", "--kind", "imap", "--address", SUPPORT[0],
        "--host", "localhost", "--port", str(dovecot.imaps_port), "--security", "ssl",
        "--ca-file", str(certs.ca_pem), "--password-file", str(secret), "--folder", fresh_folder,
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    customer = f"ivy-{fresh_folder.lower()}@{postfix.mailbox_domain}"
    fill(dovecot, SUPPORT, fresh_folder,
         [make_mail(subject=f"Cron {i}", sender=customer) for i in range(2)])  # fmt: skip

    fetched = cron("fetch")
    assert fetched.returncode == 0 and fetched.stderr == "", fetched.stderr
    log = isolated_home / "fetch.log"
    (line,) = log.read_text().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ fetch: 2 fetched, 2 new tickets, .*", line
    )

    idle = cron("fetch")
    assert idle.returncode == 0 and idle.stderr == "" and idle.stdout == ""
    assert len(log.read_text().splitlines()) == 1, "an idle run writes nothing"

    number = run_deskctl("--json", "ticket", "list").json()["tickets"][0]["id"]
    run_deskctl("ticket", "show", str(number))
    body = f"Sent by cron through sendmail {fresh_folder}"
    assert run_deskctl("ticket", "reply", str(number), "--body", body).exit_code == 0
    sent = cron("send-outbox")
    assert sent.returncode == 0 and sent.stderr == "", sent.stderr
    (summary,) = (isolated_home / "send-outbox.log").read_text().splitlines()
    assert summary.endswith(" send-outbox: 1 sent, 0 failed, 0 blocked, 0 deferred")
    for written in (log, isolated_home / "send-outbox.log"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, f"{written} is as private as the home"

    # /usr/sbin/sendmail, not on cron's PATH, handed it to Postfix, which delivered it.
    deadline = time.monotonic() + 30
    while not any(body.encode() in m for m in postfix.inbox()):
        assert time.monotonic() < deadline, postfix.log_tail()
        time.sleep(0.1)
    (delivered,) = [m for m in postfix.inbox() if body.encode() in m]
    assert f"To: {customer}".encode() in delivered and b"[#" in delivered

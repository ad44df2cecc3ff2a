"""A throwaway Postfix instance: SMTP on 127.0.0.1, local aliases, nothing relayed anywhere.

Debian's ``postfix`` package supplies the binaries; the instance has its own
``config_directory``, ``queue_directory`` and ``data_directory`` under a
temp dir (``postfix -c DIR``, no postmulti), its smtpd on a kernel-chosen
port on 127.0.0.1, and ``default_transport = relay_transport = error`` so no
mail can leave the machine. Mail to a domain in :attr:`Postfix.mailbox_domain`
lands in one virtual Maildir (a customer's inbox the test can read); mail to
``NAME@deskctl.test`` goes through deskctl's own aliases file, owned by the
pipe user (``nobody``), whose pipes local(8) therefore runs as that user with
an empty environment, as the README's recipe has it.

The master runs in the foreground (``master -s``, what ``postfix start-fg`` runs) behind
``setpriv --pdeathsig TERM``, so a SIGKILLed pytest takes it along. Postfix's
master must run as root (it binds, then drops to ``mail_owner``), so the
instance needs a root test run, like CI's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import time

from ._proc import (
    MissingBinaryError,
    free_port,
    make_base_dir,
    require_main_thread,
    setpriv_prefix,
    stop_process,
    tail,
)

POSTFIX = "/usr/sbin/postfix"
MASTER = "/usr/lib/postfix/sbin/master"
ALIAS_DOMAIN = "deskctl.test"


def _tool(name: str) -> str:
    path = f"/usr/sbin/{name}"
    if not os.path.exists(path):
        raise MissingBinaryError(path, "postfix")
    return path


class Postfix:
    """One Postfix instance; :meth:`stop` ends it and removes its files."""

    mailbox_domain = "example.org"

    def __init__(self) -> None:
        require_main_thread("Postfix")
        _tool("postfix")
        if os.geteuid() != 0:
            raise RuntimeError("the Postfix test instance needs root: its master binds and drops")
        self.base = make_base_dir("pfx-")
        os.chmod(self.base, 0o755)  # the pipe user (nobody) reaches its deskctl home below
        self.etc = self.base / "etc"
        self.queue = self.base / "queue"
        self.maillog = self.base / "maillog"
        self.aliases = self.base / "aliases"
        # deskctl's aliases in their own file and folder, owned by the pipe
        # user: local(8) runs a pipe as the alias file's owner (README recipe).
        self.pipe_aliases = self.base / "deskctl" / "aliases"
        self.mailbox = self.base / "vmail" / "inbox"
        for folder in (self.etc, self.queue, self.base / "data", self.base / "vmail"):
            folder.mkdir()
        self.pipe_aliases.parent.mkdir(mode=0o755)
        nobody = pwd.getpwnam("nobody")
        self.pipe_user = nobody
        for folder in (self.base / "vmail", self.pipe_aliases.parent):
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        owner = pwd.getpwnam("postfix")
        os.chown(self.base / "data", owner.pw_uid, owner.pw_gid)
        self._alias_lines: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        last = ""
        for _attempt in range(3):  # free_port's race: another process took the port
            self.port = free_port()
            self._configure(nobody)
            try:
                self._start()
                return
            except RuntimeError as exc:
                last = str(exc)
                self._stop_master()
        self.remove()
        raise RuntimeError(last)

    # -- configuration ---------------------------------------------------------

    def postconf(self, *args: str) -> None:
        subprocess.run([_tool("postconf"), "-c", str(self.etc), *args], check=True)

    def _configure(self, nobody: pwd.struct_passwd) -> None:
        shutil.copy("/etc/postfix/master.cf", self.etc / "master.cf")
        shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc / "dynamicmaps.cf")
        (self.etc / "main.cf").write_text("")
        base = self.base
        self.postconf(
            "-e",
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {base / 'data'}",
            "meta_directory = /etc/postfix",
            "shlib_directory = /usr/lib/postfix",
            f"myhostname = {ALIAS_DOMAIN}",
            f"mydestination = {ALIAS_DOMAIN}",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            # Nothing leaves the machine: every non-local destination is an error.
            "default_transport = error:local only",
            "relay_transport = error:local only",
            "disable_dns_lookups = yes",
            "smtputf8_enable = no",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {base}",
            f"alias_maps = hash:{self.aliases}, hash:{self.pipe_aliases}",
            f"alias_database = hash:{self.aliases}",
            "default_privs = nobody",
            f"virtual_mailbox_domains = {self.mailbox_domain}",
            f"virtual_mailbox_base = {base / 'vmail'}",
            "virtual_mailbox_maps = static:inbox/",
            f"virtual_uid_maps = static:{nobody.pw_uid}",
            f"virtual_gid_maps = static:{nobody.pw_gid}",
            # A deferred mail is retried within a test (postqueue -f flushes at once).
            "queue_run_delay = 1s",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
        )
        self.postconf("-F", "*/*/chroot = n")  # start-fg does not populate a chroot
        self.postconf("-M#", "smtp/inet")  # not port 25: a kernel-chosen port on 127.0.0.1
        listen = f"127.0.0.1:{self.port}"
        self.postconf("-Me", f"{listen}/inet = {listen} inet n - n - - smtpd")
        self._write_aliases()

    def _write_aliases(self) -> None:
        self.aliases.write_text("postmaster: root\n")
        subprocess.run([_tool("postalias"), "-c", str(self.etc), str(self.aliases)], check=True)
        lines = "".join(f"{name}: {line}\n" for name, line in self._alias_lines.items())
        self.pipe_aliases.write_text(lines)
        os.chown(self.pipe_aliases, self.pipe_user.pw_uid, self.pipe_user.pw_gid)
        subprocess.run(
            [_tool("postalias"), "-c", str(self.etc), str(self.pipe_aliases)],
            check=True,
            user=self.pipe_user.pw_uid,
            group=self.pipe_user.pw_gid,
            extra_groups=[],
        )

    def add_alias(self, name: str, command: str) -> str:
        """Pipe mail for ``name@deskctl.test`` to ``command``, run as :attr:`pipe_user`.

        Returns the address to write to.
        """
        self._alias_lines[name] = f'"|{command}"'
        self._write_aliases()
        return f"{name}@{ALIAS_DOMAIN}"

    # -- running ---------------------------------------------------------------

    def _start(self) -> None:
        # `postfix check` creates the queue's folders with Postfix's own owners
        # and modes. The master runs in the foreground (what start-fg runs) as
        # the child of a small shell: the master itself loses setpriv's death
        # signal (tested: it outlives a SIGKILLed pytest), the shell keeps it
        # and passes the TERM on.
        subprocess.run([POSTFIX, "-c", str(self.etc), "check"], check=True, capture_output=True)
        guard = 'trap \'kill -TERM "$pid"; wait "$pid"; exit 0\' TERM; "$@" & pid=$!; wait "$pid"'
        with (self.base / "master.out").open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *setpriv_prefix("TERM"),
                    "/bin/sh",
                    "-c",
                    guard,
                    "postfix-guard",
                    MASTER,
                    "-c",
                    str(self.etc),
                    "-s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.base,
                env={"MAIL_CONFIG": str(self.etc), "PATH": "/usr/sbin:/usr/bin:/bin"},
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as probe:
                    probe.noop()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"postfix did not greet on {self.port}:\n{self.log_tail()}")

    def send(self, raw: bytes, to: str, sender: str = "ada@example.org") -> None:
        """Submit ``raw`` over SMTP on 127.0.0.1, as another mail server would."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.sendmail(sender, [to], raw)

    def flush(self) -> None:
        """``postqueue -f``: retry every deferred mail now."""
        subprocess.run([_tool("postqueue"), "-c", str(self.etc), "-f"], check=True)

    def queued(self) -> int:
        """How many mails wait in the queue (incoming, active or deferred)."""
        out = subprocess.run(
            [_tool("postqueue"), "-c", str(self.etc), "-j"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.maillog, lines) + "\n" + tail(self.base / "master.out", 10)

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def inbox(self) -> list[bytes]:
        """Every mail delivered to the virtual Maildir (the customers' inbox)."""
        new = self.mailbox / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []

    def _stop_master(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def stop(self) -> None:
        self._stop_master()
        self.remove()

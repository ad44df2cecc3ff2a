"""A throwaway Dovecot 2.3 instance: IMAP, IMAPS and LMTP (and POP3) on 127.0.0.1.

deskctl's IMAP code is tested against a real server rather than a mock,
because the interesting bugs live in protocol details (UIDVALIDITY, APPENDUID,
flags surviving MOVE, auth failures) that a mock would only echo back.

The instance is "rootless": every Dovecot process runs as one account (the
current user, or nobody:nogroup when pytest runs as root), with its own
config, base_dir, state_dir, logs and maildirs inside one /tmp dir.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from imap_tools import BaseMailBox, MailBox, MailBoxUnencrypted

from ._proc import (
    MissingBinaryError,
    RunAs,
    chown_tree,
    free_ports,
    make_base_dir,
    require_main_thread,
    run_as,
    setpriv_prefix,
    stop_process,
    tail,
)
from .certs import CertBundle

DOVECOT_BIN = "/usr/sbin/dovecot"
DEBIAN_PACKAGES = "dovecot-imapd dovecot-lmtpd"
POP3_BIN = "/usr/lib/dovecot/pop3"

_START_ATTEMPTS = 3
_READY_TIMEOUT = 15.0


def _users_line(email: str, password: str) -> str:
    """One passwd-file line; uid/gid/home come from ``override_fields``."""
    if any(c in email + password for c in ":\n"):
        raise ValueError("passwd-file entries cannot contain ':' or newlines")
    return f"{email.lower()}:{{PLAIN}}{password}::::::\n"


def render_config(
    base: Path,
    account: RunAs,
    group_name: str,
    *,
    imap_port: int,
    imaps_port: int,
    lmtp_port: int,
    oauth2_conf: Path | None = None,
    separator: str = "/",
    prefix: str = "",
    pop3_ports: tuple[int, int] | None = None,
    sent_mailbox: str | None = "Sent",
) -> str:
    """The complete ``dovecot.conf`` for one instance.

    Notable choices (see /work/shared/TESTBED.md for the reasoning):
    ``auth_cache_size = 0`` so users added at runtime or changed passwords
    apply at once; anvil's auth-penalty socket is made unusable
    (``mode = 0``) because otherwise one failed login delays every later
    login from 127.0.0.1 by up to 15 s; no chroots, since an unprivileged
    master cannot chroot.  ``oauth2_conf`` adds an oauth2 passdb for
    XOAUTH2/OAUTHBEARER, kept apart from passwords by ``mechanisms``.
    ``separator`` and ``prefix`` shape the inbox namespace: ``"."`` and
    ``"INBOX."`` make folders ``INBOX.Archive``, the way Courier and Cyrus
    name them.  ``pop3_ports`` (POP3 for STLS, POP3S) adds POP3 on the same
    mail, with a UIDL that stays the same across sessions.
    ``sent_mailbox`` is the folder marked SPECIAL-USE ``\\Sent`` (Outlook's
    ``Sent Items``, say), or None for a server that marks none.
    """
    protocols = "imap lmtp"
    pop3 = ""
    if pop3_ports is not None:
        protocols += " pop3"
        pop3 = (
            "service pop3-login {\n  chroot =\n"
            f"  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {pop3_ports[0]}\n  }}\n"
            f"  inet_listener pop3s {{\n    address = 127.0.0.1\n    port = {pop3_ports[1]}\n"
            "    ssl = yes\n  }\n}\n"
            "protocol pop3 {\n  pop3_uidl_format = %08Xu%08Xv\n}\n"
        )
    sent = (
        f'  mailbox "{sent_mailbox}" {{\n    auto = subscribe\n    special_use = \\Sent\n  }}\n'
        if sent_mailbox
        else ""
    )
    mechanisms = "plain login"
    oauth_passdb = ""
    if oauth2_conf is not None:
        mechanisms += " xoauth2 oauthbearer"
        oauth_passdb = (
            "passdb {\n"
            "  driver = oauth2\n"
            "  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {oauth2_conf}\n"
            "}\n"
        )
    users = base / "users" / "%Ld" / "%Ln"
    log = base / "dovecot.log"
    return f"""\
# deskctl test bed instance; rendered by tests/testbed/dovecot.py
protocols = {protocols}
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
instance_name = deskctl-{imap_port}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}

default_internal_user = {account.name}
default_internal_group = {group_name}
default_login_user = {account.name}
first_valid_uid = 1
first_valid_gid = 1

ssl = yes
ssl_cert = <{base}/tls/fullchain.pem
ssl_key = <{base}/tls/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
login_greeting = deskctl-test ready.
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 200
hostname = mail.example.test
postmaster_address = postmaster@example.test
lda_mailbox_autocreate = yes

namespace inbox {{
  inbox = yes
  separator = {separator}
  prefix = {prefix}
  mailbox Drafts {{
    auto = subscribe
    special_use = \\Drafts
  }}
{sent}  mailbox Trash {{
    auto = subscribe
    special_use = \\Trash
  }}
}}

{oauth_passdb}passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%Lu {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {users}
  override_fields = uid={account.uid} gid={account.gid} home={base}/mail/%Ld/%Ln
}}

service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
{pop3}"""


def _greets(port: int, prefix: bytes) -> bool:
    """True once a TCP connect to ``port`` is answered with ``prefix``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return sock.recv(256).startswith(prefix)
    except OSError:
        return False


class DovecotStartError(RuntimeError):
    """Dovecot did not come up; the message carries the tail of its logs."""


class Dovecot:
    """One running Dovecot instance, started by the constructor.

    ``users`` maps lower-cased address to password.  The same dict object is
    updated by :meth:`add_user`, so a relay built from ``dovecot.users``
    sees runtime additions too.  Pass ``oauth2_conf`` (the text of a
    ``dovecot-oauth2.conf.ext``) to enable XOAUTH2/OAUTHBEARER.  It may also
    be a callable that gets the instance's own copy of the certs and returns
    that text, because an https ``tls_ca_cert_file`` must name a file the
    unprivileged Dovecot account can read, which only exists once the
    instance dir does (e.g. ``lambda tls: idp.dovecot_oauth2_conf(ca_file=tls.ca_pem)``).
    ``separator`` and ``prefix`` set the inbox namespace; ``Dovecot(certs,
    users, separator=".", prefix="INBOX.")`` answers like Courier or Cyrus.
    ``pop3=True`` also serves POP3 (``pop3_port``, for STLS) and POP3S
    (``pop3s_port``) on the same INBOX (needs dovecot-pop3d).
    ``sent_mailbox`` names the folder marked ``\\Sent`` (None: no such folder).
    """

    def __init__(
        self,
        certs: CertBundle,
        users: Mapping[str, str] | None = None,
        *,
        oauth2_conf: str | Callable[[CertBundle], str] | None = None,
        binary: str = DOVECOT_BIN,
        separator: str = "/",
        prefix: str = "",
        pop3: bool = False,
        sent_mailbox: str | None = "Sent",
    ) -> None:
        require_main_thread("Dovecot")
        self.separator = separator
        self.prefix = prefix
        self.pop3 = pop3
        self.sent_mailbox = sent_mailbox
        if not os.access(binary, os.X_OK):
            raise MissingBinaryError(binary, DEBIAN_PACKAGES)
        if pop3 and not os.access(POP3_BIN, os.X_OK):
            raise MissingBinaryError(POP3_BIN, "dovecot-pop3d")
        self.binary = binary
        self.users: dict[str, str] = {}
        self._users_lock = threading.Lock()
        self.account = run_as("nobody")
        self.base = make_base_dir("dk-dc-")
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._prepare(certs, users or {}, oauth2_conf)
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- lifecycle -----------------------------------------------------------

    def _prepare(
        self,
        certs: CertBundle,
        users: Mapping[str, str],
        oauth2_conf: str | Callable[[CertBundle], str] | None,
    ) -> None:
        for sub in ("run", "state", "mail", "users"):
            (self.base / sub).mkdir()
        self.tls = certs.copy_to(self.base / "tls")
        self._oauth2_path: Path | None = None
        if callable(oauth2_conf):
            oauth2_conf = oauth2_conf(self.tls)
        if oauth2_conf is not None:
            self._oauth2_path = self.base / "dovecot-oauth2.conf.ext"
            self._oauth2_path.write_text(oauth2_conf)
        for email, password in users.items():
            self.add_user(email, password)
        chown_tree(self.base, self.account)

    def _start(self) -> None:
        group_name = grp.getgrgid(self.account.gid).gr_name
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            ports = free_ports(5 if self.pop3 else 3)
            self.imap_port, self.imaps_port, self.lmtp_port = ports[:3]
            self.pop3_port, self.pop3s_port = ports[3:] if self.pop3 else (0, 0)
            self.config_path.write_text(
                render_config(
                    self.base,
                    self.account,
                    group_name,
                    imap_port=self.imap_port,
                    imaps_port=self.imaps_port,
                    lmtp_port=self.lmtp_port,
                    oauth2_conf=self._oauth2_path,
                    separator=self.separator,
                    prefix=self.prefix,
                    pop3_ports=(self.pop3_port, self.pop3s_port) if self.pop3 else None,
                    sent_mailbox=self.sent_mailbox,
                )
            )
            chown_tree(self.base, self.account)
            self._spawn()
            if self._wait_ready():
                return
            last_error = self.log_tail(40)
            stop_process(self._proc, signal.SIGTERM)
            self._proc = None
            if "Address already in use" not in last_error:
                break
        raise DovecotStartError(f"Dovecot did not start in {self.base}:\n{last_error}")

    def _spawn(self) -> None:
        with open(self.base / "master.out", "ab") as out:
            self._proc = subprocess.Popen(
                [*setpriv_prefix("TERM"), self.binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                **self.account.popen_kwargs(),  # type: ignore[call-overload]
            )

    def restart(self, while_down: Callable[[], object] = lambda: None) -> None:
        """Stop the server and start it again on the same ports, with the same mail.

        What a client sees when its mail server restarts: the connection
        drops, connects are refused for a while, then the same address
        answers again. ``while_down`` runs in between (say, a delivery
        straight into a Maildir, as the MTA goes on without IMAP).
        """
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM)
        self._end_leftovers()
        while_down()
        chown_tree(self.base, self.account)
        self._spawn()
        if not self._wait_ready():
            raise DovecotStartError(
                f"Dovecot did not start again in {self.base}:\n{self.log_tail(40)}"
            )

    def _end_leftovers(self) -> None:
        """SIGKILL what the master left behind: it exits before its imap and login processes
        do, and those keep their clients' connections open for about ten seconds more."""
        prefix = f"dovecot-deskctl-{self.imap_port}/".encode()
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(prefix):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _wait_ready(self) -> bool:
        """Poll until IMAP greets with ``* OK``, LMTP with ``220`` (and POP3 with ``+OK``)."""
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        imap_ok = lmtp_ok = False
        pop3_ok = not self.pop3
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            imap_ok = imap_ok or _greets(self.imap_port, b"* OK")
            lmtp_ok = lmtp_ok or _greets(self.lmtp_port, b"220 ")
            pop3_ok = pop3_ok or _greets(self.pop3_port, b"+OK")
            if imap_ok and lmtp_ok and pop3_ok:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        """SIGTERM the master (it reaps its children), then delete the dir."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM)
            self._proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paths and logs ------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The rendered ``dovecot.conf``."""
        return self.base / "dovecot.conf"

    @property
    def users_dir(self) -> Path:
        """Holds one passwd-file per user, shared by passdb and userdb."""
        return self.base / "users"

    @property
    def pid(self) -> int | None:
        """PID of the ``setpriv``-exec'd master, or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of Dovecot's log plus the master's stdout/stderr."""
        parts = [tail(self.base / "dovecot.log", n), tail(self.base / "master.out", n)]
        return "\n".join(p for p in parts if p)

    def maildir_path(self, email: str) -> Path:
        """Where ``email``'s Maildir lives (it exists after the first login/delivery)."""
        local, _, domain = email.lower().partition("@")
        return self.base / "mail" / domain / local / "Maildir"

    # -- users ---------------------------------------------------------------

    def add_user(self, email: str, password: str) -> None:
        """Add a user (or change a password) at runtime.

        Each user has their own passwd-file (``users/<domain>/<local>``):
        Dovecot re-reads a passwd-file at most once per second, so a user
        appended to one shared file would stay "unknown" for up to a second
        after any recent login.  A file Dovecot has not seen yet is read on
        the first lookup, and the auth cache is off, so a new user can log
        in at once.  A *changed* password may still take up to 1 s.
        """
        email = email.lower()
        local, at, domain = email.partition("@")
        if not (at and local and domain) or "/" in email or email.startswith("."):
            raise ValueError(f"not a usable test address: {email!r}")
        path = self.users_dir / domain / local
        with self._users_lock:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{local}.tmp")
            tmp.write_text(_users_line(email, password))
            if self.account.switch:
                os.chown(path.parent, self.account.uid, self.account.gid)
                os.chown(tmp, self.account.uid, self.account.gid)
            tmp.replace(path)
            self.users[email] = password

    # -- client helpers ------------------------------------------------------

    def mailbox(self, user: str, password: str, folder: str = "INBOX") -> BaseMailBox:
        """A logged-in plain-IMAP ``imap_tools`` mailbox (use as a context manager).

        Raises ``MailboxLoginError`` for bad credentials, with the socket
        already closed (imap_tools would leak it otherwise).
        """
        return _login(
            MailBoxUnencrypted("127.0.0.1", self.imap_port, timeout=10), user, password, folder
        )

    def mailbox_xoauth2(self, user: str, token: str, folder: str = "INBOX") -> BaseMailBox:
        """A plain-IMAP mailbox logged in with XOAUTH2 (needs ``oauth2_conf``).

        Raises ``imaplib.IMAP4.error`` (not ``MailboxLoginError``) on a bad
        token, as imap_tools does, with the socket already closed.
        """
        mb = MailBoxUnencrypted("127.0.0.1", self.imap_port, timeout=10)
        try:
            return mb.xoauth2(user, token, initial_folder=folder)
        except BaseException:
            with contextlib.suppress(Exception):
                mb.client.shutdown()
            raise

    def mailbox_tls(
        self, user: str, password: str, certs: CertBundle, folder: str = "INBOX"
    ) -> BaseMailBox:
        """Like :meth:`mailbox`, but over IMAPS verified against the test CA."""
        mb = MailBox("localhost", self.imaps_port, timeout=10, ssl_context=certs.client_context())
        return _login(mb, user, password, folder)

    def deliver(
        self,
        raw: bytes,
        folder: str = "INBOX",
        user: str = "support@example.test",
        password: str | None = None,
        flags: tuple[str, ...] = (),
    ) -> int | None:
        """APPEND ``raw`` to ``user``'s ``folder``; returns the new UID (from APPENDUID).

        Faster and more controllable than going through SMTP+LMTP when a test
        only needs a message to be there.  ``password`` defaults to the one
        registered for ``user``.
        """
        if password is None:
            password = self.users[user.lower()]
        with self.mailbox(user, password, folder=folder) as mb:
            result = mb.append(raw, folder, flag_set=list(flags) or None)
        return _appenduid(result)

    def create_folder(self, user: str, password: str | None = None, prefix: str = "t") -> str:
        """Create a uniquely named folder for ``user`` and return its name (namespace prefix included)."""
        if password is None:
            password = self.users[user.lower()]
        name = f"{self.prefix}{prefix}-{uuid.uuid4().hex[:12]}"
        with self.mailbox(user, password) as mb:
            mb.folder.create(name)
        return name

    def delete_folder(self, user: str, name: str, password: str | None = None) -> None:
        """Delete ``name`` for ``user``, ignoring a folder that is already gone."""
        if password is None:
            password = self.users[user.lower()]
        with self.mailbox(user, password) as mb, contextlib.suppress(Exception):
            mb.folder.delete(name)


def _login(mb: BaseMailBox, user: str, password: str, folder: str) -> BaseMailBox:
    """Log ``mb`` in, closing its connection if that fails."""
    try:
        return mb.login(user, password, initial_folder=folder)
    except BaseException:
        with contextlib.suppress(Exception):
            mb.client.shutdown()
        raise


_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")


def _appenduid(result: object) -> int | None:
    """Pull the UID out of imaplib's ``('OK', [b'[APPENDUID v uid] ...'])``."""
    for item in _flatten(result):
        match = _APPENDUID.search(item)
        if match:
            return int(match.group(1))
    return None


def _flatten(obj: object) -> Iterator[bytes]:
    if isinstance(obj, bytes):
        yield obj
    elif isinstance(obj, str):
        yield obj.encode()
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _flatten(item)

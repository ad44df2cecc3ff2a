"""Small process and port helpers shared by the server wrappers.

They live in one place because every server needs the same root handling
(run as an unprivileged account, chown the temp dir) and the same
"die with pytest" guarantee from ``setpriv --pdeathsig``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


class MissingBinaryError(FileNotFoundError):
    """A server binary is not installed; carries the Debian package that provides it.

    The fixtures turn this into ``pytest.fail`` (never a skip), so a machine
    without the servers cannot silently pass the integration suite.
    """

    def __init__(self, binary: str, package: str) -> None:
        self.binary = binary
        self.package = package
        super().__init__(
            f"{binary} not found; install it with "
            f"`apt-get install -y --no-install-recommends {package}`"
        )


@dataclass(frozen=True)
class RunAs:
    """The account a server process runs as; ``switch`` is False when that is us."""

    uid: int
    gid: int
    name: str
    switch: bool

    def popen_kwargs(self) -> dict[str, object]:
        """``Popen`` arguments that switch to this account when we are root.

        ``Popen(user=...)`` switches credentials before exec, so a
        ``setpriv --pdeathsig`` prefix exec'd afterwards keeps its death
        signal (the kernel clears it on credential changes).
        """
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def run_as(root_account: str) -> RunAs:
    """Pick ``root_account`` when running as root, otherwise the current user.

    Dovecot refuses mail access as UID 0 and PostgreSQL refuses to run as
    root at all, so a root CI must drop to another account; a developer's
    own account already works.
    """
    if os.geteuid() == 0:
        entry = pwd.getpwnam(root_account)
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, switch=True)
    entry = pwd.getpwuid(os.geteuid())
    return RunAs(os.geteuid(), os.getegid(), entry.pw_name, switch=False)


def make_base_dir(prefix: str) -> Path:
    """Create a short private dir directly under /tmp.

    Not pytest's ``tmp_path``: as root that lives under a 0700 dir the
    unprivileged server account cannot traverse, and its long paths push
    UNIX socket names past the 108-byte limit.
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def chown_tree(path: Path, account: RunAs) -> None:
    """Hand ``path`` and everything below it to ``account`` (no-op unless root)."""
    if not account.switch:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.uid, account.gid, follow_symlinks=False)


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on 127.0.0.1.

    All sockets stay bound until every port is chosen, so the ports differ.
    There is a small race between closing them and the server binding the
    ports; callers retry their start on "address in use".
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """One free TCP port on 127.0.0.1 (see :func:`free_ports` for the race)."""
    return free_ports(1)[0]


def setpriv_prefix(sig: str) -> list[str]:
    """``setpriv --pdeathsig SIG`` so a SIGKILLed pytest takes its servers with it."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    if not os.path.exists(setpriv):
        raise MissingBinaryError("setpriv", "util-linux")
    return [setpriv, "--pdeathsig", sig]


def require_main_thread(what: str) -> None:
    """Refuse to start a server off the main thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits,
    so a server started from a worker thread would die with that thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(f"{what} must be started from the main thread")


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float = 15.0) -> None:
    """Send ``sig`` to ``proc`` and wait; escalate to SIGKILL if it hangs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            proc.wait(5)


def tail(path: Path, lines: int) -> str:
    """Last ``lines`` lines of a log file, or "" if it does not exist yet."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

"""Who a worker is, and whether a worker that holds a lease is still alive.

A lease names its holder ``host:pid:nonce``. Across hosts a lease simply
expires; on the same host a lease whose process is gone (SIGKILL, OOM, a
reboot) is taken over at once instead of blocking the next cron run.
"""

from __future__ import annotations

import os
import socket
import uuid


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_owner(owner: str | None) -> bool:
    """True for a lease held by a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))

"""Who a worker is, whether a worker that holds a lease is still alive, and
how a helper process ends with the run that started it.

A lease names its holder ``host:pid:nonce``. Across hosts a lease simply
expires; on the same host a lease whose process is gone (SIGKILL, OOM, a
reboot) is taken over at once instead of blocking the next cron run.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
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


#: prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Initializer of a helper process: end when ``parent`` ends, even by SIGKILL.

    A parse worker otherwise outlives a killed run for good: it holds its own
    end of the task pipe, so it never sees the parent go, and while it lives the
    multiprocessing resource tracker (which exits when every holder of its pipe
    is gone) lives too. On Linux the kernel kills the worker with its parent
    (PR_SET_PDEATHSIG); elsewhere a thread watches for the parent to change.

    SIGTERM and SIGINT are the run's to handle, not the worker's: systemd
    sends SIGTERM to every process of a service and a terminal's Ctrl-C
    reaches the whole process group, and a worker dying of it first would
    fail the message the run is finishing. The run ends its worker itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)

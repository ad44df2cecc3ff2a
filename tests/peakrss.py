"""Peak memory of a deskctl run, measured apart from the test process.

``ru_maxrss`` of a child starts at its parent's resident size (fork and exec
keep the high-water mark), so a child of pytest would report pytest's
hundred-odd MiB. A small launcher process starts the real child instead and
hands back that child's own peak, measured with ``os.wait4``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


@dataclass(frozen=True)
class Measured:
    exit_code: int
    stdout: bytes
    peak_mib: float


def run_deskctl_measured(*args: str, stdin: Iterable[bytes] = (), digest: bool = False) -> Measured:
    """Run ``deskctl ARGS`` as its own process, feeding ``stdin`` chunk by chunk.

    With ``digest``, ``stdout`` is the SHA-256 (hex) of what deskctl printed, so
    hundreds of MB of output never sit in the test's memory.
    """
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as out:
        argv = [sys.executable, "-c", _LAUNCHER, rss.name, sys.executable, "-m", "deskctl"]
        proc = subprocess.Popen(
            [*argv, *args],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        assert proc.stdin is not None
        try:
            for chunk in stdin:
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # deskctl stopped reading: its exit code says why
        finally:
            proc.stdin.close()
        code = proc.wait()
        out.seek(0)
        if digest:
            printed = hashlib.sha256()
            while chunk := out.read(1 << 20):
                printed.update(chunk)
            return Measured(code, printed.hexdigest().encode(), int(rss.read() or 0) / 1024)
        return Measured(code, out.read(), int(rss.read() or 0) / 1024)

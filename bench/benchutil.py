"""Shared helpers for the benchmarks: timed child processes and plain tables.

Every measured run is its own child process, reaped with ``os.wait4`` so the
peak RSS reported is that child's (and its own children's) alone, never the
benchmark driver's or an earlier child's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ChildRun:
    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_mib: float
    stdout: str
    stderr: str

    def check(self, *ok: int) -> ChildRun:
        """Raise with the child's stderr unless it exited with one of ``ok`` (default 0)."""
        if self.returncode not in (ok or (0,)):
            raise RuntimeError(
                f"{shlex.join(self.argv)} exited {self.returncode}:\n{self.stderr[-4000:]}"
            )
        return self


def run_child(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    stdin: int | None = None,
) -> ChildRun:
    """Run ``argv`` to completion; wall time and peak RSS (``ru_maxrss``) of that child.

    ``stdin`` is a file descriptor for the child's standard input (default: none).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            list(argv),
            proc.returncode,
            seconds,
            usage.ru_maxrss / 1024,  # KiB on Linux
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def deskctl_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "deskctl", *args]


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The driver's environment with a private DESKCTL_HOME and no inherited DB/config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKCTL_")}
    env["DESKCTL_HOME"] = str(home)
    env.update(extra)
    return env


def startup_seconds(env: Mapping[str, str]) -> float:
    """Interpreter start plus deskctl's CLI import, the fixed cost in every deskctl run."""
    runs = [run_child([sys.executable, "-c", "import deskctl.cli"], env) for _ in range(3)]
    return min(r.check().seconds for r in runs)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table; numbers right-aligned, text left-aligned."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])

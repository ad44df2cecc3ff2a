"""Benchmark ``deskctl ingest``: N generated support mails as files into a fresh database.

The product path measured is the CLI itself, ``python -m deskctl --json ingest
FILE...`` in a child process (one store_raw transaction per file, exactly what
an operator or a script runs), after ``deskctl db upgrade`` on a fresh SQLite
database under a temporary DESKCTL_HOME.  All files go into one invocation
unless the argument list would exceed the system's limit, then into as few
chunks as fit (each chunk pays interpreter start-up again).  Seconds are the
wall time of the ingest child(ren); peak RSS is the largest ``ru_maxrss`` of
them.  Mail generation and ``db upgrade`` are not timed.

    python bench/ingest.py [--n 2000] [--max-attachment-kib 2048] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchutil import MIB, child_env, deskctl_argv, run_child, startup_seconds, table
from corpus_gen import KIB, CorpusSpec, CorpusStats, generate


def chunk_paths(paths: list[str], env: dict[str, str]) -> list[list[str]]:
    """Split ``paths`` so each command line stays well inside ARG_MAX."""
    budget = os.sysconf("SC_ARG_MAX") // 2 - sum(len(k) + len(v) + 2 for k, v in env.items())
    chunks: list[list[str]] = [[]]
    used = 0
    for path in paths:
        cost = len(path) + 1 + 8  # the string, its NUL and its argv pointer
        if chunks[-1] and used + cost > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(path)
        used += cost
    return chunks


def write_corpus(spec: CorpusSpec, directory: Path, stats: CorpusStats) -> list[str]:
    directory.mkdir(parents=True)
    paths = []
    for i, raw in enumerate(generate(spec, stats), start=1):
        path = directory / f"{i:06d}.eml"
        path.write_bytes(raw)
        paths.append(str(path))
    return paths


def outcomes(stdout: str) -> list[dict[str, Any]]:
    data = json.loads(stdout)
    return data if isinstance(data, list) else [data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--max-attachment-kib", type=int, default=2048, help="largest attachment (default 2048)"
    )
    parser.add_argument("--sizes", choices=["uniform", "loguniform"], default="uniform")
    parser.add_argument("--db", help="database URL (default: fresh SQLite in the temp home)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    args = parser.parse_args()

    spec = CorpusSpec(
        n=args.n, seed=args.seed, max_attachment=args.max_attachment_kib * KIB, size_dist=args.sizes
    )
    base = Path(tempfile.mkdtemp(prefix="deskctl-bench-ingest-"))
    try:
        stats = CorpusStats()
        paths = write_corpus(spec, base / "mail", stats)
        home = base / "home"
        db_url = args.db or f"sqlite:///{home / 'deskctl.db'}"
        env = child_env(home)
        run_child(deskctl_argv("--db", db_url, "db", "upgrade"), env).check()
        startup = startup_seconds(env)

        runs = [
            run_child(deskctl_argv("--db", db_url, "--json", "ingest", *chunk), env).check(0, 7)
            for chunk in chunk_paths(paths, env)
        ]
        seconds = sum(r.seconds for r in runs)
        peak = max(r.peak_rss_mib for r in runs)
        results = [o for r in runs for o in outcomes(r.stdout)]
        kinds = Counter(
            "quarantined"
            if "quarantined" in o
            else "duplicate"
            if o.get("duplicate")
            else "new ticket"
            if o.get("created")
            else f"threaded ({o.get('rule')})"
            for o in results
        )
        mib = stats.bytes / MIB

        print(f"corpus: {stats.summary()}")
        print(f"path:   deskctl --json ingest FILE... in {len(runs)} child process(es), {db_url}")
        print()
        print(
            table(
                ["messages", "total MiB", "seconds", "msg/s", "MiB/s", "peak RSS MiB"],
                [[stats.messages, mib, seconds, stats.messages / seconds, mib / seconds, peak]],
            )
        )
        print()
        print(f"outcomes: {dict(sorted(kinds.items()))}")
        db_file = home / "deskctl.db"
        if db_file.exists():
            print(f"database: {db_file.stat().st_size / MIB:,.1f} MiB on disk")
        print(f"start-up (python + import deskctl.cli) per child: {startup:.2f} s")
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

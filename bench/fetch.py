"""Benchmark ``deskctl fetch`` against a throwaway Dovecot, next to the bare loop.

One run starts the test bed's Dovecot (IMAPS, test CA), APPENDs N generated
support mails (``corpus_gen``) to a fresh folder of support@example.test, then
measures, each as its own child process (wall time, peak RSS via wait4):

* ``deskctl fetch``: fresh database, channel added with ``deskctl channel add
  ... --security ssl --ca-file CA --password-env``; only the fetch is timed;
* the bare loop, the practical limit of the same work in Python: imap-tools
  bulk fetch (``MailBox.fetch(bulk=B, mark_seen=False)`` with its per-message
  parse switched off) + ``email.message_from_bytes(raw, policy=default)`` and
  ``get_content()`` of every leaf part.  It runs before and after deskctl
  (the first also warms Dovecot's caches); the faster run is reported;
* the ratio deskctl / bare;
* ``deskctl fetch`` of a POP3 channel (POP3S, test CA) over the same corpus,
  APPENDed to the INBOX of a second user, which POP3 reads.
* ``deskctl fetch`` of the same corpus from an o365 channel over Microsoft
  Graph, served by the test bed's fake Graph (HTTPS, test CA) with tokens from
  its fake identity provider (in a process of their own): the delta listing
  in pages of 200 and one ``$value`` download per message. The fake server is
  Python on the same 2 cores, so the figure is deskctl's, not Microsoft's.

``--profile PATH`` adds one more deskctl fetch (fresh database) under
``python -m cProfile -o PATH -m deskctl fetch`` and prints its hot spots.

    python bench/fetch.py [--n 2000] [--big] [--db URL | --postgres] [--profile PATH]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import multiprocessing
import os
import pstats
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchutil import MIB, REPO, ChildRun, child_env, deskctl_argv, run_child, table
from corpus_gen import KIB, CorpusSpec, CorpusStats, generate

sys.path.insert(0, str(REPO / "tests"))

USER = "support@example.test"
PASSWORD = "support-pw"
PW_VAR = "BENCH_IMAP_PASSWORD"
#: Frames that only dispatch (interpreter, Click/Typer, cProfile) and so sit at ~100 %
#: cumulative; left out of the cumulative table so it shows where the time goes.
_DISPATCH = ("runpy", "deskctl/cli.py", "/click/", "/typer/", "/cProfile.py", "/profile.py")


# -- the bare loop (runs in a child: ``fetch.py --bare-child``) -------------------------


def bare_loop(host: str, port: int, ca_file: str, folder: str, bulk: int) -> dict[str, Any]:
    from imap_tools import MailBox, MailMessage

    class RawOnly(MailMessage):
        """Keep the fetched bytes; imap-tools' own compat32 parse is skipped."""

        def __init__(self, fetch_data: list[Any]) -> None:
            self.raw: bytes = self._get_message_data_parts(fetch_data)[0]

    started = time.perf_counter()
    messages = raw_bytes = parts = decoded = 0
    context = ssl.create_default_context(cafile=ca_file)
    with MailBox(host, port, ssl_context=context).login(
        USER, os.environ[PW_VAR], initial_folder=folder
    ) as box:
        box.email_message_class = RawOnly
        for item in box.fetch("ALL", mark_seen=False, bulk=bulk):
            assert isinstance(item, RawOnly)
            msg = email.message_from_bytes(item.raw, policy=email.policy.default)
            for part in msg.walk():
                if isinstance(part, EmailMessage) and not part.is_multipart():
                    content = part.get_content()
                    decoded += len(content)
                    parts += 1
            messages += 1
            raw_bytes += len(item.raw)
    return {
        "messages": messages,
        "bytes": raw_bytes,
        "parts": parts,
        "decoded": decoded,
        "loop_seconds": time.perf_counter() - started,
    }


@dataclass(frozen=True)
class Server:
    port: int
    ca_file: str
    folder: str


def run_bare(server: Server, bulk: int, env: dict[str, str]) -> tuple[ChildRun, dict[str, Any]]:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--bare-child",
        json.dumps({"port": server.port, "ca": server.ca_file, "folder": server.folder,
                    "bulk": bulk}),
    ]  # fmt: skip
    run = run_child(argv, env).check()
    return run, json.loads(run.stdout)


# -- deskctl ----------------------------------------------------------------------------


def prepare_deskctl(
    home: Path, db_url: str, server: Server, channel: list[str] | None = None
) -> tuple[dict[str, str], str]:
    """Fresh home, schema upgraded, one channel (IMAPS unless ``channel`` says); (env, name)."""
    env = child_env(home, **{PW_VAR: PASSWORD})
    name = f"bench-{uuid.uuid4().hex[:8]}"
    run_child(deskctl_argv("--db", db_url, "db", "upgrade"), env).check()
    channel = channel or [
        "--kind", "imap", "--address", USER, "--host", "localhost", "--port", str(server.port),
        "--security", "ssl", "--ca-file", server.ca_file, "--folder", server.folder,
    ]  # fmt: skip
    add = ["channel", "add", name, *channel, "--password-env", PW_VAR]
    run_child(deskctl_argv("--db", db_url, *add), env).check()
    return env, name


def fetch_report(run: ChildRun) -> dict[str, Any]:
    channels: list[dict[str, Any]] = json.loads(run.stdout)["channels"]
    return channels[0]


# -- the POP3 variant -------------------------------------------------------------------

POP3_USER = "pop3-bench@example.test"


def fill_pop3(dovecot: Any, spec: CorpusSpec) -> float:
    """The same corpus (the same spec gives the same bytes) into the INBOX POP3 reads."""
    started = time.perf_counter()
    with dovecot.mailbox(POP3_USER, PASSWORD) as box:
        for raw in generate(spec):
            box.append(raw, "INBOX")
    return time.perf_counter() - started


def run_pop3(
    dovecot: Any, server: Server, home: Path, db_url: str
) -> tuple[ChildRun, dict[str, Any]]:
    """``deskctl fetch`` of a POP3S channel (keep: the mail stays for another run)."""
    channel = ["--kind", "pop3", "--address", POP3_USER, "--host", "localhost",
               "--port", str(dovecot.pop3s_port), "--security", "ssl",
               "--ca-file", server.ca_file]  # fmt: skip
    env, name = prepare_deskctl(home, db_url, server, channel)
    run = run_child(deskctl_argv("--db", db_url, "--json", "fetch", "--channel", name), env)
    return run.check(0, 7), fetch_report(run)


# -- Microsoft Graph --------------------------------------------------------------------

GRAPH_CLIENT = "bench-graph-client"


def serve_graph(spec: CorpusSpec, certs: Any, conn: Connection) -> None:
    """The fake IdP and Graph holding the corpus, in a process of their own.

    Not in the driver: a child's peak RSS (``ru_maxrss``) starts at what its
    parent held when it was forked, and the driver forks every measured run.
    """
    from testbed.graph import FakeGraph
    from testbed.idp import FakeIdP

    with FakeIdP(certs) as idp:
        graph = FakeGraph(certs, idp)
        try:
            graph.page_size = 200
            started = time.perf_counter()
            for raw in generate(spec, CorpusStats()):
                graph.deliver(USER, raw)
            idp.auto_approve_device_as = USER
            conn.send((graph.base_url, idp.authority("bench"), time.perf_counter() - started))
            conn.recv()  # until the driver is done
        finally:
            graph.stop()


def run_graph(certs: Any, spec: CorpusSpec, home: Path, db_url: str) -> tuple[ChildRun, float]:
    """The same corpus over Graph: (the timed fetch, seconds it took to put it in the mailbox)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_graph, args=(spec, certs, theirs), daemon=True)
    server.start()
    try:
        base_url, authority, fill_seconds = ours.recv()
        # msal trusts the fake IdP through REQUESTS_CA_BUNDLE; Graph through --ca-file.
        env = child_env(home, REQUESTS_CA_BUNDLE=str(certs.ca_pem))
        name = f"bench-graph-{uuid.uuid4().hex[:8]}"
        run_child(deskctl_argv("--db", db_url, "db", "upgrade"), env).check()
        run_child(
            deskctl_argv(
                "--db", db_url, "channel", "add", name, "--kind", "o365", "--transport", "graph",
                "--address", USER, "--client-id", GRAPH_CLIENT, "--authority", authority,
                "--graph-url", base_url, "--ca-file", str(certs.ca_pem),
            ),
            env,
        ).check()  # fmt: skip
        run_child(deskctl_argv("--db", db_url, "channel", "login", name), env).check()
        desk = run_child(
            deskctl_argv("--db", db_url, "--json", "fetch", "--channel", name), env
        ).check(0, 7)
    finally:
        ours.send("done")
        server.join(30)
    return desk, fill_seconds


# -- profile ----------------------------------------------------------------------------


def _where(func: str, profile: pstats.FunctionProfile) -> str:
    path = profile.file_name
    for marker in ("/site-packages/", str(REPO) + "/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{profile.line_number}({func})" if path != "~" else func


def hot_spots(path: Path, top: int) -> tuple[float, list[list[object]], list[list[object]]]:
    stats = pstats.Stats(str(path)).get_stats_profile()
    rows = [(name, fp) for name, fp in stats.func_profiles.items()]
    cumulative = [
        (n, fp)
        for n, fp in rows
        if not any(d in fp.file_name for d in _DISPATCH) and n != "<built-in method builtins.exec>"
    ]
    cumulative.sort(key=lambda r: r[1].cumtime, reverse=True)
    own = sorted(rows, key=lambda r: r[1].tottime, reverse=True)

    def row(item: tuple[str, pstats.FunctionProfile]) -> list[object]:
        name, fp = item
        return [fp.ncalls, fp.tottime, fp.cumtime, _where(name, fp)[:110]]

    return stats.total_tt, [row(r) for r in cumulative[:top]], [row(r) for r in own[:top]]


# -- the driver -------------------------------------------------------------------------


def fill(dovecot: Any, folder: str, spec: CorpusSpec, stats: CorpusStats) -> float:
    started = time.perf_counter()
    with dovecot.mailbox(USER, PASSWORD) as box:
        for raw in generate(spec, stats):
            box.append(raw, folder)
    return time.perf_counter() - started


def databases(args: argparse.Namespace, stack: ExitStack, base: Path) -> Iterator[str]:
    """A fresh database URL for each deskctl run."""
    if args.postgres:
        from testbed.postgres import PostgresCluster

        cluster = PostgresCluster()
        stack.callback(cluster.stop)
        while True:
            yield cluster.create_database()
    run = 0
    while True:
        run += 1
        yield args.db or f"sqlite:///{base / f'home{run}' / 'deskctl.db'}"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-child":
        cfg = json.loads(sys.argv[2])
        print(
            json.dumps(bare_loop("localhost", cfg["port"], cfg["ca"], cfg["folder"], cfg["bulk"]))
        )
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--big", action="store_true", help="attachments up to 2 MiB, not 200 KiB")
    parser.add_argument("--max-attachment-kib", type=int, help="overrides --big")
    parser.add_argument("--sizes", choices=["uniform", "loguniform"], default="uniform")
    parser.add_argument("--bulk", type=int, default=100, help="bare loop's batch (default 100)")
    parser.add_argument("--db", help="database URL for deskctl (should be empty; not dropped)")
    parser.add_argument("--postgres", action="store_true", help="throwaway PostgreSQL cluster")
    parser.add_argument("--profile", type=Path, help="also run deskctl fetch under cProfile")
    parser.add_argument("--top", type=int, default=15, help="profile rows (default 15)")
    args = parser.parse_args()
    if args.db and args.postgres:
        parser.error("--db and --postgres exclude each other")

    from testbed.certs import make_certs
    from testbed.dovecot import Dovecot

    max_kib = args.max_attachment_kib or (2048 if args.big else 200)
    spec = CorpusSpec(n=args.n, seed=args.seed, max_attachment=max_kib * KIB, size_dist=args.sizes)
    base = Path(tempfile.mkdtemp(prefix="deskctl-bench-fetch-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        certs = make_certs()
        stack.callback(certs.remove)
        dovecot = Dovecot(certs, {USER: PASSWORD, POP3_USER: PASSWORD}, pop3=True)
        stack.callback(dovecot.stop)
        folder = dovecot.create_folder(USER, PASSWORD, prefix="bench")
        stats = CorpusStats()
        fill_seconds = fill(dovecot, folder, spec, stats)
        fill_seconds += fill_pop3(dovecot, spec)
        server = Server(dovecot.imaps_port, str(certs.ca_pem), folder)
        urls = databases(args, stack, base)

        bare_env = child_env(base / "bare", **{PW_VAR: PASSWORD})
        bare_runs = [run_bare(server, args.bulk, bare_env)]

        db_url = next(urls)
        env, name = prepare_deskctl(base / "home1", db_url, server)
        desk = run_child(
            deskctl_argv("--db", db_url, "--json", "fetch", "--channel", name), env
        ).check(0, 7)
        report = fetch_report(desk)

        pop3, pop3_report = run_pop3(dovecot, server, base / "home-pop3", next(urls))

        bare_runs.append(run_bare(server, args.bulk, bare_env))
        bare, counts = min(bare_runs, key=lambda r: r[0].seconds)
        graph, graph_fill = run_graph(certs, spec, base / "home-graph", next(urls))
        graph_report = fetch_report(graph)

        mib = counts["bytes"] / MIB
        fetched = int(report["fetched"])
        print(f"corpus: {stats.summary()} (APPEND to both users took {fill_seconds:.1f} s)")
        print(f"deskctl: {db_url.split('@')[-1]}; bare loop: imap-tools fetch(bulk={args.bulk})")
        print()
        graph_fetched = int(graph_report["fetched"])
        rows: list[list[object]] = [
            ["deskctl fetch", fetched, mib, desk.seconds, fetched / desk.seconds,
             mib / desk.seconds, desk.peak_rss_mib],
            ["deskctl fetch (Graph)", graph_fetched, mib, graph.seconds,
             graph_fetched / graph.seconds, mib / graph.seconds, graph.peak_rss_mib],
            ["bare loop", counts["messages"], mib, bare.seconds,
             counts["messages"] / bare.seconds, mib / bare.seconds, bare.peak_rss_mib],
            ["deskctl fetch (pop3)", pop3_report["fetched"], mib, pop3.seconds,
             int(pop3_report["fetched"]) / pop3.seconds, mib / pop3.seconds, pop3.peak_rss_mib],
        ]  # fmt: skip
        print(table(["run", "messages", "MiB", "seconds", "msg/s", "MiB/s", "peak RSS MiB"], rows))
        print()
        print(
            f"ratio deskctl/bare: time {desk.seconds / bare.seconds:.1f}x, "
            f"peak RSS {desk.peak_rss_mib / bare.peak_rss_mib:.1f}x"
        )
        print(
            "deskctl: "
            + ", ".join(f"{k} {v}" for k, v in report.items() if k not in ("name", "error"))
            + (f", error {report['error']}" if report.get("error") else "")
        )
        print(
            f"graph: {graph_report['tickets_created']} tickets, "
            f"{graph_report['quarantined']} quarantined (delivering took {graph_fill:.1f} s)"
            + (f", error {graph_report['error']}" if graph_report.get("error") else "")
        )
        print(
            "bare runs (s): "
            + ", ".join(f"{r.seconds:.2f} (loop {c['loop_seconds']:.2f})" for r, c in bare_runs)
            + f"; {counts['parts']} leaf parts, {counts['decoded'] / MIB:.1f} MiB decoded"
        )

        if args.profile:
            db_url = next(urls)
            env, name = prepare_deskctl(base / "home2", db_url, server)
            argv = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "deskctl",
                    "--db", db_url, "--json", "fetch", "--channel", name]  # fmt: skip
            prof = run_child(argv, env).check(0, 7)
            total, cumulative, own = hot_spots(args.profile, args.top)
            print()
            print(
                f"profile: {args.profile} ({prof.seconds:.1f} s wall under cProfile, "
                f"{total:.1f} s profiled, {fetch_report(prof)['fetched']} fetched)"
            )
            headers = ["ncalls", "tottime", "cumtime", "function"]
            print(f"\ntop {args.top} by cumulative time (dispatch frames left out):")
            print(table(headers, cumulative))
            print(f"\ntop {args.top} by own time:")
            print(table(headers, own))


if __name__ == "__main__":
    main()

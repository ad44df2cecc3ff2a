"""A scripted POP3 server on 127.0.0.1, for what Dovecot cannot be made to do on demand.

It answers the commands deskctl sends (CAPA, USER, PASS, UIDL, LIST, RETR,
TOP, DELE, QUIT) for a fixed list of messages, sent as they are (dot-stuffed,
line ends untouched, so a test can send bare LFs), and can leave STLS out of its
capabilities or drop the connection half-way through sending one message.
It records what each session marked and whether it ended with QUIT, which
is the only moment a POP3 server deletes.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Script:
    messages: list[bytes]
    #: 1-based number of the message whose RETR is cut off half-way (once).
    drop_during: int | None = None
    capabilities: tuple[str, ...] = ("UIDL", "TOP", "USER")
    #: Refuse PASS, quoting the password back, as a careless server might.
    refuse_echoing: bool = False
    #: Per session: the message numbers marked with DELE, and whether QUIT came.
    sessions: list[tuple[list[int], bool]] = field(default_factory=list)
    #: Every command verb received, in order (never the arguments: no passwords kept).
    verbs: list[str] = field(default_factory=list)

    def deleted(self) -> set[int]:
        """What the server removed: the marks of the sessions that ended with QUIT."""
        return {n for marks, quit_ in self.sessions if quit_ for n in marks}


class FakePop3:
    """Serves ``script`` until :meth:`stop`; ``port`` is the kernel's choice."""

    def __init__(self, script: Script) -> None:
        self.script = script
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer._session(self)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _session(self, conn: socketserver.StreamRequestHandler) -> None:
        script = self.script
        marks: list[int] = []
        script.sessions.append((marks, False))
        index = len(script.sessions) - 1

        def send(*lines: bytes) -> None:
            conn.wfile.write(b"".join(line + b"\r\n" for line in lines))

        send(b"+OK fake ready")
        while line := conn.rfile.readline():
            verb, *args = line.decode().split()
            script.verbs.append(verb)
            number = int(args[0]) if args and args[0].isdigit() else 0
            if verb == "CAPA":
                send(b"+OK", *(c.encode() for c in script.capabilities), b".")
            elif verb == "PASS" and script.refuse_echoing:
                send(b"-ERR [AUTH] wrong password: " + line.split(b" ", 1)[1].rstrip())
            elif verb in ("USER", "PASS", "NOOP"):
                send(b"+OK")
            elif verb == "UIDL":
                send(b"+OK", *(b"%d fake-%d" % (i, i) for i in self._numbers()), b".")
            elif verb == "LIST":
                sizes = (b"%d %d" % (i, len(script.messages[i - 1])) for i in self._numbers())
                send(b"+OK", *sizes, b".")
            elif verb in ("RETR", "TOP"):
                raw = script.messages[number - 1]
                if verb == "RETR" and number == script.drop_during:
                    script.drop_during = None
                    conn.wfile.write(b"+OK\r\n" + raw[: len(raw) // 2])
                    return  # the line goes dead half-way through the message
                stuffed = b"\n".join(b"." + x if x[:1] == b"." else x for x in raw.split(b"\n"))
                send(b"+OK", stuffed.rstrip(b"\r\n"), b".")  # lines end as in ``raw``
            elif verb == "DELE":
                marks.append(number)
                send(b"+OK marked")
            elif verb == "QUIT":
                script.sessions[index] = (marks, True)
                send(b"+OK bye")
                return
            else:
                send(b"-ERR unknown command")

    def _numbers(self) -> range:
        return range(1, len(self.script.messages) + 1)

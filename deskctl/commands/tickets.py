"""``deskctl ticket``: list, read and work tickets."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deskctl.commands._common import app_context, read_file, read_text, report
from deskctl.errors import UsageError
from deskctl.mail.sanitize import safe_text
from deskctl.output import (
    Column,
    address,
    columns,
    fmt_time,
    human_size,
    paged,
    print_json,
    show_value,
)
from deskctl.services.tickets import MAX_ID

if TYPE_CHECKING:
    from rich.console import Console

    from deskctl.mail.compose import OutgoingAttachment
    from deskctl.store.dbapi import Database

log = logging.getLogger(__name__)

app = typer.Typer(help="List, read and work tickets.", no_args_is_help=True)

TicketNumber = Annotated[int, typer.Argument(help="ticket number", min=1, max=MAX_ID)]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="new|open|pending|solved|closed|all; several: open,pending or repeated"
            " \\[default: new,open,pending]",
        ),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="queue name")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="agent name, or 'me'")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="mine: --assignee me")] = False,
    customer: Annotated[str | None, typer.Option("--customer", help="customer address")] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="text in title, body or address")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_ID, help="at most this many")
    ] = 50,
    flag: Annotated[
        str | None,
        typer.Option("--flag", help="with a message flagged so: auto_reply, bounce, bulk, ..."),
    ] = None,
    no_pager: Annotated[bool, typer.Option("--no-pager", help="never page the output")] = False,
) -> None:
    """List tickets, newest activity first; by default the work to do (new, open, pending).

    With --flag and no --status, every status (filed auto-replies are closed).

    Example: deskctl ticket list --status open --queue billing
    Example: deskctl ticket list --mine --status all
    Example: deskctl ticket list --flag auto_reply
    """
    from deskctl.services import tickets as svc

    context = app_context(ctx)
    if mine:
        if assignee not in (None, "me"):
            raise UsageError("give --mine or --assignee, not both")
        assignee = "me"
    me = assignee == "me"
    if me:
        assignee = context.settings.agent
    statuses = svc.list_statuses(status or [], flag=flag)
    flt = svc.TicketFilter(statuses, queue, assignee, customer, search, limit, flag, mine=me)
    with context.database() as db, db.transaction():
        found = svc.list_tickets(db, flt)
    rows = [svc.ticket_summary(row) for row in found]
    colors = {row["id"]: row["queue_color"] for row in found}
    if context.json:
        print_json({"tickets": rows})
        return
    with paged(not no_pager) as out:
        _render_list(out, rows, colors)


def _mailboxes(addresses: list[dict[str, str]]) -> str:
    return ", ".join(
        safe_text(f"{a['name']} <{a['email']}>" if a["name"] else a["email"]) for a in addresses
    )


def recipients_line(recipients: dict[str, Any]) -> str:
    """``to A <a@x>, cc B <b@x>``: who a reply goes to, as show, editor and reply say it."""
    if not recipients["to"]:
        return "to nobody"
    line = f"to {_mailboxes(recipients['to'])}"
    return line + (f", cc {_mailboxes(recipients['cc'])}" if recipients["cc"] else "")


#: ticket list's columns; a narrow terminal drops the later-listed first
#: (msgs, then assignee, then queue), so that the title stays readable.
_LIST_COLUMNS = [
    Column("#", right=True),
    Column("status"),
    Column("queue", max_width=12, drop=3),
    Column("title", share=3, min_width=32),
    Column("customer", share=1, max_width=30, min_width=12),
    Column("assignee", max_width=10, drop=2),
    Column("msgs", right=True, drop=1),
    Column("updated"),
]


def _render_list(out: Console, rows: list[dict[str, Any]], colors: dict[int, str]) -> None:
    from rich.text import Text

    if not rows:
        out.print("no tickets", markup=False)
        return
    cells = [
        [
            Text(str(row["number"])),
            Text(row["status"]),
            Text(safe_text(row["queue"]), style=colors[row["id"]]),
            Text(safe_text(row["title"]) or "-"),
            Text(safe_text(row["customer"]["email"] or "-")),
            Text(safe_text(row["assignee"] or "-")),
            Text(str(row["messages"])),
            Text(fmt_time(row["last_message_at"])),
        ]
        for row in rows
    ]
    out.print(columns(_LIST_COLUMNS, cells, out.width))


def _render_ticket(out: Console, data: dict[str, Any], color: str, *, full: bool) -> None:
    from rich.text import Text

    head = Text()
    head.append(f"#{data['number']} ", style="bold")
    head.append(safe_text(data["title"]) or "-", style="bold")
    out.print(head)
    meta = Text()
    meta.append(f"{data['status']}  ")
    meta.append(safe_text(data["queue"]), style=color)
    meta.append(f"  customer {address(data['customer']['name'], data['customer']['email'])}")
    meta.append(f"  assignee {show_value(data['assignee'])}")
    out.print(meta)
    out.print(Text(f"a reply goes {recipients_line(data['reply_recipients'])}", style="dim"))
    for note in data["reply_recipients"]["notes"]:
        out.print(Text(f"  {safe_text(note)}", style="yellow"))
    for msg in data["messages"]:
        out.rule(style="dim")
        _render_message(out, msg, full=full)


def _render_message(out: Console, msg: dict[str, Any], *, full: bool) -> None:
    from rich.text import Text

    line = Text(f"[{msg['id']}] {msg['direction']}  ", style="dim")
    sender = address(msg["from"]["name"], msg["from"]["email"])
    if msg["direction"] == "note":  # a note has no sender: its author wrote it
        line.append(f"by {safe_text(msg['author'] or '-')}")
    else:
        line.append(sender)
        if msg["author"]:
            line.append(f"  by {safe_text(msg['author'])}", style="dim")
    line.append(f"  {fmt_time(msg['date'])}", style="dim")
    if msg.get("delivery"):
        line.append(
            f"  [{msg['delivery']}]", style="green" if msg["delivery"] == "sent" else "yellow"
        )
    if msg["flags"]:
        line.append("  " + ",".join(msg["flags"]), style="yellow")
    out.print(line)
    if msg["direction"] != "note":
        rcpt = Text(f"  to: {show_value(msg['to'])}", style="dim")
        if msg["cc"]:
            rcpt.append(f"  cc: {show_value(msg['cc'])}")
        out.print(rcpt)
    if msg["flag_reasons"]:
        out.print(Text("  why: " + safe_text("; ".join(msg["flag_reasons"])), style="yellow"))
    if msg.get("delivery_error"):
        out.print(Text("  delivery: " + safe_text(msg["delivery_error"]), style="yellow"))
    if msg.get("sent_copy") == "filed":
        out.print(Text(f"  filed in {safe_text(msg['sent_copy_folder'] or '-')}", style="dim"))
    elif msg.get("sent_copy_error"):
        out.print(Text("  not filed in Sent: " + safe_text(msg["sent_copy_error"]), style="yellow"))
    _render_body(out, safe_text(msg["body"] or "").rstrip(), full=full)
    for att in msg["attachments"]:
        kind = "inline" if att["inline"] else "attachment"
        out.print(
            Text(
                f"  {kind} {att['id']}: {safe_text(att['filename'])} "
                f"({safe_text(att['content_type'])}, {human_size(att['size'])})",
                style="cyan",
            )
        )
        for inner in att.get("contents", []):
            out.print(
                Text(
                    f"    inside: {safe_text(inner['filename'])} ({human_size(inner['size'])})",
                    style="cyan",
                )
            )


#: How long ``ticket show`` waits for another run's write lock to record
#: what it printed, before it leaves the record out.
VIEW_WAIT_MS = 2000


def _record_seen(db: Database, agent: str, data: dict[str, Any]) -> None:
    """Record what ``ticket show`` printed, in a short write of its own, when the lock allows.

    A fetch or another agent may hold the database's write lock for a
    while; the reading must not wait for it. Left out, the record only
    means a later ``ticket reply`` asks for another look first.
    """
    from deskctl.errors import Unreachable
    from deskctl.services.seen import record_shown

    try:
        with db.transaction(write=True, wait_ms=VIEW_WAIT_MS):
            record_shown(db, agent, data)
    except Unreachable as exc:
        log.warning(
            "ticket #%s: what was shown is not recorded (%s); run `ticket show` again"
            " before replying",
            data["id"],
            exc.message,
        )


def _render_body(out: Console, body: str, *, full: bool) -> None:
    """The body, its quoted parts folded into one dim line each unless ``full``."""
    from rich.text import Text

    from deskctl.mail.quotes import folds

    found = [] if full else folds(body)
    lines = body.split("\n")
    shown = 0
    for fold in found:
        if fold.first > shown:
            out.print(Text("\n".join(lines[shown : fold.first]).rstrip("\n")))
        count = f"{fold.lines} line{'s' if fold.lines != 1 else ''}"
        what = f"{count} of quoted history" if fold.kind == "history" else f"{count} quoted"
        out.print(Text(f"[… {what}, folded; --full shows them]", style="dim"))
        shown = fold.last + 1
    rest = "\n".join(lines[shown:]).strip("\n") if found else body
    if rest:
        out.print(Text(rest))


@app.command("show")
def show(
    ctx: typer.Context,
    number: TicketNumber,
    full: Annotated[
        bool, typer.Option("--full", help="quoted history too, not folded into one line")
    ] = False,
    no_pager: Annotated[bool, typer.Option("--no-pager", help="never page the output")] = False,
    raw: Annotated[
        str | None,
        typer.Option("--raw", help="print the stored source of this message (id or Message-ID)"),
    ] = None,
) -> None:
    """Show a ticket with its conversation, or one message's raw source.

    Quoted history is folded into one dim line per block (--full shows it);
    on a terminal the output goes through $DESKCTL_PAGER, $PAGER or `less -FRX`.

    Example: deskctl ticket show 1042
    Example: deskctl ticket show 1042 --full --no-pager
    """
    from deskctl.services import tickets as svc
    from deskctl.services.recipients import shown_recipients

    context = app_context(ctx)
    with context.database() as db:
        if raw is not None:
            with db.transaction():
                source = svc.raw_source(db, number, raw)
        else:
            with db.transaction():
                data, row = svc.ticket_detail(db, number)
                data["reply_recipients"] = shown_recipients(db, data, context.settings.reply_max_cc)
            if context.json:
                print_json(data)
            else:
                with paged(not no_pager) as out:
                    _render_ticket(out, data, row["queue_color"], full=full)
            # Printed first: a run holding the write lock may delay the record, never the read.
            _record_seen(db, context.settings.agent, data)
            return
    # Exactly the stored bytes for pipes and files; a terminal gets them
    # sanitised, because raw mail may carry escape sequences.
    if sys.stdout.isatty():
        sys.stdout.write(safe_text(source.decode("utf-8", "replace")))
    else:
        sys.stdout.buffer.write(source)
    sys.stdout.flush()


MARKER = "# ------------------------ >8 ------------------------"


def _editor() -> str:
    """$VISUAL, $EDITOR, else vi, but vi only on a terminal: without one it would hang
    or scribble over a pipe, so a script that gave no body is told what to give."""
    import os

    chosen = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if chosen:
        return chosen
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "no body given and no terminal for an editor: give --body TEXT,"
            " --body-file FILE, or --body-file - to read it from stdin"
        )
    return "vi"


def _edit_body(quote: str, about: str = "") -> str:
    """Open $VISUAL/$EDITOR like `git commit`; everything below the marker is dropped.

    ``about`` (who the reply goes to) is shown below the marker, where the
    agent reads it before writing and nothing of it is sent.
    """
    import shlex
    import subprocess
    import tempfile

    editor = _editor()
    template = (
        "\n\n"
        + MARKER
        + "\n# Write the reply above. Everything below this line is ignored;"
        + " an empty reply cancels.\n"
        + "".join(f"# {line}\n" for line in about.splitlines())
        + quote
    )
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as fh:
        fh.write(template)
        path = fh.name
    try:
        completed = subprocess.run([*shlex.split(editor), path], check=False)
        if completed.returncode != 0:
            raise UsageError(f"the editor exited {completed.returncode}; nothing was sent")
        text = Path(path).read_text()
    finally:
        Path(path).unlink(missing_ok=True)
    return text.split(MARKER, 1)[0].strip()


def _read_body(body: str | None, body_file: str | None) -> str | None:
    if body is not None and body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    if body_file == "-":
        return sys.stdin.read()
    if body_file is not None:
        return read_text(body_file)
    return body


#: The attachments of one reply together, by default: what most mail servers accept.
MAX_ATTACHMENTS = 25 * 1024 * 1024


def _attachments(paths: list[str], limit: int) -> tuple[OutgoingAttachment, ...]:
    """The files to attach, regular files only, at most ``limit`` bytes in all."""
    import mimetypes

    from deskctl.mail.compose import OutgoingAttachment

    found = []
    total = 0
    over = f"the attachments are over the limit of {limit} bytes for one reply (--max-size)"
    for path in paths:
        data = read_file(path, limit=limit - total, over_limit=over)
        total += len(data)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        found.append(OutgoingAttachment(Path(path).name, ctype, data))
    return tuple(found)


@app.command("reply")
def reply(
    ctx: typer.Context,
    number: TicketNumber,
    body: Annotated[str | None, typer.Option("--body", help="the reply text")] = None,
    body_file: Annotated[
        str | None, typer.Option("--body-file", help="file, or - for stdin")
    ] = None,
    attach: Annotated[list[str] | None, typer.Option("--attach", help="file (repeatable)")] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="address (repeatable)")] = None,
    status: Annotated[str, typer.Option("--status", help="ticket status after")] = "pending",
    force: Annotated[
        bool, typer.Option("--force", help="reply even if the ticket changed")
    ] = False,
    max_size: Annotated[
        int, typer.Option("--max-size", min=0, help="bytes of attachments in all, at most")
    ] = MAX_ATTACHMENTS,
) -> None:
    """Answer the customer; the mail is queued for `deskctl send-outbox`.

    Without --body or --body-file, $VISUAL/$EDITOR opens with the last customer message.

    Example: deskctl ticket reply 1042 --body "Fixed, please try again." --status solved
    """
    from deskctl.services import tickets as svc
    from deskctl.services.recipients import shown_recipients
    from deskctl.services.replies import ReplyRequest, reply_to_ticket

    context = app_context(ctx)
    # Files first: a wrong --attach fails at once, not after the agent wrote the reply.
    attachments = _attachments(attach or [], max_size)
    text = _read_body(body, body_file)
    if text is None:
        with context.database() as db, db.transaction():
            detail, _row = svc.ticket_detail(db, number)
            recipients = shown_recipients(db, detail, context.settings.reply_max_cc)
        last = [m for m in detail["messages"] if m["direction"] == "in"]
        quote = "".join(f"# > {line}\n" for line in (last[-1]["body"] if last else "").splitlines())
        about = "\n".join(
            [f"The reply goes {recipients_line(recipients)}", *map(safe_text, recipients["notes"])]
        )
        text = _edit_body(quote, about)
        if not text:
            from deskctl.output import stderr

            stderr.print("reply cancelled: the body is empty; nothing was queued", markup=False)
            return
    request = ReplyRequest(
        body=text,
        cc=tuple(cc or ()),
        status=status,
        attachments=attachments,
        force=force,
        max_cc=context.settings.reply_max_cc,
    )
    with context.transaction() as session:
        message, item = reply_to_ticket(session, number, context.settings.agent, request)
        data: dict[str, Any] = {
            "ticket": number,
            "message": message.id,
            "message_id": message.message_id,
            "outbox": item.id,
            "state": item.state,
            "to": message.to,
            "cc": message.cc,
            "notes": list(message.flag_reasons or []),
        }
    line = (
        f"reply queued as outbox item {data['outbox']} (ticket #{number}) {recipients_line(data)}"
    )
    report(context, data, "\n".join([line, *map(safe_text, data["notes"])]))


@app.command("note")
def note(
    ctx: typer.Context,
    number: TicketNumber,
    body: Annotated[str | None, typer.Option("--body", help="the note")] = None,
    body_file: Annotated[
        str | None, typer.Option("--body-file", help="file, or - for stdin")
    ] = None,
) -> None:
    """Add an internal note; it is never mailed.

    Example: deskctl ticket note 1042 --body "Called the customer, waiting for logs."
    """
    from deskctl.services.replies import add_note

    context = app_context(ctx)
    text = _read_body(body, body_file)
    if text is None:
        text = _edit_body("")
    with context.transaction() as session:
        message = add_note(session, number, context.settings.agent, text)
        data = {"ticket": number, "message": message.id}
    report(context, data, f"note added to ticket #{number}")


@app.command("assign")
def assign_(
    ctx: typer.Context,
    number: TicketNumber,
    agent: Annotated[str, typer.Argument(help="agent name, 'me', or 'nobody'")],
    force: Annotated[bool, typer.Option("--force", help="take it from another agent")] = False,
) -> None:
    """Assign a ticket to an agent.

    Example: deskctl ticket assign 1042 me
    """
    from deskctl.services import tickets as svc
    from deskctl.services.replies import assign
    from deskctl.store.dbapi import from_session

    context = app_context(ctx)
    with context.transaction() as session:
        assign(
            session,
            number,
            context.settings.agent,
            None if agent == "nobody" else agent,
            force=force,
        )
        data = svc.ticket_summary(svc.get_row(from_session(session), number))
    report(context, data, f"ticket #{number} assigned to {data['assignee'] or 'nobody'}")


@app.command("status")
def status_(
    ctx: typer.Context,
    number: TicketNumber,
    status: Annotated[str, typer.Argument(help="new|open|pending|solved|closed")],
) -> None:
    """Change a ticket's status.

    Example: deskctl ticket status 1042 solved
    """
    from deskctl.services import tickets as svc
    from deskctl.services.replies import set_status
    from deskctl.store.dbapi import from_session

    context = app_context(ctx)
    with context.transaction() as session:
        set_status(session, number, context.settings.agent, status)
        data = svc.ticket_summary(svc.get_row(from_session(session), number))
    report(context, data, f"ticket #{number} is {data['status']}")

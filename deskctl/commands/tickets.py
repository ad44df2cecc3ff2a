"""``deskctl ticket``: list, read and work tickets."""

from __future__ import annotations

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
    if assignee == "me":
        assignee = context.settings.agent
    statuses = svc.list_statuses(status or [], flag=flag)
    flt = svc.TicketFilter(statuses, queue, assignee, customer, search, limit, flag)
    with context.database() as db, db.transaction():
        found = svc.list_tickets(db, flt)
    rows = [svc.ticket_summary(row) for row in found]
    colors = {row["id"]: row["queue_color"] for row in found}
    if context.json:
        print_json({"tickets": rows})
        return
    with paged(not no_pager) as out:
        _render_list(out, rows, colors)


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
    from deskctl.services.seen import record_shown

    context = app_context(ctx)
    with context.database() as db:
        if raw is not None:
            with db.transaction():
                source = svc.raw_source(db, number, raw)
        else:
            with db.transaction():
                data, row = svc.ticket_detail(db, number)
            with db.transaction(write=True):  # its own short write, after the read
                record_shown(db, context.settings.agent, data)
    if raw is not None:
        # Exactly the stored bytes for pipes and files; a terminal gets them
        # sanitised, because raw mail may carry escape sequences.
        if sys.stdout.isatty():
            sys.stdout.write(safe_text(source.decode("utf-8", "replace")))
        else:
            sys.stdout.buffer.write(source)
        sys.stdout.flush()
        return
    if context.json:
        print_json(data)
        return
    with paged(not no_pager) as out:
        _render_ticket(out, data, row["queue_color"], full=full)


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


def _edit_body(quote: str) -> str:
    """Open $VISUAL/$EDITOR like `git commit`; everything below the marker is dropped."""
    import shlex
    import subprocess
    import tempfile

    editor = _editor()
    template = (
        "\n\n"
        + MARKER
        + "\n# Write the reply above. Everything below this line is ignored;"
        + " an empty reply cancels.\n"
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


def _attachments(paths: list[str]) -> tuple[OutgoingAttachment, ...]:
    import mimetypes

    from deskctl.mail.compose import OutgoingAttachment

    found = []
    for path in paths:
        data = read_file(path)
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
) -> None:
    """Answer the customer; the mail is queued for `deskctl send-outbox`.

    Without --body or --body-file, $VISUAL/$EDITOR opens with the last customer message.

    Example: deskctl ticket reply 1042 --body "Fixed, please try again." --status solved
    """
    from deskctl.services import tickets as svc
    from deskctl.services.replies import ReplyRequest, reply_to_ticket

    context = app_context(ctx)
    text = _read_body(body, body_file)
    if text is None:
        with context.database() as db, db.transaction():
            detail, _row = svc.ticket_detail(db, number)
        last = [m for m in detail["messages"] if m["direction"] == "in"]
        quote = "".join(f"# > {line}\n" for line in (last[-1]["body"] if last else "").splitlines())
        text = _edit_body(quote)
        if not text:
            from deskctl.output import stderr

            stderr.print("reply cancelled: the body is empty; nothing was queued", markup=False)
            return
    request = ReplyRequest(
        body=text,
        cc=tuple(cc or ()),
        status=status,
        attachments=_attachments(attach or []),
        force=force,
    )
    with context.transaction() as session:
        message, item = reply_to_ticket(session, number, context.settings.agent, request)
        data = {
            "ticket": number,
            "message": message.id,
            "message_id": message.message_id,
            "outbox": item.id,
            "state": item.state,
        }
    report(context, data, f"reply queued as outbox item {data['outbox']} (ticket #{number})")


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

"""Fetching a POP3 maildrop: the UIDL is the cursor, DELE after commit, QUIT after that.

Each message's UIDL commits in the same transaction as the message (the
FetchedKey table, as for a Maildir), so a message is stored once across
reruns, crashes and overlapping runs. With ``--after-fetch delete`` a message
is marked (DELE) only once that transaction has committed, and the server
removes marked mail only at QUIT, which comes at the end of a run that went
well: a run killed at any point deletes nothing, and the next run marks what
is stored and known, then reads the rest. Mail over the size limit is never
downloaded (only its header, TOP n 0), stays on the server, is listed in the
quarantine by UIDL and is never deleted by a fetch (also once an agent drops
its entry: it is known as left on the server, never as stored).
"""

from __future__ import annotations

import logging
from collections import Counter

from sqlalchemy import update
from sqlalchemy.orm import Session

from deskctl.context import AppContext
from deskctl.errors import NotFound
from deskctl.jobs.fetch import (
    ChannelReport,
    FetchOptions,
    Keyed,
    Snapshot,
    fetched_keys,
    login_of,
    select_channels,
    store_keyed,
)
from deskctl.jobs.parsing import parse_stream
from deskctl.jobs.pipeline import Outcome, ingest_cache, still_over, store_raw
from deskctl.services.quarantine import drop_quarantined, get_quarantined
from deskctl.store.models import FetchedKey
from deskctl.transport.pop3 import Pop3Inbox, Pop3Settings
from deskctl.transport.spool import Oversize

log = logging.getLogger(__name__)

#: Marks the key of a message over the size limit, listed but left on the server: a
#: fetch never reads it again nor deletes it, also once its quarantine entry is
#: dropped. A UIDL has no blanks (RFC 1939: 0x21 to 0x7E), so no UIDL ends so.
LEFT = " (left on the server)"
#: The usual ports: POP3S (RFC 8314) and POP3, which STLS upgrades.
PORTS = {"ssl": 995, "starttls": 110, "none": 110}


def pop3_settings(ch: Snapshot) -> Pop3Settings:
    """How to reach the channel's maildrop, with its secret resolved now."""
    username, login = login_of(ch)
    security = ch.security or "ssl"
    return Pop3Settings(
        host=ch.host or "",
        port=ch.port or PORTS.get(security, 995),
        security=security,
        username=username,
        password=login.password or "",
        ca_file=ch.ca_file,
    )


def fetch_pop3(
    context: AppContext, ch: Snapshot, opts: FetchOptions, report: ChannelReport, owner: str
) -> None:
    delete = ch.after_fetch == "delete" and not opts.dry_run
    inbox = Pop3Inbox(pop3_settings(ch))
    try:
        with inbox:
            _read(context, ch, opts, report, owner, inbox, delete)
        # Leaving the block sent QUIT: the server has now removed what was marked.
    finally:
        report.record_unread(inbox.unread)


def _read(
    context: AppContext,
    ch: Snapshot,
    opts: FetchOptions,
    report: ChannelReport,
    owner: str,
    inbox: Pop3Inbox,
    delete: bool,
) -> None:
    cache = ingest_cache(context)
    listed = inbox.listing()
    known = fetched_keys(context, ch.id)
    # A UIDL the server gives to more than one message (Dovecot's
    # pop3_uidl_duplicates=allow does) names neither: such mail is read every
    # run, told apart by its content (ingest's dedupe), and only deleted in
    # the session that stored it; a catch-up by UIDL could delete the other.
    shared = {key for key, n in Counter(item.uidl for item in listed).items() if n > 1}
    if shared:
        log.warning(
            "%s: the server gives one UIDL to several messages: %s", ch.name, sorted(shared)
        )
    if delete:
        # A run that ended before QUIT deleted nothing: what it stored goes now.
        # Mail too large to download is known as left, and stays.
        for item in listed:
            if item.uidl in known and item.uidl not in shared:
                inbox.delete(item.number)
    todo = [
        i
        for i in listed
        if i.uidl in shared or (i.uidl not in known and i.uidl + LEFT not in known)
    ]
    todo = todo[: opts.limit]
    stream = parse_stream(
        inbox.fetch(todo, opts.max_size), expected=len(todo), max_size=opts.max_size
    )
    for item, raw, parsed in stream:
        if item.uidl in shared and isinstance(raw, Oversize):
            # Listed by a UIDL that is not its own, it could not be retried by it.
            inbox.unread.append(f"UIDL {item.uidl}: over the size limit and its UIDL is shared")
            continue
        key = item.uidl + LEFT if isinstance(raw, Oversize) else item.uidl
        mail = Keyed(key, raw, parsed, len(todo), remember=item.uidl not in shared)
        store_keyed(context, ch, opts, report, owner, mail, cache)
        if isinstance(raw, Oversize):
            report.left_on_server += 1  # listed in the quarantine, untouched on the server
        elif delete:
            inbox.delete(item.number)  # committed above; removed at QUIT
        if opts.stop is not None and opts.stop():
            break  # a run that ends well: QUIT removes what was marked
    if inbox.cut is not None:
        raise inbox.cut  # what came before the cut is stored; nothing is deleted this run


def retry_left_on_pop3(context: AppContext, item_id: int, max_size: int) -> Outcome:
    """Download a POP3 message that was too large, now under ``max_size``, and store it.

    Its UIDL is known already, as left on the server, so no fetch reads it
    again. It becomes known as stored in the transaction that stores it; then
    the quarantine entry goes, and with ``--after-fetch delete`` the message is
    deleted at this session's QUIT (or by the next fetch, should this one die).
    """
    with context.transaction(write=False) as session:
        item = get_quarantined(session, item_id)
        name = item.channel.name if item.channel is not None else ""
        uidl = item.remote_key or ""
    (ch,) = select_channels(context, [name])
    with Pop3Inbox(pop3_settings(ch)) as inbox:
        found = [listed for listed in inbox.listing() if listed.uidl == uidl]
        got = [raw for _item, raw in inbox.fetch(found[:1], max_size)] if len(found) == 1 else []
        if not got:
            why = "is no longer" if len(found) < 2 else f"names {len(found)} messages"
            said = f" ({inbox.unread[0]})" if inbox.unread else ""
            raise NotFound(f"UIDL {uidl} {why} on the server of {ch.name}{said}")
        raw = got[0]
        if isinstance(raw, Oversize):
            return Outcome(quarantined=item_id, reason=still_over(raw.size, max_size))

        def stored(session: Session) -> None:
            session.execute(
                update(FetchedKey)
                .where(FetchedKey.channel_id == ch.id, FetchedKey.remote_key == uidl + LEFT)
                .values(remote_key=uidl)
                .execution_options(synchronize_session=False)
            )

        source = f"{ch.name} {uidl}"
        outcome = store_raw(
            context, raw, channel_id=ch.id, source=source, max_size=max_size, checkpoint=stored
        )
        with context.transaction() as session:
            drop_quarantined(session, item_id)
        if ch.after_fetch == "delete":
            inbox.delete(found[0].number)
    return outcome

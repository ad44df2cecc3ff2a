"""``deskctl fetch``: read every channel's new mail into tickets.

Per message, one transaction stores the message and the channel's sync state
(last UID, or the Maildir key); the server is touched (seen, moved, deleted)
only after that commit. A crash at any point therefore loses nothing and,
thanks to the dedupe key, doubles nothing. Each channel is claimed with a
lease so overlapping cron runs skip a channel another run is reading, and one
failing channel is recorded and reported while the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from deskctl.auth import credentials
from deskctl.context import AppContext
from deskctl.errors import DeskError, ExitCode, NotFound
from deskctl.jobs.parsing import parse_stream
from deskctl.jobs.pipeline import Outcome, ingest_cache, still_over, store_raw
from deskctl.jobs.probe import folder_error
from deskctl.jobs.workers import dead_local_owner, worker_id
from deskctl.services.ingest import IngestCache
from deskctl.services.leases import (
    LEASE,
    LeaseLost,
    claim_channel,
    lease_holder,
    release_channel,
    renew_channel,
)
from deskctl.services.quarantine import uids_left_on_server
from deskctl.store.models import FetchedKey, IncomingChannel
from deskctl.transport.spool import Oversize, spool_dir

if TYPE_CHECKING:
    from deskctl.mail.errors import MalformedMail
    from deskctl.mail.parsed import ParsedMail
    from deskctl.services.ingest import IngestCache
    from deskctl.transport.imap import ImapInbox, ImapSettings

if TYPE_CHECKING:
    from deskctl.transport.maildir import MaildirInbox

log = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 25 * 1024 * 1024
#: Server-side actions are applied after every this many committed messages.
ACTION_BATCH = 100

Progress = Callable[[str, int, int], None]


@dataclass
class ChannelReport:
    name: str
    fetched: int = 0
    tickets_created: int = 0
    messages_added: int = 0
    quarantined: int = 0
    skipped_duplicates: int = 0
    left_on_server: int = 0
    error: str | None = None
    exit_code: int = ExitCode.OK
    skipped: str | None = None
    #: Mailbox entries that were not mail deskctl could read (a link, a FIFO, an
    #: unreadable file, a name that is not UTF-8), each "name: why", printable.
    unread: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        self.fetched += 1
        if outcome.quarantined is not None:
            self.quarantined += 1
        elif outcome.duplicate:
            self.skipped_duplicates += 1
        elif outcome.created:
            self.tickets_created += 1
        else:
            self.messages_added += 1

    def record_unread(self, lines: list[str]) -> None:
        """Mailbox entries that were not mail we could read: reported, never fatal (promise 7)."""
        self.unread = lines
        for line in lines:
            log.warning("%s: not read: %s", self.name, line)

    def problem(self) -> str | None:
        """What goes into the channel's last_error: the failure, or what was left unread."""
        if self.error or not self.unread:
            return self.error
        more = f" (and {len(self.unread) - 1} more)" if len(self.unread) > 1 else ""
        return f"not read: {self.unread[0]}{more}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "fetched": self.fetched,
            "tickets_created": self.tickets_created,
            "messages_added": self.messages_added,
            "quarantined": self.quarantined,
            "skipped_duplicates": self.skipped_duplicates,
            "left_on_server": self.left_on_server,
            "error": self.error,
            "unread": self.unread,
        }
        if self.skipped:
            data["skipped"] = self.skipped
        return data


@dataclass(frozen=True)
class FetchOptions:
    limit: int | None = None
    dry_run: bool = False
    max_size: int = DEFAULT_MAX_SIZE
    progress: Progress | None = None
    #: Asked after each stored message: True ends the channel there (``fetch --watch``
    #: got SIGTERM); what is committed gets its after-fetch action, the lease goes.
    stop: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Snapshot:
    """The channel's settings, read once, so no ORM object outlives its session."""

    id: int
    name: str
    kind: str
    address: str
    host: str | None
    port: int | None
    security: str | None
    username: str | None
    secret_source: str | None
    secret_ref: str | None
    ca_file: str | None
    folder: str
    path: str | None
    after_fetch: str
    uidvalidity: int | None
    last_uid: int
    acted_uid: int
    settings: dict[str, Any] = field(default_factory=dict)


def claim(context: AppContext, channel_id: int, owner: str) -> bool:
    now = datetime.now(UTC)
    with context.transaction() as session:
        if claim_channel(session, channel_id, owner, now):
            return True
        holder = lease_holder(session, channel_id)
        if dead_local_owner(holder):
            log.info("taking over the lease of dead worker %s", holder)
            return claim_channel(session, channel_id, owner, now, steal_from=holder)
    return False


def select_channels(context: AppContext, names: list[str]) -> list[Snapshot]:
    with context.transaction(write=False) as session:
        query = select(IncomingChannel).order_by(IncomingChannel.name)
        if names:
            query = query.where(IncomingChannel.name.in_(names))
        else:
            query = query.where(IncomingChannel.enabled.is_(True), IncomingChannel.kind != "pipe")
        channels = list(session.scalars(query))
        missing = sorted(set(names) - {c.name for c in channels})
        if missing:
            raise NotFound(f"no incoming channel named {missing[0]!r} (see `deskctl channel list`)")
        return [
            Snapshot(
                c.id,
                c.name,
                c.kind,
                c.address,
                c.host,
                c.port,
                c.security,
                c.username,
                c.secret_source,
                c.secret_ref,
                c.ca_file,
                c.folder,
                c.path,
                c.after_fetch,
                c.uidvalidity,
                c.last_uid or 0,
                c.acted_uid or 0,
                dict(c.settings or {}),
            )
            for c in channels
        ]


LOST = "another fetch took this channel over (our lease had run out); it goes on"


def utcnow() -> datetime:
    return datetime.now(UTC)


def hold_lease(session: Session, channel_id: int, owner: str) -> None:
    """Extend our lease with each message; stop if another run has taken the channel over."""
    if not renew_channel(session, channel_id, owner, utcnow()):
        raise LeaseLost(LOST)


def fetched_keys(context: AppContext, channel_id: int) -> set[str]:
    """The remote keys (Maildir names, POP3 UIDLs) this channel has stored already."""
    with context.transaction(write=False) as session:
        query = select(FetchedKey.remote_key).where(FetchedKey.channel_id == channel_id)
        return set(session.scalars(query))


def remember_key(channel_id: int, owner: str, key: str | None) -> Callable[[Session], None]:
    """The checkpoint of a keyed mailbox: the key commits with its message, under our lease.

    No key (a POP3 UIDL the server gave to several messages) holds the lease only.
    """

    def checkpoint(session: Session) -> None:
        hold_lease(session, channel_id, owner)
        if key is not None:
            session.add(FetchedKey(channel_id=channel_id, remote_key=key))

    return checkpoint


@dataclass(frozen=True)
class Keyed:
    """One message of a keyed mailbox (Maildir, POP3) as it comes out of parse_stream."""

    key: str
    raw: bytes | Oversize
    parsed: ParsedMail | MalformedMail | None
    total: int  # how many this run reads, for progress
    remember: bool = True  # False: the key names other mail too (see remember_key)


def store_keyed(
    context: AppContext,
    ch: Snapshot,
    opts: FetchOptions,
    report: ChannelReport,
    owner: str,
    item: Keyed,
    cache: IngestCache,
) -> Outcome:
    """Store one message of a keyed mailbox; its key commits with it, under our lease."""
    remembered = remember_key(ch.id, owner, item.key if item.remember else None)
    outcome = store_raw(
        context,
        item.raw,
        channel_id=ch.id,
        source=f"{ch.name} {item.key}",
        max_size=opts.max_size,
        dry_run=opts.dry_run,
        checkpoint=None if opts.dry_run else remembered,
        cache=cache,
        mail=item.parsed,
    )
    report.count(outcome)
    if opts.progress:
        opts.progress(ch.name, report.fetched, item.total)
    return outcome


def login_of(ch: Snapshot) -> tuple[str, credentials.Credentials]:
    """The account to log in as and its secret (or token), resolved now, never stored."""
    username = ch.username or ch.address
    login = credentials.for_channel(
        ch.name,
        settings=ch.settings,
        account=username,
        secret_source=ch.secret_source,
        secret_ref=ch.secret_ref,
    )
    return username, login


def imap_settings(ch: Snapshot) -> ImapSettings:
    """How to reach the channel's folder, with its secret resolved now."""
    from deskctl.transport.imap import ImapSettings

    username, login = login_of(ch)
    return ImapSettings(
        host=ch.host or "",
        port=ch.port or 993,
        security=ch.security or "ssl",
        username=username,
        password=login.password or "",
        folder=ch.folder,
        ca_file=ch.ca_file,
        gmail=ch.kind == "gmail",
        oauth_token=login.oauth_token,
        relogin_hint=login.relogin_hint,
    )


def retry_left_on_server(context: AppContext, item_id: int, max_size: int) -> Outcome:
    """Download a message that was too large, now under ``max_size``, and store it.

    Once stored (as a ticket, or its bytes in the quarantine) the entry that
    pointed at the server goes and the channel's after-fetch action runs on
    the message, as a fetch would have done.
    """
    from deskctl.services.quarantine import drop_quarantined, get_quarantined
    from deskctl.transport.imap import ImapInbox

    with context.transaction(write=False) as session:
        item = get_quarantined(session, item_id)
        name = item.channel.name if item.channel is not None else ""
        uid, validity = item.remote_uid or 0, item.remote_uidvalidity
    (ch,) = select_channels(context, [name])
    with ImapInbox(imap_settings(ch)) as inbox:
        if inbox.uidvalidity != validity:
            raise NotFound(
                f"{ch.folder} on {ch.name} was renumbered (UIDVALIDITY changed) since; "
                "the next fetch reads the folder again"
            )
        got = [raw for _uid, raw in inbox.fetch([uid], max_size)]
        if not got:
            raise NotFound(f"UID {uid} is no longer in {ch.folder} on {ch.name}")
        if isinstance(got[0], Oversize):
            return Outcome(quarantined=item_id, reason=still_over(got[0].size, max_size))
        outcome = store_raw(
            context, got[0], channel_id=ch.id, source=f"{ch.name} uid {uid}", max_size=max_size
        )
        with context.transaction() as session:
            drop_quarantined(session, item_id)
        action, problem = _resolved_action(inbox, ch, dry_run=False)
        inbox.after_fetch(action, [uid])
    if problem is not None:
        raise problem
    return outcome


def _imap(
    context: AppContext, ch: Snapshot, opts: FetchOptions, report: ChannelReport, owner: str
) -> None:
    from deskctl.transport.folders import FolderProblem
    from deskctl.transport.imap import ImapInbox

    problem: DeskError | None
    cache = ingest_cache(context)
    with ImapInbox(imap_settings(ch)) as inbox:
        action, problem = _resolved_action(inbox, ch, dry_run=opts.dry_run)
        last_uid, acted_uid = ch.last_uid, ch.acted_uid
        if ch.uidvalidity is not None and ch.uidvalidity != inbox.uidvalidity:
            log.warning(
                "%s: UIDVALIDITY changed (%s -> %s): rescanning the folder, duplicates are skipped",
                ch.name,
                ch.uidvalidity,
                inbox.uidvalidity,
            )
            last_uid = acted_uid = 0
        uids = inbox.uids_after(last_uid)[: opts.limit]
        validity = inbox.uidvalidity
        done: list[int] = []

        def act(on: list[int], upto: int) -> None:
            """Run the after-fetch action on committed UIDs, then move the watermark.

            An action the server refuses is recorded once and not tried again
            this run: the mail stays where it is, stored, and the watermark
            stays behind so a later run catches up once the folder is fixed.
            """
            nonlocal problem
            if problem is not None:
                return
            try:
                inbox.after_fetch(action, on)
            except FolderProblem as exc:
                problem = folder_error(ch.name, ch.after_fetch, ch.folder, exc)
                return
            with context.transaction() as session:
                session.execute(
                    update(IncomingChannel)
                    .where(IncomingChannel.id == ch.id)
                    .values(acted_uid=upto)
                    .execution_options(synchronize_session=False)
                )

        if not opts.dry_run and action != "keep" and acted_uid < last_uid:
            # A run that died between commit and action left these behind; mail
            # too large to download stays where it is, whatever the action.
            with context.transaction(write=False) as session:
                left = uids_left_on_server(session, ch.id, validity)
            act([u for u in inbox.uids_between(acted_uid, last_uid) if u not in left], last_uid)

        def checkpoint_for(uid: int) -> Callable[[Session], None]:
            def checkpoint(session: Session) -> None:
                # The sync state and our lease, in one statement that only the
                # holder of the lease can make.
                done = session.execute(
                    update(IncomingChannel)
                    .where(IncomingChannel.id == ch.id, IncomingChannel.lease_owner == owner)
                    .values(last_uid=uid, uidvalidity=validity, lease_until=utcnow() + LEASE)
                    .execution_options(synchronize_session=False)
                )
                if not done.rowcount:  # type: ignore[attr-defined]
                    raise LeaseLost(LOST)

            return checkpoint

        fetched = inbox.fetch(uids, opts.max_size)
        stream = parse_stream(fetched, expected=len(uids), max_size=opts.max_size)
        for uid, raw, parsed in stream:
            outcome = store_raw(
                context,
                raw,
                channel_id=ch.id,
                source=f"{ch.name} uid {uid}",
                max_size=opts.max_size,
                dry_run=opts.dry_run,
                checkpoint=None if opts.dry_run else checkpoint_for(uid),
                cache=cache,
                mail=parsed,
            )
            report.count(outcome)
            if isinstance(raw, Oversize):
                report.left_on_server += 1  # listed in the quarantine, untouched on the server
            else:
                done.append(uid)
            if opts.progress:
                opts.progress(ch.name, report.fetched, len(uids))
            if len(done) >= ACTION_BATCH and not opts.dry_run:
                act(done, uid)
                done = []
            if opts.stop is not None and opts.stop():
                break
        if not uids and not opts.dry_run and ch.uidvalidity != validity:
            with context.transaction() as session:
                checkpoint_for(last_uid)(session)
        if done and not opts.dry_run:
            act(done, done[-1])
    if problem is not None:
        raise problem


def _resolved_action(
    inbox: ImapInbox, ch: Snapshot, *, dry_run: bool
) -> tuple[str, DeskError | None]:
    """``move:FOLDER`` in the server's own naming; an unusable folder means keep, and why.

    Asked before any mail is read, so a folder that cannot be used costs one
    error line per run while the mail keeps arriving as tickets, left where
    it is on the server.
    """
    from deskctl.transport.folders import FolderProblem

    if not ch.after_fetch.startswith("move:"):
        return ch.after_fetch, None
    wanted = ch.after_fetch.removeprefix("move:")
    try:
        target = inbox.move_target(
            wanted, create=bool(ch.settings.get("create_folder")), check_only=dry_run
        )
    except FolderProblem as exc:
        return "keep", folder_error(ch.name, ch.after_fetch, ch.folder, exc)
    if target.name != wanted:
        log.info("%s: move:%s is %s here (%s)", ch.name, wanted, target.name, target.how)
    return f"move:{target.name}", None


def _maildir(
    context: AppContext, ch: Snapshot, opts: FetchOptions, report: ChannelReport, owner: str
) -> None:
    from deskctl.transport.maildir import MaildirInbox

    inbox = MaildirInbox(ch.path or "")
    try:
        _read_maildir(context, ch, opts, report, owner, inbox)
    finally:
        report.record_unread([str(entry) for entry in inbox.skipped])


def _read_maildir(
    context: AppContext,
    ch: Snapshot,
    opts: FetchOptions,
    report: ChannelReport,
    owner: str,
    inbox: MaildirInbox,
) -> None:
    cache = ingest_cache(context)
    known = fetched_keys(context, ch.id)
    present = inbox.messages()
    if not opts.dry_run:
        # A run that died between commit and action left these behind.
        for key, path in present:
            if key in known and inbox.needs_action(ch.after_fetch, path):
                inbox.after_fetch(ch.after_fetch, path)
    todo = [(k, p) for k, p in present if k not in known][: opts.limit]
    paths = dict(todo)
    stream = parse_stream(
        (
            (key, raw)
            for key, _path, raw in inbox.read(
                todo, opts.max_size, None if opts.dry_run else spool_dir(context.settings.home)
            )
        ),
        expected=len(todo),
        max_size=opts.max_size,
    )
    for key, raw, parsed in stream:
        store_keyed(context, ch, opts, report, owner, Keyed(key, raw, parsed, len(todo)), cache)
        if not opts.dry_run:
            inbox.after_fetch(ch.after_fetch, paths[key])
        if opts.stop is not None and opts.stop():
            break


def _record(context: AppContext, ch: Snapshot, report: ChannelReport, owner: str) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "last_fetch_at": now,
        "last_error": report.problem(),
        "last_counts": {k: v for k, v in report.to_dict().items() if isinstance(v, int)},
    }
    if report.error is None:
        values["last_success_at"] = now
    with context.transaction() as session:
        session.execute(
            update(IncomingChannel)
            .where(IncomingChannel.id == ch.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        release_channel(session, ch.id, owner)


def fetch_channel(context: AppContext, ch: Snapshot, opts: FetchOptions) -> ChannelReport:
    report = ChannelReport(ch.name)
    owner = worker_id()
    if not opts.dry_run and not claim(context, ch.id, owner):
        report.skipped = "another fetch is reading this channel"
        log.info("%s: skipped, another fetch holds it", ch.name)
        return report
    try:
        if not opts.dry_run:  # as it is now we hold it: a run just before us moved it on
            (ch,) = select_channels(context, [ch.name])
        if ch.kind == "o365" and ch.settings.get("transport") == "graph":
            from deskctl.jobs.fetch_graph import fetch_graph

            fetch_graph(context, ch, opts, report, owner)
        elif ch.kind in ("imap", "gmail", "o365"):
            _imap(context, ch, opts, report, owner)
        elif ch.kind == "maildir":
            _maildir(context, ch, opts, report, owner)
        elif ch.kind == "pop3":
            from deskctl.jobs.fetch_pop3 import fetch_pop3

            fetch_pop3(context, ch, opts, report, owner)
    except LeaseLost as lost:
        report.skipped = lost.message
    except DeskError as exc:
        report.error, report.exit_code = exc.message, exc.exit_code
        log.debug("%s failed", ch.name, exc_info=True)
    except Exception as exc:  # a bug in one channel must not stop the others (promise 3)
        report.error = f"internal error: {type(exc).__name__}: {exc}"
        report.exit_code = ExitCode.INTERNAL
        log.debug("%s failed", ch.name, exc_info=True)
    finally:
        if not opts.dry_run:
            _record(context, ch, report, owner)
    return report


def fetch_all(context: AppContext, names: list[str], opts: FetchOptions) -> list[ChannelReport]:
    return [fetch_channel(context, ch, opts) for ch in select_channels(context, names)]


def exit_code(reports: Iterable[ChannelReport]) -> ExitCode:
    """0 all good; 5 or 6 when every channel failed for that reason; else 7 (partial).

    Mail left in quarantine, or a mailbox entry that could not be read, is partial too.
    """
    reports = list(reports)
    failed = [r for r in reports if r.error]
    if not failed:
        partial = any(r.quarantined or r.unread for r in reports)
        return ExitCode.PARTIAL if partial else ExitCode.OK
    codes = {r.exit_code for r in failed}
    if len(failed) == len(reports) and len(codes) == 1:
        return ExitCode(codes.pop())
    return ExitCode.PARTIAL

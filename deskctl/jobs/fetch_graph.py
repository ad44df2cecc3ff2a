"""``deskctl fetch`` for an o365 channel over Microsoft Graph.

A round: list the folder with the channel's delta link (the whole folder
the first time, or after the server dropped the link), download each
message not yet stored as MIME and store it through the same pipeline as
IMAP mail, its Graph id recorded in ``fetched_keys`` in the message's own
transaction. The after-fetch action (mark read, move) runs only on
committed mail, and its time is recorded so a run killed in between
applies it next time. The new delta link is saved only once every message
of the round is stored and acted on: a crash anywhere lists the same mail
again, and the Graph ids (then the content dedupe) skip what is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from deskctl.auth import credentials
from deskctl.auth.oauth import CLIENT_CREDENTIALS
from deskctl.context import AppContext
from deskctl.errors import ConfigError, DeskError, Unreachable
from deskctl.jobs.fetch import LOST, ChannelReport, FetchOptions, Keyed, Snapshot, store_keyed
from deskctl.jobs.parsing import parse_stream
from deskctl.jobs.pipeline import ingest_cache
from deskctl.services.channels import GRAPH_URL
from deskctl.services.leases import LeaseLost
from deskctl.store.models import FetchedKey, IncomingChannel
from deskctl.transport.graph import (
    FolderMissing,
    GraphMailbox,
    GraphRefused,
    GraphSettings,
    ItemGone,
    SyncStateGone,
)
from deskctl.transport.spool import Oversize, spool_dir

log = logging.getLogger(__name__)

#: acted_at is written after every this many actions (an action done twice is harmless).
ACTED_BATCH = 100


def graph_settings(ch: Snapshot) -> GraphSettings:
    """The mailbox's address and Graph URL, with a token taken (or refreshed) now."""
    who: dict[str, Any] = {
        "settings": ch.settings,
        "account": ch.username or ch.address,
        "secret_source": ch.secret_source,
        "secret_ref": ch.secret_ref,
    }
    login = credentials.for_channel(ch.name, **who)
    return GraphSettings(
        base_url=str(ch.settings.get("graph_url") or GRAPH_URL),
        address=ch.address,
        token=login.oauth_token or "",
        app_only=ch.settings.get("flow") == CLIENT_CREDENTIALS,
        ca_file=ch.ca_file,
        relogin_hint=login.relogin_hint,
        renew=credentials.renewer(ch.name, **who),
    )


def fetch_graph(
    context: AppContext, ch: Snapshot, opts: FetchOptions, report: ChannelReport, owner: str
) -> None:
    with _in_graphs_words(ch), GraphMailbox(graph_settings(ch)) as box:
        _round(context, ch, opts, report, owner, box)


@contextmanager
def _in_graphs_words(ch: Snapshot) -> Iterator[None]:
    """A refusal not handled on the way becomes the channel's error line, exit 5."""
    try:
        yield
    except GraphRefused as exc:
        raise ConfigError(f"Microsoft Graph refused a request for {ch.address} ({exc})") from None
    except ItemGone as exc:
        raise FolderMissing(f"{ch.folder} is no longer in {ch.address} ({exc})") from None


def _resolved_action(box: GraphMailbox, ch: Snapshot) -> tuple[str, str | None, DeskError | None]:
    """(action, destination folder id, why the action cannot run) before any mail is read.

    A move to a folder that is not there means keep, with one error line per
    run, while the mail keeps arriving as tickets.
    """
    if not ch.after_fetch.startswith("move:"):
        return ch.after_fetch, None, None
    wanted = ch.after_fetch.removeprefix("move:")
    try:
        return "move", box.folder_id(wanted), None
    except FolderMissing as exc:
        return (
            "keep",
            None,
            ConfigError(
                f"{exc.message}; the mail stays in {ch.folder}; create it in Outlook, or choose "
                f"another: deskctl channel set {ch.name} --after-fetch move:FOLDER"
            ),
        )


def _listing(
    box: GraphMailbox, ch: Snapshot, folder: str, link: str | None
) -> tuple[list[str], str]:
    try:
        return box.delta(folder, link)
    except SyncStateGone as gone:
        if link is None:
            raise Unreachable(f"Microsoft Graph cannot list {ch.folder} now ({gone})") from None
        log.warning("%s: the delta link expired (%s): listing the folder again", ch.name, gone)
        return box.delta(folder, None)


def _round(
    context: AppContext,
    ch: Snapshot,
    opts: FetchOptions,
    report: ChannelReport,
    owner: str,
    box: GraphMailbox,
) -> None:
    cache = ingest_cache(context)
    with context.transaction(write=False) as session:
        link = session.scalar(select(IncomingChannel.delta_link).where(IncomingChannel.id == ch.id))
        rows = session.execute(
            select(FetchedKey.remote_key, FetchedKey.acted_at).where(FetchedKey.channel_id == ch.id)
        )
        known = {key: acted for key, acted in rows}
    folder = box.folder_id(ch.folder)
    action, destination, problem = _resolved_action(box, ch)
    ids, next_link = _listing(box, ch, folder, link)
    new = [i for i in ids if i not in known]
    todo = new[: opts.limit]
    acted: list[str] = []

    def act(message_id: str) -> None:
        """Mark read or move one committed message; a refusal stops actions for this run."""
        nonlocal problem
        if action == "keep" or opts.dry_run or problem is not None:
            return
        try:
            if action == "seen":
                box.mark_read(message_id)
            elif destination is not None:
                box.move(message_id, destination)
        except ItemGone:
            pass  # moved or deleted meanwhile: nothing left to do
        except GraphRefused as exc:
            problem = ConfigError(
                f"Microsoft Graph refused to {action} mail in {ch.folder} ({exc}); the mail stays "
                f"there; deskctl channel set {ch.name} --after-fetch keep stops trying"
            )
            return
        acted.append(message_id)
        if len(acted) >= ACTED_BATCH:
            _mark_acted(context, ch.id, acted)

    # A run that died between commit and action left these behind.
    for message_id in ids:
        if message_id in known and known[message_id] is None:
            act(message_id)

    spool = None if opts.dry_run else spool_dir(context.settings.home)
    gone: list[str] = []
    refused: list[str] = []
    stream = parse_stream(
        _downloads(box, ch, todo, opts.max_size, spool, gone, refused),
        expected=len(todo),
        max_size=opts.max_size,
    )
    stopped = False
    for message_id, raw, parsed in stream:
        store_keyed(
            context, ch, opts, report, owner, Keyed(message_id, raw, parsed, len(todo)), cache
        )
        act(message_id)
        if opts.stop is not None and opts.stop():
            stopped = True  # fetch --watch got SIGTERM: the rest waits for the next round
            break
    if opts.dry_run:
        return
    _mark_acted(context, ch.id, acted)
    if refused and problem is None:
        problem = ConfigError(
            f"Microsoft Graph would not give {len(refused)} message(s) of {ch.folder} as MIME "
            f"({refused[0]}); the rest are stored, and they are asked for again next run"
        )
    if len(todo) == len(new) and not gone and problem is None and not stopped:
        # Every message of the round is stored and acted on: the next round starts here.
        # Otherwise the old link lists the same mail again, and what is stored is skipped;
        # a message that could not be found is listed again if it is still there.
        _save_link(context, ch.id, owner, next_link)
    if problem is not None:
        raise problem


def _downloads(
    box: GraphMailbox,
    ch: Snapshot,
    ids: list[str],
    max_size: int,
    spool: Path | None,
    gone: list[str],
    refused: list[str],
) -> Iterator[tuple[str, bytes | Oversize]]:
    """Each message's MIME in order; ids Graph could not find go to ``gone``.

    A message Graph refuses to hand out (400 and the like) goes to ``refused``
    and the rest are still read: one bad item must not hold back the mail
    listed after it, run after run.
    """
    for message_id in ids:
        try:
            yield message_id, box.download(message_id, max_size, spool)
        except ItemGone:
            log.info("%s: message %s went away before it was read", ch.name, message_id)
            gone.append(message_id)
        except GraphRefused as exc:
            log.warning("%s: Graph refused message %s: %s", ch.name, message_id, exc)
            refused.append(str(exc))


def _mark_acted(context: AppContext, channel_id: int, acted: list[str]) -> None:
    if not acted:
        return
    with context.transaction() as session:
        session.execute(
            update(FetchedKey)
            .where(FetchedKey.channel_id == channel_id, FetchedKey.remote_key.in_(acted))
            .values(acted_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
    acted.clear()


def _save_link(context: AppContext, channel_id: int, owner: str, link: str) -> None:
    with context.transaction() as session:
        done = session.execute(
            update(IncomingChannel)
            .where(IncomingChannel.id == channel_id, IncomingChannel.lease_owner == owner)
            .values(delta_link=link)
            .execution_options(synchronize_session=False)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise LeaseLost(LOST)


def probe_graph(context: AppContext, name: str) -> dict[str, Any]:
    """``channel test``: take a token, open the folder and find the after-fetch folder."""
    from deskctl.jobs.fetch import select_channels

    (ch,) = select_channels(context, [name])
    settings = graph_settings(ch)
    with _in_graphs_words(ch), GraphMailbox(settings) as box:
        folder = box.folder(ch.folder)
        _action, _destination, problem = _resolved_action(box, ch)
    if problem is not None:
        raise problem
    how = "as the app" if settings.app_only else "as the signed-in user"
    summary = (
        f"{name}: signed in to Microsoft Graph {how} for {ch.address}; folder {ch.folder} has "
        f"{folder.get('totalItemCount', 0)} messages"
    )
    if ch.after_fetch.startswith("move:"):
        summary += f"; after fetch, mail moves to {ch.after_fetch.removeprefix('move:')}"
    return {
        "channel": name,
        "ok": True,
        "messages": folder.get("totalItemCount"),
        "summary": summary,
    }

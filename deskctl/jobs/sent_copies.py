"""Filing sent replies in the mailbox's Sent folder, for send-outbox.

One IMAP connection per incoming channel per run, opened on the first copy
that channel gets; a channel that cannot be used (down, login refused, no such
folder) is tried once per run, and every copy for it waits for the next run.
A copy that cannot be filed never touches the reply: it was sent, it stays
sent, and the reason is recorded on its outbox item (services/sent_copies.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from deskctl.context import AppContext
from deskctl.errors import DeskError
from deskctl.services import sent_copies as svc

if TYPE_CHECKING:
    from deskctl.transport.imap import ImapInbox

log = logging.getLogger(__name__)


@dataclass
class _Mailbox:
    inbox: ImapInbox | None = None
    folder: str = ""
    problem: str | None = None


@dataclass
class SentFiler:
    """Files copies for one send-outbox run; use as a context manager."""

    context: AppContext
    filed: int = 0
    not_filed: list[str] = field(default_factory=list)
    _boxes: dict[int, _Mailbox] = field(default_factory=dict)

    def __enter__(self) -> SentFiler:
        return self

    def __exit__(self, *exc: object) -> None:
        for box in self._boxes.values():
            if box.inbox is not None:
                box.inbox.close()
        self._boxes.clear()

    def _open(self, filing: svc.Filing) -> _Mailbox:
        box = self._boxes.get(filing.channel_id)
        if box is not None:
            return box
        from deskctl.jobs.fetch import imap_settings, select_channels
        from deskctl.transport.imap import ImapInbox

        box = _Mailbox()
        try:
            (channel,) = select_channels(self.context, [filing.channel])
            inbox = ImapInbox(imap_settings(channel))
            inbox.open()
            try:
                box.folder = inbox.sent_target(filing.folder).name
            except BaseException:
                inbox.close()
                raise
            box.inbox = inbox
        except DeskError as exc:
            box.problem = exc.message
        except Exception as exc:  # a bug must cost the copies, never the replies
            log.debug("opening %s for sent copies", filing.channel, exc_info=True)
            box.problem = f"internal error: {type(exc).__name__}: {exc}"
        self._boxes[filing.channel_id] = box
        return box

    def file(self, filing: svc.Filing, raw: bytes) -> None:
        """Append ``raw`` (the bytes the server accepted) and record the outcome on the item."""
        from deskctl.transport.folders import FolderProblem

        box = self._open(filing)
        problem = box.problem
        if box.inbox is not None:
            try:
                box.inbox.file_copy(raw, box.folder, filing.sent_at)
            except FolderProblem as exc:  # the server said no to this copy; the line is fine
                problem = exc.message
            except Exception as exc:  # the line is gone (or a bug): later copies wait
                problem = exc.message if isinstance(exc, DeskError) else f"internal error: {exc!r}"
                log.debug("filing outbox item %s", filing.item_id, exc_info=True)
                box.inbox.close()
                box.inbox, box.problem = None, problem
        now, again = datetime.now(UTC), True
        with self.context.transaction() as session:
            if problem is None:
                svc.mark_filed(session, filing.item_id, box.folder)
            else:
                again = svc.mark_not_filed(session, filing.item_id, problem, now)
        if problem is None:
            self.filed += 1
            log.info("outbox item %s filed in %s on %s", filing.item_id, box.folder, filing.channel)
            return
        later = "a later send-outbox run tries again" if again else "deskctl gave up"
        self.not_filed.append(
            f"outbox item {filing.item_id} was sent but not filed in the Sent folder of "
            f"{filing.channel}: {problem} ({later})"
        )

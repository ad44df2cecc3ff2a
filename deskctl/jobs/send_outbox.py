"""``deskctl send-outbox``: deliver what agents queued, exactly once.

Items are claimed first (see services/outbox.py), then sent over one
connection per outgoing channel; each item's result commits on its own. The
outgoing filter is checked here, at send time, against every To and Cc: a
filtered To blocks the item, a filtered Cc is dropped from the mail.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from deskctl.auth import credentials
from deskctl.auth.oauth import CLIENT_CREDENTIALS
from deskctl.context import AppContext
from deskctl.errors import DeskError, ExitCode
from deskctl.jobs.sent_copies import SentFiler
from deskctl.jobs.workers import dead_local_owner, worker_id
from deskctl.mail.addresses import address_key, wire_address
from deskctl.mail.compose import without_recipients
from deskctl.services import outbox as svc
from deskctl.services import sent_copies
from deskctl.services.filters import load_patterns, matching_pattern

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]: ...


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    deferred: int = 0
    errors: list[tuple[str, int]] = field(default_factory=list)
    #: Copies filed in a Sent folder, and why others were not (never part of the exit code).
    filed: int = 0
    not_filed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "blocked": self.blocked,
            "deferred": self.deferred,
            "errors": [message for message, _ in self.errors],
            "filed": self.filed,
            "not_filed": self.not_filed,
        }

    def exit_code(self) -> ExitCode:
        """0 all sent; 6 nothing went out for a temporary reason; 5/6 a channel failed; else 7."""
        if self.errors and not (self.sent or self.failed or self.blocked):
            codes = {code for _, code in self.errors}
            return ExitCode(codes.pop()) if len(codes) == 1 else ExitCode.PARTIAL
        if self.deferred and not (self.sent or self.failed or self.blocked):
            return ExitCode.UNREACHABLE
        return ExitCode.PARTIAL if self.failed or self.errors or self.deferred else ExitCode.OK


def open_sender(context: AppContext, channel_id: int) -> AbstractContextManager[Sender]:
    from deskctl.transport.smtp import SendmailSender, SmtpSender, SmtpSettings

    with context.transaction(write=False) as session:
        channel = svc.channel_of(session, channel_id)
        if channel is None:
            from deskctl.errors import ConfigError

            raise ConfigError(f"outgoing channel {channel_id} no longer exists")
        name, kind = channel.name, channel.kind
        settings = {
            "host": channel.host or "",
            "port": channel.port or 587,
            "security": channel.security or "starttls",
            "username": channel.username,
            "ca_file": channel.ca_file,
        }
        source, ref = channel.secret_source, channel.secret_ref
        extra = dict(channel.settings or {})
        account = channel.username or channel.from_address
        from_address = channel.from_address
    if kind == "sendmail":
        return SendmailSender(extra.get("sendmail", "sendmail"))
    login = credentials.for_channel(
        name, settings=extra, account=account, secret_source=source, secret_ref=ref
    )
    if extra.get("transport") == "graph":
        from deskctl.services.channels import GRAPH_URL
        from deskctl.transport.graph import GraphSender, GraphSettings

        return GraphSender(
            GraphSettings(
                base_url=str(extra.get("graph_url") or GRAPH_URL),
                address=from_address,
                token=login.oauth_token or "",
                app_only=extra.get("flow") == CLIENT_CREDENTIALS,
                ca_file=settings["ca_file"],  # type: ignore[arg-type]
                relogin_hint=login.relogin_hint,
                renew=credentials.renewer(
                    name, settings=extra, account=account, secret_source=source, secret_ref=ref
                ),
            )
        )
    return SmtpSender(
        SmtpSettings(
            password=login.password,
            oauth_token=login.oauth_token,
            relogin_hint=login.relogin_hint,
            **settings,  # type: ignore[arg-type]
        )
    )


@dataclass(frozen=True)
class _Run:
    """What every item of a run shares."""

    context: AppContext
    owner: str
    patterns: list[str]
    report: SendReport
    filer: SentFiler
    copies: dict[int, sent_copies.Filing]
    #: Copies of this run's replies, filed once every reply has gone out: a mailbox
    #: server that hangs must not hold up the replies behind it.
    to_file: list[tuple[sent_copies.Filing, bytes]] = field(default_factory=list)


def _send_group(run: _Run, channel_id: int, items: list[svc.Envelope]) -> None:
    context, owner, report = run.context, run.owner, run.report
    now = datetime.now(UTC)
    try:
        sender_cm = open_sender(context, channel_id)
        with sender_cm as sender:
            for env in items:
                _send_one(run, sender, env)
    except DeskError as exc:
        # The channel could not be used at all: its unsent items wait for the next run.
        report.errors.append((exc.message, exc.exit_code))
        with context.transaction() as session:
            for env in items:
                if svc.still_claimed(session, env.item_id, owner):
                    svc.defer(session, env.item_id, owner, exc.message, now)
                    report.deferred += 1


def _send_one(run: _Run, sender: Sender, env: svc.Envelope) -> None:
    from deskctl.transport.smtp import SendError

    context, owner, patterns, report = run.context, run.owner, run.patterns, run.report

    blocked_to = [(a, p) for a in env.to if (p := matching_pattern(a, patterns))]
    if blocked_to:
        reason = ", ".join(f"{a} is on the outgoing filter ({p})" for a, p in blocked_to)
        with context.transaction() as session:
            svc.mark_blocked(session, env.item_id, owner, reason)
        report.blocked += 1
        log.warning("outbox item %s blocked: %s", env.item_id, reason)
        return
    dropped = {a for a in env.cc if matching_pattern(a, patterns)}
    raw = (
        without_recipients(env.raw, {wire_address(a).lower() for a in dropped})
        if dropped
        else env.raw
    )
    recipients = [wire_address(a) for a in (*env.to, *(a for a in env.cc if a not in dropped))]
    now = datetime.now(UTC)
    with context.transaction() as session:
        # A run slower than its claim must not send what another run has taken over.
        if not svc.renew_claim(session, env.item_id, owner, now):
            log.warning("outbox item %s: claim lost to another run, not sending", env.item_id)
            return
    try:
        refused = sender.send(raw, wire_address(env.sender), recipients)
    except SendError as exc:
        with context.transaction() as session:
            if exc.permanent:
                svc.mark_failed(session, env.item_id, owner, exc.message)
                report.failed += 1
            elif svc.defer(session, env.item_id, owner, exc.message, now):
                report.deferred += 1
            else:
                report.failed += 1
        log.warning("outbox item %s: %s", env.item_id, exc.message)
        return
    except DeskError:
        raise  # the channel itself is unusable: _send_group defers its items
    except Exception as exc:  # a bug must fail this item, not stall the queue behind it
        log.debug("outbox item %s", env.item_id, exc_info=True)
        with context.transaction() as session:
            svc.mark_failed(session, env.item_id, owner, f"{type(exc).__name__}: {exc}")
        report.failed += 1
        return
    customers = {address_key(a) for a in env.to}
    refused_to = [r for r in refused if address_key(r.split(":")[0]) in customers]
    with context.transaction() as session:
        if refused_to:
            # The customer did not get it; whoever on Cc did should not get it twice
            # by accident: an agent decides with `outbox retry`.
            svc.mark_failed(session, env.item_id, owner, "refused: " + "; ".join(refused))
            report.failed += 1
            return
        svc.mark_sent(session, env.item_id, owner, now, note="; ".join(refused) or None)
        copy = run.copies.get(env.item_id)
        # What the server took, byte for byte (a sender that re-encoded says so).
        wire: bytes = getattr(sender, "last_sent", None) or raw
        if copy is not None:
            sent_copies.mark_due(session, env.item_id, now, None if wire == env.raw else wire)
    report.sent += 1
    if copy is not None:
        run.to_file.append((replace(copy, sent_at=now), wire))


def send_outbox(context: AppContext, limit: int = 500) -> SendReport:
    owner = worker_id()
    report = SendReport()
    with context.transaction() as session:
        for holder in svc.sending_owners(session):
            if dead_local_owner(holder):
                log.info("releasing the claims of dead worker %s", holder)
                svc.release_owner(session, holder)
    with context.transaction() as session:
        ids = svc.claim_due(session, owner, datetime.now(UTC), limit)
        envelopes = svc.envelopes(session, ids)
        patterns = load_patterns(session)
        copies = sent_copies.plan(session, ids)
        # Copies an earlier run could not file, filed after this run's replies have gone out.
        retries = sent_copies.claim_due_copies(session, datetime.now(UTC), limit)
    groups: dict[int, list[svc.Envelope]] = defaultdict(list)
    for env in envelopes:
        groups[env.channel_id].append(env)
    with SentFiler(context) as filer:
        run = _Run(context, owner, patterns, report, filer, copies)
        for channel_id, items in groups.items():
            _send_group(run, channel_id, items)
        for filing, wire in run.to_file:
            filer.file(filing, wire)
        for filing in retries:
            filer.file_again(filing)
    report.filed, report.not_filed = filer.filed, filer.not_filed
    return report

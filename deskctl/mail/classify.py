"""Deciding whether a mail was written by a machine, and which kind.

Promise 5 (no loops) rests on this: deskctl never answers an auto-reply, a
bounce or a list mail automatically. Rules are pure functions of a few header
values, so they can be tested without building MIME, and each decision carries
a short human reason so an agent can see *why* a mail was not answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

FLAG_ORDER = ("auto_reply", "bounce", "bulk")


@dataclass(frozen=True, slots=True)
class MailSignals:
    """The handful of facts the rules look at, already decoded.

    ``headers`` maps lower-case field names to every raw value of that field.
    """

    headers: Mapping[str, Sequence[str]]
    subject: str = ""
    sender_email: str = ""
    sender_name: str = ""
    report_type: str | None = None  # report-type of a multipart/report part, if any
    dsn_actions: Sequence[str] = ()  # Action fields of its delivery-status part
    null_sender: bool = False  # From: Name <>, the null reverse path of RFC 5321
    bounce_scan: BounceScan | None = None  # flufl.bounce's verdict, when it was asked


@dataclass(frozen=True, slots=True)
class BounceScan:
    """What flufl.bounce (GNU Mailman's bounce detectors) found in a mail."""

    permanent: tuple[str, ...] = ()  # recipients whose delivery failed for good
    temporary: tuple[str, ...] = ()  # recipients whose delivery is delayed


@dataclass(frozen=True, slots=True)
class Classification:
    """Flags in :data:`FLAG_ORDER` and one reason per decision."""

    flags: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class _Verdict:
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, flag: str, reason: str) -> None:
        self.reasons.setdefault(flag, []).append(reason)


def _first(signals: MailSignals, name: str) -> str | None:
    values = signals.headers.get(name)
    if not values:
        return None
    return " ".join(values[0].split())


# Subjects mail programs put on vacation and out-of-office replies, in the
# languages our customers write in. Anchored at the start: "Re: out of office
# party" from a human must not match.
_AUTO_REPLY_SUBJECT = re.compile(
    r"""^\s*(?:
        out\ of\ (?:the\ )?office | automatic\ reply | auto(?:matic)?[\s_-]*(?:reply|response)
        | autoreply | away\ from\ (?:the\ )?office | on\ vacation | vacation\ (?:reply|notice)
        | automatische\ antwort | abwesenheitsnotiz | abwesenheit | automatische\ rückantwort
        | réponse\ automatique | absence\ du\ bureau | message\ d'absence
        | respuesta\ automática | fuera\ de\ la\ oficina | resposta\ automática
        | risposta\ automatica | fuori\ sede | automatisch\ antwoord | afwezig
        | autosvar | automatisk\ svar | automaattinen\ vastaus | odpowiedź\ automatyczna
        | automatická\ odpověď | автоответ | автоматический\ ответ | 自動応答 | 自动回复
        | 自動返信 | 不在通知 | 부재중 | 자동\ 응답
        # Lotus Notes: "Jane Doe is out of the office." (no prefix, so no reply)
        | [^:]{1,60}\ (?:is|ist)\ (?:out\ of\ (?:the\ )?office|nicht\ im\ büro|abwesend)
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)

_BOUNCE_SUBJECT = re.compile(
    r"""^\s*(?:
        undelivered\ mail\ returned\ to\ sender | delivery\ status\ notification\ \(failure\)
        | mail\ delivery\ failed | undeliverable: | undeliverable\ mail | returned\ mail:
        | delivery\ failure | failure\ notice | mail\ delivery\ failure | delivery\ has\ failed
        | non[\s-]?delivery\ report | unzustellbar: | nicht\ zustellbar | non\ remis:
        | onbestelbaar: | no\ se\ puede\ entregar:
        | (?:mail|message)\ (?:could\ not\ be|not)\ delivered\b | permanent\ delivery\ failure
        | delivery\ notification:\ delivery\ has\ failed | delivery\ report\ \(failure\)
        | failed\ mail: | mail\ system\ error | undeliverable\ message | nondeliverable\ mail
        | unzustellbare\ nachricht | メール配信エラー | 배달\ 실패 | 邮件传输失败 | 退信
        # Exchange's "Undeliverable:" in the languages it is installed in
        | não\ é\ possível\ entregar: | impossibile\ recapitare: | olevererbart:
        | kan\ ikke\ leveres: | ei\ voitu\ toimittaa: | nie\ można\ dostarczyć:
        | nedoručitelné: | недоставляемое\ сообщение: | 配信不能: | 无法传递: | 배달되지\ 않음:
    )""",
    re.IGNORECASE | re.VERBOSE,
)

# Warnings that a mail is late, not lost (RFC 3464 "delayed"); automatic mail,
# but the outbox item they name has not failed.
_DELAY_SUBJECT = re.compile(
    r"""^\s*(?:
        delivery\ status\ notification\ \(delay\) | delayed\ mail | message\ delayed\b
        | warning:\ message\ .{0,60}\ (?:delayed|not\ yet\ been\ delivered)
        | mail\ delivery\ warning | delivery\ delay(?:ed)?\ notification | delivery\ delayed:
        | warning:\ could\ not\ send\ message | verzögerte\ zustellung | retard\ de\ remise
    )""",
    re.IGNORECASE | re.VERBOSE,
)

_DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})


def _auto_reply_rules(s: MailSignals, v: _Verdict) -> None:
    auto_submitted = _first(s, "auto-submitted")
    if auto_submitted and auto_submitted.lower().split(";")[0].strip() != "no":
        v.add("auto_reply", f"Auto-Submitted: {auto_submitted.lower()}")
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if _first(s, name) is not None:
            v.add("auto_reply", f"{label} present")
    autogenerated = (_first(s, "x-autogenerated") or "").lower()
    if autogenerated in ("reply", "forward", "group"):
        v.add("auto_reply", f"X-Autogenerated: {autogenerated}")
    precedence = (_first(s, "precedence") or "").lower()
    if precedence == "auto_reply":
        v.add("auto_reply", "Precedence: auto_reply")
    if s.report_type in ("feedback-report", "disposition-notification"):
        v.add("auto_reply", f"multipart/report {s.report_type}")
    if _AUTO_REPLY_SUBJECT.search(s.subject):
        v.add("auto_reply", "out-of-office subject")


# Actions of a delivery-status report that say the mail is (still) on its way
# (RFC 3464 2.3.3): a warning or a success notice, automatic but not a bounce.
_NOT_FAILED = frozenset({"delayed", "delivered", "relayed", "expanded"})

_DAEMON_NAME = re.compile(
    r"^\s*(?:mail\s+delivery\s+(?:system|subsystem|service)|mailer[\s-]?daemon|postmaster)\s*$",
    re.IGNORECASE,
)


def _daemon_local(email: str) -> str | None:
    """The daemon local part of ``email``, also when quoted (``"postmaster@x"@relay``)."""
    local = email.rpartition("@")[0].strip('"').replace("\\", "").lower()
    local = local.partition("@")[0]
    return local if local in _DAEMON_LOCALPARTS else None


def _delay_warning(s: MailSignals) -> str | None:
    """Why this mail is a warning that delivery is late, or None when it is not one."""
    if s.report_type == "delivery-status":
        actions = {action for action in s.dsn_actions if action}
        if actions and actions <= _NOT_FAILED:
            return f"delivery-status report: {', '.join(sorted(actions))}"
        if actions:
            return None  # a report with a failed recipient is a bounce, whatever it is titled
    scan = s.bounce_scan
    if scan is not None and scan.temporary and not scan.permanent:
        late = ", ".join(scan.temporary[:3])
        return f"bounce detector (flufl.bounce): delivery delayed for {late}"
    if _DELAY_SUBJECT.search(s.subject):
        return "delivery-delayed subject"
    return None


def _bounce_rules(s: MailSignals, v: _Verdict) -> None:
    """Mail from a mail system: a bounce, or (flagged auto_reply) a delay warning.

    A warning must not fail the outbox item it names, so every machine-sender
    signal below lands under the warning's flag when one was found.
    """
    warning = _delay_warning(s)
    flag = "auto_reply" if warning else "bounce"
    if warning:
        v.add(flag, warning)
    elif s.report_type == "delivery-status":
        v.add(flag, "multipart/report delivery-status")
    scan = s.bounce_scan
    if scan is not None and scan.permanent and not warning:
        v.add(flag, f"bounce detector (flufl.bounce): failed {', '.join(scan.permanent[:3])}")
    local = _daemon_local(s.sender_email)
    # RFC 3834 auto-replies also come from null or role senders; those count as
    # a bounce only when nothing says the mail is an auto-reply.
    replied = "auto_reply" in v.reasons and not warning
    if local is not None:
        v.add(flag, f"From {'MAILER-DAEMON' if 'daemon' in local else local}")
    elif _DAEMON_NAME.match(s.sender_name) and not replied:
        v.add(flag, f"From name {' '.join(s.sender_name.split())}")
    if s.null_sender and not replied:
        v.add(flag, "From <> (the null sender)")
    return_path = _first(s, "return-path")
    if return_path is not None and return_path.replace(" ", "") in ("<>", "") and not replied:
        v.add(flag, "Return-Path <>")
    if not warning and _BOUNCE_SUBJECT.search(s.subject):
        v.add(flag, "bounce subject")


# RFC 2369 fields. Corporate mailers and CRMs add one of them (most often
# List-Unsubscribe) to mail a person wrote; a list or a newsletter carries
# several, or a List-Id (RFC 2919), which only list software writes.
_LIST_FIELDS = (
    ("list-unsubscribe", "List-Unsubscribe"),
    ("list-unsubscribe-post", "List-Unsubscribe-Post"),
    ("list-post", "List-Post"),
    ("list-help", "List-Help"),
    ("list-subscribe", "List-Subscribe"),
    ("list-archive", "List-Archive"),
    ("list-owner", "List-Owner"),
)


def _bulk_rules(s: MailSignals, v: _Verdict) -> None:
    precedence = (_first(s, "precedence") or "").lower()
    if precedence in ("bulk", "list", "junk"):
        v.add("bulk", f"Precedence: {precedence}")
    if _first(s, "list-id") is not None:
        v.add("bulk", "List-Id present")
    present = [label for name, label in _LIST_FIELDS if _first(s, name) is not None]
    if len(present) >= 2:
        v.add("bulk", f"{', '.join(present)} present")


RULES: tuple[Callable[[MailSignals, _Verdict], None], ...] = (
    _auto_reply_rules,
    _bounce_rules,
    _bulk_rules,
)


def classify(signals: MailSignals) -> Classification:
    """Flags (subset of :data:`FLAG_ORDER`, in that order) with their reasons."""
    verdict = _Verdict()
    for rule in RULES:
        rule(signals, verdict)
    flags = tuple(flag for flag in FLAG_ORDER if flag in verdict.reasons)
    reasons = tuple(reason for flag in flags for reason in verdict.reasons[flag])
    return Classification(flags=flags, reasons=reasons)

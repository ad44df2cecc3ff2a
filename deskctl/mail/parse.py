"""``parse_mail``: RFC 5322 bytes in, one :class:`ParsedMail` out.

Lenient by design: a help desk that refuses a customer's oddly built mail has
lost that customer's request. Only input that is not a mail at all raises
:class:`MalformedMail`, which the ingest service quarantines with its bytes.

The stdlib parser with the compat32 policy builds the MIME tree (it is faster
and never raises on bad headers); decoding of headers and bodies is ours, see
``headers.py``, ``charsets.py`` and ``parts.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass, replace
from email.message import Message
from email.parser import BytesParser
from email.policy import Policy
from typing import TypeVar

from deskctl.mail.bounce_scan import scan_bounce, worth_scanning
from deskctl.mail.classify import BounceScan, MailSignals, classify
from deskctl.mail.compose import LOOP_HEADER
from deskctl.mail.errors import MalformedMail
from deskctl.mail.fingerprint import content_fingerprint
from deskctl.mail.headers import (
    RAW_POLICY,
    decode_text,
    first_message_id,
    message_ids,
    parse_addresses,
    parse_date,
    repair_header_block,
)
from deskctl.mail.htmltext import html_to_text
from deskctl.mail.parsed import Address, ParsedMail
from deskctl.mail.parts import Walk, walk_parts
from deskctl.mail.sanitize import safe_text
from deskctl.mail.senders import choose_sender, parse_from

_RECIPIENT_HEADERS = ("delivered-to", "x-original-to", "x-forwarded-to")
_WORD_CHARSET = re.compile(r"=\?([^?*\s]+)")
_BODY_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)


#: More MIME parts than any mail program writes. The parser spends some 350
#: bytes of objects on a part that takes 7 bytes of mail (``--B`` and a blank
#: line), so without a bound a mail within the size limit takes gigabytes.
MAX_PARTS = 10_000


def _counted_parts(limit: int) -> Callable[..., Message]:
    """A message factory for the parser that stops it at ``limit`` parts."""
    made = -1  # the parser makes one to try the factory out

    def make(policy: Policy = RAW_POLICY) -> Message:
        nonlocal made
        made += 1
        if made > limit:
            raise MalformedMail(f"more than {limit} MIME parts")
        return Message(policy=policy)

    return make


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one message; raises :class:`MalformedMail` only for non-mail input."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"parse_mail wants bytes, not {type(raw).__name__}")
    try:
        parser = BytesParser(_counted_parts(MAX_PARTS), policy=RAW_POLICY)
        msg = parser.parsebytes(repair_header_block(bytes(raw)))
    except RecursionError:
        # Only hostile mail nests hundreds of multiparts; quarantine it.
        raise MalformedMail("MIME structure nested too deeply") from None
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.strip().lower(), []).append(str(value))
    fallbacks = _declared_charsets(msg, headers)

    def addresses(*names: str) -> list[Address]:
        values = [value for name in names for value in headers.get(name, ())]
        return parse_addresses(values, fallbacks)

    subject = next(
        (text for value in headers.get("subject", ()) if (text := decode_text(value, fallbacks))),
        "",
    )
    reply_to = addresses("reply-to")
    to, cc = addresses("to"), addresses("cc")
    from_ = parse_from(headers.get("from", ()), fallbacks)
    sender, sender_source = choose_sender(
        from_,
        ("sender", addresses("sender")),
        ("reply-to", reply_to),
        ("envelope", addresses("return-path")),
    )

    walk = Walk(fallbacks=fallbacks)
    walk_parts(msg, walk)
    html = "\n".join(walk.html) if walk.html else None
    text = "\n".join(walk.plain).replace("\r\n", "\n")
    if not text.strip() and html is not None:
        text = html_to_text(html)
    text = safe_text(text)

    sender_email, sender_name = (sender.email, sender.name) if sender else ("", "")
    signals = MailSignals(
        headers=headers,
        subject=subject,
        sender_email=sender_email,
        sender_name=sender_name,
        report_type=walk.report_type,
        dsn_actions=tuple(walk.dsn_actions),
        null_sender=from_.null_sender,
    )
    verdict = classify(signals)
    scan: BounceScan | None = None
    if "auto_reply" not in verdict.flags and worth_scanning(
        subject, sender_email, sender_name, from_.null_sender
    ):
        scan = scan_bounce(msg)
        if scan.permanent or scan.temporary:
            verdict = classify(replace(signals, bounce_scan=scan))
    message_id = first_message_id(_first(headers, "message-id"))
    auto_submitted = _first(headers, "auto-submitted")
    parsed = ParsedMail(
        message_id=message_id,
        in_reply_to=message_ids(_first(headers, "in-reply-to")),
        references=message_ids(" ".join(headers.get("references", ()))),
        subject=subject,
        sender=sender,
        sender_source=sender_source,
        reply_to=tuple(reply_to),
        to=tuple(to),
        cc=tuple(cc),
        original_recipients=_original_recipients(addresses(*_RECIPIENT_HEADERS), to, cc),
        date=parse_date(_first(headers, "date")),
        text=text,
        html=html,
        attachments=tuple(walk.attachments),
        flags=verdict.flags,
        flag_reasons=verdict.reasons,
        bounced_message_ids=(
            _bounced_ids(walk.returned_ids, text, message_id) if "bounce" in verdict.flags else ()
        ),
        bounced_recipients=(
            scan.permanent if "bounce" in verdict.flags and scan is not None else ()
        ),
        auto_submitted=" ".join(auto_submitted.split()).lower() if auto_submitted else None,
        fingerprint=content_fingerprint(msg),
        loop_token=_loop_token(_first(headers, LOOP_HEADER.lower())),
        thread_topic=decode_text(_first(headers, "thread-topic"), fallbacks),
    )
    return _storable(parsed)


# Text no database can store: NUL (PostgreSQL refuses it in text) and lone
# surrogates (no UTF-8 encodes them; a UTF-7 body or word can decode to one).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
T = TypeVar("T")


def _storable(value: T) -> T:
    """``value`` with NUL removed and every lone surrogate made U+FFFD, in every
    string it holds, so a mail is a ticket on SQLite and PostgreSQL alike (the
    raw source keeps the original bytes)."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value
        return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)  # type: ignore[return-value]
    if isinstance(value, tuple):
        items = tuple(_storable(item) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items  # type: ignore[return-value]
    if is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in fields(value):
            old = getattr(value, f.name)
            if (new := _storable(old)) is not old:
                changes[f.name] = new
        return replace(value, **changes) if changes else value
    return value


def _loop_token(value: str | None) -> str | None:
    """Our loop header, as printable text: it is quoted in reasons shown to agents."""
    return safe_text(" ".join(value.split()))[:200] if value else None


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _declared_charsets(msg: Message, headers: dict[str, list[str]]) -> tuple[str, ...]:
    """Charsets the message declares, the best guess for its raw 8-bit headers.

    Encoded words in other headers come first: they were written by the same
    program as the raw header, while body parts may be quoted from elsewhere.
    """
    seen: dict[str, None] = {}
    for values in headers.values():
        for value in values:
            if "=?" in value:
                for charset in _WORD_CHARSET.findall(value):
                    if charset.lower() not in ("us-ascii", "utf-8"):
                        seen.setdefault(charset.lower(), None)
    for charset in msg.get_charsets():
        if charset and charset not in ("us-ascii", "utf-8"):
            seen.setdefault(charset, None)
    return tuple(seen)


def _original_recipients(
    delivered: Sequence[Address], to: Sequence[Address], cc: Sequence[Address]
) -> tuple[str, ...]:
    """Addresses the mail was delivered to, most specific first, for channel routing."""
    seen: dict[str, None] = {}
    for address in (*delivered, *to, *cc):
        if address.email:
            seen.setdefault(address.email, None)
    return tuple(seen)


def _bounced_ids(returned: Sequence[str], text: str, own_id: str | None) -> tuple[str, ...]:
    """IDs of the mail that bounced; plain-text bounces quote its headers in the body."""
    found = list(returned) or _BODY_MESSAGE_ID.findall(text)
    return tuple(dict.fromkeys(ident for ident in found if ident and ident != own_id))


__all__ = ["MalformedMail", "parse_mail"]

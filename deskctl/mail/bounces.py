"""What the receiving server said when it bounced our mail. Pure: no database, no network.

An agent looking at a bounced reply needs the remote server's own words
("550 5.1.1 <kim@example.org>... User Unknown"), not "multipart/report":
they say whether the address is mistyped, the mailbox full or our mail
taken for spam. A delivery status notification (RFC 3464) has them per
recipient in ``Diagnostic-Code``; older bounces (qmail, Exim) in the text.
"""

from __future__ import annotations

import re

from deskctl.mail.parsed import ParsedMail
from deskctl.mail.sanitize import safe_text

#: Longest text kept: a Gmail diagnostic runs to a paragraph per recipient.
MAX_LENGTH = 500
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_FIELD = re.compile(r"^([A-Za-z-]+):\s*(.*)$")
#: An SMTP reply with an enhanced status code, as bounce texts quote it.
_REPLY = re.compile(r"\b([45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b.*)")


def _fields(block: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in re.sub(r"\r?\n[ \t]+", " ", block).splitlines():
        if match := _FIELD.match(line.strip()):
            found.setdefault(match.group(1).lower(), match.group(2).strip())
    return found


def _typed(value: str) -> str:
    """``smtp; 550 ...`` -> ``550 ...``; ``rfc822; kim@x`` -> ``kim@x``."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _from_report(data: bytes) -> list[str]:
    said = []
    for block in re.split(r"\r?\n\s*\r?\n", data.decode("utf-8", "replace")):
        fields = _fields(block)
        status = fields.get("status", "")
        if status[:1] not in ("4", "5") and fields.get("action", "").lower() != "failed":
            continue
        words = _typed(fields["diagnostic-code"]) if "diagnostic-code" in fields else status
        who = _typed(fields.get("final-recipient", fields.get("original-recipient", "")))
        said.append(f"{who}: {words}" if who else words)
    return said


def bounce_diagnostic(mail: ParsedMail) -> str | None:
    """The remote server's words for every recipient that failed, or None if none are found."""
    said: list[str] = []
    for part in mail.attachments:
        if part.content_type.lower() in _DSN_TYPES:
            said += _from_report(part.data)
    if not said:
        said = [m.group(1).strip() for m in _REPLY.finditer(mail.text)][:5]
    text = safe_text(" ".join("; ".join(dict.fromkeys(said)).split()))
    return text[:MAX_LENGTH] or None

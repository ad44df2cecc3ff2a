"""Mail for servers that take only 7-bit data. Pure: bytes in, bytes out.

A reply written in German or Japanese has an 8-bit body (``Content-Transfer-
Encoding: 8bit``). Such a body may go to a server only as ``MAIL FROM ...
BODY=8BITMIME`` (RFC 6152), and only when the server offers 8BITMIME; to a
server that does not, deskctl re-encodes each 8-bit part as quoted-printable
(text) or base64 (anything else), the way Postfix downgrades (RFC 6152 §3).
"""

from __future__ import annotations

import base64
import quopri
from email import message_from_bytes, policy
from email.message import Message

#: Parse and write back without refolding any header: only the bodies change.
_AS_IS = policy.SMTP.clone(refold_source="none")
_EIGHT_BIT = frozenset(range(0x80, 0x100))


def has_8bit(raw: bytes) -> bool:
    """True when any byte has the high bit set (the whole message, headers too)."""
    return not raw.isascii()


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def to_7bit(raw: bytes) -> bytes:
    """The same message with every 8-bit leaf part in quoted-printable or base64.

    Text stays readable in QP (line breaks kept, only the 8-bit bytes become
    ``=C3=BC``); other parts go to base64. Headers are written back as they
    were: compose() already encodes non-ASCII header text (RFC 2047).
    """
    msg = message_from_bytes(raw, policy=_AS_IS)
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if cte not in ("8bit", "binary", "7bit", ""):
            continue  # already quoted-printable or base64
        data = _payload(part)
        if data.isascii():
            continue
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            text = data.replace(b"\r\n", b"\n")
            encoded = quopri.encodestring(text).replace(b"\n", b"\r\n")
            part.set_payload(encoded.decode("ascii"))
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            part.set_payload(base64.encodebytes(data).decode("ascii").replace("\n", "\r\n"))
            part["Content-Transfer-Encoding"] = "base64"
    return msg.as_bytes(policy=_AS_IS)

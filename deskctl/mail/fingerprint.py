"""The content fingerprint: what makes two copies of a mail the same mail.

A Message-ID is the sender's claim, not a fact (DESIGN.md, promise 2): broken
mailers, scanners and list software reuse them, and anyone who wants a mail
suppressed can copy one. A stored message is therefore a duplicate only when
the Message-ID *and* this fingerprint match.

Two deliveries of one mail differ in what the servers on the way add: trace
headers (Received, Delivered-To, X-Original-To, Return-Path), verdicts
(X-Spam-*, Authentication-Results, ARC-*, DKIM signatures added by a relay),
the line ends and trailing blanks of line-oriented parts (text, or anything
not in base64: a Maildir file has LF, IMAP hands out CRLF), and sometimes the
transfer encoding (a relay without 8BITMIME turns 8bit text into
quoted-printable). None of that counts. What counts is an allow-list: the
From, Date and Subject headers, unfolded, and the decoded content of every
MIME leaf with its content type, in order; an enclosed ``message/*`` mail
counts the same way.

Changing this recipe changes the fingerprint of mail already stored, so a
rerun would no longer be recognised: a new recipe needs a migration that
recomputes ``messages.fingerprint`` from ``messages.raw``, as 0011 did.
"""

from __future__ import annotations

import hashlib
import re
from email.message import Message
from email.parser import BytesParser

from deskctl.mail.errors import MalformedMail
from deskctl.mail.headers import RAW_POLICY, repair_header_block, to_bytes
from deskctl.mail.parts import payload_bytes

#: The headers that make a mail what it is; everything else a server may add.
COUNTED_HEADERS = ("from", "date", "subject")
_LINE_END = re.compile(rb"[ \t\r]*\n")


def content_fingerprint(msg: Message) -> str:
    """SHA-256 (hex) of what a second delivery of ``msg`` would still carry."""
    digest = hashlib.sha256()
    # An explicit stack: hostile mail nests deeper than Python's recursion limit.
    stack: list[tuple[Message, bool]] = [(msg, True)]
    while stack:
        part, is_mail = stack.pop()
        if is_mail:
            for name in COUNTED_HEADERS:
                for value in part.get_all(name, []):
                    digest.update(name.encode() + b":" + b" ".join(to_bytes(str(value)).split()))
                    digest.update(b"\n")
        ctype = part.get_content_type().encode("ascii", "replace")
        payload = part.get_payload()
        if isinstance(payload, list):
            digest.update(b"[" + ctype + b"\n")
            enclosed = part.get_content_maintype() == "message"
            children = [child for child in payload if isinstance(child, Message)]
            stack.extend((child, enclosed) for child in reversed(children))
            continue
        data = payload_bytes(part)
        if part.get_content_maintype() == "text" or not _is_base64(part):
            # Line-oriented content: its line ends are the transport's, not the sender's.
            data = _LINE_END.sub(b"\n", data).rstrip(b" \t\r\n")
        digest.update(b"%s %d\n" % (ctype, len(data)))
        digest.update(data)
    return digest.hexdigest()


def _is_base64(part: Message) -> bool:
    """Base64 carries a file's bytes exactly, whatever line ends the mail has."""
    cte = part.get("content-transfer-encoding")
    return cte is not None and str(cte).strip().lower().startswith("base64")


def raw_fingerprint(raw: bytes) -> str | None:
    """:func:`content_fingerprint` of raw bytes, read as ``parse_mail`` reads them.

    None for bytes that are not a mail. Used where only the stored source is
    at hand (migration 0011 fills the column for mail stored before it).
    """
    try:
        msg = BytesParser(policy=RAW_POLICY).parsebytes(repair_header_block(bytes(raw)))
        return content_fingerprint(msg)
    except (MalformedMail, RecursionError):
        return None


#: Message-IDs up to this length are their own key; longer ones keep a prefix
#: and a hash of the whole id, so two ids that share 900 characters stay apart.
ID_KEY_LENGTH = 900


def message_id_key(message_id: str) -> str:
    """A Message-ID shortened for an indexed column without losing what tells ids apart."""
    if len(message_id) <= ID_KEY_LENGTH:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{message_id[: ID_KEY_LENGTH - 74]}...sha256:{digest}"


def duplicate_key(message_id: str, fingerprint: str) -> str:
    """The dedupe key of mail with a Message-ID: the id's key and the content fingerprint.

    Unique per reading channel, so a different mail reusing a stored id gets a
    key of its own, while a second copy of the same mail collides with the first.
    """
    return f"{message_id_key(message_id)} {fingerprint}"

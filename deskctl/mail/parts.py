"""Walking the MIME tree: which leaves are the body and which are files.

The rule (tests/fixtures/corpus/README.md): every leaf that is not the message
body is an attachment. Text/plain and text/html leaves without a file name and
not marked ``attachment`` are body, wherever they sit, because mail programs
interleave text and images. A ``message/*`` part is one file and is not opened.
In a ``multipart/report`` only the first part is read; the machine-readable
parts after it are kept as files, and the returned message gives us the
Message-ID that bounced.

In a ``multipart/alternative`` every alternative is the same body written
again: the first plain and the first HTML one are read, the others (a
text/enriched copy, a second HTML) are dropped rather than shown as files.
A calendar invite is the exception: it is the thing the sender wants us to
keep, so it is an attachment wherever it sits. Outlook's TNEF (``winmail.dat``)
is opened and the files it carries become the attachments; the original stays
in the raw source the message keeps.
"""

from __future__ import annotations

import binascii
import mimetypes
import quopri
import re
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from io import BytesIO

from deskctl.mail.charsets import decode_bytes
from deskctl.mail.flowed import unflow
from deskctl.mail.headers import RAW_POLICY, decode_text, first_message_id
from deskctl.mail.parsed import ParsedAttachment
from deskctl.mail.sanitize import fallback_filename, safe_filename
from deskctl.mail.tnef import is_tnef

_BODY_SUBTYPES = frozenset({"plain", "html"})
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_:.-]+)""", re.IGNORECASE)


@dataclass(slots=True)
class Walk:
    """What one pass over the tree collects; filled by :func:`walk_parts`."""

    fallbacks: tuple[str, ...]
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    returned_ids: list[str] = field(default_factory=list)
    report_type: str | None = None
    # Action fields of a delivery-status report: "failed", "delayed", ...
    dsn_actions: list[str] = field(default_factory=list)


def payload_bytes(part: Message) -> bytes:
    """The decoded content of a leaf, tolerant of odd Content-Transfer-Encoding."""
    # The stored payload, not get_payload(): that one decodes 8-bit text with
    # errors="replace", which would corrupt binary parts sent as 8bit/binary.
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return payload if isinstance(payload, bytes) else b""
    raw = _enc(payload)
    cte_header = part.get("content-transfer-encoding")
    cte = re.sub(r"[^a-z0-9-].*", "", str(cte_header).strip().lower()) if cte_header else ""
    if cte == "base64":
        if raw.count(b"=") <= 2:
            # The common case: a2b_base64 already skips line breaks; the regex
            # clean-up below costs more than the decoding, so it runs only when needed.
            try:
                return binascii.a2b_base64(raw)
            except binascii.Error:
                pass
        data = _B64_JUNK.sub(b"", raw)  # line breaks, junk and padding
        if len(data) % 4 == 1:  # one stray character cannot encode a byte
            data = data[:-1]
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return raw
    if cte in ("quoted-printable", "quoted_printable", "qp"):
        return quopri.decodestring(raw)
    if cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        try:
            decoded = part.get_payload(decode=True)
        except (UnicodeError, ValueError):
            return raw
        return decoded if isinstance(decoded, bytes) else raw
    return raw


def _enc(text: str) -> bytes:
    """Original bytes of text the parser surrogate-escaped; UTF-8 for real text."""
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _filename(part: Message) -> str:
    """Raw file name parameter; stdlib's RFC 2231 helper trips over junk charsets."""
    try:
        name = part.get_filename()
    except (UnicodeError, LookupError, ValueError):
        return ""
    return str(name) if name else ""


def part_text(part: Message, data: bytes, fallbacks: tuple[str, ...], html: bool) -> str:
    """Decode a body leaf; an HTML part may name its charset in a <meta> tag."""
    declared = part.get_content_charset()
    if declared is None and html:
        meta = _META_CHARSET.search(data[:4096])
        declared = meta.group(1).decode("ascii") if meta else None
    return decode_bytes(data, declared, fallbacks)


def _children(part: Message) -> list[Message]:
    """Sub-parts of a multipart or ``message/*`` part; [] for a leaf."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def _serialised(part: Message) -> bytes:
    """Bytes of a part kept whole: the enclosed mail of ``message/*``, else the part."""
    if not part.is_multipart():
        return payload_bytes(part)
    inners = _children(part) if part.get_content_maintype() == "message" else [part]
    out = BytesIO()
    try:
        for inner in inners:
            BytesGenerator(out, mangle_from_=False, policy=compat32).flatten(inner)
    except (UnicodeError, LookupError, ValueError, TypeError, RecursionError):
        return payload_bytes(part)
    return out.getvalue()


def _returned_id(part: Message, ctype: str) -> str | None:
    """Message-ID of the original mail inside a returned message or its headers."""
    if ctype == "message/rfc822":
        inner = _children(part)
        return first_message_id(inner[0].get("message-id")) if inner else None
    if ctype == "text/rfc822-headers":
        headers = BytesHeaderParser(policy=RAW_POLICY).parsebytes(payload_bytes(part).lstrip())
        return first_message_id(headers.get("message-id"))
    return None


def _dsn_actions(part: Message) -> list[str]:
    """The Action of every recipient block in a message/delivery-status part."""
    blocks = _children(part)
    if not blocks:  # an unparsed body: read the fields from its text
        text = payload_bytes(part).decode("ascii", "replace")
        return [a.lower() for a in re.findall(r"(?im)^action:\s*([a-z-]+)", text)]
    return [
        str(block.get("action")).split("(")[0].strip().lower()
        for block in blocks
        if block.get("action") is not None
    ]


def _add_tnef(data: bytes, walk: Walk) -> bool:
    """Keep the files inside a TNEF blob; False when it is no TNEF we can read.

    tnefparse is imported here, on the first winmail.dat, and not before: most
    mail never carries one.
    """
    from tnefparse import TNEF

    try:
        tnef = TNEF(data)
        files = [(str(a.long_filename() or a.name or ""), bytes(a.data)) for a in tnef.attachments]
        html = getattr(tnef, "htmlbody", None)
    except Exception:  # a third-party decoder on hostile bytes may raise anything
        return False
    if not files and not html:
        return False
    if html and not walk.plain and not walk.html:
        walk.html.append(decode_bytes(html if isinstance(html, bytes) else str(html).encode()))
    for name, content in files:
        index = len(walk.attachments) + 1
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        walk.attachments.append(
            ParsedAttachment(
                filename=safe_filename(name, fallback_filename(index, ctype)),
                content_type=ctype,
                content_id=None,
                inline=False,
                data=content,
            )
        )
    return True


def _add_attachment(part: Message, ctype: str, walk: Walk) -> None:
    if part.get_content_maintype() == "message" or ctype == "text/rfc822-headers":
        returned = _returned_id(part, ctype)
        if returned:
            walk.returned_ids.append(returned)
    if ctype == "message/delivery-status":
        walk.dsn_actions.extend(_dsn_actions(part))
    data = _serialised(part) if part.is_multipart() else payload_bytes(part)
    raw_name = _filename(part)
    if is_tnef(raw_name.strip(), ctype) and _add_tnef(data, walk):
        return
    index = len(walk.attachments) + 1
    name = decode_text(raw_name, walk.fallbacks) if raw_name else ""
    if not name and ctype == "message/rfc822":
        inner = _children(part)
        if inner and inner[0].get("subject"):
            name = decode_text(str(inner[0].get("subject")), walk.fallbacks) + ".eml"
    content_id_header = part.get("content-id")
    content_id = str(content_id_header).strip().strip("<>").strip() if content_id_header else ""
    disposition = part.get_content_disposition()
    walk.attachments.append(
        ParsedAttachment(
            filename=safe_filename(name, fallback_filename(index, ctype)),
            content_type=ctype,
            content_id=content_id or None,
            inline=disposition == "inline" or (disposition is None and bool(content_id)),
            data=data,
        )
    )


def _is_body_text(part: Message) -> bool:
    """Not marked as a file: no attachment disposition and no file name."""
    return part.get_content_disposition() != "attachment" and not _filename(part)


def _is_body(part: Message, ctype: str) -> bool:
    maintype, _, subtype = ctype.partition("/")
    if maintype == "multipart":  # a multipart whose boundary never appears
        return True
    return maintype == "text" and subtype in _BODY_SUBTYPES and _is_body_text(part)


def _add_body(part: Message, ctype: str, walk: Walk) -> None:
    data = payload_bytes(part)
    is_html = ctype == "text/html" or (
        ctype.startswith("multipart/") and b"<html" in data[:2048].lower()
    )
    text = part_text(part, data, walk.fallbacks, is_html)
    if not is_html and _param(part, "format") == "flowed":
        text = unflow(text, delsp=_param(part, "delsp") == "yes")
    (walk.html if is_html else walk.plain).append(text)


def _param(part: Message, name: str) -> str:
    """A Content-Type parameter, lower-cased; "" when absent or unreadable."""
    try:
        value = collapse_rfc2231_value(part.get_param(name) or "")
    except (UnicodeError, LookupError, ValueError):
        return ""
    return str(value).strip().lower()


def _walk_alternative(children: list[Message], walk: Walk, depth: int) -> None:
    """One body out of the alternatives; see the module docstring."""
    seen: set[str] = set()
    others: list[Message] = []
    for child in children:
        ctype = child.get_content_type()
        maintype = child.get_content_maintype()
        if maintype == "multipart":  # related HTML and its images, or a broken multipart
            walk_parts(child, walk, depth + 1)
        elif ctype == "text/calendar" or maintype != "text" or not _is_body_text(child):
            _add_attachment(child, ctype, walk)
        elif ctype in ("text/plain", "text/html"):
            if ctype not in seen:
                seen.add(ctype)
                _add_body(child, ctype, walk)
        else:
            others.append(child)
    if not seen and others:  # text/enriched alone: still the body, read as text
        _add_body(others[0], "text/plain", walk)


# Deeper nesting than this is an attack on the parser, not a mail; what lies
# below is kept as one opaque attachment instead of recursing further.
MAX_DEPTH = 40


def walk_parts(part: Message, walk: Walk, depth: int = 0) -> None:
    """Sort every leaf under ``part`` into body text or attachments, in order."""
    ctype = part.get_content_type()
    if part.get_content_maintype() == "message" or (part.is_multipart() and depth > MAX_DEPTH):
        _add_attachment(part, ctype, walk)
        return
    if part.is_multipart():
        children = _children(part)
        if ctype == "multipart/report":
            if walk.report_type is None:
                walk.report_type = _report_type(part)
            if children:
                walk_parts(children[0], walk, depth + 1)
            for child in children[1:]:
                _add_attachment(child, child.get_content_type(), walk)
            return
        if ctype == "multipart/alternative":
            _walk_alternative([*children, *_epilogue_parts(part)], walk, depth)
            return
        for child in (*children, *_epilogue_parts(part)):
            walk_parts(child, walk, depth + 1)
        return
    if _is_body(part, ctype):
        _add_body(part, ctype, walk)
    else:
        _add_attachment(part, ctype, walk)


def _epilogue_parts(part: Message) -> list[Message]:
    """Parts that follow a premature closing boundary (a nested part reused the
    outer boundary); mail programs still show them, so we keep them too."""
    epilogue = part.epilogue
    boundary = part.get_boundary()
    if not epilogue or not boundary or f"--{boundary}" not in epilogue:
        return []
    delimiter = re.compile(rf"^--{re.escape(boundary)}(?:--)?[ \t]*\r?$\n?", re.MULTILINE)
    chunks = delimiter.split(epilogue)[1:]
    parser = BytesParser(policy=RAW_POLICY)
    return [
        parser.parsebytes(_enc(chunk))
        for chunk in chunks
        if chunk.strip() and _HEADER_START.match(chunk)
    ]


_HEADER_START = re.compile(r"[!-9;-~]+[ \t]*:")


def _report_type(part: Message) -> str:
    """The report-type parameter, lower-cased; "" when absent or unreadable."""
    try:
        value = collapse_rfc2231_value(part.get_param("report-type") or "")
    except (UnicodeError, LookupError, ValueError):
        return ""
    return str(value).strip().lower()

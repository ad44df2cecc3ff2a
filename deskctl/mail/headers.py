"""Header-level reading: repairing the header block and decoding what is in it.

The stdlib parser gives up on the rest of the header block at the first line it
does not understand, which loses From and Subject on real mail (junk first lines,
un-indented continuation lines, ``From  :`` with spaces). We repair the block
first, then decode values ourselves because RFC 2047 in the wild is split across
multi-byte characters, mislabels charsets and mixes in raw 8-bit bytes.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime

from deskctl.mail.charsets import decode_bytes, decode_header_bytes
from deskctl.mail.errors import MalformedMail
from deskctl.mail.parsed import Address
from deskctl.mail.sanitize import safe_text


class _RawCompat32(Compat32):
    """compat32, but header values keep their raw 8-bit bytes (surrogate-escaped).

    Stock compat32 turns them into ``Header`` objects whose ``str()`` is U+FFFD,
    which loses GB2312 or UTF-8 file names; we decode those bytes ourselves.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


RAW_POLICY = _RawCompat32()

_HEADER_LINE = re.compile(rb"([!-9;-~]+)[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n[ \t]*\r?\n")
# Header names that prove a block of text is a mail header and not random text.
_KNOWN_FIELDS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"received",
        b"return-path",
        b"delivered-to",
        b"reply-to",
        b"sender",
        b"mime-version",
        b"content-type",
        b"in-reply-to",
        b"references",
    }
)


def repair_header_block(raw: bytes) -> bytes:
    """Return ``raw`` with a header block the stdlib parser reads completely.

    Drops an mbox ``From `` line and junk before the first header, glues stray
    un-indented lines onto the header above them, and removes blanks before a
    field name's colon. Raises :class:`MalformedMail` when no header block exists.
    """
    if not raw.strip():
        raise MalformedMail("empty input")
    data = raw.lstrip(b"\r\n\t ")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    blank = _BLANK_LINE.search(data)
    if blank is None:
        head, sep, body = data, b"", b""
    else:
        head, sep, body = (
            data[: blank.start()],
            data[blank.start() : blank.end()],
            data[blank.end() :],
        )
    if b"\x00" in head:
        raise MalformedMail("binary data, not a mail header")

    lines = head.split(b"\n")
    kinds: list[str] = []
    fixed: list[bytes] = []
    known = False
    for line in lines:
        match = _HEADER_LINE.match(line)
        if match is not None:
            name = match.group(1)
            known = known or name.lower() in _KNOWN_FIELDS
            fixed.append(name + b":" + line[match.end() :])
            kinds.append("h")
        elif line[:1] in (b" ", b"\t"):
            fixed.append(line)
            kinds.append("c")
        else:
            fixed.append(line)
            kinds.append("j")
    if not known:
        raise MalformedMail("no mail header block found")

    first = kinds.index("h")
    last = len(kinds) - 1 - kinds[::-1].index("h")
    # Lines after the last field that are not continuations are a body whose
    # separating blank line is missing.
    end = last + 1
    while end < len(kinds) and kinds[end] == "c":
        end += 1
    out = [
        line if kind != "j" else b" " + line.lstrip()
        for line, kind in zip(fixed[first:end], kinds[first:end], strict=True)
    ]
    rest = fixed[end:]
    eol = b"\r\n" if b"\r\n" in head[:2000] else b"\n"
    new_head = b"\n".join(out).rstrip(b"\r")
    if rest:
        body = b"\n".join(rest) + sep + body
        sep = eol + eol
    elif not sep:
        sep = eol + eol
    return new_head + sep + body


def to_bytes(value: str) -> bytes:
    """Recover the original bytes of a header value the stdlib surrogate-escaped."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        pass
    try:  # real text mixed with escaped bytes, e.g. after a partial decode
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def unfold(value: str) -> str:
    """Join folded lines (RFC 5322 section 2.2.3); stray CR/LF become spaces."""
    return re.sub(r"\r?\n", "", re.sub(r"\r?\n(?![ \t])", " ", value))


def raw_text(value: str, fallbacks: Sequence[str]) -> str:
    """Unfolded header text with raw 8-bit bytes decoded, encoded words untouched."""
    if not value.isascii():
        value = decode_header_bytes(to_bytes(value), fallbacks)
    return unfold(value)


_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _word_bytes(encoding: str, text: str) -> bytes:
    """Bytes of one encoded word, tolerating bad padding and stray characters."""
    data = to_bytes(text)
    if encoding in "bB":
        data = _B64_JUNK.sub(b"", data)
        data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return b""
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))


def decode_words(text: str, fallbacks: Sequence[str] = ()) -> str:
    """Decode RFC 2047 encoded words in already-unfolded text.

    Whitespace between adjacent encoded words is dropped (RFC 2047 section 6.2),
    and adjacent words in the same charset are joined before decoding, because
    encoders split multi-byte characters across words.
    """
    if "=?" not in text:
        return text
    pieces: list[str] = []
    pending: bytes = b""
    pending_charset = ""
    last_end = 0
    previous_was_word = False

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset:
            pieces.append(decode_bytes(pending, pending_charset, fallbacks))
        pending, pending_charset = b"", ""

    for match in _ENCODED_WORD.finditer(text):
        gap = text[last_end : match.start()]
        if gap and not (previous_was_word and gap.isspace()):
            flush()
            pieces.append(gap)
        charset = match.group(1) or "utf-8"
        if charset.lower() != pending_charset.lower():
            flush()
            pending_charset = charset
        pending += _word_bytes(match.group(2), match.group(3))
        last_end = match.end()
        previous_was_word = True
    flush()
    pieces.append(text[last_end:])
    return "".join(pieces)


#: Nesting deeper than this is an attack, not a mail program: what is left
#: after it stays as text, made inert by :func:`header_text` before it is sent.
_MAX_DECODE_ROUNDS = 16


def decode_fully(text: str, fallbacks: Sequence[str] = ()) -> str:
    """Decode encoded words until none is left.

    An encoded word whose text is another encoded word (double or triple
    encoding) is how a sender hides CR/LF from a decoder that stops after
    one round; stopping there would store ``=?utf-8?b?...?=`` as the title,
    and the next program to decode it (the email package, composing our
    reply) would write the hidden line breaks as header lines.
    """
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = decode_words(text, fallbacks)
        if decoded == text:
            break
        text = decoded
    return text


def collapse(text: str) -> str:
    """One line of clean text: control characters gone, whitespace runs collapsed.

    ``str.split`` breaks on every Unicode line break too (U+2028, U+2029,
    U+0085, FS/GS/RS), so none of them survives as a line.
    """
    return " ".join(safe_text(text).split())


def decode_text(value: str | None, fallbacks: Sequence[str] = ()) -> str:
    """A display value such as Subject, fully decoded and on one line."""
    if not value:
        return ""
    return collapse(decode_fully(raw_text(value, fallbacks), fallbacks))


def header_text(value: str) -> str:
    """``value`` as text that can go into a header we write, whatever it holds.

    After every round of decoding, no control character or line break is
    left, and no ``=?`` either: the email package decodes an encoded word in
    any string it is given (and a mail program decodes what we send), so a
    literal ``=?...?=`` surviving here is a line break waiting for the next
    decoder. Breaking the pair (``= ?``) leaves nothing any decoder can open;
    our own decoding has already turned every real encoded word into text.
    """
    return collapse(decode_fully(value)).replace("=?", "= ?")


_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_NAME_ANGLE = re.compile(r'\s*(?P<name>"(?:[^"\\]|\\.)*"|[^<>",:;]*?)\s*<(?P<addr>[^<>]*)>\s*')


def _split_list(text: str) -> list[str]:
    """Split an address list on commas outside quotes, comments and angle brackets."""
    items: list[str] = []
    depth_paren = 0
    in_quote = in_angle = escaped = False
    start = 0
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_quote:
            in_quote = ch != '"'
        elif ch == '"':
            in_quote = True
        elif ch == "(":
            depth_paren += 1
        elif ch == ")" and depth_paren:
            depth_paren -= 1
        elif depth_paren:
            continue
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


def _clean_addr(addr: str) -> str:
    """Lower-cased addr-spec without comments or folding blanks (kept inside quotes)."""
    addr = _COMMENT.sub("", addr)
    addr = addr.strip() if '"' in addr else "".join(addr.split())
    return addr.strip("<>").lower()


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    else:
        without = _COMMENT.sub("", name).strip()
        name = without or name.strip("()")
    return name


def parse_addresses(values: Iterable[str], fallbacks: Sequence[str] = ()) -> list[Address]:
    """Every mailbox in the given header values, in order, names decoded.

    ``Name <addr>`` is read directly, so an unquoted address used as display
    name (``alice@example.com <bob@example.com>``, a common spoof) keeps the
    angle address as the mailbox instead of splitting into two.
    """
    found: list[Address] = []
    for value in values:
        text = raw_text(value, fallbacks)
        for item in _split_list(text):
            match = _NAME_ANGLE.fullmatch(item)
            if match is not None:
                pairs = [(_unquote(match.group("name")), match.group("addr"))]
            else:
                pairs = getaddresses([item])
            for name, addr in pairs:
                email = _clean_addr(addr)
                display = collapse(decode_fully(name, fallbacks))
                if email or display:
                    found.append(Address(name=display, email=email))
    return found


_MSG_ID = re.compile(r"<([^<>]*)>")
#: The longest Message-ID kept, in UTF-8 bytes: what one header line may hold
#: (RFC 5322). A longer one is cut, the same way wherever it appears (Message-ID,
#: In-Reply-To, References), so it still finds the message it names; and it stays
#: well inside what a database index may hold (PostgreSQL: 2,704 bytes).
MAX_ID_BYTES = 998


def _clean_id(value: str) -> str:
    ident = "".join(_COMMENT.sub("", value).split())
    if len(ident) * 4 <= MAX_ID_BYTES:  # no UTF-8 character has more than 4 bytes
        return ident
    return ident.encode("utf-8", "surrogatepass")[:MAX_ID_BYTES].decode("utf-8", "ignore")


def message_ids(value: str | None) -> tuple[str, ...]:
    """Message-IDs in a References/In-Reply-To value, without angle brackets."""
    if not value:
        return ()
    text = raw_text(value, ())  # an id in raw UTF-8 (RFC 6532) must not keep surrogates
    ids = [_clean_id(m) for m in _MSG_ID.findall(text)]
    if not ids:
        ids = [_clean_id(tok.strip("<>")) for tok in text.split() if "@" in tok]
    seen: dict[str, None] = {}
    for ident in ids:
        if ident:
            seen.setdefault(ident, None)
    return tuple(seen)


def first_message_id(value: str | None) -> str | None:
    """The Message-ID, tolerant of missing brackets; None when blank."""
    if not value or not value.strip():
        return None
    ids = message_ids(value)
    if ids:
        return ids[0]
    cleaned = _clean_id(raw_text(value, ())).strip("<>")
    return cleaned or None


def parse_date(value: str | None) -> datetime | None:
    """A timezone-aware datetime, UTC when the header names no zone; None if unreadable."""
    if not value:
        return None
    text = " ".join(unfold(value).split())
    for candidate in (text, re.sub(r"\s*:\s*", ":", _COMMENT.sub("", text))):
        try:
            parsed = parsedate_to_datetime(candidate)
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if parsed is None:
            continue
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None

"""Making what a mail says harmless before it reaches a terminal or a file system.

Promise 7: mail text cannot move the agent's cursor, retitle their terminal,
reorder what they read with bidi overrides or write outside the attachment folder.
Headers we send are made safe by :func:`deskctl.mail.headers.header_text`.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

# ESC-introduced sequences: CSI (ESC [ ... final byte), OSC/DCS/SOS/PM/APC strings
# ended by BEL or ST (ESC \) on the same line, and two-byte ESC sequences. The
# 8-bit C1 forms (CSI = U+009B, OSC = U+009D, ...) are covered by the same patterns.
# A string whose terminator never comes (a stray C1 OSC, an ``ESC ]`` left open) is
# not a sequence to remove up to the end: only its introducer goes (the last
# alternative, or _CONTROLS for a lone C1), and the text after it stays readable.
# The string body cannot hold another introducer, so each character is scanned once.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?               # CSI
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])        # OSC, DCS, SOS, PM, APC ...
      [^\x07\x1b\n\x90-\x9f]*(?:\x07|\x1b\\|\x9c)     # ... up to BEL or ST, same line
    | \x1b[ -/]*[0-~]?                               # other ESC sequences
    """,
    re.VERBOSE,
)
# C0 except \t and \n, DEL, C1, and the bidi embedding/override/isolate controls.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def safe_text(s: str) -> str:
    """Text with terminal escape sequences and control characters removed.

    Keeps ``\\n`` and ``\\t`` so bodies stay readable; ``\\r`` goes because a bare
    carriage return lets a line overwrite what the agent already saw.
    """
    if s.isprintable():
        return s
    return _CONTROLS.sub("", _ESCAPES.sub("", s))


def one_line(s: str) -> str:
    """``s`` as one line of characters that show as themselves.

    For names deskctl did not choose (a Maildir file name) in a log line, an
    error or a ``key: value`` listing, where a newline would forge a line of
    its own: control and format characters are written as escapes (``\\n``,
    ``\\x1b``, ``\\u202e``), and bytes that were not UTF-8 (a name decoded with
    ``surrogateescape``) as ``\\xNN``.
    """
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


_FILENAME_MAX = 200
_EXT_MAX = 16
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|\u202a-\u202e\u2066-\u2069\u200e\u200f]')


def safe_filename(name: str | None, fallback: str) -> str:
    """A file name that stays inside the folder it is written to.

    Only the last path component survives (``../../etc/passwd`` becomes
    ``passwd``); leading dots go so nothing is hidden or a traversal; the length
    is capped keeping the extension; an empty result becomes ``fallback``.
    """
    text = safe_text(name or "")
    text = unicodedata.normalize("NFC", text)
    base = re.split(r"[/\\]", text)[-1]
    base = _FORBIDDEN.sub("_", base).strip().lstrip(".").strip()
    base = base.rstrip(". ")  # Windows ignores trailing dots and spaces
    if not base:
        base = fallback
    if len(base) > _FILENAME_MAX:
        stem, dot, ext = base.rpartition(".")
        if dot and stem and len(ext) <= _EXT_MAX:
            base = stem[: _FILENAME_MAX - len(ext) - 1].rstrip() + "." + ext
        else:
            base = base[:_FILENAME_MAX]
    return base


# Types the mimetypes table does not know but bounces and reports are full of.
_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/feedback-report": ".txt",
    "text/rfc822-headers": ".txt",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
}


def fallback_filename(index: int, content_type: str) -> str:
    """``attachment-<n><ext>`` with an extension guessed from the MIME type."""
    ext = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type, strict=False)
    ext = ext or ".bin"
    return f"attachment-{index}{ext}"

"""Addresses as the wire carries them, and as deskctl compares them.

A customer at bücher.example may write from ``kunde@bücher.example`` (RFC 6532
mail) or from ``kunde@xn--bcher-kva.example``; both are one mailbox. Stored
addresses stay as the customer wrote them, SMTP and headers get the ASCII
(IDNA) form, and every comparison (filter, own address, participants,
refusals) uses :func:`address_key`, so the two forms never disagree.
"""

from __future__ import annotations

import re
import unicodedata


def wire_address(email: str) -> str:
    """``email`` with its domain in ASCII, as SMTP and mail headers carry it.

    UTS 46 processing, as registries and browsers do it: ``straße.de`` is
    ``xn--strae-oqa.de``, not the ``strasse.de`` of the old IDNA 2003 codec,
    which would send a reply to another company. A domain IDNA cannot encode
    stays as it is, and the send fails with the reason; so does a non-ASCII
    local part, which would need SMTPUTF8.
    """
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    import idna

    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return email


def address_key(email: str) -> str:
    """The form two addresses are compared in: ASCII domain, lower case."""
    return wire_address(email.strip()).lower()


def split_address(email: str) -> tuple[str, str]:
    """The local part as text (a quoted-string unquoted) and the domain.

    ``"john smith"@example.com`` is stored with its quotes; the header
    writer quotes a local part that needs it, so handing it the quotes too
    would send ``"\\"john smith\\""@example.com``, another mailbox.
    """
    local, _, domain = email.rpartition("@")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, domain


# atext and dots (RFC 5322 3.2.3), and non-ASCII (RFC 6532; the send then says SMTPUTF8).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\u0080-\U0010ffff-]+")
_LABELS = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*"
)
_DOMAIN_LITERAL = re.compile(r"\[[!-Z^-~]+\]")


def _has_control(text: str) -> bool:
    """C0/C1 controls, DEL, format characters (bidi, zero-width) and line/paragraph breaks."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def recipient_problem(email: str) -> str | None:
    """Why ``email`` cannot receive a reply, or None when it can.

    Mail may name anything as a recipient; SMTP would relay an address with
    a control byte into someone's log or header, and an address without a
    domain to whatever the local mail system makes of it.
    """
    if _has_control(email):
        return "it contains a control character"
    local, at, domain = email.strip().rpartition("@")
    if not at or not domain:
        return "it has no domain"
    if not local:
        return "it has no local part"
    if "=?" in split_address(email.strip())[0]:  # unquoted: ``"=\?..."`` is written ``=?...``
        # atext, but the email package and mail programs decode it even there
        # (RFC 2047 5 forbids it), into CR/LF or into another address.
        return "its local part holds an encoded word (=?...?=) that mail programs would decode"
    quoted = len(local) >= 2 and local[0] == local[-1] == '"'
    if not quoted and not _LOCAL.fullmatch(local):
        return "its local part has characters an address cannot have without quotes"
    ascii_domain = wire_address(email).rpartition("@")[2]
    if not (_LABELS.fullmatch(ascii_domain) or _DOMAIN_LITERAL.fullmatch(ascii_domain)):
        return f"{domain!r} is not a domain"
    return None


def matching_pattern(address: str, patterns: list[str]) -> str | None:
    """The outgoing filter pattern that forbids mailing ``address``, if any.

    Here rather than beside the filter table because ``ticket show`` (which
    never loads the ORM) shows who a reply will go to, filter applied.
    """
    from fnmatch import fnmatchcase

    # Either form of an internationalised domain matches either form of a pattern.
    emails = {address.strip().lower(), address_key(address)}
    for pattern in patterns:
        forms = {pattern, address_key(pattern)}
        if pattern.startswith("@"):
            if any(e.endswith(p) for e in emails for p in forms):
                return pattern
        elif any(ch in pattern for ch in "*?["):
            if any(fnmatchcase(e, pattern) for e in emails):
                return pattern
        elif emails & forms:
            return pattern
    return None

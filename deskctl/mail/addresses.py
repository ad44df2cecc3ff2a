"""Addresses as the wire carries them, and as deskctl compares them.

A customer at bücher.example may write from ``kunde@bücher.example`` (RFC 6532
mail) or from ``kunde@xn--bcher-kva.example``; both are one mailbox. Stored
addresses stay as the customer wrote them, SMTP and headers get the ASCII
(IDNA) form, and every comparison (filter, own address, participants,
refusals) uses :func:`address_key`, so the two forms never disagree.
"""

from __future__ import annotations


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

"""Replies reach customers at internationalised domains without SMTPUTF8."""

from __future__ import annotations

from email import message_from_bytes, policy

from deskctl.mail.compose import Reply, compose, to_wire, wire_address
from deskctl.mail.parsed import Address


def test_a_domain_in_unicode_goes_on_the_wire_in_idna() -> None:
    assert wire_address("kunde@bücher.example") == "kunde@xn--bcher-kva.example"
    assert wire_address("ada@example.org") == "ada@example.org"


def test_what_idna_cannot_encode_is_left_for_the_send_to_refuse() -> None:
    assert wire_address("kunde@bad..dömain") == "kunde@bad..dömain"
    assert wire_address("no-at-sign") == "no-at-sign"


def test_the_reply_headers_carry_the_ascii_domain_not_an_encoded_word() -> None:
    reply = Reply(
        sender=Address("Support", "support@example.test"),
        to=(Address("Jürgen Kunde", "kunde@bücher.example"),),
        cc=(Address("", "chef@bücher.example"),),
        subject="Re: Rechnung [#7]",
        body="Erledigt.",
        message_id="r1@example.test",
    )
    raw = to_wire(compose(reply))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"kunde@xn--bcher-kva.example" in head and b"chef@xn--bcher-kva.example" in head
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"].addresses[0].display_name == "Jürgen Kunde"

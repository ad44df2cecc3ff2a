"""Replies reach customers at internationalised domains without SMTPUTF8."""

from __future__ import annotations

from email import message_from_bytes, policy

from deskctl.mail.addresses import address_key, wire_address
from deskctl.mail.compose import Reply, compose, to_wire
from deskctl.mail.parsed import Address


def test_a_domain_in_unicode_goes_on_the_wire_in_idna() -> None:
    assert wire_address("kunde@bücher.example") == "kunde@xn--bcher-kva.example"
    assert wire_address("Kunde@BÜCHER.example") == "Kunde@xn--bcher-kva.example"
    assert wire_address("ada@example.org") == "ada@example.org"


def test_sharp_s_keeps_its_own_domain_and_is_not_folded_to_ss() -> None:
    """IDNA 2003 would turn straße.de into strasse.de: another company's domain."""
    assert wire_address("info@straße.de") == "info@xn--strae-oqa.de"


def test_both_forms_of_one_mailbox_compare_equal() -> None:
    assert address_key(" Kunde@Bücher.example") == address_key("kunde@xn--bcher-kva.example")
    assert address_key("ada@example.org") != address_key("ada@example.com")


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


def test_a_message_id_in_unicode_is_left_out_rather_than_encoded_into_noise() -> None:
    """No mail program matches an RFC 2047 word in In-Reply-To; the subject token threads."""
    reply = Reply(
        sender=Address("Support", "support@example.test"),
        to=(Address("", "kunde@bücher.example"),),
        cc=(),
        subject="Re: Rechnung [#7]",
        body="Erledigt.",
        message_id="r2@example.test",
        in_reply_to="a1@bücher.example",
        references=("a0@example.org", "a1@bücher.example"),
    )
    parsed = message_from_bytes(to_wire(compose(reply)), policy=policy.default)
    assert parsed["In-Reply-To"] is None
    assert str(parsed["References"]) == "<a0@example.org>"


def test_a_support_address_at_an_internationalised_domain_can_send() -> None:
    reply = Reply(
        sender=Address("Kundendienst", "hilfe@bücher.example"),
        to=(Address("", "ada@example.org"),),
        cc=(),
        subject="Re: Frage [#3]",
        body="Gern.",
        message_id="r3@xn--bcher-kva.example",
    )
    head = to_wire(compose(reply)).split(b"\r\n\r\n", 1)[0]
    assert b"hilfe@xn--bcher-kva.example" in head

"""The headers of our replies, unit by unit: what mail says cannot add a line or a recipient."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy

import pytest

from deskctl.mail.addresses import recipient_problem, split_address
from deskctl.mail.compose import MAX_MSG_ID, Reply, compose, to_wire
from deskctl.mail.headers import decode_text, header_text, parse_addresses
from deskctl.mail.parsed import Address


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def reply(**changes: object) -> Reply:
    fields: dict[str, object] = {
        "sender": Address("Support", "support@example.test"),
        "to": (Address("Casey", "casey@example.org"),),
        "cc": (),
        "subject": "Re: Printer [#1]",
        "body": "Done.",
        "message_id": "r1@example.test",
    }
    return Reply(**(fields | changes))  # type: ignore[arg-type]


def head_of(raw: bytes) -> list[str]:
    """The header block as its physical lines."""
    return raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_title_is_decoded_however_often_it_was_encoded(depth: int) -> None:
    value = "Rechnung\r\nBcc: x@evil.example"
    for _ in range(depth):
        value = b_word(value)
    assert decode_text(value) == "Rechnung Bcc: x@evil.example"


@pytest.mark.parametrize(
    "text", ["a\u2028b", "a\u2029b", "a\x85b", "a\x1cb", "a\x0bb", "a\x00b", "a\r\nb", "a\u202eb"]
)
def test_no_line_break_or_control_of_any_kind_survives_into_a_header(text: str) -> None:
    assert header_text(text) in ("a b", "ab")


def test_an_encoded_word_deeper_than_we_decode_is_broken_up() -> None:
    value = "=?utf 8?q?a=0D=0ABcc:_x@evil.example?="  # the email package would still decode it
    assert header_text(value) == "= ?utf 8?q?a=0D=0ABcc:_x@evil.example?="
    raw = to_wire(compose(reply(subject=value)))
    assert [line for line in head_of(raw) if line.startswith("Bcc")] == []
    subject = str(message_from_bytes(raw, policy=policy.default)["Subject"])
    assert "\n" not in subject and "=?" not in subject  # as a mail program decodes it


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_subject_handed_to_compose_adds_no_line_whatever_it_holds(depth: int) -> None:
    value = "hi\r\nBcc: x@evil.example"
    for _ in range(depth):
        value = b_word(value)
    raw = to_wire(compose(reply(subject=value)))
    assert [line for line in head_of(raw) if line.startswith("Bcc")] == []
    assert str(message_from_bytes(raw, policy=policy.default)["Subject"]).startswith("hi Bcc: x@")


def test_a_display_name_is_decoded_and_flattened_before_it_is_written() -> None:
    """However it reached the Reply (mail, config, an agent's --cc), a name adds no line."""
    name = b_word(b_word("Casey\r\nBcc: x@evil.example\r\n\r\nbody"))
    raw = to_wire(compose(reply(sender=Address(name, "support@example.test"))))
    assert not [line for line in head_of(raw) if line.startswith("Bcc")]
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "Casey Bcc: x@evil.example body"


def test_a_huge_name_is_cut_so_its_line_stays_within_smtps_limit() -> None:
    raw = to_wire(compose(reply(to=(Address("Ab, " * 2000, "casey@example.org"),))))
    assert max(len(line) for line in head_of(raw)) < 998
    parsed = message_from_bytes(raw, policy=policy.default)
    assert len(parsed["To"].addresses[0].display_name) <= 200


def test_a_long_quoted_name_keeps_its_quotes_and_adds_no_recipient() -> None:
    """Folded by the email package, the quotes went and the name read as a group."""
    name = "Invoice Bcc: victim@attacker.example Reply-To: thief@attacker.example, and more"
    raw = to_wire(compose(reply(to=(Address(name, "casey@example.org"),))))
    parsed = message_from_bytes(raw, policy=policy.default)
    (only,) = parsed["To"].addresses
    assert only.display_name == name and only.addr_spec == "casey@example.org"


def test_a_long_name_in_any_script_is_encoded_in_whole_words_that_fit_a_line() -> None:
    name = "Jürgen Müller-Lüdenscheidt 株式会社テスト " * 3 + "und Söhne"
    raw = to_wire(compose(reply(cc=(Address(name, "j@example.org"),))))
    lines = head_of(raw)
    assert all(len(line) <= 78 for line in lines if "=?" in line)
    start = next(i for i, line in enumerate(lines) if line.startswith("Cc:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    # A decoder that follows RFC 2047 (ours, Thunderbird, Outlook) reads the name exactly ...
    (cc,) = parse_addresses([" ".join(lines[start:end]).removeprefix("Cc:")])
    assert cc == Address(" ".join(name.split()), "j@example.org")
    # ... and the email package, which keeps blanks between words, at most with wider gaps.
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Cc"].addresses[0].display_name.split() == name.split()


def test_a_name_with_quotes_and_backslashes_is_escaped_once() -> None:
    raw = to_wire(compose(reply(to=(Address('Ann "The Boss" \\ Lee', "ann@example.org"),))))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"].addresses[0].display_name == 'Ann "The Boss" \\ Lee'


def test_ids_that_are_not_msg_ids_are_left_out_not_encoded() -> None:
    bad = ["with space@x", "ctl\x01@x", "ümlaut@x", "a" * (MAX_MSG_ID + 1) + "@x", "<>@x"]
    raw = to_wire(compose(reply(in_reply_to=bad[0], references=("ok@example.org", *bad))))
    head = head_of(raw)
    assert "References: <ok@example.org>" in head
    assert not any(line.startswith("In-Reply-To") for line in head)


def test_many_ids_fold_between_ids_only() -> None:
    refs = tuple(f"id-{i:03}-{'x' * 30}@mail.example.org" for i in range(12))
    raw = to_wire(compose(reply(references=refs)))
    head = head_of(raw)
    start = next(i for i, line in enumerate(head) if line.startswith("References"))
    end = next(i for i in range(start + 1, len(head)) if not head[i].startswith(" "))
    lines = head[start:end]
    assert all(len(line) <= 78 for line in lines)
    assert " ".join(lines).removeprefix("References:").split() == [f"<{r}>" for r in refs]


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("ada@example.org", None),
        ('"john smith"@example.org', None),
        ("kunde@bücher.example", None),
        ("ops@[192.0.2.1]", None),
        ("nodomain", "it has no domain"),
        ("ada@", "it has no domain"),
        ("@example.org", "it has no local part"),
        ("ada\r\n@example.org", "it contains a control character"),
        ("ada\u2028@example.org", "it contains a control character"),
        ("ada smith@example.org", "its local part has characters"),
        ("ada@exa<mple.org", "is not a domain"),
    ],
)
def test_which_addresses_can_receive_a_reply(email: str, problem: str | None) -> None:
    found = recipient_problem(email)
    assert found is None if problem is None else problem in (found or ""), found


def test_a_quoted_local_part_is_handed_on_unquoted_so_it_is_quoted_once() -> None:
    assert split_address('"john smith"@example.org') == ("john smith", "example.org")
    assert split_address('"a\\"b"@example.org') == ('a"b', "example.org")
    raw = to_wire(compose(reply(to=(Address("", '"john smith"@example.org'),))))
    assert 'To: "john smith"@example.org' in head_of(raw)


def test_a_local_part_in_unicode_is_written_in_utf8_never_as_an_encoded_word() -> None:
    """RFC 6532 mail: ``<=?utf-8?q?j=C3=BCrgen?=@example.de>`` would be no one's address."""
    raw = to_wire(compose(reply(to=(Address("Jürgen", "jürgen@example.de"),))))
    (to,) = [line for line in head_of(raw) if line.startswith("To: ")]
    assert to.endswith(" <jürgen@example.de>") and "=?" not in to.rpartition("<")[2], to
    assert to_wire(compose(reply())).isascii(), "mail to ASCII addresses keeps ASCII headers"


@pytest.mark.parametrize(
    "subject",
    ["Re: Grüße aus München [#1]", "Re: 株式会社テスト 株式会社 テスト [#2]", "x" * 3000, ""],
)
def test_a_subject_comes_back_as_written_on_lines_smtp_accepts(subject: str) -> None:
    raw = to_wire(compose(reply(subject=subject)))
    assert max(len(line) for line in head_of(raw)) < 998
    assert str(message_from_bytes(raw, policy=policy.default)["Subject"]) == subject

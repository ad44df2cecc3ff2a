"""parse_mail on the odd mail a help desk really receives, one story each."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deskctl.mail.errors import MalformedMail
from deskctl.mail.parse import parse_mail
from deskctl.mail.parsed import Address


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


SIMPLE = """\
From: "Ann Example" <Ann@Example.COM>
To: Support <support@desk.example>, bob@example.org
Cc: carol@example.org
Subject: Printer
 on floor 3 is broken
Date: Tue, 1 Jul 2025 09:30:00 +0200
Message-ID:  <abc.123@example.com>
In-Reply-To: <parent@desk.example>
References: <root@desk.example>
 <parent@desk.example>
Delivered-To: helpdesk@desk.example
Content-Type: text/plain; charset=utf-8

It prints only blank pages.
"""


def test_a_plain_customer_mail_becomes_clean_ticket_fields() -> None:
    mail = parse_mail(crlf(SIMPLE))
    assert mail.subject == "Printer on floor 3 is broken"
    assert mail.sender == Address(name="Ann Example", email="ann@example.com")
    assert mail.to == (Address("Support", "support@desk.example"), Address("", "bob@example.org"))
    assert mail.cc == (Address("", "carol@example.org"),)
    assert mail.message_id == "abc.123@example.com"
    assert mail.in_reply_to == ("parent@desk.example",)
    assert mail.references == ("root@desk.example", "parent@desk.example")
    assert mail.date == datetime(2025, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert mail.text == "It prints only blank pages.\n"
    assert mail.html is None
    assert mail.attachments == ()
    assert mail.flags == ()
    assert not mail.is_automatic


def test_original_recipients_list_delivery_headers_first_then_to_and_cc_once_each() -> None:
    mail = parse_mail(
        crlf(SIMPLE.replace("Cc: carol", "X-Original-To: Support@Desk.example\nCc: carol"))
    )
    assert mail.original_recipients == (
        "helpdesk@desk.example",
        "support@desk.example",
        "bob@example.org",
        "carol@example.org",
    )


def test_mbox_from_line_and_bare_lf_line_endings_are_accepted() -> None:
    mail = parse_mail(b"From ann@example.com  Mon May  7 07:45:48 2012\n" + SIMPLE.encode())
    assert mail.sender == Address("Ann Example", "ann@example.com")
    assert mail.subject == "Printer on floor 3 is broken"


def test_a_date_without_zone_is_taken_as_utc_and_a_missing_one_is_none() -> None:
    naive = parse_mail(crlf(SIMPLE.replace("+0200", "-0000")))
    assert naive.date == datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
    missing = parse_mail(crlf(SIMPLE.replace("Date: Tue, 1 Jul 2025 09:30:00 +0200\n", "")))
    assert missing.date is None


def test_raw_gb2312_bytes_in_headers_are_read_as_chinese() -> None:
    raw = (
        b'From: "' + "武兰成".encode("gb2312") + b'" <lan@example.cn>\r\n'
        b"Subject: " + "整体提升企业服务水平".encode("gb2312") + b"\r\n"
        b"Content-Type: text/plain; charset=gb2312\r\n\r\n" + "你好".encode("gb2312") + b"\r\n"
    )
    mail = parse_mail(raw)
    assert mail.subject == "整体提升企业服务水平"
    assert mail.sender == Address("武兰成", "lan@example.cn")
    assert mail.text.strip() == "你好"


def test_raw_utf8_headers_and_latin1_with_a_charset_hint_both_decode() -> None:
    utf8 = parse_mail("From: Jöhn <j@example.com>\nSubject: Grüße\n\nx\n".encode())
    assert (utf8.subject, utf8.sender) == ("Grüße", Address("Jöhn", "j@example.com"))
    latin = parse_mail(
        "Subject: Réclamation\nFrom: =?windows-1252?Q?R=E9mi?= <r@example.fr>\n\nx\n".encode(
            "latin-1"
        )
    )
    assert (latin.subject, latin.sender) == ("Réclamation", Address("Rémi", "r@example.fr"))


def test_encoded_words_split_inside_a_character_and_unknown_charsets_do_not_crash() -> None:
    subject = "=?utf-8?B?5L2/?= =?utf-8?B?44Gj44Gm?= =?x-no-such-charset?Q?ok?= =?utf-8?B?broken"
    mail = parse_mail(f"Subject: {subject}\nFrom: a@example.com\n\nx\n".encode())
    assert mail.subject == "使ってok =?utf-8?B?broken"


def test_the_first_usable_from_wins_and_reply_to_stands_in_when_none_is() -> None:
    two_froms = parse_mail(b"From: [??????]\nFrom: Real <real@example.com>\nSubject: s\n\nx\n")
    assert two_froms.sender == Address("Real", "real@example.com")
    no_from = parse_mail(b"From: undisclosed\nReply-To: Help <help@example.com>\nSubject: s\n\nx\n")
    assert no_from.sender == Address("Help", "help@example.com")
    nothing = parse_mail(b"Subject: s\n\nx\n")
    assert nothing.sender is None


def test_a_legacy_comment_name_and_an_address_used_as_name_are_understood() -> None:
    legacy = parse_mail(b"From: MAILER-DAEMON@mx.example (Mail Delivery System)\n\nx\n")
    assert legacy.sender == Address("Mail Delivery System", "mailer-daemon@mx.example")
    spoof = parse_mail(b"From: boss@example.com <attacker@evil.example>\n\nx\n")
    assert spoof.sender == Address("boss@example.com", "attacker@evil.example")


HTML_ONLY = """\
From: shop@example.com
Subject: Your order
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style></head><body>
<h1>Order 42</h1><p>Thank you for your <b>order</b>.</p>
<ul><li>One printer</li><li>Two cables</li></ul>
<script>alert(1)</script></body></html>
"""


def test_an_html_only_mail_gets_readable_text_and_keeps_its_html() -> None:
    mail = parse_mail(crlf(HTML_ONLY))
    assert mail.html is not None and "<h1>Order 42</h1>" in mail.html
    assert "Order 42" in mail.text
    assert "Thank you for your order." in mail.text
    assert "One printer" in mail.text and "Two cables" in mail.text
    for markup in ("<", "color: red", "alert(1)"):
        assert markup not in mail.text


def test_an_alternative_mail_uses_its_own_plain_text_not_the_html() -> None:
    raw = crlf(
        "From: a@example.com\nContent-Type: multipart/alternative; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nplain words\n"
        "--b\nContent-Type: text/html\n\n<p>html words</p>\n--b--\n"
    )
    mail = parse_mail(raw)
    assert mail.text.strip() == "plain words"
    assert mail.html is not None and "html words" in mail.html
    assert mail.attachments == ()


def test_terminal_escapes_in_subject_and_body_are_stripped() -> None:
    mail = parse_mail(
        b"Subject: hi \x1b]0;owned\x07there\nFrom: a@example.com\n\nbody\x1b[2J text\n"
    )
    assert mail.subject == "hi there"
    assert mail.text == "body text\n"


PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
PNG = base64.b64encode(b"\x89PNG fake").decode()
WITH_FILES = f"""\
From: a@example.com
Subject: files
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/related; boundary=rel

--rel
Content-Type: text/html; charset=utf-8

<p>see <img src="cid:logo@x"></p>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

{PNG}
--rel--
--outer
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2FRechnung%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

{PDF}
--outer
Content-Type: text/plain; name="=?utf-8?B?w7xiZXJzaWNodC50eHQ=?="
Content-Disposition: attachment

notes
--outer
Content-Type: message/rfc822

Subject: the original
Message-ID: <orig@example.com>

old text
--outer--
"""


def test_attachments_keep_safe_decoded_names_content_ids_and_bytes() -> None:
    mail = parse_mail(crlf(WITH_FILES))
    logo, pdf, notes, forwarded = mail.attachments
    assert (logo.filename, logo.content_type, logo.content_id, logo.inline) == (
        "attachment-1.png",
        "image/png",
        "logo@x",
        True,
    )
    assert logo.data == b"\x89PNG fake"
    assert (pdf.filename, pdf.content_type, pdf.inline) == (
        "Rechnung März.pdf",
        "application/pdf",
        False,
    )
    assert pdf.data == b"%PDF-1.4 fake"
    assert pdf.size == 13
    assert pdf.sha256 == hashlib.sha256(b"%PDF-1.4 fake").hexdigest()
    assert notes.filename == "übersicht.txt" and notes.data.strip() == b"notes"
    assert (forwarded.filename, forwarded.content_type) == ("the original.eml", "message/rfc822")
    assert b"Message-ID: <orig@example.com>" in forwarded.data
    assert mail.text.strip() == "see"


BOUNCE = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Content-Type: multipart/report; report-type=delivery-status; boundary=r

--r
Content-Type: text/plain

Your message could not be delivered.
--r
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; gone@example.com
Action: failed
Status: 5.1.1
--r
Content-Type: text/rfc822-headers

From: support@desk.example
Message-ID: <reply-17@desk.example>
Subject: Re: [#17] Printer
--r--
"""


def test_a_bounce_names_the_message_of_ours_that_bounced() -> None:
    mail = parse_mail(crlf(BOUNCE))
    assert mail.flags == ("auto_reply", "bounce")
    assert "multipart/report delivery-status" in mail.flag_reasons
    assert "From MAILER-DAEMON" in mail.flag_reasons
    assert mail.bounced_message_ids == ("reply-17@desk.example",)
    assert mail.auto_submitted == "auto-replied"
    assert [a.content_type for a in mail.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert mail.text.strip() == "Your message could not be delivered."
    assert mail.is_automatic


def test_a_plain_text_bounce_still_names_the_bounced_message_from_its_quoted_headers() -> None:
    raw = crlf(
        "From: MAILER-DAEMON@mx.example.com\nSubject: failure notice\n\n"
        "Sorry.\n--- Below this line is a copy of the message.\n\n"
        "Message-ID: <reply-9@desk.example>\nSubject: Re: [#9]\n"
    )
    assert parse_mail(raw).bounced_message_ids == ("reply-9@desk.example",)


def test_a_part_after_a_premature_closing_boundary_is_not_lost() -> None:
    raw = crlf(
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nhello\n--b--\n"
        "--b\nContent-Type: application/zip; name=late.zip\n\nPK\n--b--\n"
    )
    mail = parse_mail(raw)
    assert [a.filename for a in mail.attachments] == ["late.zip"]


def test_junk_before_the_headers_and_unindented_continuations_do_not_hide_headers() -> None:
    raw = crlf(
        "---- Original email message ----\nReceived: from a\nby b with ESMTP\n"
        "Subject: Contact form\nFrom  : x@example.cz\n\nbody\n"
    )
    mail = parse_mail(raw)
    assert mail.subject == "Contact form"
    assert mail.sender == Address("", "x@example.cz")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty input"),
        (b"  \r\n\r\n", "empty input"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not a mail header"),
        (b"Dear team, my printer: broken.\nPlease help.\n", "no mail header block found"),
    ],
)
def test_only_input_that_is_not_a_mail_at_all_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedMail) as caught:
        parse_mail(raw)
    assert caught.value.reason == reason


def test_a_headers_only_mail_without_body_still_parses() -> None:
    mail = parse_mail(b"From: a@example.com\r\nSubject: empty")
    assert (mail.subject, mail.text, mail.attachments) == ("empty", "", ())


def test_message_ids_in_raw_utf8_are_read_as_text() -> None:
    """RFC 6532 mail may name an internationalised domain in its Message-ID."""
    raw = (
        "From: Jürgen <kunde@bücher.example>\r\nTo: support@example.test\r\nSubject: x\r\n"
        "Message-ID: <a1@bücher.example>\r\nIn-Reply-To: <r1@bücher.example>\r\n\r\nHallo.\r\n"
    ).encode()
    mail = parse_mail(raw)
    assert mail.message_id == "a1@bücher.example"
    assert mail.in_reply_to == ("r1@bücher.example",)
    assert mail.message_id.encode("utf-8")  # no surrogates left to fail storage

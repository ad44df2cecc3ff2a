"""The kinds of mail of issue 14, one story each: bounces from mail systems that
write no RFC 3464 report, From headers as mail programs really write them,
raw legacy-charset headers, what counts as an attachment, and bodies as written.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from deskctl.mail.parse import parse_mail
from deskctl.mail.parsed import Address

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"


def mail_bytes(headers: str, body: str = "Hello\n", extra: bytes = b"") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode("utf-8") + extra


# -- bounces ------------------------------------------------------------------


def test_a_qmail_bounce_names_its_rule_and_the_recipient_that_failed() -> None:
    raw = (FIXTURES / "flufl-bounce" / "qmail_01.txt").read_bytes()
    mail = parse_mail(raw)
    assert mail.is_automatic
    assert "bounce" in mail.flags
    assert mail.bounced_recipients == ("userx@example.de",)
    assert any(reason.startswith("bounce detector (flufl.bounce)") for reason in mail.flag_reasons)


def test_a_bounce_without_any_header_signal_is_found_by_its_body() -> None:
    # simple_15: an InterScan gateway bounce from imss@..., no report, no daemon sender.
    mail = parse_mail((FIXTURES / "flufl-bounce" / "simple_15.txt").read_bytes())
    assert mail.flags[0] == "bounce"
    assert mail.flag_reasons[0] == "bounce detector (flufl.bounce): failed userx@example.be"
    assert mail.bounced_recipients == ("userx@example.be",)


def test_a_delivery_delayed_notice_is_automatic_mail_but_no_bounce() -> None:
    # A warning DSN: deskctl must not answer it, nor mark our reply as failed.
    mail = parse_mail((FIXTURES / "flufl-bounce" / "dsn_06.txt").read_bytes())
    assert mail.is_automatic
    assert mail.flags[0] == "auto_reply"
    assert "bounce" not in mail.flags
    assert mail.flag_reasons[0] == "delivery-status report: delayed"
    assert mail.bounced_message_ids == ()


def test_a_customer_writing_about_a_failed_delivery_with_many_links_is_no_bounce() -> None:
    links = "\n".join(f"https://shop.example/track/{n}?utm_source=mail" for n in range(60))
    raw = mail_bytes(
        """
From: Ann Example <ann@example.com>
To: support@desk.example
Subject: Delivery failed again - order 4411
List-Unsubscribe: <https://corp.example/unsubscribe>
Content-Type: text/plain; charset=utf-8
""",
        "Your courier says delivery failed. The following addresses had problems:\n"
        f"{links}\nPlease call me back.\n",
    )
    mail = parse_mail(raw)
    assert mail.flags == ()
    assert mail.flag_reasons == ()
    assert not mail.is_automatic


@pytest.mark.parametrize(
    "marker",  # the forward markers of deskctl/mail/subjects.py, in the languages mail comes in
    ["Fwd:", "WG:", "VL:", "RV:", "PD:", "Fwd(2):", "=?utf-8?b?6L2s5Y+R77ya?="],  # last: 转发：
)
def test_a_customer_forwarding_a_bounce_they_got_is_a_customer(marker: str) -> None:
    bounce = (FIXTURES / "flufl-bounce" / "postfix_01.txt").read_bytes()
    raw = mail_bytes(
        f"""
From: Ann Example <ann@example.com>
To: support@desk.example
Subject: {marker} Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"
""",
        "--b1\nContent-Type: text/plain\n\nWhy did my mail to you bounce?\n\n"
        "--b1\nContent-Type: message/rfc822\n\n",
        bounce.replace(b"\n", b"\r\n") + b"\r\n--b1--\r\n",
    )
    mail = parse_mail(raw)
    assert not mail.is_automatic
    assert mail.sender == Address(name="Ann Example", email="ann@example.com")
    assert len(mail.attachments) == 1


# -- From as it comes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("from_", "expected"),
    [
        ("alice@example.com (Alice Smith)", Address("Alice Smith", "alice@example.com")),
        ("=?utf-8?q?Smith,_John?= <j@example.com>", Address("Smith, John", "j@example.com")),
        (
            "=?utf-8?q?Smith=2C_John_=3Cceo=40evil=3E?= <j@example.com>",
            Address("Smith, John <ceo@evil>", "j@example.com"),
        ),
        (
            "=?iso-8859-1?q?M=FCller=3B_Hans?= <h@example.com>",
            Address("Müller; Hans", "h@example.com"),
        ),
        ("undisclosed-recipients:;, Bob <bob@example.com>", Address("Bob", "bob@example.com")),
        ("Alice <alice@example.com>, Bob <bob@example.com>", Address("Alice", "alice@example.com")),
    ],
)
def test_from_headers_as_mail_programs_write_them(from_: str, expected: Address) -> None:
    mail = parse_mail(mail_bytes(f"From: {from_}\nSubject: hi"))
    assert mail.sender == expected
    assert mail.sender_source == "from"


def test_the_null_sender_keeps_its_name_and_gets_no_address_from_elsewhere() -> None:
    mail = parse_mail(
        mail_bytes('From: "Jetmail System" <>\nSender: list-owner@example.org\nSubject: Mail Error')
    )
    assert mail.sender == Address("Jetmail System", "")
    assert mail.sender_source == "from"
    assert "From <> (the null sender)" in mail.flag_reasons
    assert mail.is_automatic


@pytest.mark.parametrize(
    ("headers", "expected", "source"),
    [
        (
            "From: =?utf-8?b?////?=\nSender: s@example.com\nReply-To: r@example.com",
            "s@example.com",
            "sender",
        ),
        (
            "From: ?????\nReply-To: r@example.com\nReturn-Path: <env@example.com>",
            "r@example.com",
            "reply-to",
        ),
        ("Return-Path: <env@example.com>", "env@example.com", "envelope"),
    ],
)
def test_a_missing_or_garbage_from_falls_back_and_says_where_from(
    headers: str, expected: str, source: str
) -> None:
    mail = parse_mail(mail_bytes(headers + "\nSubject: hi"))
    assert mail.sender is not None
    assert mail.sender.email == expected
    assert mail.sender_source == source


def test_no_sender_anywhere_is_said_too() -> None:
    mail = parse_mail(mail_bytes("Subject: hi"))
    assert mail.sender is None
    assert mail.sender_source == "none"


# -- headers in legacy charsets ------------------------------------------------


@pytest.mark.parametrize("codec", ["cp932", "euc_jp"])
def test_a_raw_japanese_subject_is_read_in_the_charsets_a_japanese_body_implies(codec: str) -> None:
    subject = "お問い合わせの件について"
    head = b"From: taro@example.jp\r\nSubject: " + subject.encode(codec)
    body = "本文です".encode("iso2022_jp")
    raw = head + b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + body + b"\r\n"
    mail = parse_mail(raw)
    assert mail.subject == subject
    assert mail.text.strip() == "本文です"


@pytest.mark.parametrize(
    ("text", "codec", "declared"),
    [
        ("請問訂單狀態", "big5", "big5"),
        ("请问我的订单", "gb18030", "gb2312"),
        ("주문 문의드립니다", "euc_kr", "ks_c_5601-1987"),
        ("Grüße aus Köln", "latin-1", "iso-8859-1"),
    ],
)
def test_a_raw_subject_decodes_cleanly_in_the_declared_charset(
    text: str, codec: str, declared: str
) -> None:
    raw = (
        b"From: a@example.com\r\nSubject: "
        + text.encode(codec)
        + f"\r\nContent-Type: text/plain; charset={declared}\r\n\r\n".encode()
        + text.encode(codec)
    )
    mail = parse_mail(raw)
    assert mail.subject == text
    assert "\ufffd" not in mail.subject + mail.text


# -- what is an attachment ------------------------------------------------------


def test_the_other_alternatives_are_body_and_a_calendar_invite_is_a_file() -> None:
    raw = mail_bytes(
        """
From: a@example.com
Subject: Meeting
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"
""",
        "--alt\nContent-Type: text/plain\n\nLet us meet on Monday.\n"
        "--alt\nContent-Type: text/enriched\n\n<bold>Let us meet</bold> on Monday.\n"
        "--alt\nContent-Type: text/html\n\n<p>Let us meet on Monday.</p>\n"
        "--alt\nContent-Type: text/html\n\n<p>Let us meet on <b>Monday</b>.</p>\n"
        "--alt\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n"
        "--alt--\n",
    )
    mail = parse_mail(raw)
    assert [a.content_type for a in mail.attachments] == ["text/calendar"]
    assert mail.text.strip() == "Let us meet on Monday."
    assert mail.html is not None
    assert mail.html.strip() == "<p>Let us meet on Monday.</p>"


def with_winmail(*blobs: bytes) -> bytes:
    """An Outlook mail: a line of text and each blob as a winmail.dat part."""
    parts = "".join(
        '--m\nContent-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(blob).decode()
        for blob in blobs
    )
    return mail_bytes(
        "From: Outlook User <o@example.com>\nSubject: Report\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="m"',
        "--m\nContent-Type: text/plain\n\nSee attached.\n" + parts + "--m--\n",
    )


def test_winmail_dat_is_unpacked_into_the_files_it_holds() -> None:
    one = (FIXTURES / "tnefparse" / "one-file.tnef").read_bytes()
    long_name = (FIXTURES / "tnefparse" / "long-filename.tnef").read_bytes()
    mail = parse_mail(with_winmail(one, long_name))
    assert [(a.filename, a.size) for a in mail.attachments] == [
        ("AUTHORS", 244),
        ("allproductsmar2000.dat", 279),
    ]
    assert "winmail.dat" not in [a.filename for a in mail.attachments]
    assert mail.text.strip() == "See attached."


def test_a_winmail_dat_that_is_no_tnef_stays_one_file() -> None:
    mail = parse_mail(with_winmail(b"not tnef at all"))
    assert [(a.filename, a.data) for a in mail.attachments] == [("winmail.dat", b"not tnef at all")]


def test_a_tnef_that_carries_only_the_html_body_gives_the_body() -> None:
    body_only = (FIXTURES / "tnefparse" / "body.tnef").read_bytes()
    raw = mail_bytes(
        "From: o@example.com\nSubject: Report\nMIME-Version: 1.0\n"
        'Content-Type: application/ms-tnef; name="winmail.dat"\nContent-Transfer-Encoding: base64',
        base64.encodebytes(body_only).decode(),
    )
    mail = parse_mail(raw)
    assert mail.attachments == ()
    assert mail.html is not None and mail.text.strip()


def test_a_forwarded_message_is_one_attachment() -> None:
    mail = parse_mail((FIXTURES / "cpython-email" / "msg_46.txt").read_bytes())
    assert [a.content_type for a in mail.attachments] == ["message/rfc822"]


# -- bodies as written --------------------------------------------------------


def test_format_flowed_is_joined_back_into_paragraphs() -> None:
    raw = mail_bytes(
        "From: a@example.com\nSubject: flowed\n"
        "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes",
        "This paragraph was wrapped by the mail pro \ngram at seventy-two char \nacters.\n"
        "\n> Quoted Japanese-style text broken in the mid \n> dle of a word.\n-- \nAnn\n",
    )
    mail = parse_mail(raw)
    assert mail.text.strip().splitlines() == [
        "This paragraph was wrapped by the mail program at seventy-two characters.",
        "",
        "> Quoted Japanese-style text broken in the middle of a word.",
        "-- ",
        "Ann",
    ]


def test_format_flowed_without_delsp_keeps_the_spaces_between_words() -> None:
    raw = mail_bytes(
        "From: a@example.com\nSubject: flowed\nContent-Type: text/plain; format=flowed",
        "one \ntwo \nthree\n\n> quoted \n> line\n>> deeper\n",
    )
    assert parse_mail(raw).text.strip().splitlines() == [
        "one two three",
        "",
        "> quoted line",
        ">> deeper",
    ]


def test_html_only_mail_keeps_link_targets_and_lists() -> None:
    raw = mail_bytes(
        "From: a@example.com\nSubject: html\nContent-Type: text/html; charset=utf-8",
        '<p>Please check <a href="https://shop.example/orders/42">my order</a>'
        ' or <a href="https://shop.example">https://shop.example</a>.</p>'
        "<ul><li>blue chair</li><li>red table</li></ul><ol><li>first</li><li>second</li></ol>"
        '<a href="#top">top</a> <a href="https://t.example/pixel"><img src="x.gif"></a>',
    )
    text = parse_mail(raw).text
    assert "my order <https://shop.example/orders/42>" in text
    assert "https://shop.example." in text
    assert "<https://shop.example>" not in text
    assert "* blue chair" in text and "* red table" in text
    assert "1. first" in text and "2. second" in text
    assert "pixel" not in text and "#top" not in text


def test_an_html_alternative_with_its_images_keeps_the_images_as_files() -> None:
    raw = mail_bytes(
        'From: a@example.com\nSubject: logo\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="alt"',
        "--alt\nContent-Type: text/plain\n\nOur logo\n"
        '--alt\nContent-Type: multipart/related; boundary="rel"\n\n'
        '--rel\nContent-Type: text/html\n\n<p>Our <img src="cid:logo@x"> logo</p>\n'
        "--rel\nContent-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n"
        "iVBORw0KGgo=\n--rel--\n--alt--\n",
    )
    mail = parse_mail(raw)
    assert [(a.content_type, a.content_id, a.inline) for a in mail.attachments] == [
        ("image/png", "logo@x", True)
    ]
    assert mail.text.strip() == "Our logo"

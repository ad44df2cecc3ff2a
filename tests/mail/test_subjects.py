"""Ticket titles, reply subjects and tokens over subjects real mail programs write."""

from __future__ import annotations

import pytest

from deskctl.mail.parse import parse_mail
from deskctl.mail.subjects import (
    TITLE_MAX,
    SubjectToken,
    check_tag,
    clean_title,
    find_tokens,
    format_token,
    reply_subject,
    ticket_title,
)
from deskctl.services.threading import TokenScheme
from mailfactory import make_mail

# (subject as it arrives, where it comes from, the title it gives)
TITLES = [
    ("RE: Invoice 4471", "Outlook, English", "Invoice 4471"),
    ("AW: Drucker im 2. OG druckt nicht", "Outlook, German", "Drucker im 2. OG druckt nicht"),
    ("AW: WG: Rechnung März", "Outlook, German, a forward answered", "Rechnung März"),
    ("Aw: Termin", "Thunderbird, German", "Termin"),
    ("SV: Faktura 2291", "Outlook, Swedish/Danish/Norwegian", "Faktura 2291"),
    ("Sv: Re: hej igen", "Apple Mail, Swedish", "hej igen"),
    ("VS: Lasku 88", "Outlook, Finnish", "Lasku 88"),
    ("Vs: Tilaus", "Finnish webmail", "Tilaus"),
    ("TR: Devis signé", "Outlook, French forward", "Devis signé"),
    ("RE : Devis signé", "French clients: a blank before the colon", "Devis signé"),
    ("Réf. : Commande 1234", "French Lotus Notes", "Commande 1234"),
    ("RES: Pedido 77", "Outlook, Portuguese (Brazil)", "Pedido 77"),
    ("R: Ordine in ritardo", "Outlook, Italian", "Ordine in ritardo"),
    ("Odp: Zamówienie", "Polish webmail", "Zamówienie"),
    ("Antw: Bestelling", "Outlook, Dutch", "Bestelling"),
    ("Doorst: Bestelling", "Outlook, Dutch forward", "Bestelling"),
    ("Wg: Termin", "Outlook, German forward", "Termin"),
    ("I: Ordine in ritardo", "Outlook, Italian forward", "Ordine in ritardo"),
    ("Fw: Meeting notes", "Outlook forward", "Meeting notes"),
    ("Fwd: Meeting notes", "Gmail forward", "Meeting notes"),
    ("回复：打印机坏了", "Foxmail, full-width colon", "打印机坏了"),
    ("答复: 发票", "Outlook, Chinese", "发票"),
    ("转发: 发票", "Outlook, Chinese forward", "发票"),
    ("Re[2]: Order 51", "The Bat!", "Order 51"),
    ("Re(2): Order 51", "counted in parentheses", "Order 51"),
    ("Re^2: Order 51", "counted with a caret", "Order 51"),
    ("Re: Re: Re: VPN drops", "a long conversation", "VPN drops"),
    ("RE: AW: SV: Fwd:Re: the chain", "a thread across four countries", "the chain"),
    ("[users] Re: crash on start", "Mailman tag before the marker", "crash on start"),
    ("Re: [dev-list] patch for #12", "a list mail answered", "patch for #12"),
    ("[EXTERNAL] RE: Invoice 4471", "a mail gateway's tag before a marker", "Invoice 4471"),
    ("Re: VPN drops every hour [#12]", "our reply answered", "VPN drops every hour"),
    ("Re: [ACME #12] VPN", "another tag's token at the front", "VPN"),
    ("Fwd: Re: VPN drops every hour [#12]", "our reply forwarded", "VPN drops every hour"),
    ("AW: Re: Printer [#1] [#2]", "the doubled token deskctl once sent", "Printer"),
    ("[#7]", "nothing but a token", ""),
    ("RE: ", "an empty answer", ""),
    ("Reply needed: contract", "a word that starts like a marker", "Reply needed: contract"),
    ("Fwd is broken in Outlook", "no colon, no marker", "Fwd is broken in Outlook"),
    ("Re-install fails", "no colon, no marker", "Re-install fails"),
    ("Ref: order 55", "a label, not a marker", "Ref: order 55"),
    ("[URGENT] server down", "a customer's own tag", "[URGENT] server down"),
    ("Automatic reply: Printer", "Outlook's out-of-office keeps its words", "Automatic reply: Printer"),
]  # fmt: skip


@pytest.mark.parametrize(("subject", "source", "title"), TITLES, ids=[t[1] for t in TITLES])
def test_a_new_ticket_is_titled_without_markers_tags_or_tokens(
    subject: str, source: str, title: str
) -> None:
    assert clean_title(subject) == title


def test_list_mail_loses_its_tag_and_other_mail_keeps_it() -> None:
    assert clean_title("[users] crash on start", list_mail=True) == "crash on start"
    assert clean_title("[users] crash on start") == "[users] crash on start"


def test_outlook_thread_topic_titles_a_ticket_whose_subject_is_empty() -> None:
    assert ticket_title("", "Drucker im 2. OG") == "Drucker im 2. OG"
    assert ticket_title("AW: ", "Drucker im 2. OG") == "Drucker im 2. OG"
    assert ticket_title("AW: Toner", "Drucker im 2. OG") == "Toner"
    assert ticket_title("", "") == ""


def test_the_thread_topic_header_is_read_decoded() -> None:
    raw = make_mail(
        subject="",
        headers={"Thread-Topic": "=?utf-8?q?Drucker_im_2=2E_OG_f=C3=A4llt_aus?="},
    )
    mail = parse_mail(raw)
    assert mail.thread_topic == "Drucker im 2. OG fällt aus"
    assert ticket_title(mail.subject, mail.thread_topic) == "Drucker im 2. OG fällt aus"


@pytest.mark.parametrize(
    ("title", "token", "subject"),
    [
        ("AW: Drucker", "[#3]", "Re: Drucker [#3]"),
        ("Re: [#1] Printer [#2]", "[#2]", "Re: Printer [#2]"),
        ("Re: Re: Printer", "[#2]", "Re: Printer [#2]"),
        ("回复：打印机", "[#8]", "Re: 打印机 [#8]"),
        ("Printer", "[ACME #9]", "Re: Printer [ACME #9]"),
        ("Fwd: Printer [#9]", "[ACME #9]", "Re: Printer [ACME #9]"),
        ("", "[#4]", "Re: [#4]"),
    ],
)
def test_our_reply_says_re_once_and_carries_one_token(title: str, token: str, subject: str) -> None:
    assert reply_subject(title, token) == subject


def test_tokens_are_found_with_and_without_a_tag() -> None:
    assert find_tokens("Re: [#1] x [ACME #2] [ acme#3 ] [rt.example.com #4]") == [
        SubjectToken(None, 1),
        SubjectToken("ACME", 2),
        SubjectToken("acme", 3),
        SubjectToken("rt.example.com", 4),
    ]
    assert find_tokens("issue #12 [12] [#] [# x]") == []
    assert format_token(12) == "[#12]" and format_token(12, "ACME") == "[ACME #12]"


@pytest.mark.parametrize("tag", ["#", "ACME", "acme-support", "rt.example.com", "Kundendienst2"])
def test_a_token_tag_is_a_word(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "AC ME", "A]", "#1", "-x", "x" * 33, "a[b"])
def test_a_token_tag_that_cannot_stand_in_a_token_is_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="token tag"):
        check_tag(tag)


PLAIN = TokenScheme()
ACME_SINCE_100 = TokenScheme("ACME", 100)  # tagged when ticket 100 was the newest
ACME_FROM_START = TokenScheme("ACME", 0)


@pytest.mark.parametrize(
    ("scheme", "subject", "numbers"),
    [
        (PLAIN, "Re: VPN [#12]", [12]),
        (PLAIN, "Re: [#1] Printer [#2]", [2, 1]),  # ours last: our reply appends it
        (PLAIN, "Re: VPN [ACME #12]", []),  # another desk's token is not ours
        (PLAIN, "Re: [#3] VPN [#3]", [3]),
        (ACME_SINCE_100, "Re: VPN [ACME #120]", [120]),
        (ACME_SINCE_100, "Re: VPN [acme #120]", [120]),
        (ACME_SINCE_100, "Re: VPN [#50]", [50]),  # sent before the tag: still ours
        (ACME_SINCE_100, "Re: VPN [#150]", []),  # a plain token we never sent
        (ACME_SINCE_100, "Re: VPN [BETA #5] [ACME #7]", [7]),
        (ACME_FROM_START, "Re: VPN [#5]", []),  # another desk's plain token
    ],
)
def test_which_tokens_are_ours_depends_on_the_installations_tag(
    scheme: TokenScheme, subject: str, numbers: list[int]
) -> None:
    assert scheme.numbers(subject) == numbers


@pytest.mark.parametrize(
    ("lead", "tail", "whole"),
    [  # each lead puts the 255th character inside a sequence, so the cut must step back
        (251, "e\u0301" * 200, "e\u0301"),  # é as e + combining acute: never a bare e
        (250, "\U0001f469\u200d\U0001f4bb" * 100, "\U0001f469\u200d\U0001f4bb"),  # technologist
        (252, "\U0001f469\u200d\U0001f4bb" * 100, "\U0001f469\u200d\U0001f4bb"),
        (251, "\u2764\ufe0f" * 200, "\u2764\ufe0f"),  # red heart with its emoji selector
    ],
)
def test_a_long_title_is_cut_between_whole_characters(lead: int, tail: str, whole: str) -> None:
    subject = "x" * lead + tail
    title = ticket_title(subject)
    assert len(title) <= TITLE_MAX and title.endswith("…")
    body = title.removesuffix("…")
    assert subject.startswith(body) and subject[len(body) :].startswith(whole), "cut between"


def test_a_title_of_the_longest_length_is_kept_as_it_is() -> None:
    assert ticket_title("y" * TITLE_MAX) == "y" * TITLE_MAX
    assert ticket_title("y" * (TITLE_MAX + 1)) == "y" * (TITLE_MAX - 1) + "…"

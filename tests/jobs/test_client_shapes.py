"""Customers write with Outlook, Gmail, Apple Mail and NeoMutt; every answer finds its ticket.

Each story is a round trip on the test bed: the customer's program submits to
the SMTP relay, which delivers into Dovecot; deskctl fetches over IMAP, an
agent replies through the relay into the customer's mailbox, and the
customer's program answers *that* mail the way it really does (its
Message-IDs, its subject markers, its quoting), back into the support inbox.
The mails are written out as the programs write them, not built with the
email package, which would fold and encode them its own way.
"""

from __future__ import annotations

import base64
import os
import quopri
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from jobs.conftest import AddImap, AddSmtp, new_user
from jobs.test_replies import customer_sends, inbox

from conftest import Run
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay

DATE = "Tue, 01 Dec 2026 09:02:11 +0100"


def crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def qp(text: str) -> str:
    return quopri.encodestring(text.replace("\n", "\r\n").encode("utf-8")).decode("ascii")


def outlook_id() -> str:
    """The Microsoft 365 shape, 100 characters long."""
    local = ("AM9PR07MB7130" + uuid.uuid4().hex.upper()).ljust(60, "A")
    ident = f"{local}@AM9PR07MB7130.eurprd07.prod.outlook.com"
    assert len(ident) == 100
    return ident


@dataclass(frozen=True)
class Shape:
    """One mail program: its first mail to support, and its answer to our reply."""

    name: str
    first: Callable[[str, str, str], bytes]  # (customer, support, message-id) -> raw
    answer: Callable[[str, str, EmailMessage], bytes]  # (customer, support, our reply) -> raw
    first_id: Callable[[], str]
    title: str


# -- Outlook (Microsoft 365, German): WG:/AW:, Thread-Index, no '>' quoting ----------

_OUTLOOK_TOPIC = "Drucker im 2. OG druckt nicht"


def outlook_first(customer: str, support: str, ident: str) -> bytes:
    text = "Hallo,\n\nder Drucker im 2. OG zieht kein Papier mehr ein.\n\nGrüße\nJana\n"
    return crlf(f"""
From: Jana Schmidt <{customer}>
To: "support@example.test" <{support}>
Subject: WG: {_OUTLOOK_TOPIC}
Thread-Topic: {_OUTLOOK_TOPIC}
Thread-Index: {base64.b64encode(os.urandom(22)).decode()}
Date: {DATE}
Message-ID:
 <{ident}>
Accept-Language: de-DE, en-US
Content-Language: de-DE
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
Content-Type: multipart/alternative;
\tboundary="_000_{ident[:20]}_"
MIME-Version: 1.0

--_000_{ident[:20]}_
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{qp(text)}
--_000_{ident[:20]}_
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{qp("<html><body><p>Hallo,</p><p>der Drucker im 2. OG zieht kein Papier mehr ein.</p></body></html>")}
--_000_{ident[:20]}_--
""")


def outlook_answer(customer: str, support: str, ours: EmailMessage, *, refs: bool = True) -> bytes:
    ident = outlook_id()
    our_id = str(ours["Message-ID"]).strip()
    text = (
        "Danke, jetzt druckt er wieder.\n\nGrüße\nJana\n\n"
        "________________________________\n"
        f"Von: Example Support <{support}>\n"
        "Gesendet: Dienstag, 1. Dezember 2026 09:14\n"
        f"An: Jana Schmidt <{customer}>\n"
        f"Betreff: {ours['Subject']}\n\n"
        f"{ours.get_body(('plain',)).get_content()}"  # type: ignore[union-attr]
    )
    threading = f"In-Reply-To: {our_id}\nReferences: {our_id}\n" if refs else ""
    return crlf(f"""
From: Jana Schmidt <{customer}>
To: Example Support <{support}>
Subject: AW: {ours["Subject"]}
Thread-Topic: {_OUTLOOK_TOPIC}
Thread-Index: {base64.b64encode(os.urandom(27)).decode()}
Date: {DATE}
Message-ID:
 <{ident}>
{threading}Content-Language: de-DE
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(text)}""")


# -- Gmail: Fwd:, multipart/alternative, quote divs -----------------------------


def gmail_id() -> str:
    return f"CAJ{uuid.uuid4().hex}Xq+{uuid.uuid4().hex[:12]}=w@mail.gmail.com"


def gmail_first(customer: str, support: str, ident: str) -> bytes:
    return crlf(f"""
MIME-Version: 1.0
Date: {DATE}
Message-ID: <{ident}>
Subject: Fwd: VPN drops every hour
From: Casey Jones <{customer}>
To: {support}
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"

--000000000000a1b2c3d4e5f60718
Content-Type: text/plain; charset="UTF-8"

Our whole office loses the VPN every hour on the hour.

--000000000000a1b2c3d4e5f60718
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Our whole office loses the VPN every hour on the hour.</div>

--000000000000a1b2c3d4e5f60718--
""")


def gmail_answer(customer: str, support: str, ours: EmailMessage) -> bytes:
    our_id = str(ours["Message-ID"]).strip()
    quoted = ours.get_body(("plain",)).get_content().strip()  # type: ignore[union-attr]
    return crlf(f"""
MIME-Version: 1.0
References: {ours.get("References", "")} {our_id}
In-Reply-To: {our_id}
From: Casey Jones <{customer}>
Date: {DATE}
Message-ID: <{gmail_id()}>
Subject: {ours["Subject"]}
To: Example Support <{support}>
Content-Type: multipart/alternative; boundary="000000000000f1e2d3c4b5a69788"

--000000000000f1e2d3c4b5a69788
Content-Type: text/plain; charset="UTF-8"

Updated the client, no drops since. Thanks!

On Tue, Dec 1, 2026 at 9:14 AM Example Support <{support}> wrote:

> {quoted.splitlines()[0]}

--000000000000f1e2d3c4b5a69788
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Updated the client, no drops since. Thanks!</div><br><div class="gmail_quote\
"><div dir="ltr" class="gmail_attr">On Tue, Dec 1, 2026 at 9:14 AM Example Support &lt;{support}\
&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left\
:1px solid rgb(204,204,204);padding-left:1ex">{quoted.splitlines()[0]}</blockquote></div>

--000000000000f1e2d3c4b5a69788--
""")


# -- Apple Mail: format=flowed, quoted-printable, Mime-Version comment ------------


def apple_id() -> str:
    return f"{str(uuid.uuid4()).upper()}@example.org"


_APPLE_HEADERS = (
    "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))\nX-Mailer: Apple Mail (2.3774.600.62)"
)


def apple_first(customer: str, support: str, ident: str) -> bytes:
    body = (
        "My mailbox says it is full, but I deleted everything older than a year \n"
        "and it still refuses new mail.\n\nKim\n"
    )
    return crlf(f"""
From: Kim Lee <{customer}>
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=no
Content-Transfer-Encoding: quoted-printable
{_APPLE_HEADERS}
Subject: Mailbox full
Message-Id: <{ident}>
Date: {DATE}
To: {support}

{qp(body)}""")


def apple_answer(customer: str, support: str, ours: EmailMessage) -> bytes:
    our_id = str(ours["Message-ID"]).strip()
    quoted = ours.get_body(("plain",)).get_content().strip()  # type: ignore[union-attr]
    body = (
        "That was it: the archive rule had stopped. Everything arrives \n"
        "again now.\n\nKim\n\n"
        f"> On 1 Dec 2026, at 09:14, Example Support <{support}> wrote:\n>\n"
        + "".join(f"> {line}\n" for line in quoted.splitlines()[:3])
    )
    return crlf(f"""
From: Kim Lee <{customer}>
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=no
Content-Transfer-Encoding: quoted-printable
{_APPLE_HEADERS}
Subject: {ours["Subject"]}
Message-Id: <{apple_id()}>
In-Reply-To: {our_id}
References: {ours.get("References", "")} {our_id}
Date: {DATE}
To: Example Support <{support}>

{qp(body)}""")


# -- NeoMutt: a list mail answered with Cc to support, '>' quoting, References ---


def mutt_id() -> str:
    return f"20261201090211.{uuid.uuid4().hex[:16]}@workstation.example.org"


def mutt_first(customer: str, support: str, ident: str) -> bytes:
    return crlf(f"""
Date: {DATE}
From: Robin Roe <{customer}>
To: backup-users@lists.example.org
Cc: {support}
Subject: Re: [backup-users] Backup job failed
Message-ID: <{ident}>
References: <20261130170000.deadbeef@lists.example.org>
In-Reply-To: <20261130170000.deadbeef@lists.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline
User-Agent: NeoMutt/20231103

On Mon, Nov 30, 2026 at 05:00:00PM +0000, Backup Bot wrote:
> job nightly-db failed: exit 3

Support: this is our job too, it failed again last night.
""")


def mutt_answer(customer: str, support: str, ours: EmailMessage) -> bytes:
    our_id = str(ours["Message-ID"]).strip()
    quoted = ours.get_body(("plain",)).get_content().strip()  # type: ignore[union-attr]
    return crlf(f"""
Date: {DATE}
From: Robin Roe <{customer}>
To: Example Support <{support}>
Subject: {ours["Subject"]}
Message-ID: <{mutt_id()}>
References: {ours.get("References", "")}
 {our_id}
In-Reply-To: {our_id}
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline
User-Agent: NeoMutt/20231103

On Tue, Dec 01, 2026 at 09:14:00AM +0100, Example Support wrote:
{"".join(f"> {line}".rstrip() + chr(10) for line in quoted.splitlines()[:3])}
Ran it by hand, it works. Thanks.
""")


SHAPES = [
    Shape("outlook", outlook_first, outlook_answer, outlook_id, _OUTLOOK_TOPIC),
    Shape("gmail", gmail_first, gmail_answer, gmail_id, "VPN drops every hour"),
    Shape("apple-mail", apple_first, apple_answer, apple_id, "Mailbox full"),
    Shape("neomutt", mutt_first, mutt_answer, mutt_id, "Backup job failed"),
]


@dataclass
class HelpDesk:
    """The support mailbox on Dovecot, read over IMAP, answering through the relay."""

    desk: Run
    dovecot: Dovecot
    relay: SmtpRelay
    certs: CertBundle
    support: tuple[str, str]

    def customer(self, name: str) -> tuple[str, str]:
        return new_user(self.dovecot, name)

    def receive(self, sender: tuple[str, str], raw: bytes) -> dict[str, Any]:
        """``sender``'s program submits ``raw`` to support; deskctl fetches it."""
        customer_sends(self.relay, self.certs, sender, raw, self.support[0])
        result = self.desk("--json", "fetch")
        assert result.exit_code == 0, result.stdout + result.stderr
        (channel,) = result.json()["channels"]
        return channel  # type: ignore[no-any-return]

    def tickets(self) -> dict[int, dict[str, Any]]:
        return {t["number"]: t for t in self.desk("--json", "ticket", "list").json()["tickets"]}

    def show(self, number: int) -> dict[str, Any]:
        return self.desk("--json", "ticket", "show", str(number)).json()  # type: ignore[no-any-return]

    def reply(self, customer: tuple[str, str], number: int) -> EmailMessage:
        """The agent answers; returns our reply as it reached the customer's mailbox."""
        self.desk("ticket", "show", str(number))
        body = f"Please try again now ({uuid.uuid4().hex[:6]})."
        queued = self.desk("--json", "ticket", "reply", str(number), "--body", body)
        assert queued.exit_code == 0, queued.stderr
        sent = self.desk("--json", "send-outbox")
        assert sent.json()["sent"] == 1, sent.stdout + sent.stderr
        (ours,) = [m for m in inbox(self.dovecot, customer) if body in m.as_string()]
        return ours  # type: ignore[no-any-return]


@pytest.fixture
def helpdesk(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    add_imap: AddImap,
    add_smtp: AddSmtp,
) -> HelpDesk:
    support = new_user(dovecot, "support")
    add_imap("support", support)
    add_smtp("support-out", support)
    assert desk("channel", "map", "support", "--reply-via", "support-out").exit_code == 0
    return HelpDesk(desk, dovecot, smtp_relay, certs, support)


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_the_customers_answer_joins_its_ticket_whatever_program_they_use(
    shape: Shape, helpdesk: HelpDesk
) -> None:
    support, customer = helpdesk.support[0], helpdesk.customer(shape.name)
    assert (
        helpdesk.receive(customer, shape.first(customer[0], support, shape.first_id()))[
            "tickets_created"
        ]
        == 1
    )
    ((number, ticket),) = helpdesk.tickets().items()
    assert ticket["title"] == shape.title

    ours = helpdesk.reply(customer, number)
    assert ours["Subject"] == f"Re: {shape.title} [#{number}]"

    fetched = helpdesk.receive(customer, shape.answer(customer[0], support, ours))
    assert fetched["messages_added"] == 1 and fetched["tickets_created"] == 0, fetched
    shown = helpdesk.show(number)
    assert [m["direction"] for m in shown["messages"]] == ["in", "out", "in"]
    assert shown["status"] == "open"
    assert list(helpdesk.tickets()) == [number]


def test_an_outlook_answer_without_references_threads_by_the_token_behind_aw(
    helpdesk: HelpDesk,
) -> None:
    """Mail that passed through Exchange as MAPI keeps only Thread-Index; the token must do."""
    support, customer = helpdesk.support[0], helpdesk.customer("outlook")
    helpdesk.receive(customer, outlook_first(customer[0], support, outlook_id()))
    ((number, _),) = helpdesk.tickets().items()
    ours = helpdesk.reply(customer, number)
    answer = outlook_answer(customer[0], support, ours, refs=False)
    assert b"In-Reply-To" not in answer and b"References" not in answer
    assert b"Subject: AW: Re: " in answer
    assert helpdesk.receive(customer, answer)["messages_added"] == 1
    assert len(helpdesk.show(number)["messages"]) == 3
    assert list(helpdesk.tickets()) == [number]


def test_a_colleague_writing_in_on_a_forwarded_reply_gets_a_ticket_of_their_own(
    helpdesk: HelpDesk,
) -> None:
    """README: a token threads only for the ticket's participants; Bob is not one.

    Ada forwards our reply to Bob (Gmail, inline, no References to our mail);
    Bob answers her forward and copies support. His mail carries Ada's ticket's
    token, so it opens a ticket of its own, titled cleanly; our answer to Bob
    carries that ticket's token alone, and Bob's answer to it joins it.
    """
    support = helpdesk.support[0]
    ada, bob = helpdesk.customer("ada"), helpdesk.customer("bob")
    helpdesk.receive(ada, gmail_first(ada[0], support, gmail_id()))
    ((first, _),) = helpdesk.tickets().items()
    ours = helpdesk.reply(ada, first)

    forward_id = gmail_id()
    by_bob = crlf(f"""
MIME-Version: 1.0
References: <{forward_id}>
In-Reply-To: <{forward_id}>
From: Bob Brown <{bob[0]}>
Date: {DATE}
Message-ID: <{gmail_id()}>
Subject: Re: Fwd: {ours["Subject"]}
To: Ada <{ada[0]}>
Cc: {support}
Content-Type: text/plain; charset="UTF-8"

I tried that on my laptop as well, still drops. Can you look at mine too?

On Tue, Dec 1, 2026 at 9:20 AM Ada <{ada[0]}> wrote:
> ---------- Forwarded message ---------
> From: Example Support <{support}>
> Subject: {ours["Subject"]}
>
> Please try again now.
""")
    fetched = helpdesk.receive(bob, by_bob)
    assert fetched["tickets_created"] == 1 and fetched["messages_added"] == 0
    tickets = helpdesk.tickets()
    (second,) = set(tickets) - {first}
    assert tickets[second]["title"] == "VPN drops every hour"
    assert tickets[second]["customer"]["email"] == bob[0]
    assert tickets[first]["messages"] == 2

    helpdesk.relay.clear()
    to_bob = helpdesk.reply(bob, second)
    assert to_bob["Subject"] == f"Re: VPN drops every hour [#{second}]"
    relayed = helpdesk.relay.wait_for(lambda m: bob[0] in m.rcpt_tos)
    assert relayed.message()["Subject"].count("[#") == 1

    assert helpdesk.receive(bob, gmail_answer(bob[0], support, to_bob))["messages_added"] == 1
    assert helpdesk.show(second)["messages"][-1]["from"]["email"] == bob[0]
    assert helpdesk.show(first)["messages"][-1]["direction"] == "out"

"""Realistic support mail for the benchmarks, deterministic for a given seed.

The mix (per message, drawn from one seeded RNG):

* body: 45 % text/plain only, 15 % HTML only, 40 % multipart/alternative
  (a few of the HTML parts carry an inline logo in multipart/related, the
  same bytes every time, as mail signatures do);
* about 30 % of the messages after the first few are customer replies to an
  earlier message of the same customer (``Re:`` subject, In-Reply-To and
  References, the quoted earlier text below the answer);
* a third of the messages carry 1-3 attachments (PDF-, PNG-, JPEG- or ZIP-like
  random bytes behind the right magic number); each attachment's size is drawn
  uniformly (or log-uniformly) from 1 KiB up to ``max_attachment`` bytes;
* a pool of a few hundred customers, some with non-ASCII names and subjects
  (encoded words), a dozen topics of support sentences.

Message-IDs carry a per-run nonce, so running twice against the same database
does not turn the second run into duplicates; everything else depends only on
the seed.
"""

from __future__ import annotations

import math
import random
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

KIB = 1024
MIB = 1024 * 1024

_FIRST = [
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
    "José", "Zoë", "Łukasz", "Søren", "Chloé", "Jürgen", "Ayşe", "Mei", "Ravi", "Olúwa",
    "Noah", "Emma", "Liam", "Olivia", "Mateo", "Sofia", "Yuki", "Hana", "Omar", "Ines",
]  # fmt: skip
_LAST = [
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie",
    "Müller", "García", "Nowak", "Kierkegaard", "Dubois", "Schäfer", "Yılmaz", "Chen",
    "Patel", "Adeyemi", "Smith", "Jones", "Rossi", "Tanaka", "Kim", "Haddad", "Costa",
]  # fmt: skip
_DOMAINS = [
    "example.org", "example.com", "example.net", "mail.example.org", "corp.example.com",
    "uni.example.edu", "shop.example.de", "example.co.uk",
]  # fmt: skip

_TOPICS: dict[str, list[str]] = {
    "Cannot log in to the portal": [
        "Since this morning I cannot log in to the customer portal.",
        "The page says my password is wrong, but I reset it twice already.",
        "I also tried another browser and a private window, same result.",
        "My colleague on the same account has no problem at all.",
        "Could you check whether my account has been locked?",
    ],
    "Invoice {n} shows the wrong amount": [
        "The invoice we received this month is higher than our contract says.",
        "We are on the annual plan with 25 seats, but we were billed for 40.",
        "Please send a corrected invoice so our accounts team can pay it.",
        "I attached the contract page with the agreed price for reference.",
        "Our purchase order number has to appear on the invoice as well.",
    ],
    "Order {n} has not arrived": [
        "We ordered three units two weeks ago and nothing has arrived yet.",
        "The tracking link has shown 'label created' for ten days now.",
        "Our office is closed on Fridays, maybe the courier tried then?",
        "If the parcel is lost, please send a replacement as soon as possible.",
        "We need the devices for a training session next Tuesday.",
    ],
    "Export to CSV fails": [
        "When I export the report to CSV the download stops at about 80 percent.",
        "Smaller reports work, only the quarterly one fails every time.",
        "There is no error message, the file is simply cut off.",
        "I attached a screenshot of the browser's download window.",
        "Is there a size limit for exports that I am not aware of?",
    ],
    "Printer on floor {n} is on fire again": [
        "The printer on our floor is making a grinding noise and smells burnt.",
        "We switched it off at the wall and put a sign on it.",
        "This is the third time this quarter; the last repair did not hold.",
        "Please send a technician, the whole floor shares this printer.",
        "Should we order a replacement instead of another repair?",
    ],
    "Question about the API rate limit": [
        "Our integration gets HTTP 429 responses during the nightly sync.",
        "The documentation says 100 requests per minute, we send about 60.",
        "Is the limit per API key or per account?",
        "We could spread the sync over a longer window if that helps.",
        "A higher limit for our account would of course be easiest.",
    ],
    "Änderung der Lieferadresse": [
        "Bitte ändern Sie die Lieferadresse für unsere nächste Bestellung.",
        "Wir sind umgezogen, die neue Adresse steht unten in der Signatur.",
        "Die Rechnungsadresse bleibt unverändert.",
        "Vielen Dank für Ihre schnelle Hilfe!",
    ],
    "Demande de remboursement": [
        "J'ai été débité deux fois pour la même commande.",
        "Pourriez-vous rembourser le deuxième paiement, s'il vous plaît ?",
        "Vous trouverez le relevé bancaire en pièce jointe.",
        "Merci d'avance pour votre aide.",
    ],
    "App crashes on start after update {n}": [
        "After yesterday's update the mobile app closes right after the splash screen.",
        "I reinstalled it and restarted the phone, nothing changed.",
        "The phone runs the latest system version with plenty of free space.",
        "I attached the crash log the app offered to send.",
        "Our field staff depend on the app, so this is urgent for us.",
    ],
    "Request for a quote: 50 licences": [
        "We would like a quote for 50 licences of the professional edition.",
        "Please include the price for two years of support.",
        "Is there a discount for educational institutions?",
        "We would need the quote by the end of the month for our budget.",
    ],
}

_OPENINGS = ["Hello,", "Hi there,", "Dear support team,", "Good morning,", "Hallo,", "Bonjour,"]
_CLOSINGS = ["Best regards,", "Thanks,", "Kind regards,", "Cheers,", "Many thanks,"]
_FILLER = [
    "Let me know if you need any more details from our side.",
    "Our customer number is in the signature below.",
    "This is blocking several people in our team at the moment.",
    "I already searched the help centre but found nothing that matches.",
    "Thank you for looking into this.",
    "We have been happy customers for years, so this is unusual.",
    "Please reply to this address, I am away from the phone today.",
]
_REPLIES = [
    "Thanks for the quick answer, but the problem is still there.",
    "I tried what you suggested and it works now, thank you!",
    "Any news on this? We are still waiting.",
    "Here is the additional information you asked for.",
    "Sorry, I forgot the attachment in my last mail.",
    "Could you give me an estimate when this will be fixed?",
]

_MAGIC: dict[str, tuple[str, str, bytes, bytes]] = {
    # kind: (content type, extension, header, trailer)
    "pdf": ("application/pdf", "pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", b"\n%%EOF\n"),
    "png": ("image/png", "png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"IEND\xaeB`\x82"),
    "jpeg": ("image/jpeg", "jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd9"),
    "zip": ("application/zip", "zip", b"PK\x03\x04\x14\x00\x00\x00", b"PK\x05\x06"),
}
_ATTACHMENT_NAMES = {
    "pdf": ["invoice", "contract", "statement", "quote", "purchase-order", "Rechnung"],
    "png": ["screenshot", "error", "Bildschirmfoto", "capture d'écran", "dashboard"],
    "jpeg": ["photo", "IMG_2041", "printer", "parcel", "damage"],
    "zip": ["logs", "crash-report", "export", "diagnostics"],
}


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate; ``size_dist`` is ``uniform`` or ``loguniform``."""

    n: int = 2000
    seed: int = 2026
    max_attachment: int = 2 * MIB
    size_dist: str = "uniform"
    to: str = "support@example.test"
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:10])


@dataclass(frozen=True)
class _Customer:
    name: str
    email: str


@dataclass
class _Sent:
    message_id: str
    subject: str
    customer: _Customer
    references: list[str]
    text: str


@dataclass
class CorpusStats:
    """Counts of what :func:`generate` produced, for the benchmark tables."""

    messages: int = 0
    bytes: int = 0
    replies: int = 0
    html_only: int = 0
    alternative: int = 0
    with_attachments: int = 0
    attachments: int = 0
    attachment_bytes: int = 0

    def summary(self) -> str:
        return (
            f"{self.messages} messages, {self.bytes / MIB:.1f} MiB: "
            f"{self.replies} replies, {self.html_only} HTML-only, "
            f"{self.alternative} multipart/alternative, {self.with_attachments} with "
            f"{self.attachments} attachments ({self.attachment_bytes / MIB:.1f} MiB decoded)"
        )


def _customers(rng: random.Random, count: int) -> list[_Customer]:
    found: dict[str, _Customer] = {}
    while len(found) < count:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{_ascii(first)}.{_ascii(last)}{rng.randrange(100)}".lower()
        email = f"{local}@{rng.choice(_DOMAINS)}"
        found.setdefault(email, _Customer(f"{first} {last}", email))
    return list(found.values())


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum())


def _paragraphs(rng: random.Random, topic: str) -> list[str]:
    pool = _TOPICS[topic]
    paragraphs = []
    for _ in range(rng.randint(2, 5)):
        sentences = rng.sample(pool, k=min(len(pool), rng.randint(2, 4)))
        sentences += rng.sample(_FILLER, k=rng.randint(0, 2))
        paragraphs.append(" ".join(sentences))
    return paragraphs


def _html(paragraphs: list[str], rng: random.Random) -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    if rng.random() < 0.3:
        rows = "".join(
            f"<tr><td>Item {i}</td><td>{rng.randint(1, 99)}</td>"
            f"<td>{rng.randint(5, 500)}.00</td></tr>"
            for i in range(1, rng.randint(3, 8))
        )
        body += (
            f'\n<table border="1"><tr><th>Item</th><th>Qty</th><th>Price</th></tr>{rows}</table>'
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><style>p{margin:0 0 1em}</style>'
        f'</head>\n<body><div style="font-family:Arial,sans-serif;font-size:14px">\n{body}\n'
        "</div></body></html>\n"
    )


def _attachment_size(rng: random.Random, spec: CorpusSpec) -> int:
    low, high = KIB, max(KIB + 1, spec.max_attachment)
    if spec.size_dist == "loguniform":
        return int(math.exp(rng.uniform(math.log(low), math.log(high))))
    return rng.randint(low, high)


def _attachment(rng: random.Random, spec: CorpusSpec) -> tuple[str, str, bytes]:
    kind = rng.choice(["pdf", "pdf", "png", "png", "jpeg", "zip"])
    ctype, ext, head, tail = _MAGIC[kind]
    size = _attachment_size(rng, spec)
    data = head + rng.randbytes(max(0, size - len(head) - len(tail))) + tail
    return f"{rng.choice(_ATTACHMENT_NAMES[kind])}-{rng.randrange(1000)}.{ext}", ctype, data


def generate(spec: CorpusSpec, stats: CorpusStats | None = None) -> Iterator[bytes]:
    """Yield ``spec.n`` RFC 5322 messages (LF line ends), oldest first."""
    rng = random.Random(spec.seed)
    customers = _customers(rng, max(10, min(400, spec.n // 5)))
    logo = _MAGIC["png"][2] + random.Random(7).randbytes(6 * KIB) + _MAGIC["png"][3]
    sent: list[_Sent] = []
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    stats = stats if stats is not None else CorpusStats()
    for i in range(spec.n):
        msg = EmailMessage()
        parent = rng.choice(sent[-300:]) if i >= 5 and rng.random() < 0.3 else None
        if parent is not None:
            customer = parent.customer
            subject = (
                parent.subject if parent.subject.startswith("Re: ") else f"Re: {parent.subject}"
            )
            quoted = "\n".join(f"> {line}" for line in parent.text.splitlines()[:20])
            paragraphs = [rng.choice(_REPLIES), *rng.sample(_FILLER, k=rng.randint(1, 3))]
            references = [*parent.references, parent.message_id][-10:]
            stats.replies += 1
        else:
            customer = rng.choice(customers)
            topic = rng.choice(list(_TOPICS))
            subject = topic.format(n=rng.randint(1000, 99999))
            quoted = ""
            paragraphs = _paragraphs(rng, topic)
            references = []
        greeting, closing = rng.choice(_OPENINGS), rng.choice(_CLOSINGS)
        signature = f"{customer.name}\nCustomer no. {rng.randint(10000, 99999)}"
        text = "\n\n".join([greeting, *paragraphs, f"{closing}\n{signature}"]) + "\n"
        if quoted:
            text += f"\nOn an earlier day, {customer.name} wrote:\n{quoted}\n"
        message_id = f"<{spec.nonce}.{i}.{rng.randrange(1 << 30):x}@{customer.email.split('@')[1]}>"

        msg["From"] = f"{customer.name} <{customer.email}>"
        msg["To"] = spec.to
        msg["Subject"] = subject
        date = start + timedelta(minutes=7 * i + rng.randint(0, 6))
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = message_id
        if parent is not None:
            msg["In-Reply-To"] = parent.message_id
            msg["References"] = " ".join(references)
        if rng.random() < 0.5:
            msg["User-Agent"] = rng.choice(["Thunderbird/128.4", "Outlook 16.0", "Apple Mail"])

        kind = rng.random()
        html_paragraphs = [*paragraphs, f"{closing}<br>{signature.replace(chr(10), '<br>')}"]
        if kind < 0.45:
            msg.set_content(text)
        elif kind < 0.60:
            msg.set_content(_html([greeting, *html_paragraphs], rng), subtype="html")
            stats.html_only += 1
        else:
            msg.set_content(text)
            msg.add_alternative(_html([greeting, *html_paragraphs], rng), subtype="html")
            stats.alternative += 1
            if rng.random() < 0.15:
                html_part = msg.get_body(preferencelist=("html",))
                if isinstance(html_part, MIMEPart):
                    html_part.add_related(logo, "image", "png", cid="<logo@example.org>")

        if rng.random() < 1 / 3:
            stats.with_attachments += 1
            for _ in range(rng.choices([1, 2, 3], weights=[70, 20, 10])[0]):
                filename, ctype, data = _attachment(rng, spec)
                maintype, subtype = ctype.split("/")
                msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
                stats.attachments += 1
                stats.attachment_bytes += len(data)

        raw = msg.as_bytes()
        stats.messages += 1
        stats.bytes += len(raw)
        sent.append(_Sent(message_id, subject, customer, references, text))
        yield raw


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="print a summary of the benchmark corpus")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-attachment-kib", type=int, default=2048)
    args = parser.parse_args()
    totals = CorpusStats()
    for _ in generate(CorpusSpec(n=args.n, max_attachment=args.max_attachment_kib * KIB), totals):
        pass
    print(totals.summary())

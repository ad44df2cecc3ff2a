"""Bounces in the formats of every mail system, read by GNU Mailman's detectors.

The header rules in ``classify.py`` know RFC 3464 reports and the usual
daemon senders. Many mail systems send neither: Exchange, Domino, qmail,
Yahoo, the Japanese carriers and a host of virus scanners write a bounce as
plain text in a format of their own. flufl.bounce has a detector for each of
them and tells the recipients whose delivery failed (or is delayed), which
also names the outbox item a bounce is about.

Its heuristics read the body, so they run only when something about the mail
already smells of a mail system (see :func:`worth_scanning`): a customer's
mail that quotes a bounce, or has many links, is not scanned and so cannot
be taken for one. flufl.bounce is imported on the first such mail, never on
the read path.
"""

from __future__ import annotations

import logging
import re
from email.message import Message

from deskctl.mail.classify import BounceScan
from deskctl.mail.subjects import is_forward, is_reply

# Words mail systems put in a bounce's sender, and in its subject, in the
# languages bounces come in. Broad on purpose: a match only lets the
# detectors look (about 30 ms a mail), it decides nothing.
_SENDER_HINT = re.compile(
    r"daemon|postmaster|mailer|mdaemon|admin|deliver|mail\W?system|smtp|mail\W?service|bounce"
    r"|notif|gateway|antivirus|virus|scanner|ndr|dsn",
    re.IGNORECASE,
)
_SUBJECT_HINT = re.compile(
    r"deliver|returned|failure|failed|fehlgeschlagen|unzustellbar|non[\s-]?remis|bounce"
    r"|delay|rejected|nicht\s+zugestellt|不達|配信|전송|실패|반송|退信|失败|失敗",
    re.IGNORECASE,
)


# A person forwarding: "Fwd: Undelivered Mail" is a customer asking about a
# bounce, with the bounce attached for the detectors to find. A reply is a
# person too, unless a gateway tacked its verdict on the end, as Lotus Notes
# does ("RE: your question : non remis (delivery failed)"). Which markers say
# reply or forward, in which languages, is deskctl/mail/subjects.py's one list.
_VERDICT_SUFFIX = re.compile(
    r"(?:non\s+remis|undeliverable|delivery\s+failed|nicht\s+zustellbar)\W*$", re.IGNORECASE
)


def worth_scanning(subject: str, sender_email: str, sender_name: str, null_sender: bool) -> bool:
    """True when a mail system may have written this mail; cheap, header-only."""
    if null_sender or not sender_email:
        return True
    local = sender_email.partition("@")[0]
    if any(_SENDER_HINT.search(text) for text in (local, sender_name) if text):
        return True
    if is_forward(subject):
        return False
    if is_reply(subject):
        return bool(_VERDICT_SUFFIX.search(subject))
    return bool(_SUBJECT_HINT.search(subject))


def _addresses(found: object) -> tuple[str, ...]:
    items = found if isinstance(found, set | frozenset | list | tuple) else ()
    out = {
        (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)).lower()
        for item in items
    }
    return tuple(sorted(address for address in out if "@" in address))


def scan_bounce(msg: Message) -> BounceScan:
    """The failed and delayed recipients flufl.bounce finds; empty when it finds none."""
    from flufl.bounce import all_failures

    # A detector that trips over odd mail logs its traceback before raising;
    # that is flufl.bounce's business, not something to show our user.
    logging.getLogger("flufl.bounce").disabled = True
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # heuristics over hostile bytes may raise anything
        return BounceScan()
    return BounceScan(permanent=_addresses(permanent), temporary=_addresses(temporary))

"""A bounced reply tells the agent what the remote server said, from real bounces."""

from __future__ import annotations

import pytest

from corpus_manifest import CORPUS_DIR
from deskctl.mail.bounces import bounce_diagnostic
from deskctl.mail.parse import parse_mail

BOUNCES = CORPUS_DIR / "autoreplies-bounces"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        # RFC 3464 reports: per recipient, its address and Diagnostic-Code.
        (
            "sisimai__rfc3464-01.eml",
            "userunknown@bouncehammer.jp: 550 5.1.1 <userunknown@bouncehammer.jp>... User Unknown",
        ),
        (
            "sisimai__rhost-outlook-01.eml",
            "kijitora@example.jp: 550 5.2.2 <kijitora@example.jp>... Mailbox Full",
        ),
        (
            "zammad__mail018.eml",
            "m.smith@example.com: 550 5.7.1 Unable to relay for m.smith@example.com",
        ),
        # Gmail folds one diagnostic over several lines: it comes back as one.
        (
            "mikel__multipart_report_emails__multi_address_bounce1.eml",
            "bbbbvhvbbvkjbhfbvbvjhb@gmail.com: 550-5.1.1 The email account that you tried to "
            "reach does not exist.",
        ),
        # Plain-text bounces (Exim, qmail): the quoted SMTP replies, every recipient.
        (
            "sisimai__lhost-exim-02.eml",
            "550 5.1.1 <kijitora@example.jp>... User Unknown; "
            "550 5.2.1 <sabatora@example.jp>... User Unknown",
        ),
        (
            "sisimai__lhost-qmail-02.eml",
            "550 5.1.1 <userunknown@example.jp>... User Unknown; "
            "550 5.2.1 <filtered@example.jp>... User Unknown",
        ),
    ],
)
def test_the_remote_servers_words_are_found(name: str, said: str) -> None:
    mail = parse_mail((BOUNCES / name).read_bytes())
    assert "bounce" in mail.flags
    found = bounce_diagnostic(mail)
    assert found is not None and found.startswith(said), found


def test_a_report_without_a_failure_says_nothing_and_text_is_bounded() -> None:
    mail = parse_mail((BOUNCES / "sisimai__rfc3834-01.eml").read_bytes())
    assert bounce_diagnostic(mail) is None
    gmail = parse_mail(
        (BOUNCES / "mikel__multipart_report_emails__multi_address_bounce1.eml").read_bytes()
    )
    assert len(bounce_diagnostic(gmail) or "") <= 500

"""Promise 5: deskctl recognises machine-written mail and never answers it."""

from __future__ import annotations

import pytest

from deskctl.mail.classify import MailSignals, classify


def signals(headers: dict[str, str] | None = None, **kwargs: str | None) -> MailSignals:
    values = {name.lower(): [value] for name, value in (headers or {}).items()}
    return MailSignals(headers=values, **kwargs)  # type: ignore[arg-type]


def test_a_customers_ordinary_mail_gets_no_flags() -> None:
    verdict = classify(
        signals({"Auto-Submitted": "no"}, subject="Printer broken", sender_email="ann@example.com")
    )
    assert verdict.flags == ()
    assert verdict.reasons == ()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"Auto-Submitted": "Auto-Generated"}, "Auto-Submitted: auto-generated"),
        ({"X-Autoreply": "yes"}, "X-Autoreply present"),
        ({"X-Autorespond": "Vacation"}, "X-Autorespond present"),
        ({"X-Auto-Response-Suppress": "All"}, "X-Auto-Response-Suppress: all"),
        ({"X-Auto-Response-Suppress": "DR, OOF"}, "X-Auto-Response-Suppress: dr, oof"),
        ({"Precedence": "auto_reply"}, "Precedence: auto_reply"),
    ],
)
def test_auto_reply_headers_mark_the_mail_as_auto_reply(
    headers: dict[str, str], reason: str
) -> None:
    verdict = classify(signals(headers))
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == (reason,)


def test_a_delivery_receipt_request_alone_is_not_an_auto_reply() -> None:
    # Outlook sets this on ordinary mail to suppress *delivery reports*.
    assert classify(signals({"X-Auto-Response-Suppress": "DR, RN, NRN"})).flags == ()


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Re: invoice",
        "Automatic reply: Ticket [#12]",
        "Automatische Antwort: Ihre Anfrage",
        "Abwesenheitsnotiz: Drucker",
        "Réponse automatique : commande",
        "Respuesta automática: pedido",
        "Autosvar: faktura",
        "Auto reply: Nyaan",
    ],
)
def test_out_of_office_subjects_of_common_mail_programs_are_recognised(subject: str) -> None:
    verdict = classify(signals(subject=subject))
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == ("out-of-office subject",)


def test_a_human_mentioning_an_out_of_office_reply_is_not_one() -> None:
    assert classify(signals(subject="Re: your out of office reply is broken")).flags == ()


@pytest.mark.parametrize("report_type", ["feedback-report", "disposition-notification"])
def test_abuse_reports_and_read_receipts_count_as_auto_replies(report_type: str) -> None:
    verdict = classify(signals(report_type=report_type))
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == (f"multipart/report {report_type}",)


def test_a_delivery_status_report_is_a_bounce() -> None:
    verdict = classify(signals(report_type="delivery-status"))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == ("multipart/report delivery-status",)


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("MAILER-DAEMON@mx.example.com", "From MAILER-DAEMON"),
        ("postmaster@example.com", "From postmaster"),
    ],
)
def test_mail_from_the_mail_system_is_a_bounce(sender: str, reason: str) -> None:
    verdict = classify(signals(sender_email=sender.lower()))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == (reason,)


def test_an_empty_return_path_is_a_bounce() -> None:
    assert classify(signals({"Return-Path": "<>"})).reasons == ("Return-Path <>",)


def test_an_auto_reply_with_an_empty_return_path_is_not_also_called_a_bounce() -> None:
    # RFC 3834 tells auto-responders to use the null sender.
    verdict = classify(signals({"Return-Path": "<>", "Auto-Submitted": "auto-replied"}))
    assert verdict.flags == ("auto_reply",)


@pytest.mark.parametrize(
    "subject",
    [
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Undeliverable: Printer broken",
        "Returned mail: see transcript for details",
    ],
)
def test_well_known_bounce_subjects_are_bounces(subject: str) -> None:
    verdict = classify(signals(subject=subject))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == ("bounce subject",)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Precedence": "bulk"}, "Precedence: bulk"),
        ({"Precedence": "list"}, "Precedence: list"),
        ({"Precedence": "junk"}, "Precedence: junk"),
        ({"List-Id": "<users.lists.example.org>"}, "List-Id present"),
        ({"List-Unsubscribe": "<mailto:leave@example.org>"}, "List-Unsubscribe present"),
    ],
)
def test_list_and_newsletter_mail_is_bulk(headers: dict[str, str], reason: str) -> None:
    verdict = classify(signals(headers))
    assert verdict.flags == ("bulk",)
    assert verdict.reasons == (reason,)


def test_flags_come_in_a_fixed_order_with_one_reason_per_decision() -> None:
    verdict = classify(
        signals(
            {"Precedence": "bulk", "Auto-Submitted": "auto-generated"},
            report_type="delivery-status",
            sender_email="mailer-daemon@example.com",
        )
    )
    assert verdict.flags == ("auto_reply", "bounce", "bulk")
    assert verdict.reasons == (
        "Auto-Submitted: auto-generated",
        "multipart/report delivery-status",
        "From MAILER-DAEMON",
        "Precedence: bulk",
    )

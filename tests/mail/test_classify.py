"""Promise 5: deskctl recognises machine-written mail and never answers it."""

from __future__ import annotations

import pytest

from deskctl.mail.classify import BounceScan, MailSignals, classify


def signals(headers: dict[str, str] | None = None, **kwargs: object) -> MailSignals:
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
        ({"Precedence": "auto_reply"}, "Precedence: auto_reply"),
    ],
)
def test_auto_reply_headers_mark_the_mail_as_auto_reply(
    headers: dict[str, str], reason: str
) -> None:
    verdict = classify(signals(headers))
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == (reason,)


@pytest.mark.parametrize("suppress", ["DR, RN, NRN", "All", "DR, OOF, AutoReply"])
def test_asking_not_to_be_auto_answered_is_not_an_auto_reply(suppress: str) -> None:
    # Outlook sets this on ordinary mail to suppress delivery reports, and
    # CRMs and corporate mailers set "All" on mail a person wrote: it asks
    # others not to answer automatically, it does not say this mail is one.
    headers = {"X-Auto-Response-Suppress": suppress}
    verdict = classify(
        signals(headers, subject="Quote for 40 chairs", sender_email="a@corp.example")
    )
    assert verdict.flags == ()


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
        "Jane Doe is out of the office.",
        "自動返信: お問い合わせありがとうございます",
    ],
)
def test_out_of_office_subjects_of_common_mail_programs_are_recognised(subject: str) -> None:
    verdict = classify(signals(subject=subject))
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == ("out-of-office subject",)


@pytest.mark.parametrize(
    "subject",
    ["Re: your out of office reply is broken", "Re: Jane Doe is out of the office."],
)
def test_a_human_mentioning_an_out_of_office_reply_is_not_one(subject: str) -> None:
    assert classify(signals(subject=subject)).flags == ()


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
        (
            {
                "List-Unsubscribe": "<mailto:leave@example.org>",
                "List-Unsubscribe-Post": "One-Click",
            },
            "List-Unsubscribe, List-Unsubscribe-Post present",
        ),
        (
            {"List-Post": "<mailto:users@example.org>", "List-Help": "<mailto:help@example.org>"},
            "List-Post, List-Help present",
        ),
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


@pytest.mark.parametrize(
    "header",
    ["List-Unsubscribe", "List-Help", "List-Owner", "List-Archive"],
)
def test_one_list_like_header_from_a_corporate_mailer_is_not_list_mail(header: str) -> None:
    # A customer's company mailer stamps List-Unsubscribe (or one of its
    # siblings) on every mail; the customer must still get an answer.
    verdict = classify(
        signals(
            {header: "<https://corp.example/prefs>"},
            subject="Broken hinge",
            sender_email="a@b.example",
        )
    )
    assert verdict.flags == ()
    assert verdict.reasons == ()


def test_a_delay_warning_is_automatic_but_not_a_bounce() -> None:
    verdict = classify(
        signals(
            report_type="delivery-status",
            dsn_actions=("delayed",),
            sender_email="mailer-daemon@mx.example.net",
        )
    )
    assert verdict.flags == ("auto_reply",)
    assert verdict.reasons == ("delivery-status report: delayed", "From MAILER-DAEMON")


def test_a_report_with_one_failed_recipient_is_a_bounce() -> None:
    verdict = classify(signals(report_type="delivery-status", dsn_actions=("delayed", "failed")))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == ("multipart/report delivery-status",)


@pytest.mark.parametrize(
    ("subject", "flag", "reason"),
    [
        ("Delivery Status Notification (Delay)", "auto_reply", "delivery-delayed subject"),
        ("Warning: message 1Ab2-000 delayed 24 hours", "auto_reply", "delivery-delayed subject"),
        ("Mail could not be delivered", "bounce", "bounce subject"),
        ("DELIVERY FAILURE: User jdoe not listed in Domino Directory", "bounce", "bounce subject"),
        ("Unzustellbar: Angebot", "bounce", "bounce subject"),
        ("Impossibile recapitare: offerta", "bounce", "bounce subject"),
        ("Olevererbart: offert", "bounce", "bounce subject"),
        ("配信不能: お見積り", "bounce", "bounce subject"),
    ],
)
def test_mail_system_subjects_name_their_rule(subject: str, flag: str, reason: str) -> None:
    verdict = classify(signals(subject=subject))
    assert verdict.flags == (flag,)
    assert verdict.reasons == (reason,)


def test_the_null_sender_and_daemon_names_are_mail_systems() -> None:
    verdict = classify(signals(null_sender=True, sender_name="Mail Delivery System"))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == ("From name Mail Delivery System", "From <> (the null sender)")


def test_a_quoted_postmaster_local_part_is_still_the_postmaster() -> None:
    verdict = classify(signals(sender_email='"postmaster@example.com"@relay.example'))
    assert verdict.reasons == ("From postmaster",)


def test_the_bounce_detector_names_the_failed_recipients() -> None:
    scan = BounceScan(permanent=("gone@example.org",))
    verdict = classify(signals(bounce_scan=scan))
    assert verdict.flags == ("bounce",)
    assert verdict.reasons == ("bounce detector (flufl.bounce): failed gone@example.org",)
    late = classify(signals(bounce_scan=BounceScan(temporary=("slow@example.org",))))
    assert late.flags == ("auto_reply",)
    assert late.reasons == (
        "bounce detector (flufl.bounce): delivery delayed for slow@example.org",
    )


@pytest.mark.parametrize(
    "subject",
    ["WG: Unzustellbar: Angebot", "Fwd: Mail delivery failed", "Why was my mail undeliverable?"],
)
def test_a_person_asking_about_a_bounce_is_not_one(subject: str) -> None:
    assert classify(signals(subject=subject, sender_email="ann@example.com")).flags == ()

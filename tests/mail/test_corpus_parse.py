"""The real-world corpora, end to end: what an agent would see on each ticket.

Every value each MANIFEST knows is checked; a score table per corpus is
printed so a regression shows which field slipped where, and every mismatch
is listed at once.
"""

from __future__ import annotations

import pytest

import corpus_manifest
from corpus_manifest import CORPORA, FIELDS, ManifestRow, load_all, load_manifest
from deskctl.mail.parse import parse_mail
from deskctl.mail.parsed import ParsedMail

# (file, field) -> why we believe the MANIFEST value is wrong. Keep it empty
# unless a value is provably wrong; never edit MANIFEST.tsv itself.
KNOWN_MANIFEST_ERRORS: dict[tuple[str, str], str] = {}

ROWS = load_all()


def observed(mail: ParsedMail, field: str) -> object:
    """What deskctl would put on the ticket for one MANIFEST field."""
    if field == "subject":
        return mail.subject
    if field == "from_address":
        return mail.sender.email if mail.sender else ""
    if field == "from_name":
        return mail.sender.name if mail.sender else ""
    if field == "attachment_count":
        return len(mail.attachments)
    if field == "is_auto_reply":
        return "auto_reply" in mail.flags or "bounce" in mail.flags
    raise KeyError(field)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_the_corpus_is_complete(corpus: str) -> None:
    """A corpus file silently missing would make the score look better than it is."""
    path, expected_rows = CORPORA[corpus]
    rows = load_manifest(path)
    assert len(rows) == expected_rows
    missing = [row.file for row in rows if not row.path.is_file()]
    assert missing == []
    listed = {row.path for row in rows}
    unlisted = [p.name for p in path.parent.glob("*.txt") if p not in listed]
    assert unlisted == []


def test_every_corpus_mail_reads_like_its_manifest_says(capsys: pytest.CaptureFixture[str]) -> None:
    scored = {corpus: dict.fromkeys(FIELDS, 0) for corpus in CORPORA}
    correct = {corpus: dict.fromkeys(FIELDS, 0) for corpus in CORPORA}
    mismatches: list[str] = []
    for row in ROWS:
        mail = parse_mail(row.path.read_bytes())
        got = {field: observed(mail, field) for field in FIELDS}
        for field, wrong in row.judge(got).items():
            if (row.file, field) in KNOWN_MANIFEST_ERRORS:
                continue
            scored[row.corpus][field] += 1
            correct[row.corpus][field] += wrong is None
            mismatches += [wrong] if wrong else []

    table = [f"{'field':<18}" + "".join(f"{corpus:>16}" for corpus in CORPORA)]
    for field in FIELDS:
        cells = [f"{correct[c][field]}/{scored[c][field]}" for c in CORPORA]
        table.append(f"{field:<18}" + "".join(f"{cell:>16}" for cell in cells))
    with capsys.disabled():
        print("\n" + "\n".join(table))
    assert mismatches == [], "\n".join(mismatches)


def _row(file: str) -> ManifestRow:
    return next(row for row in ROWS if row.file == file)


def test_manifest_alternatives_and_empty_cells_are_understood() -> None:
    """The loader must read ``A || B`` and ``(empty)``, or the corpus test proves nothing."""
    either = _row("html/mailparser__mail_test_17.eml").expected("from_name")
    assert either == ["notificaccion-clientes@bbva.mx", ""]
    assert _row("plain/mikel__rfc2822__example03.eml").expected("subject") == [""]
    assert (
        _row("plain/mikel__plain_emails__mix_caps_content_type.eml").expected("from_name") is None
    )
    assert corpus_manifest.normalise("from_address", " <A@B.example> ") == "a@b.example"


def test_every_delay_warning_of_the_bounce_corpus_is_automatic_but_no_bounce() -> None:
    """A warning must not mark our reply as bounced; flufl.bounce's own tests say which
    of its mails report only temporary failures."""
    warnings = [row for row in ROWS if row.kind == "delay-warning"]
    assert len(warnings) == 11
    wrong = []
    for row in warnings:
        mail = parse_mail(row.path.read_bytes())
        if "bounce" in mail.flags or "auto_reply" not in mail.flags or mail.bounced_recipients:
            wrong.append(f"{row.file}: {mail.flags} {mail.flag_reasons}")
    assert wrong == []


def test_every_bounce_of_the_bounce_corpus_names_its_rule() -> None:
    rows = [row for row in ROWS if row.kind == "bounces"]
    unnamed = [row.file for row in rows if not parse_mail(row.path.read_bytes()).flag_reasons]
    assert unnamed == []

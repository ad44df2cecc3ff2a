"""The real-world corpus, end to end: what an agent would see on each ticket.

Every value the MANIFEST knows is checked; a score table is printed so a
regression shows which field slipped, and every mismatch is listed at once.
"""

from __future__ import annotations

import pytest

import corpus_manifest
from corpus_manifest import FIELDS, ManifestRow, load_manifest, normalise
from deskctl.mail.parse import parse_mail
from deskctl.mail.parsed import ParsedMail

# (file, field) -> why we believe the MANIFEST value is wrong. Keep it empty
# unless a value is provably wrong; never edit MANIFEST.tsv itself.
KNOWN_MANIFEST_ERRORS: dict[tuple[str, str], str] = {}

ROWS = load_manifest()


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


def test_the_corpus_is_complete() -> None:
    """A corpus file silently missing would make the score look better than it is."""
    assert len(ROWS) == 151
    missing = [row.file for row in ROWS if not row.path.is_file()]
    assert missing == []


def test_every_corpus_mail_reads_like_its_manifest_says(capsys: pytest.CaptureFixture[str]) -> None:
    scored = dict.fromkeys(FIELDS, 0)
    correct = dict.fromkeys(FIELDS, 0)
    mismatches: list[str] = []
    for row in ROWS:
        mail = parse_mail(row.path.read_bytes())
        for field in FIELDS:
            accepted = row.expected(field)
            if accepted is None or (row.file, field) in KNOWN_MANIFEST_ERRORS:
                continue
            scored[field] += 1
            got = observed(mail, field)
            if normalise(field, got) in accepted:
                correct[field] += 1
            else:
                mismatches.append(f"{row.file} [{field}] expected {accepted!r}, got {got!r}")

    table = [f"{'field':<18}{'scored':>8}{'correct':>9}"]
    table += [f"{field:<18}{scored[field]:>8}{correct[field]:>9}" for field in FIELDS]
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

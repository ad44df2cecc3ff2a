"""Reading tests/fixtures/corpus/MANIFEST.tsv the way the corpus' score.py does.

``normalise`` mirrors ``norm`` in score.py so our test and the shared scorer can
never disagree about what counts as a match.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "fixtures" / "corpus"
MANIFEST = CORPUS_DIR / "MANIFEST.tsv"

# Every corpus and how many mails its MANIFEST lists: the development set
# (set A), flufl.bounce's bounces and CPython's email test messages, which
# nobody on the team wrote or tuned. A file silently missing would make the
# score look better than it is.
CORPORA: dict[str, tuple[Path, int]] = {
    "development": (MANIFEST, 151),
    "flufl-bounce": (CORPUS_DIR / "flufl-bounce" / "MANIFEST.tsv", 117),
    "cpython-email": (CORPUS_DIR / "cpython-email" / "MANIFEST.tsv", 47),
}

# Field name -> MANIFEST column.
COLUMNS: dict[str, str] = {
    "subject": "expected_subject",
    "from_address": "expected_from_address",
    "from_name": "expected_from_name",
    "attachment_count": "expected_attachment_count",
    "is_auto_reply": "is_auto_reply_or_bounce",
}
FIELDS: tuple[str, ...] = tuple(COLUMNS)

Value = str | int | bool | None


def _ws(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def normalise(field: str, value: object) -> Value:
    """Comparable form of an expected or actual value (score.py's ``norm``)."""
    if value is None:
        return None
    if field == "subject":
        return _ws(str(value))
    if field == "from_name":
        return _ws(str(value)).strip('"').strip("'").strip()
    if field == "from_address":
        return _ws(str(value)).strip("<>").strip().lower()
    if field == "attachment_count":
        try:
            return int(str(value))
        except (TypeError, ValueError):
            return None
    if field == "is_auto_reply":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("yes", "true", "1"):
            return True
        if text in ("no", "false", "0"):
            return False
        return None
    raise KeyError(field)


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One corpus file and what a correct ingester reports for it."""

    file: str
    path: Path
    corpus: str
    kind: str
    cells: dict[str, str]
    notes: str

    def expected(self, field: str) -> list[Value] | None:
        """Acceptable normalised values, or None when the MANIFEST says ``unknown``."""
        cell = self.cells[COLUMNS[field]]
        if cell.strip() == "unknown":
            return None
        alternatives = cell.split(" || ") if " || " in cell else [cell]
        return [normalise(field, "" if alt.strip() == "(empty)" else alt) for alt in alternatives]

    def judge(self, got: dict[str, object]) -> dict[str, str | None]:
        """Each scored field: None when ``got`` has it right, else a line saying how not."""
        verdicts: dict[str, str | None] = {}
        for field in FIELDS:
            accepted = self.expected(field)
            if accepted is None:
                continue
            right = normalise(field, got[field]) in accepted
            verdicts[field] = (
                None
                if right
                else f"{self.corpus}/{self.file} [{field}] expected {accepted!r}, got {got[field]!r}"
            )
        return verdicts


def load_all() -> list[ManifestRow]:
    """Every row of every corpus in :data:`CORPORA`."""
    return [row for path, _ in CORPORA.values() for row in load_manifest(path)]


def load_manifest(path: Path = MANIFEST) -> list[ManifestRow]:
    """Every row of the MANIFEST, paths made absolute."""
    corpus = next((name for name, (where, _) in CORPORA.items() if where == path), path.parent.name)
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            ManifestRow(
                file=row["file"],
                path=path.parent / row["file"],
                corpus=corpus,
                kind=row["kind"],
                cells={column: row.get(column) or "" for column in COLUMNS.values()},
                notes=row.get("notes") or "",
            )
            for row in reader
        ]


def deskctl_adapter(path: str) -> dict[str, object]:
    """score.py's adapter contract, answered by deskctl's own parser.

    ``PYTHONPATH=tests python3 tests/fixtures/corpus/score.py --adapter
    corpus_manifest:deskctl_adapter --expectations ...`` scores any corpus.
    """
    from deskctl.mail.parse import parse_mail

    mail = parse_mail(Path(path).read_bytes())
    return {
        "subject": mail.subject,
        "from_address": mail.sender.email if mail.sender else "",
        "from_name": mail.sender.name if mail.sender else "",
        "attachment_count": len(mail.attachments),
        "is_auto_reply": mail.is_automatic,
    }

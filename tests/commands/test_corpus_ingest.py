"""Every real-world mail of the corpus, ingested through the CLI, becomes what MANIFEST says.

Subject, sender, attachments kept on the ticket and the automatic-mail flag
are read back from ``deskctl --json ingest`` and ``ticket show``, so this
checks the stored result, not only the parser.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import Run
from corpus_manifest import FIELDS, load_manifest, normalise


def test_the_whole_corpus_becomes_tickets_as_the_manifest_says(desk: Run, tmp_path: Path) -> None:
    scored: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    mismatches: list[str] = []
    duplicates = reused = 0
    for row in load_manifest():
        result = desk("--json", "ingest", str(row.path))
        assert result.exit_code == 0, f"{row.file}: {result.stderr}"
        doc = result.json()
        reused += "message_id_reused" in doc["flags"]
        db: tuple[str, ...] = ()
        if doc["duplicate"]:
            # Some corpus files are another file delivered again (other Received
            # lines, CRLF, folding): deskctl rightly keeps the first. Judge this
            # file alone, in a database of its own.
            duplicates += 1
            db = ("--db", f"sqlite:///{tmp_path / f'alone-{duplicates}.db'}")
            assert desk(*db, "db", "upgrade").exit_code == 0
            doc = desk(*db, "--json", "ingest", str(row.path)).json()
            assert doc["duplicate"] is False
        shown = desk(*db, "--json", "ticket", "show", str(doc["ticket"])).json()
        (stored,) = [m for m in shown["messages"] if m["id"] == doc["message"]]
        got = {
            "subject": doc["subject"],
            "from_address": stored["from"]["email"],
            "from_name": stored["from"]["name"],
            "attachment_count": len(stored["attachments"]),
            "is_auto_reply": doc["is_auto_reply"],
        }
        for field in FIELDS:
            expected = row.expected(field)
            if expected is None:
                continue
            scored[field] += 1
            if normalise(field, got[field]) in expected:
                correct[field] += 1
            else:
                mismatches.append(f"{row.file} [{field}] expected {expected!r}, got {got[field]!r}")
    print(
        f"\ncorpus through `deskctl ingest` ({duplicates} copies of another file, "
        f"{reused} other mails reusing a Message-ID):"
    )
    for field in FIELDS:
        print(f"  {field:<18} {correct[field]:>4}/{scored[field]:<4}")
    assert sum(scored.values()) > 700
    # 19 files carry a Message-ID an earlier file has: 6 are that file again, 13
    # are other mails (test suites reuse ids), and those are tickets of their own.
    assert (duplicates, reused) == (6, 13)
    assert mismatches == []

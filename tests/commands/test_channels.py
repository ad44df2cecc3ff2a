"""Channels as an administrator sets them up: the From replies leave with."""

from __future__ import annotations

from conftest import Run


def test_the_local_channel_gets_a_from_that_goes_on_the_outgoing_filter(desk: Run) -> None:
    assert desk("--json", "channel", "show", "local").json()["from"]["email"] == ""
    result = desk("channel", "set-from", "local", "Example Support <Support@Example.com>")
    assert result.exit_code == 0 and "local sends as support@example.com" in result.stdout
    shown = desk("--json", "channel", "show", "local").json()
    assert shown["from"] == {"name": "Example Support", "email": "support@example.com"}

    desk("channel", "set-from", "local", "help@example.com")
    filters = desk("--json", "filter", "list").json()["filters"]
    assert [(f["pattern"], f["source"]) for f in filters] == [("help@example.com", "channel:local")]


def test_set_from_refuses_what_is_not_an_address_or_not_a_channel(desk: Run) -> None:
    bad = desk("channel", "set-from", "local", "Support")
    assert bad.exit_code == 2 and "not an email address" in bad.stderr
    missing = desk("channel", "set-from", "nope", "help@example.com")
    assert missing.exit_code == 3 and "no outgoing channel named 'nope'" in missing.stderr
    assert desk("--json", "channel", "show", "local").json()["from"]["email"] == ""

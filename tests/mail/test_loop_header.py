"""The loop header names the installation that sent the mail."""

from __future__ import annotations

from deskctl.mail.compose import loop_instance, loop_token


def test_the_header_names_the_installation_and_the_ticket() -> None:
    token = loop_token("0123456789abcdef", 1042)
    assert token == "deskctl 0123456789abcdef ticket 1042"
    assert loop_instance(token) == "0123456789abcdef"


def test_the_header_from_before_installations_had_ids_names_none() -> None:
    assert loop_instance("deskctl ticket 1042") is None
    assert loop_instance("deskctl") is None


def test_anything_else_in_the_header_names_no_installation() -> None:
    assert loop_instance("deskctl 0123456789ABCDEF ticket 1") is None  # not ours: ids are lowercase
    assert loop_instance("deskctl 0123456789abcdefff ticket 1") is None
    assert loop_instance("\x1b]0;pwned deskctl 0123456789abcdef") is None

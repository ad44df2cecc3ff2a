"""Errors of the pure mail layer.

Kept free of the CLI's ``DeskError`` hierarchy on purpose: ``mail/`` sits below
``services/`` and must not know about exit codes. The ingest service turns a
:class:`MalformedMail` into a quarantine record (promise 1: nothing is lost).
"""

from __future__ import annotations


class MalformedMail(Exception):
    """The bytes cannot be read as an e-mail at all.

    Raised only when nothing usable can be made of the input; anything merely odd
    is parsed leniently instead, because refusing a real customer's mail is worse
    than showing it slightly garbled.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

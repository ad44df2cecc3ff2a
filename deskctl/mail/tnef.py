"""The files inside a TNEF part (``winmail.dat``, ``application/ms-tnef``).

Outlook sometimes sends its attachments wrapped in one TNEF blob that no
other mail program opens; an agent needs to see what is inside before asking
the customer to send it again. tnefparse (pure Python) reads the container;
it is imported only when a ticket has such a part.
"""

from __future__ import annotations

from dataclasses import dataclass

from deskctl.mail.sanitize import fallback_filename, safe_filename

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


@dataclass(frozen=True, slots=True)
class TnefFile:
    filename: str
    size: int


def is_tnef(filename: str, content_type: str) -> bool:
    return content_type.lower() in TNEF_TYPES or filename.lower() == "winmail.dat"


def tnef_files(data: bytes) -> list[TnefFile]:
    """The files in a TNEF container; [] when it holds none or is not TNEF at all."""
    import logging

    from tnefparse import TNEF

    logging.getLogger("tnefparse").setLevel(logging.ERROR)  # it warns on every odd byte
    try:
        container = TNEF(data, do_checksum=False)
    except (ValueError, IndexError, UnicodeError, KeyError):  # damaged: nothing to list
        return []
    found = []
    for index, part in enumerate(container.attachments, 1):
        content = part.data if isinstance(part.data, bytes) else b""
        try:
            name = str(part.long_filename() or "")
        except (UnicodeError, AttributeError):
            name = ""
        found.append(
            TnefFile(
                safe_filename(name, fallback_filename(index, "application/octet-stream")),
                len(content),
            )
        )
    return found

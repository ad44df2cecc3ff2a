"""Which IMAP folder ``--after-fetch move:FOLDER`` means on the server at hand.

Servers name folders differently: Dovecot and Gmail put them at the top
(``Archive``, ``[Gmail]/Trash``), Courier and Cyrus under the personal
namespace ``INBOX.`` with ``.`` between levels (``INBOX.Archive``). A user
writes the name they see in their mail program, so deskctl asks the server
(NAMESPACE, LIST's delimiter, SPECIAL-USE) and picks the folder that name
means, instead of sending ``MOVE "Archive"`` and getting "nonexistent
namespace" back on every run.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from imap_tools.errors import UnexpectedCommandStatusError
from imap_tools.imap_utf7 import utf7_decode
from imap_tools.mailbox import BaseMailBox

from deskctl.errors import ConfigError

#: Names a user may write for a folder the server marks with a special use (RFC 6154).
SPECIAL_NAMES = {
    "archive": "\\Archive",
    "archives": "\\Archive",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "junk": "\\Junk",
    "spam": "\\Junk",
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "drafts": "\\Drafts",
    "all mail": "\\All",
}
_UNSELECTABLE = ("\\noselect", "\\nonexistent")

_NAMESPACE = re.compile(rb'^\(\("((?:\\.|[^"\\])*)" (?:NIL|"((?:\\.|[^"\\])*)")\)')
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>NIL|"(?:\\.|[^"\\])*") (?P<name>.*)$')


class FolderProblem(ConfigError):
    """The after-fetch folder cannot be used; ``missing`` means creating it would help."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class SentFolderProblem(FolderProblem):
    """The ``--sent-folder`` cannot be used: replies go out, their copies wait."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How one server names its folders, as it said so itself."""

    prefix: str  # the personal namespace, "" or "INBOX."
    delimiter: str  # between levels; "" for a flat server
    folders: dict[str, tuple[str, ...]]  # name -> LIST attributes, lower-cased

    def names(self, most: int = 12) -> str:
        """The folders for an error line; a mailbox with hundreds stays one readable line."""
        names = sorted(self.folders)
        more = f" and {len(names) - most} more" if len(names) > most else ""
        return (", ".join(names[:most]) or "none") + more


@dataclass(frozen=True, slots=True)
class Target:
    """The folder chosen, and why, so ``channel test`` can say it in words."""

    name: str
    how: str
    exists: bool


def _unquote(raw: bytes) -> bytes:
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


def parse_namespace(data: list[bytes | tuple[bytes, bytes] | None]) -> tuple[str, str] | None:
    """The first personal namespace (prefix, delimiter) of a NAMESPACE answer (RFC 2342)."""
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if isinstance(line, bytes) and (m := _NAMESPACE.match(line)):
            prefix = utf7_decode(_unquote(b'"' + m.group(1) + b'"'))
            return prefix, (m.group(2) or b"").decode("ascii", "replace")
    return None


def parse_list(
    data: list[bytes | tuple[bytes, bytes] | None],
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, delimiter, attributes) per LIST line; a name sent as a literal comes in a tuple."""
    found = []
    for item in data:
        line, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        if not isinstance(line, bytes) or not (m := _LIST.match(line)):
            continue
        name = literal if literal is not None else _unquote(m.group("name").strip())
        delim = "" if m.group("delim") == b"NIL" else _unquote(m.group("delim")).decode()
        flags = tuple(f.lower() for f in m.group("flags").decode("ascii", "replace").split())
        found.append((utf7_decode(name), delim, flags))
    return found


def _command(box: BaseMailBox, name: str, *args: str) -> list[bytes | tuple[bytes, bytes] | None]:
    client = box.client
    typ, data = client._simple_command(name, *args)  # type: ignore[attr-defined]
    typ, data = client._untagged_response(typ, data, name)  # type: ignore[attr-defined]
    return list(data) if typ == "OK" else []


def _capabilities(box: BaseMailBox) -> set[str]:
    """The capabilities after login, which name MOVE and SPECIAL-USE (before it, most do not).

    imaplib keeps the greeting's list; refreshing it also lets imap-tools use
    a real MOVE instead of COPY and EXPUNGE.
    """
    client = box.client
    typ, data = client.capability()
    if typ == "OK" and data and isinstance(data[-1], bytes):
        caps = tuple(data[-1].decode("ascii", "replace").upper().split())
        client.capabilities = caps
    return set(client.capabilities)


def layout_of(box: BaseMailBox) -> Layout:
    caps = _capabilities(box)
    namespace = parse_namespace(_command(box, "NAMESPACE")) if "NAMESPACE" in caps else None
    # RFC 6154: a server that offers SPECIAL-USE answers RETURN (SPECIAL-USE);
    # some only show the special uses when asked that way.
    extra = ("RETURN", "(SPECIAL-USE)") if "SPECIAL-USE" in caps else ()
    listed = parse_list(_command(box, "LIST", '""', '"*"', *extra))
    if namespace is None:
        root = parse_list(_command(box, "LIST", '""', '""'))
        namespace = ("", root[0][1] if root else "")
    prefix, delimiter = namespace
    return Layout(prefix, delimiter, {name: flags for name, _, flags in listed})


def server_said(exc: UnexpectedCommandStatusError) -> str:
    """The server's own words from a refused command, e.g. ``NO [OVERQUOTA] Quota exceeded``."""
    typ, data = exc.command_result[0], exc.command_result[1]
    parts = [d.decode("utf-8", "replace") for d in data or () if isinstance(d, bytes)]
    return " ".join([str(typ), *parts]).strip()


def choose(wanted: str, layout: Layout) -> Target:
    """The folder ``wanted`` means here; ``exists`` False when it would have to be created.

    In order: a special use written as such (``\\Archive``); the name as given;
    the name with ``/`` as the server's delimiter; either under the personal
    namespace; a folder whose special use has that name (``Trash`` is Gmail's
    ``[Gmail]/Trash``). A folder none of these finds would be created under
    the personal namespace.
    """
    folders = layout.folders
    if wanted.startswith("\\"):
        marked = sorted(n for n, flags in folders.items() if wanted.lower() in flags)
        if not marked:
            raise FolderProblem(
                f"no folder on the server is marked {wanted} (folders: {layout.names()})"
            )
        return Target(marked[0], f"the folder marked {wanted}", True)
    spelled = wanted
    if layout.delimiter and layout.delimiter != "/":
        spelled = wanted.replace("/", layout.delimiter)
    inside = spelled if spelled.startswith(layout.prefix) else layout.prefix + spelled
    for candidate in dict.fromkeys((wanted, spelled, layout.prefix + wanted, inside)):
        if candidate in folders:
            how = "as named" if candidate == wanted else f"{wanted!r} in the server's naming"
            return Target(candidate, how, True)
    use = SPECIAL_NAMES.get(wanted.lower())
    marked = sorted(n for n, flags in folders.items() if use and use.lower() in flags)
    if use and marked:
        return Target(marked[0], f"the folder marked {use}", True)
    return Target(inside, f"{wanted!r} in the server's naming", False)


def move_target(
    box: BaseMailBox, wanted: str, *, reading: str, create: bool, check_only: bool = False
) -> Target:
    """Resolve, check and (when allowed) create the folder that fetched mail moves to.

    ``check_only`` (``channel test``) changes nothing on the server: a folder
    that would be created comes back with ``exists`` False.
    """
    layout = layout_of(box)
    target = choose(wanted, layout)
    _check_usable(target, layout, reading, "mail moved there")
    if target.exists or (create and check_only):
        return target
    if not create:
        raise FolderProblem(
            f"after-fetch folder {wanted!r} does not exist (looked for {target.name!r}; "
            f"folders: {layout.names()})",
            missing=True,
        )
    try:
        box.folder.create(target.name)
    except UnexpectedCommandStatusError as exc:
        raise FolderProblem(
            f"the server refused to create folder {target.name!r}: {server_said(exc)}"
        ) from exc
    # Many mail programs show subscribed folders only; an unsubscribed archive looks lost.
    with contextlib.suppress(UnexpectedCommandStatusError):
        box.folder.subscribe(target.name, True)
    return Target(target.name, f"{target.how}, created by deskctl", True)


def _check_usable(target: Target, layout: Layout, reading: str, what: str) -> None:
    """A folder that cannot hold mail, or the one fetch reads (``what`` would come back)."""
    flags = layout.folders.get(target.name, ())
    if any(f in flags for f in _UNSELECTABLE):
        raise FolderProblem(f"folder {target.name!r} cannot hold messages (it is \\Noselect)")
    if target.name == reading or target.name.upper() == reading.upper() == "INBOX":
        raise FolderProblem(
            f"folder {target.name!r} is the one deskctl reads: {what} would be fetched again"
        )


def sent_target(box: BaseMailBox, wanted: str, *, reading: str) -> Target:
    """The folder a sent reply's copy goes to: ``auto`` is the one marked ``\\Sent``.

    A name goes through the same resolution as ``move:FOLDER`` (``Sent`` is
    ``INBOX.Sent`` on Courier, or the folder marked ``\\Sent`` when there is no
    folder of that name). deskctl never creates a Sent folder: mail programs
    make their own, and a second one beside it would hide the team's answers.
    """
    layout = layout_of(box)
    try:
        target = choose("\\Sent" if wanted == "auto" else wanted, layout)
        _check_usable(target, layout, reading, "replies filed there")
    except FolderProblem as exc:
        raise SentFolderProblem(exc.message) from exc
    if not target.exists:
        raise SentFolderProblem(
            f"sent folder {wanted!r} does not exist (looked for {target.name!r}; "
            f"folders: {layout.names()})",
            missing=True,
        )
    return target

"""Opening files deskctl is pointed at: regular files only, and never waiting on one.

A FIFO named as mail or as an attachment would hang the command until someone
writes to it, a device such as ``/dev/zero`` would be read forever, and a
Maildir entry that is a symbolic link could pull any file the user may read
(``/etc/shadow``, an SSH key) into the database and from there into a reply.
So a file is opened non-blocking (opening a FIFO then returns at once), checked
with ``fstat`` on the open descriptor, so nothing can be swapped in between the
check and the read, and, where the caller asks, opened without following a link.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path exists but is not a regular file; ``strerror`` says what it is."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, *, follow_links: bool = True) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; raises NotRegularFile otherwise.

    With ``follow_links=False`` a symbolic link is refused (``O_NOFOLLOW``)
    instead of opening what it points to, and so is a file in a folder that
    is one (a Maildir's ``new/`` swapped for a link to ``/etc``): the file is
    opened through its folder, itself opened without following a link.
    Other failures raise the OSError the system gave (missing, permission denied, ...).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags) if follow_links else _open_in_folder(path, flags)
    except NotRegularFile:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            raise NotRegularFile(errno.ELOOP, "a symbolic link", str(path)) from exc
        if exc.errno == errno.ENXIO:  # a UNIX socket cannot be opened at all
            raise NotRegularFile(errno.ENXIO, "a socket", str(path)) from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, _kind(mode), str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_in_folder(path: Path, flags: int) -> int:
    """``path`` opened relative to its folder, which must not be a symbolic link."""
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.parent.is_symlink():
            raise NotRegularFile(
                errno.ELOOP, "in a folder that is a symbolic link", str(path)
            ) from exc
        raise
    try:
        return os.open(path.name, flags, dir_fd=folder)
    finally:
        os.close(folder)

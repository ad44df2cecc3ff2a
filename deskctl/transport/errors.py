"""Turning low-level network failures into one clear line with the right exit code."""

from __future__ import annotations

import socket
import ssl

from deskctl.errors import DeskError, Unreachable


def network_error(exc: BaseException, host: str, port: int | None, what: str) -> DeskError:
    """Explain why ``host:port`` could not be used, as a user would want it said."""
    where = f"{host}:{port}" if port else host
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve {what} host {host!r}: check the --host name")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Unreachable(
            f"TLS certificate verification failed for {where}: {exc.verify_message}; "
            "for a private CA give --ca-file"
        )
    if isinstance(exc, ssl.SSLError):
        return Unreachable(f"TLS handshake with {where} failed: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(f"{what} server {where} refused the connection: check --host and --port")
    if isinstance(exc, TimeoutError | socket.timeout):
        return Unreachable(f"{what} server {where} did not answer in time")
    if isinstance(exc, OSError):
        return Unreachable(f"cannot reach {what} server {where}: {exc.strerror or exc}")
    return Unreachable(f"{what} server {where} failed: {exc}")

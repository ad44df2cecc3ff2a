"""Throwaway servers on loopback for deskctl's integration tests.

The modules here start real Dovecot, an aiosmtpd submission relay and
PostgreSQL in private temp dirs on kernel-chosen ports, so tests exercise
deskctl against the same protocols it meets in production without touching
any system service.  ``testbed.fixtures`` exposes them as pytest fixtures.
"""

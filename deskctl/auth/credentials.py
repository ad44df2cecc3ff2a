"""What a channel logs in with: a password by reference, or an OAuth access token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from deskctl.auth import oauth, secrets


@dataclass(frozen=True, slots=True)
class Credentials:
    password: str | None = None
    oauth_token: str | None = None
    relogin_hint: str = ""


def for_channel(
    name: str,
    *,
    settings: dict[str, Any],
    account: str,
    secret_source: str | None,
    secret_ref: str | None,
) -> Credentials:
    if settings.get("auth") == "oauth":
        oauth_settings = oauth.OAuthSettings.from_channel(name, settings, account)
        if oauth_settings.app_only:
            # The app's client secret is referenced like a password, resolved per run.
            secret = secrets.resolve(secret_source, secret_ref, channel=name)
            return Credentials(
                oauth_token=oauth.access_token(replace(oauth_settings, client_secret=secret)),
                relogin_hint="check the app's client secret and its permissions",
            )
        return Credentials(
            oauth_token=oauth.access_token(oauth_settings),
            relogin_hint=f"run `deskctl channel login {oauth_settings.channel}`",
        )
    if secret_source is None:
        return Credentials()
    return Credentials(password=secrets.resolve(secret_source, secret_ref, channel=name))


def renewer(
    name: str,
    *,
    settings: dict[str, Any],
    account: str,
    secret_source: str | None = None,
    secret_ref: str | None = None,
) -> Callable[[], str] | None:
    """For a Microsoft sign-in: how to get a new access token when one is refused.

    A service may refuse a token before it expires (Graph does when the grant
    was revoked or the password changed); one forced refresh either brings a
    token it accepts or ends in the relogin error. Signed in as the app, the
    cached token is dropped and the secret presented again: msal would hand
    back the refused token for the rest of its hour. None for anything else.
    """
    if settings.get("auth") != "oauth" or settings.get("provider") != "microsoft":
        return None
    oauth_settings = oauth.OAuthSettings.from_channel(name, settings, account)
    if oauth_settings.app_only:
        return lambda: oauth.microsoft_app_token(
            replace(
                oauth_settings,
                client_secret=secrets.resolve(secret_source, secret_ref, channel=name),
            ),
            fresh=True,
        )
    return lambda: oauth.microsoft_token(oauth_settings, force_refresh=True)

"""OAuth sign-in for Office 365 (msal) and Gmail (google-auth), safe for cron.

Cron has no login session and runs for months: the token cache is a file
under ``DESKCTL_HOME/tokens`` (mode 0600, written atomically) saved right
after every token call that changed it, so a rotated refresh token is never
lost. Before each fetch or send the access token is taken silently and
refreshed when needed. Nothing of a token is ever logged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskctl.config import make_private_dir
from deskctl.errors import ConfigError, Unreachable, UsageError

log = logging.getLogger(__name__)

MICROSOFT_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
)
#: Microsoft Graph, signed in as the mailbox's user (device code): read, flag,
#: move and send its mail; msal adds openid, profile and offline_access itself.
GRAPH_SCOPES = (
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
)
#: Microsoft Graph as the app itself (client credentials, a shared mailbox): the
#: application permissions an admin granted to the app registration.
GRAPH_APP_SCOPES = ("https://graph.microsoft.com/.default",)
CLIENT_CREDENTIALS = "client_credentials"
GOOGLE_SCOPES = ("https://mail.google.com/",)
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
STALE_AFTER_DAYS = 60


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """Where to sign in and where the tokens live; stored on the channel, no secrets."""

    channel: str
    provider: str  # "microsoft" | "google"
    account: str
    token_file: Path
    client_id: str = ""
    authority: str | None = None  # microsoft
    client_secrets: str | None = None  # google: the client secrets JSON file
    scopes: tuple[str, ...] = MICROSOFT_SCOPES  # microsoft: IMAP/SMTP, or Graph
    #: microsoft: "device_code" (a user signs in) or "client_credentials" (the app).
    flow: str = "device_code"
    #: client_credentials: the app's secret, resolved from its reference for this run only.
    client_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_channel(cls, channel: str, settings: dict[str, Any], account: str) -> OAuthSettings:
        return cls(
            channel=settings.get("login_channel", channel),
            provider=settings["provider"],
            account=account,
            token_file=Path(settings["token_file"]),
            client_id=settings.get("client_id", ""),
            authority=settings.get("authority"),
            client_secrets=settings.get("client_secrets"),
            scopes=tuple(settings.get("scopes") or MICROSOFT_SCOPES),
            flow=settings.get("flow", "device_code"),
        )

    @property
    def app_only(self) -> bool:
        return self.flow == CLIENT_CREDENTIALS


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, atomically (never half a cache)."""
    make_private_dir(path.parent, "the token folder")  # DESKCTL_HOME too, if missing: 0700
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def relogin(settings: OAuthSettings, why: str) -> ConfigError:
    return ConfigError(
        f"channel {settings.channel}: the sign-in is no longer valid ({why}): "
        f"run `deskctl channel login {settings.channel}`"
    )


# -- Microsoft (msal) ---------------------------------------------------------


def _msal_app(settings: OAuthSettings) -> tuple[Any, Any]:
    """msal's app over the channel's token cache: public (a user signs in) or confidential."""
    import msal

    cache = msal.SerializableTokenCache()
    if settings.token_file.exists():
        cache.deserialize(settings.token_file.read_text())
    authority = settings.authority or f"{DEFAULT_AUTHORITY}/common"
    custom = not authority.startswith(DEFAULT_AUTHORITY)
    # Sovereign clouds and test authorities are not in Microsoft's list.
    common = {"authority": authority, "token_cache": cache, "instance_discovery": not custom}
    try:
        if settings.app_only:
            app = msal.ConfidentialClientApplication(
                settings.client_id, client_credential=settings.client_secret, **common
            )
        else:
            app = msal.PublicClientApplication(settings.client_id, **common)
    except ValueError as exc:
        raise ConfigError(f"channel {settings.channel}: bad authority {authority}: {exc}") from exc
    except OSError as exc:
        raise Unreachable(f"cannot reach the sign-in service {authority}: {exc}") from exc
    return app, cache


def _save_msal(settings: OAuthSettings, cache: Any) -> None:
    if cache.has_state_changed:
        write_private(settings.token_file, cache.serialize())


def _msal_error(result: dict[str, Any]) -> str:
    return str(result.get("error") or "no token") + (
        f": {str(result.get('error_description', '')).splitlines()[0]}"
        if result.get("error_description")
        else ""
    )


def microsoft_app_token(settings: OAuthSettings, *, fresh: bool = False) -> str:
    """The app's own token (client credentials): msal answers from the cache until it expires.

    Nobody signs in, so there is nothing to log in again: a refusal (a wrong or
    expired client secret, an app without the permission) names what to check.
    ``fresh``: the service refused the cached token, so it is dropped first.
    """
    if not settings.client_secret:
        raise ConfigError(
            f"channel {settings.channel} signs in as the app and needs its client secret "
            "(--password-cmd, --password-env or --password-file)"
        )
    app, cache = _msal_app(settings)
    if fresh:
        for refused in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(refused)
    try:
        result = app.acquire_token_for_client(scopes=list(settings.scopes))
    except OSError as exc:
        raise Unreachable(f"cannot reach the sign-in service: {exc}") from exc
    except ValueError as exc:  # msal's "Unable to get authority configuration"
        raise Unreachable(f"cannot use the sign-in service {settings.authority}: {exc}") from exc
    finally:
        _save_msal(settings, cache)
    if not result or "access_token" not in result:
        raise ConfigError(
            f"the sign-in service refused the app of channel {settings.channel} "
            f"({_msal_error(result or {})}): check --client-id, --tenant and the client secret"
        )
    return str(result["access_token"])


def microsoft_token(settings: OAuthSettings, *, force_refresh: bool = False) -> str:
    """The user's access token from the cache, refreshed when near expiry or when told.

    ``force_refresh``: the service refused the cached token before it expired
    (revoked, a changed password): trade the refresh token for a new one.
    """
    if settings.app_only:
        return microsoft_app_token(settings)
    app, cache = _msal_app(settings)
    accounts = app.get_accounts(username=settings.account) or app.get_accounts()
    if not accounts:
        raise relogin(settings, "not signed in yet")
    try:
        result = app.acquire_token_silent_with_error(
            list(settings.scopes), account=accounts[0], force_refresh=force_refresh
        )
    except OSError as exc:
        raise Unreachable(f"cannot reach the sign-in service: {exc}") from exc
    finally:
        _save_msal(settings, cache)
    if not result or "access_token" not in result:
        raise relogin(settings, _msal_error(result or {}))
    return str(result["access_token"])


def microsoft_login(settings: OAuthSettings, say: Callable[[str], None]) -> str:
    """Device-code sign-in: works over SSH, no browser needed on this host."""
    if settings.app_only:
        raise UsageError(
            f"channel {settings.channel} signs in as the app with its client secret; "
            "there is no sign-in to do (try `deskctl channel test` instead)"
        )
    app, cache = _msal_app(settings)
    flow = app.initiate_device_flow(scopes=list(settings.scopes))
    if "user_code" not in flow:
        raise ConfigError(f"the sign-in service refused the device flow: {_msal_error(flow)}")
    say(flow.get("message") or f"Open {flow['verification_uri']} and enter {flow['user_code']}")
    result = app.acquire_token_by_device_flow(flow)
    _save_msal(settings, cache)
    if "access_token" not in result:
        raise ConfigError(f"sign-in failed: {_msal_error(result)}")
    claims = result.get("id_token_claims") or {}
    return str(claims.get("preferred_username") or settings.account)


# -- Google (google-auth, google-auth-oauthlib) -------------------------------


def _google_credentials(settings: OAuthSettings) -> Any:
    from google.oauth2.credentials import Credentials

    if not settings.token_file.exists():
        raise relogin(settings, "not signed in yet")
    info = json.loads(settings.token_file.read_text())
    creds = Credentials.from_authorized_user_info(info, list(GOOGLE_SCOPES))
    # from_authorized_user_info always puts Google's own token URI in; keep the
    # stored one (from the client secrets), which other deployments need.
    return creds.with_token_uri(info["token_uri"]) if info.get("token_uri") else creds


def google_token(settings: OAuthSettings) -> str:
    from google.auth.exceptions import RefreshError, TransportError
    from google.auth.transport.requests import Request

    creds = _google_credentials(settings)
    if creds.valid:
        return str(creds.token)
    try:
        creds.refresh(Request())
    except RefreshError as exc:
        raise relogin(settings, str(exc.args[0] if exc.args else exc).split(":")[0]) from exc
    except TransportError as exc:
        raise Unreachable(f"cannot reach Google's token service: {exc}") from exc
    write_private(settings.token_file, creds.to_json())
    return str(creds.token)


def google_login(settings: OAuthSettings, say: Callable[[str], None]) -> str:
    """Installed-app flow with a loopback redirect; the URL is printed for a terminal."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    if not settings.client_secrets:
        raise ConfigError(f"channel {settings.channel} has no --client-secrets file")
    flow = InstalledAppFlow.from_client_secrets_file(settings.client_secrets, list(GOOGLE_SCOPES))
    browser = os.environ.get("DESKCTL_BROWSER")
    creds = flow.run_local_server(
        port=0,
        open_browser=bool(browser) or "DISPLAY" in os.environ,
        browser=browser,
        authorization_prompt_message="Open this URL to sign in: {url}",
        timeout_seconds=600,
    )
    write_private(settings.token_file, creds.to_json())
    say("signed in")
    return settings.account


# -- Shared ---------------------------------------------------------------------


def access_token(settings: OAuthSettings) -> str:
    """A valid access token, refreshed silently when needed."""
    if settings.provider == "microsoft":
        return microsoft_token(settings)
    if settings.provider == "google":
        return google_token(settings)
    raise ConfigError(f"channel {settings.channel}: unknown OAuth provider {settings.provider!r}")


def login(settings: OAuthSettings, say: Callable[[str], None]) -> str:
    if settings.provider == "microsoft":
        return microsoft_login(settings, say)
    return google_login(settings, say)


def token_age_days(settings: OAuthSettings) -> float | None:
    """Days since the token file last changed (a refresh rewrites it), None if absent."""
    try:
        return (time.time() - settings.token_file.stat().st_mtime) / 86400
    except FileNotFoundError:
        return None

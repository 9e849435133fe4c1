"""The one authenticator of a service (:class:`Authenticator`): is authentication configured, is it enforced, and
whose credential is this; the rate limit of failed attempts per client address (:class:`FailureLimiter`); and
what ``cxrtriage serve`` says or refuses at start-up (:func:`exposure`).

When the service requires a credential (:meth:`Authenticator.enforced`): as soon as single sign-on is configured or
any API key was ever created (even if every key is revoked since: revoking every key locks everyone out, it never
opens the door). Before that the service runs open, which ``cxrtriage serve`` allows on loopback only (with a
warning on every start), or elsewhere with ``--insecure-no-auth`` (with a louder warning on every start).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cxrtriage.config import Settings
from cxrtriage.errors import ConfigurationError
from cxrtriage.security.keys import KeyStore, KeyStoreError, looks_like_api_key
from cxrtriage.security.principal import Principal
from cxrtriage.security.tokens import NoRole, ProviderUnavailable, TokenRejected, TokenValidator, is_url

__all__ = [
    "AuthUnavailable",
    "Authenticator",
    "CredentialRejected",
    "CredentialWithoutRole",
    "Exposure",
    "FailureLimiter",
    "HOW_TO_CONFIGURE",
    "exposure",
    "is_loopback",
]

_OIDC = ("oidc_issuer", "oidc_audience", "oidc_jwks")
HOW_TO_CONFIGURE = (
    "create an API key with `cxrtriage keys create --role admin --name you` (or a reader or submitter key), or "
    "configure single sign-on with CXRTRIAGE_OIDC_ISSUER, CXRTRIAGE_OIDC_AUDIENCE and CXRTRIAGE_OIDC_JWKS"
)


class CredentialRejected(Exception):
    """A credential that is not accepted; ``str(exc)`` is a short reason, never the credential."""


class CredentialWithoutRole(CredentialRejected):
    """A valid token that names no cxrtriage role (403, not 401)."""


class AuthUnavailable(Exception):
    """The keys file cannot be read or the provider's keys cannot be fetched: a server-side fault (503)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); an interface name or 0.0.0.0 is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Authenticator:
    """API keys (``settings.keys_path``) and, when configured, the OIDC provider of one service."""

    def __init__(self, settings: Settings) -> None:
        given = [Settings.env_name(f) for f in _OIDC if getattr(settings, f)]
        if given and len(given) < len(_OIDC):
            missing = [Settings.env_name(f) for f in _OIDC if not getattr(settings, f)]
            raise ConfigurationError(
                f"single sign-on needs CXRTRIAGE_OIDC_ISSUER, CXRTRIAGE_OIDC_AUDIENCE and CXRTRIAGE_OIDC_JWKS "
                f"together: {', '.join(given)} set, {', '.join(missing)} missing"
            )
        jwks = settings.oidc_jwks
        if jwks and not is_url(jwks) and not _is_file(jwks):
            raise ConfigurationError(f"CXRTRIAGE_OIDC_JWKS={jwks!r} is neither an http(s) URL nor a readable file")
        self.keys = KeyStore(settings.keys_path)
        self.tokens = (
            TokenValidator(settings.oidc_issuer, settings.oidc_audience, jwks, settings.oidc_role_claim)
            if settings.oidc_issuer and settings.oidc_audience and jwks
            else None
        )

    def enforced(self) -> bool:
        """True when requests must carry a credential: single sign-on configured, or any key ever created."""
        if self.tokens is not None:
            return True
        try:
            return self.keys.has_keys()
        except KeyStoreError:
            return True  # an unreadable keys file never opens the service

    def configured(self) -> bool:
        """True when someone can sign in: single sign-on, or at least one active key."""
        try:
            return self.tokens is not None or self.keys.has_active()
        except KeyStoreError:
            return False

    def authenticate(self, credential: str) -> Principal:
        """The principal of an API key (``cxt_...``) or of a token; :class:`CredentialRejected` (short reason),
        :class:`CredentialWithoutRole` or :class:`AuthUnavailable` otherwise. Blocking (a key's hash, a JWKS fetch):
        call it from a worker thread."""
        if looks_like_api_key(credential):
            try:
                principal = self.keys.verify(credential)
            except KeyStoreError as exc:
                raise AuthUnavailable(str(exc)) from None
            if principal is None:
                raise CredentialRejected("unknown or revoked API key")
            return principal
        if self.tokens is None:
            raise CredentialRejected("not an API key, and no single sign-on is configured for tokens")
        try:
            return self.tokens.verify(credential)
        except NoRole as exc:
            raise CredentialWithoutRole(str(exc)) from None
        except TokenRejected as exc:
            raise CredentialRejected(str(exc)) from None
        except ProviderUnavailable as exc:
            raise AuthUnavailable(str(exc)) from None


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_file()


class FailureLimiter:
    """Failed authentications per client address in a sliding window: :meth:`retry_after` says how long a client
    that reached ``limit`` failures in ``window_s`` must wait. Memory is bounded: at most ``max_clients`` addresses
    are tracked, the least recently failing forgotten first."""

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if times is not None and not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """None while ``client`` may try; else the seconds until its oldest counted failure leaves the window."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if times is None or len(times) < self.limit:
                return None
            return max(1, int(times[0] + self.window_s - now + 0.999))

    def record(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            times = self._recent(client, now) or deque()
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)


@dataclass(frozen=True)
class Exposure:
    """What ``cxrtriage serve`` does about authentication: ``refusal`` (a sentence: do not start) or start, printing
    each of ``warnings`` (on every start)."""

    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


def exposure(settings: Settings, *, insecure_no_auth: bool = False) -> Exposure:
    """Whether the service may start on ``settings.host`` with the authentication it has (raises
    :class:`ConfigurationError` for half-configured single sign-on)."""
    auth = Authenticator(settings)
    host, port = settings.host, settings.port
    try:
        auth.keys.list()
    except KeyStoreError as exc:
        return Exposure(refusal=f"{exc}; fix or move the file (the keys cannot be checked without it)")
    if auth.enforced():
        if auth.configured():
            return Exposure()
        return Exposure(
            warnings=[
                f"every API key in {settings.keys_path} is revoked: every protected request is refused; "
                + HOW_TO_CONFIGURE
            ]
        )
    if is_loopback(host):
        return Exposure(
            warnings=[
                f"no authentication is configured: the service runs OPEN on {host} (loopback): anyone with an account "
                f"on this machine can read the worklist and the results. To require credentials, {HOW_TO_CONFIGURE}"
            ]
        )
    if insecure_no_auth:
        return Exposure(
            warnings=[
                f"--insecure-no-auth: serving on {host}:{port} WITHOUT authentication: anyone who can reach this port "
                "can send images and read the worklist, the stored results and their crops. For demos on a trusted "
                f"network only; {HOW_TO_CONFIGURE}"
            ]
        )
    return Exposure(
        refusal=f"refusing to serve on {host} without authentication: anyone who can reach port {port} would read the "
        f"worklist, the stored results and their crops. To configure it, {HOW_TO_CONFIGURE}; then start again "
        f"(or serve on 127.0.0.1; for a demo on a trusted network only, pass --insecure-no-auth)"
    )

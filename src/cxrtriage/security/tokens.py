"""Single sign-on for people: OIDC / JWT bearer tokens from the hospital's identity provider, checked with PyJWT
(:class:`TokenValidator`).

A token is accepted when all of these hold: its signature verifies against a key of the provider's JWKS (a file,
read locally and re-read when it changes; or an ``http(s)`` URL, fetched by :class:`jwt.PyJWKClient` and cached:
fetching it is the explicit configuration ``CXRTRIAGE_OIDC_JWKS`` asks for); its algorithm is an asymmetric one
(:data:`ALGORITHMS`: never ``none``, never an HMAC one that a public key could be abused as the secret of); it names
the configured issuer and audience; it carries ``exp`` and has not expired (30 s leeway for clock skew).

Its role comes from one claim (``CXRTRIAGE_OIDC_ROLE_CLAIM``, default ``roles``; a dotted path reaches a nested
claim such as Keycloak's ``realm_access.roles``), a string (one or more names separated by spaces) or a list of
strings. Names are matched to the roles ``submitter``, ``reader`` and ``admin`` (case-insensitive); others are
ignored. When it names several, the highest wins (the roles are ordered, :meth:`Role.allows`); when it names none,
the token is refused with :class:`NoRole` (the service answers 403: the person is known, but has no cxrtriage role).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt

from cxrtriage.security.principal import Principal, Role

__all__ = ["ALGORITHMS", "NoRole", "ProviderUnavailable", "TokenRejected", "TokenValidator", "is_url"]

#: the signature algorithms a token may use: asymmetric only
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY_S = 30
_NAME_CLAIMS = ("preferred_username", "sub")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._@-]")


class TokenRejected(Exception):
    """A token that is not accepted; ``str(exc)`` is a short reason without the token (expired token, ...)."""


class NoRole(TokenRejected):
    """A valid token whose role claim names no cxrtriage role."""


class ProviderUnavailable(Exception):
    """The provider's JWKS URL could not be fetched (the service answers 503, not 401)."""


def is_url(value: str) -> bool:
    return value.lower().startswith(("https://", "http://"))


def _rejected(exc: jwt.PyJWTError) -> TokenRejected:
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "expired token"),
        (jwt.InvalidAudienceError, "token for another audience"),
        (jwt.InvalidIssuerError, "token from another issuer"),
        (jwt.InvalidSignatureError, "token signature does not verify"),
        (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
        (jwt.ImmatureSignatureError, "token not valid yet"),
    ]
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenRejected(f"token without the '{exc.claim}' claim")
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return TokenRejected(reason)
    return TokenRejected("malformed token")


def _claim(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _role_names(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def role_from_claim(payload: dict[str, Any], claim: str) -> Role:
    """The highest cxrtriage role the claim names; :class:`NoRole` when it names none."""
    roles = {r for name in _role_names(_claim(payload, claim)) for r in Role if name.strip().lower() == r.value}
    if not roles:
        raise NoRole(f"token names no cxrtriage role in claim '{claim}' (submitter, reader or admin)")
    return max(roles, key=lambda r: r.rank)


class TokenValidator:
    """Checks tokens of one provider: ``issuer``, ``audience``, ``jwks`` (a file path or an http(s) URL) and the
    ``role_claim``."""

    def __init__(self, issuer: str, audience: str, jwks: str, role_claim: str = "roles") -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.role_claim = role_claim
        self._client = jwt.PyJWKClient(jwks, cache_keys=True, timeout=5) if is_url(jwks) else None
        self._lock = threading.Lock()
        self._file_keys: tuple[int, jwt.PyJWKSet] | None = None

    def _file_key_set(self) -> jwt.PyJWKSet:
        path = Path(self.jwks).expanduser()
        try:
            mtime = path.stat().st_mtime_ns
            with self._lock:
                if self._file_keys is not None and self._file_keys[0] == mtime:
                    return self._file_keys[1]
            key_set = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ProviderUnavailable(f"the JWKS file {path} cannot be read ({type(exc).__name__})") from exc
        with self._lock:
            self._file_keys = (mtime, key_set)
        return key_set

    def _signing_key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected("token algorithm not allowed")
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as exc:
                raise ProviderUnavailable("the identity provider's JWKS URL cannot be fetched") from exc
            except jwt.PyJWTError as exc:
                raise TokenRejected("no key of the identity provider matches the token") from exc
        keys = self._file_key_set().keys
        kid = header.get("kid")
        found = [k for k in keys if k.key_id == kid] if kid else (keys if len(keys) == 1 else [])
        if not found:
            raise TokenRejected("no key of the identity provider matches the token")
        return found[0].key

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`TokenRejected` (or :class:`NoRole`) with a short reason."""
        key = self._signing_key(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise _rejected(exc) from None
        role = role_from_claim(payload, self.role_claim)
        name = next((str(payload[c]) for c in _NAME_CLAIMS if payload.get(c)), "unknown")
        return Principal(name=_UNSAFE_NAME_CHARS.sub("_", name)[:128], role=role, via="oidc")

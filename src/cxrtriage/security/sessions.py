"""Signed-in browser sessions of the web UI (:class:`Sessions`): a person signs in with the name and the secret of
their personal API key (``cxrtriage keys create --role reader --name dr-smith``), as with a user name and password,
and the browser then carries a signed session cookie instead of the key.

Why a signed cookie and no server-side session table: the service may run several worker processes, and each must
accept a session another one started; the cookie is signed with :mod:`itsdangerous` (HMAC-SHA1 over a key derived
from the secret, the library Flask and Starlette's ``SessionMiddleware`` use), so nobody without the secret can
make or change one. The cookie holds no credential: a random session id, the key's public id and name, and two
times (when it was issued, when it was last used). The secret is ``CXRTRIAGE_SESSION_SECRET``, else 32 random bytes
in ``session.secret`` in the service's state folder, created ``0600`` on first use (so every worker and every
restart shares it; deleting the file and restarting signs everyone out).

Each request with a session is checked again (:meth:`Sessions.check`):

* the signature (a forged or damaged cookie is refused, and counts as a failed authentication);
* the absolute lifetime (``CXRTRIAGE_SESSION_MAX_HOURS`` since sign-in) and the idle timeout
  (``CXRTRIAGE_SESSION_IDLE_MIN`` since the last request that counted as activity): an expired session is refused
  and does not count as a failed authentication;
* the key store: the key must still exist, be active and carry the same name, and its role is read from there, so
  revoking the key (``cxrtriage keys revoke``) ends every session it opened at the next request;
* signed-out sessions (:meth:`Sessions.end`): remembered until their absolute lifetime ends, in the state folder
  (:class:`~cxrtriage.security.signed_out.SignedOut`), so every worker process refuses a copy of the cookie.

When a request counts as activity and the last-used time is older than :attr:`Sessions.refresh_s`, :meth:`check`
returns a new cookie value with the new time, which the service sets on the response (a sliding idle timeout).

No web framework here (the rule of :mod:`cxrtriage.security`): the service's side (the cookie header, the login
page) is :mod:`cxrtriage.serve.login`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from cxrtriage.config import Settings
from cxrtriage.errors import ConfigurationError
from cxrtriage.files import private_dir
from cxrtriage.security.keys import KeyStore
from cxrtriage.security.principal import Principal
from cxrtriage.security.signed_out import SIGNED_OUT_FILE, SignedOut

__all__ = [
    "COOKIE_NAME",
    "SECRET_FILE",
    "Session",
    "SessionRejected",
    "Sessions",
    "load_secret",
]

#: the cookie's name (plain characters: it appears in Set-Cookie)
COOKIE_NAME = "cxrtriage_session"
#: the file in the state folder that holds the signing secret when ``CXRTRIAGE_SESSION_SECRET`` is unset
SECRET_FILE = "session.secret"  # noqa: S105 - a file name, not a secret
#: the shortest accepted ``CXRTRIAGE_SESSION_SECRET`` (characters)
MIN_SECRET_CHARS = 32
_SALT = "cxrtriage-session/1"
_SID = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: what the name and key fields of the sign-in form may hold at most (longer is refused like a wrong key)
MAX_NAME_CHARS = 64
MAX_KEY_CHARS = 200


class SessionRejected(Exception):
    """A session cookie that is not accepted. ``reason``: short words for the log and the audit trail (never the
    cookie); ``counts``: whether it counts as a failed authentication (a forged cookie does, an expired one does
    not); ``expired``: the session ended by time, so the sign-in page says so."""

    def __init__(self, reason: str, *, counts: bool = False, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.counts, self.expired = reason, counts, expired


@dataclass(frozen=True)
class Session:
    """What the cookie carries: a random id, the key's public id and name, sign-in time and last use (Unix s)."""

    sid: str
    key_id: str
    name: str
    issued: float
    seen: float


def load_secret(settings: Settings) -> bytes:
    """The signing secret: ``CXRTRIAGE_SESSION_SECRET`` (at least 32 characters), else the state folder's
    ``session.secret``, made (32 random bytes, ``0600``) on first use. Several processes may race to make it: the
    file appears whole or not at all (written beside it, then hard-linked into place), and the loser reads the
    winner's."""
    if settings.session_secret is not None:
        value = settings.session_secret.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ConfigurationError(
                f"CXRTRIAGE_SESSION_SECRET is {len(value)} characters long: use at least {MIN_SECRET_CHARS} random "
                "characters (for example the output of `python -c 'import secrets; print(secrets.token_hex(32))'`), "
                "or leave it unset for a generated one in the state folder"
            )
        return value.encode("utf-8")
    path = private_dir(settings.state_dir) / SECRET_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".session-", dir=path.parent)  # 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the session secret {path} cannot be read ({type(exc).__name__})") from exc
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigurationError(f"the session secret {path} is too short: delete it to have a new one made")
    return value.encode("ascii")


class Sessions:
    """Sign-in and session checks for one service: its key store, the signing secret (``secret``: bytes, or a
    function that gives them on first use, so that a service without sign-ins never makes the secret file), the idle
    timeout and the absolute lifetime in seconds, and a clock (``time.time``; tests move it)."""

    def __init__(
        self,
        keys: KeyStore,
        secret: bytes | Callable[[], bytes],
        *,
        idle_s: float,
        max_s: float,
        clock: Callable[[], float] = time.time,
        signed_out: SignedOut | None = None,
    ) -> None:
        self.keys = keys
        self.idle_s, self.max_s = float(idle_s), float(max_s)
        #: a request that counts as activity renews the cookie once its last-use time is this old
        self.refresh_s = max(1.0, min(60.0, self.idle_s / 10))
        self.clock = clock
        self._secret = secret
        self._serializer: URLSafeSerializer | None = None
        self._lock = threading.Lock()
        self._ended = signed_out if signed_out is not None else SignedOut()  # in memory unless given a file

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyStore) -> Sessions:
        return cls(
            keys,
            lambda: load_secret(settings),
            idle_s=settings.session_idle_min * 60,
            max_s=settings.session_max_hours * 3600,
            signed_out=SignedOut(settings.state_dir / SIGNED_OUT_FILE),
        )

    def _codec(self) -> URLSafeSerializer:
        with self._lock:
            if self._serializer is None:
                secret = self._secret() if callable(self._secret) else self._secret
                self._serializer = URLSafeSerializer(secret, salt=_SALT)
            return self._serializer

    def _encode(self, session: Session) -> str:
        payload = {"v": 1, "sid": session.sid, "kid": session.key_id, "n": session.name}
        payload |= {"iat": round(session.issued, 3), "seen": round(session.seen, 3)}
        return str(self._codec().dumps(payload))

    def _decode(self, value: str) -> Session:
        try:
            data = self._codec().loads(value)
        except BadSignature:
            raise SessionRejected("invalid session cookie", counts=True) from None
        try:
            ids = (str(data["sid"]), str(data["kid"]), str(data["n"]))
            session = Session(*ids, float(data["iat"]), float(data["seen"]))
        except (KeyError, TypeError, ValueError):
            raise SessionRejected("invalid session cookie", counts=True) from None
        if data.get("v") != 1 or not _SID.fullmatch(session.sid):
            raise SessionRejected("invalid session cookie", counts=True)
        return session

    # ------------------------------------------------------------------ signing in and out

    def sign_in(self, name: str, key: str) -> tuple[Principal, str] | None:
        """The principal and a new cookie value when ``key`` is an active API key named ``name``; else None (an
        unknown name, a wrong or revoked key and a key of another name alike: the caller says nothing about which).
        Raises :class:`~cxrtriage.security.keys.KeyStoreError` when the keys file cannot be read. Blocking (the key's
        hash): call it from a worker thread."""
        name, key = (name or "").strip(), (key or "").strip()
        if not name or not key or len(name) > MAX_NAME_CHARS or len(key) > MAX_KEY_CHARS:
            return None
        principal = self.keys.verify(key)  # the same hash whatever the key, so the timing tells nothing
        if principal is None or principal.name != name:
            return None
        info = next((i for i in self.keys.list() if i.name == name and i.active), None)
        if info is None:  # revoked between the two reads
            return None
        now = self.clock()
        cookie = self._encode(Session(secrets.token_urlsafe(24), info.id, info.name, now, now))
        return Principal(name=info.name, role=info.role, via="session"), cookie

    def end(self, value: str | None) -> Principal | None:
        """Sign out the session of the cookie ``value``: refused from now on (by every process that shares the state
        folder). Returns whose it was (None for a cookie that was not a valid session)."""
        try:
            session = self._decode(value or "")
        except SessionRejected:
            return None
        self._ended.add(session.sid, session.issued + self.max_s, self.clock())
        info = next((i for i in self.keys.list() if i.id == session.key_id), None)
        return Principal(name=session.name, role=info.role, via="session") if info is not None else None

    # ------------------------------------------------------------------ each request

    def check(self, value: str, *, activity: bool = True) -> tuple[Principal, str | None]:
        """The principal of a session cookie, and a renewed cookie value (or None: keep the one it has); raises
        :class:`SessionRejected`. ``activity``: whether this request counts as the person's activity (renews the
        idle timeout); a request the page makes by itself does not. Raises
        :class:`~cxrtriage.security.keys.KeyStoreError` when the keys file cannot be read."""
        session = self._decode(value)
        now = self.clock()
        if now >= session.issued + self.max_s:
            raise SessionRejected("session reached its maximum lifetime", expired=True)
        if now >= session.seen + self.idle_s:
            raise SessionRejected("session idle for too long", expired=True)
        if session.sid in self._ended:
            raise SessionRejected("session signed out")
        info = next((i for i in self.keys.list() if i.id == session.key_id), None)
        if info is None or not info.active or info.name != session.name:
            raise SessionRejected("the session's key was revoked")
        principal = Principal(name=info.name, role=info.role, via="session")
        if activity and now - session.seen >= self.refresh_s:
            return principal, self._encode(Session(session.sid, session.key_id, session.name, session.issued, now))
        return principal, None

    def cookie_max_age(self, value: str) -> int:
        """How long the browser should keep the cookie ``value``: the idle timeout, never past the absolute
        lifetime (the service checks both anyway; this only makes the browser drop it in time)."""
        try:
            session = self._decode(value)
        except SessionRejected:
            return 0
        now = self.clock()
        left = min(session.seen + self.idle_s, session.issued + self.max_s) - now
        return max(0, int(left))

"""API keys for machines (modality gateways, scripts, the DICOM node's results): :class:`KeyStore`.

A key is ``cxt_<id>_<secret>``: ``secrets.token_urlsafe(32)`` (256 random bits) behind a short public id that finds
its record without trying every hash. The file keeps only a salted PBKDF2-HMAC-SHA256 of the whole key (a salt of
its own per key) and compares with :func:`hmac.compare_digest`; the key itself is shown once, by ``cxrtriage keys
create``, and never stored. A key made elsewhere (:func:`new_key`) and handed over as a secret can be registered
too, if it has that form with a strong secret (``keys create --from-env``: a Hugging Face Space's key). The
iteration count is modest on purpose: the secret is 256 random bits, so a slow hash adds nothing against guessing
it, and every API request pays the hash (about 5 ms here).

The file (``keys.json``) lives in the service's state folder, beside the worklist (``Settings.keys_path``), so one
setting moves both. It is written atomically (a temporary file in the same folder, then ``os.replace``), created
readable by its owner only (0600; the folder 0700 when this creates it), and changes go through an exclusive lock,
so two ``cxrtriage keys`` commands never lose each other's key. A running service re-reads it when it changes: a
key revoked with ``cxrtriage keys revoke`` is refused from the next request on, without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cxrtriage.security.principal import Principal, Role

__all__ = [
    "KEY_NAME_PATTERN",
    "KEY_PREFIX",
    "DuplicateKeyName",
    "KeyInfo",
    "KeyStore",
    "KeyStoreError",
    "UnknownKeyName",
    "looks_like_api_key",
    "new_key",
]

KEY_PREFIX = "cxt_"
#: a key's name: it appears in logs and the audit trail, so plain characters only (no spaces, no newlines)
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_FORMAT = "cxrtriage-keys/1"
_KDF = "pbkdf2_sha256"
_ITERATIONS = 20_000
_MAX_KEY_CHARS = 200
_ID = re.compile(r"^[0-9a-f]{8}$")
# a supplied key's secret: what token_urlsafe(32) makes (43 characters of the URL-safe alphabet, 256 bits) or longer,
# with at least 16 different characters (a random 43-character secret has fewer with odds of 5 in 10^14; "aaaa..."
# or a repeated word has fewer)
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43,}$")
_MIN_DISTINCT = 16
_SUPPLIED_FORM = (
    "cxt_<8 hex digits>_<at least 43 random characters of A-Z a-z 0-9 - _, 16 or more of them different> (the form "
    "`cxrtriage keys create` makes)"
)
# compared against when no record matches, so that an unknown key costs the same hash as a wrong one
_DUMMY_SALT = b"\x00" * 16
_DUMMY_HASH = b"\x00" * 32


class KeyStoreError(Exception):
    """A keys file that cannot be read or changed, or a change that is refused; the message says which."""


class DuplicateKeyName(KeyStoreError):
    """``create`` with a name that already has a key (revoked keys keep their names)."""


class UnknownKeyName(KeyStoreError):
    """``revoke`` of a name that has no key."""


@dataclass(frozen=True)
class KeyInfo:
    """What ``keys list`` shows of a key: never its secret, never its hash."""

    id: str
    name: str
    role: Role
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class _Record:
    info: KeyInfo
    salt: bytes
    hash: bytes
    iterations: int


def looks_like_api_key(credential: str) -> bool:
    """True for a credential of this store's form (``cxt_...``); anything else is tried as a token."""
    return credential.startswith(KEY_PREFIX)


def _key_id(secret: str) -> str | None:
    if not looks_like_api_key(secret) or len(secret) > _MAX_KEY_CHARS:
        return None
    key_id, sep, rest = secret[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and rest and _ID.match(key_id) else None


def new_key() -> str:
    """A new key of this store's form, not stored anywhere: ``cxt_<8 hex digits>_<secrets.token_urlsafe(32)>``. What
    :meth:`KeyStore.create` makes, and what a key registered from its secret (``create(..., key=...)``) must look
    like."""
    return f"{KEY_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def _supplied_key_id(key: str) -> str:
    """The id of a supplied key of this store's form with a strong secret; KeyStoreError otherwise (the message
    says what the form is, never what was given)."""
    key_id = _key_id(key)
    secret = key[len(KEY_PREFIX) + len(key_id) + 1 :] if key_id else ""
    if not key_id or not _SECRET.match(secret) or len(set(secret)) < _MIN_DISTINCT:
        raise KeyStoreError(f"the supplied key is not a strong cxrtriage key: it must be {_SUPPLIED_FORM}")
    return key_id


def _hash(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogatepass"), salt, iterations)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KeyStore:
    """The API keys of one service, in ``path`` (``Settings.keys_path``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._records: dict[str, _Record] = {}

    # ------------------------------------------------------------------ reading

    def _read(self) -> dict[str, _Record]:
        """The records, re-read when the file changed (its inode, size or time: a revoke takes effect at once)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._signature, self._records = None, {}
            return {}
        except OSError as exc:
            raise KeyStoreError(f"the keys file {self.path} cannot be read ({type(exc).__name__})") from exc
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if signature == self._signature:
                return self._records
        records = self._parse(self._load_json())
        with self._lock:
            self._signature, self._records = signature, records
        return records

    def _load_json(self) -> Any:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": _FORMAT, "keys": []}
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"the keys file {self.path} cannot be read ({type(exc).__name__})") from exc

    def _parse(self, data: Any) -> dict[str, _Record]:
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("keys"), list):
            raise KeyStoreError(f"{self.path} is not a cxrtriage keys file (expected format {_FORMAT})")
        records = {}
        try:
            for item in data["keys"]:
                info = KeyInfo(item["id"], item["name"], Role(item["role"]), item["created"], item.get("revoked"))
                if item.get("kdf") != _KDF:
                    raise ValueError(f"unknown kdf {item.get('kdf')!r}")
                salt, digest = base64.b64decode(item["salt"]), base64.b64decode(item["hash"])
                records[info.id] = _Record(info, salt, digest, int(item["iterations"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"{self.path} has a malformed key record ({type(exc).__name__}: {exc})") from exc
        return records

    def list(self) -> list[KeyInfo]:
        """Every key, active and revoked, oldest first: id, name, role, created, revoked (no secret, no hash)."""
        return sorted((r.info for r in self._read().values()), key=lambda i: (i.created, i.name))

    def has_keys(self) -> bool:
        """True once any key was created, even if all are revoked (the service then stays closed: revoking every
        key locks everyone out, it never opens the door)."""
        return bool(self._read())

    def has_active(self) -> bool:
        return any(r.info.active for r in self._read().values())

    def verify(self, secret: str) -> Principal | None:
        """The principal of an active key, else None (malformed, unknown, wrong or revoked alike).

        The same work happens whatever the key: one hash and one constant-time comparison (against a dummy when
        no record has the key's id), so the answer's timing does not tell an unknown id from a wrong secret."""
        key_id = _key_id(secret)
        record = self._read().get(key_id) if key_id else None
        salt, expected, iterations = (
            (record.salt, record.hash, record.iterations) if record else (_DUMMY_SALT, _DUMMY_HASH, _ITERATIONS)
        )
        matches = hmac.compare_digest(_hash(secret, salt, iterations), expected)
        if record is None or not matches or not record.info.active:
            return None
        return Principal(name=record.info.name, role=record.info.role, via="api-key")

    # ------------------------------------------------------------------ changing

    def create(self, name: str, role: Role | str, *, key: str | None = None) -> tuple[KeyInfo, str]:
        """A new key for ``name`` with ``role``: its record and the key itself (shown once, never stored).

        ``key``: register this key instead of making one (a key made elsewhere by :func:`new_key`, which the
        operator hands over as a secret: a Hugging Face Space's); refused unless it has this store's form with a
        strong secret, and unless its id is new here."""
        if not re.match(KEY_NAME_PATTERN, name or ""):
            raise KeyStoreError(
                f"invalid key name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter "
                "or digit"
            )
        role = Role.parse(role) if isinstance(role, str) else role
        supplied_id = _supplied_key_id(key) if key is not None else None
        with self._changing() as records:
            if any(r.info.name == name for r in records.values()):
                raise DuplicateKeyName(
                    f"a key named {name!r} already exists; choose another name, or revoke it and create one under a "
                    "new name"
                )
            if supplied_id is not None and supplied_id in records:
                raise KeyStoreError(
                    f"the supplied key's id {supplied_id} is the id of the key {records[supplied_id].info.name!r} "
                    "already; make a new key"
                )
            secret = key if key is not None else new_key()
            while key is None and _key_id(secret) in records:  # pragma: no cover - 1 in 4 billion
                secret = new_key()
            key_id = secret[len(KEY_PREFIX) : len(KEY_PREFIX) + 8]  # both forms: cxt_<8 hex digits>_...
            salt = secrets.token_bytes(16)
            info = KeyInfo(key_id, name, role, _now())
            records[key_id] = _Record(info, salt, _hash(secret, salt, _ITERATIONS), _ITERATIONS)
        return info, secret

    def revoke(self, name: str) -> KeyInfo:
        """Revoke the key named ``name`` (kept in the file, marked revoked); revoking it again changes nothing."""
        with self._changing() as records:
            found = next((r for r in records.values() if r.info.name == name), None)
            if found is None:
                known = ", ".join(sorted(r.info.name for r in records.values())) or "none"
                raise UnknownKeyName(f"no key named {name!r} (keys: {known})")
            if found.info.active:
                info = KeyInfo(**{**asdict(found.info), "revoked": _now()})
                records[found.info.id] = _Record(info, found.salt, found.hash, found.iterations)
            return records[found.info.id].info

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, _Record]]:
        """Read, let the caller change, write back atomically: under an exclusive lock on ``<file>.lock``."""
        self._make_folder()
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = dict(self._parse(self._load_json()))
            yield records
            self._write(records)
        finally:
            os.close(fd)  # closing releases the lock

    def _make_folder(self) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)

    def _write(self, records: dict[str, _Record]) -> None:
        keys = [
            {**asdict(r.info), "kdf": _KDF, "iterations": r.iterations, "salt": _b64(r.salt), "hash": _b64(r.hash)}
            for r in sorted(records.values(), key=lambda r: (r.info.created, r.info.name))
        ]
        text = json.dumps({"format": _FORMAT, "keys": keys}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

"""Security commands: ``cxrtriage keys create | list | revoke``, the API keys of the service
(:class:`cxrtriage.security.keys.KeyStore`, in the service's state folder: ``Settings.keys_path``, beside the
worklist).

``keys create`` prints the key once, alone on the last line of standard output (the sentences around it go to
standard error), so ``KEY=$(cxrtriage keys create --role submitter --name gateway | tail -n1)`` captures it; with
``--key-file PATH`` it writes the key to a new owner-only file instead and prints no key (the demo container's
first start: ``demo_app/docker/entrypoint.sh``). With ``--from-env VAR`` it registers the key that the environment
variable ``VAR`` holds instead of making one (a key made elsewhere, handed over as a secret: the Hugging Face Space's
``CXRTRIAGE_SPACE_KEY``, ``demo_app/live_space/app.py``); it must have the form ``keys create`` makes, with a strong
secret (:meth:`~cxrtriage.security.keys.KeyStore.create`), and nothing prints it.

Every key change, and every refused one, is a record in the audit trail of the same settings
(``Settings.audit_file``): action ``key.create`` or ``key.revoke``, principal the operating-system user who ran the
command, role ``admin`` (whoever can write the keys file administers the service), via ``cli``, outcome ``ok`` or
``refused``, and the key's name, role and id in ``reason`` (the audit trail's only free-text field; a key name is
plain characters by :data:`~cxrtriage.security.keys.KEY_NAME_PATTERN`). Never the key. A key whose creation cannot
be recorded is revoked at once and not shown: no key is handed out without its record.

Exit codes: 0 done, 1 a key revoked whose revocation could not be recorded (the revocation stands), 2 a refused
change (a name that already has a key, an unknown name, an invalid name), an unreadable keys file, or a key not
created because the audit trail cannot be written, each with a sentence.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, command_settings
from cxrtriage.security.audit import AuditError, AuditEvent, AuditLog
from cxrtriage.security.keys import (
    KEY_NAME_PATTERN,
    DuplicateKeyName,
    KeyInfo,
    KeyStore,
    KeyStoreError,
    looks_like_api_key,
)
from cxrtriage.security.principal import Role


def _store(args: argparse.Namespace) -> KeyStore:
    return KeyStore(command_settings(args).keys_path)


def _operator() -> str:
    """The operating-system user running the command (the audit trail's principal for a key change)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container user without a name in /etc/passwd, and no LOGNAME/USER
        return f"uid-{os.getuid()}"


def _record(args: argparse.Namespace, action: str, outcome: str, reason: str) -> str | None:
    """Append a key change to the audit trail; None when written, else the sentence saying why not."""
    trail = AuditLog(command_settings(args).audit_file)
    try:
        trail.append(
            AuditEvent(action, outcome, principal=_operator(), role=Role.ADMIN.value, via="cli", reason=reason)
        )
    except (AuditError, OSError) as exc:
        return f"the audit trail {trail.path} cannot be written ({exc})"
    return None


def _described(info: KeyInfo) -> str:
    return f"key {info.name} (role {info.role.value}, id {info.id})"


def _named(name: str) -> str:
    """A name an operator typed, as the audit trail may hold it: only a valid key name (plain characters)."""
    return f"key {name}" if re.match(KEY_NAME_PATTERN, name or "") else "an invalid key name"


def _write_key_file(path: Path, secret: str) -> str | None:
    """Write the key to a new file readable by its owner only (0600; an existing file or a link is refused); None
    when written, else why not."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"cannot create {path} ({exc.strerror})"
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secret + "\n")
    return None


def _env_name(value: str) -> str:
    """``--from-env``'s argument: an environment variable's name (it is printed and recorded, so plain characters
    only). The refusal never repeats what was given: it could be the key itself, typed in the wrong place."""
    if looks_like_api_key(value) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        raise argparse.ArgumentTypeError("give the NAME of an environment variable that holds the key, not the key")
    return value


def cmd_keys_create(args: argparse.Namespace) -> int:
    store = _store(args)
    key_file = Path(args.key_file).expanduser() if args.key_file else None
    if key_file is not None and (key_file.exists() or key_file.is_symlink()):
        print(f"error: {key_file} already exists; --key-file writes a new file only", file=sys.stderr)
        return 2
    supplied = None
    if args.from_env:
        supplied = os.environ.get(args.from_env, "").strip()  # a pasted secret may end with a newline
        if not supplied:
            print(f"error: {args.from_env} is not set (--from-env registers the key it holds)", file=sys.stderr)
            return 2
    try:
        info, secret = store.create(args.name, Role.parse(args.role), key=supplied)
    except (KeyStoreError, ValueError) as exc:
        print(f"error: {args.from_env}: {exc}" if supplied else f"error: {exc}", file=sys.stderr)
        why = "already exists" if isinstance(exc, DuplicateKeyName) else "refused"
        if problem := _record(args, "key.create", "refused", f"{_named(args.name)}: {why}"):
            print(f"warning: {problem}", file=sys.stderr)
        return 2
    origin = f", registered from {args.from_env}" if supplied else ""
    if problem := _record(args, "key.create", "ok", _described(info) + origin):
        store.revoke(info.name)
        print(
            f"error: {problem}; the new key {info.name!r} was revoked at once and is not shown (no key is handed out "
            "without its audit record). Make the audit trail writable (CXRTRIAGE_AUDIT_PATH, or the state folder), "
            "then create the key under another name.",
            file=sys.stderr,
        )
        return 2
    if supplied is not None:
        print(
            f"Registered the API key in {args.from_env} as {info.name!r} (role {info.role.value}, id {info.id}) in "
            f"{store.path}; the key is not printed. Revoke it with `cxrtriage keys revoke {info.name}`.",
            file=sys.stderr,
        )
        return 0
    if key_file is not None:
        if problem := _write_key_file(key_file, secret):
            store.revoke(info.name)
            _record(args, "key.revoke", "ok", f"{_described(info)}: its key file could not be written")
            print(f"error: {problem}; the new key {info.name!r} was revoked at once", file=sys.stderr)
            return 2
        print(
            f"Created API key {info.name!r} (role {info.role.value}, id {info.id}) in {store.path}; the key is in "
            f"{key_file} (readable by its owner only), not printed. Revoke it with `cxrtriage keys revoke "
            f"{info.name}`.",
            file=sys.stderr,
        )
        return 0
    print(
        f"Created API key {info.name!r} (role {info.role.value}, id {info.id}) in {store.path}.\n"
        "The key is shown ONCE, on the next line; store it now (only a salted hash is kept, it cannot be shown "
        f"again). Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; revoke it with "
        f"`cxrtriage keys revoke {info.name}`.",
        file=sys.stderr,
        flush=True,
    )
    print(secret, flush=True)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        keys = store.list()
    except KeyStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print(f"no API keys in {store.path} (create one with `cxrtriage keys create --role ROLE --name NAME`)")
        return 0
    rows = [("NAME", "ROLE", "ID", "CREATED", "REVOKED")]
    rows += [(k.name, k.role.value, k.id, k.created, k.revoked or "-") for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        info = store.revoke(args.name)
    except KeyStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if problem := _record(args, "key.revoke", "refused", f"{_named(args.name)}: no such key"):
            print(f"warning: {problem}", file=sys.stderr)
        return 2
    print(f"revoked API key {info.name!r} (role {info.role.value}) at {info.revoked}; a running service refuses it now")
    if problem := _record(args, "key.revoke", "ok", _described(info)):
        print(f"error: {problem}; the revocation stands but is not recorded", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: SubCommands) -> None:
    """Register ``keys create | list | revoke`` on the main CLI's subcommands."""
    keys = sub.add_parser(
        "keys", help="API keys of the web service: create (shown once), list (no secrets), revoke"
    ).add_subparsers(dest="keys_command", required=True)
    roles = [r.value for r in Role]

    s = keys.add_parser("create", help="create an API key; it is printed once, alone on the last line of stdout")
    s.add_argument(
        "--role",
        required=True,
        choices=roles,
        help="submitter (send images), reader (worklist, results, UI), admin (all, metrics)",
    )
    s.add_argument("--name", required=True, help="who or what holds it (letters, digits, . _ @ -), e.g. ct-gateway")
    given = s.add_mutually_exclusive_group()
    given.add_argument(
        "--key-file",
        metavar="PATH",
        help="write the key to PATH, a new file readable by its owner only (0600), instead of standard output",
    )
    given.add_argument(
        "--from-env",
        metavar="VAR",
        type=_env_name,
        help="register the key that environment variable VAR holds (a key of the form this command makes, handed over "
        "as a secret) instead of making one; it is not printed",
    )
    s.set_defaults(func=cmd_keys_create)

    s = keys.add_parser("list", help="the keys: name, role, id, created, revoked (never a secret)")
    s.set_defaults(func=cmd_keys_list)

    s = keys.add_parser("revoke", help="revoke the key named NAME (a running service refuses it from the next request)")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(func=cmd_keys_revoke)

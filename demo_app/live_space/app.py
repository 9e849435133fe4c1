"""Hugging Face Space entry point: the same REST API and web UI as ``cxrtriage serve``, on the bundled model, with
authentication.

The Space runs ``python app.py`` in the folder that ``build_space.py`` assembled (this file, the Space README,
requirements.txt and a copy of ``src/cxrtriage`` with its bundled model files); run the same command locally to see
what the Space serves. ``PORT`` (default 7860, the port a Space exposes) and every ``CXRTRIAGE_*`` setting apply.
No data directory is needed, nothing is downloaded, and no MedGemma or MedSigLIP weights are used.

Who may use it comes from two Space secrets (Settings -> Variables and secrets; a Space gets them as environment
variables): ``CXRTRIAGE_SPACE_KEY``, a key of the form ``cxrtriage keys create`` makes (``python app.py --new-key``
prints a new one), and ``CXRTRIAGE_SPACE_USER``, the name to sign in with (default ``judge``). At every start the key
is registered with the ``reader`` role (worklist, results, the UI and its Triage tab) in the Space's state folder,
as ``cxrtriage keys create --from-env CXRTRIAGE_SPACE_KEY`` (a salted hash only, an audit record), unless it is
there already; then the service requires it (or a session signed in with it) for everything but ``/health``,
``/ready`` and the sign-in page. Without the key secret the Space does not start, and its log says how to set it:
a key generated into a file on the Space's disk would be one nobody reads (a Space has no shell but in Dev Mode),
and serving open would show whatever a visitor uploads to the next one. The key is never printed or logged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEY_VAR = "CXRTRIAGE_SPACE_KEY"
USER_VAR = "CXRTRIAGE_SPACE_USER"
DEFAULT_USER = "judge"
SET_THE_SECRET = (
    f"in the Space's Settings -> Variables and secrets, add a secret {KEY_VAR} holding a key made with "
    f"`python app.py --new-key` (in the Space folder, on your own machine) and {USER_VAR} (default {DEFAULT_USER}), "
    "the name judges sign in with; then restart the Space"
)


def _use_copied_package() -> None:
    """The copied package first, so the Space (and a local run of this folder) serve exactly what was assembled."""
    if (HERE / "src" / "cxrtriage").is_dir() and str(HERE / "src") not in sys.path:
        sys.path.insert(0, str(HERE / "src"))


def register_space_key(cli: Callable[[list[str]], int]) -> int:
    """Register the key of ``CXRTRIAGE_SPACE_KEY`` under ``CXRTRIAGE_SPACE_USER`` (role reader) unless it is there
    already; 0 when the service may start, else 2 with a sentence on standard error (never the key).

    A restart with the same secrets changes nothing (the state folder may be persistent storage). A name whose key
    is not the secret's any more (the owner changed the secret) has that old key revoked, since whoever held it
    must not keep access, and the Space stops until it is given a new name: a revoked key keeps its name."""
    from cxrtriage.config import Settings
    from cxrtriage.errors import ConfigurationError
    from cxrtriage.security.keys import KeyStore, KeyStoreError

    key = os.environ.get(KEY_VAR, "").strip()
    user = os.environ.get(USER_VAR, "").strip() or DEFAULT_USER
    if not key:
        print(
            f"space: not started: {KEY_VAR} is not set, and this Space serves only with authentication; "
            f"{SET_THE_SECRET}.",
            file=sys.stderr,
        )
        return 2
    try:
        store = KeyStore(Settings().keys_path)
        holder = store.verify(key)
        old = next((k for k in store.list() if k.name == user and k.active), None)
    except (ConfigurationError, KeyStoreError) as exc:
        print(f"space: not started: {exc}", file=sys.stderr)
        return 2
    if holder is not None and holder.name == user:
        print(
            f"space: the key in {KEY_VAR} is registered already as {user!r} ({holder.role.value}) in {store.path}",
            file=sys.stderr,
        )
        return 0
    if old is not None:
        cli(["keys", "revoke", user])
        print(
            f"space: not started: the key of {user!r} in {store.path} is not the one in {KEY_VAR} any more, so it "
            f"was revoked; a name keeps its key, so set {USER_VAR} to a new name, give it and the key to the "
            "judges, and restart the Space.",
            file=sys.stderr,
        )
        return 2
    if cli(["keys", "create", "--role", "reader", "--name", user, "--from-env", KEY_VAR]) != 0:
        print(f"space: not started (the line above says why); {SET_THE_SECRET}.", file=sys.stderr)
        return 2
    return 0


def _serve_arguments() -> list[str]:
    """``cxrtriage serve`` as a Space needs it: every interface, the Space's own host name allowed besides the
    loopback names (``SPACE_HOST``, set by Hugging Face), and behind Hugging Face's HTTPS proxy the forwarded client
    address and scheme trusted, so that the failed-sign-in limit counts each visitor and not the proxy (one
    visitor's wrong keys would lock every judge out), and the session cookie marked Secure."""
    args = ["serve", "--host", os.environ.get("HOST", "0.0.0.0"), "--port", os.environ.get("PORT", "7860")]  # noqa: S104 - a Space must listen on every interface; the allowed hosts still apply
    if os.environ.get("SPACE_HOST"):
        args += ["--allowed-hosts", f"localhost,127.0.0.1,[::1],{os.environ['SPACE_HOST']}"]
        os.environ.setdefault("FORWARDED_ALLOW_IPS", "*")  # uvicorn's; only Hugging Face's proxy reaches a Space
        os.environ.setdefault("CXRTRIAGE_SESSION_COOKIE_SECURE", "true")  # visitors reach a Space over HTTPS only
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _use_copied_package()
    if argv == ["--new-key"]:  # for the Space's owner, on their own machine: the value of the secret
        from cxrtriage.security.keys import new_key

        print(new_key())
        return 0
    if argv:
        print(
            "usage: python app.py            serve, as the Space does (needs the CXRTRIAGE_SPACE_KEY secret)\n"
            "       python app.py --new-key  print a new key for the CXRTRIAGE_SPACE_KEY secret",
            file=sys.stderr,
        )
        return 2
    import cxrtriage
    from cxrtriage.cli.main import main as cli

    print(f"cxrtriage {cxrtriage.__version__} from {Path(cxrtriage.__file__).parent}", flush=True)
    if registered := register_space_key(cli):
        return registered
    return cli(_serve_arguments())


if __name__ == "__main__":
    raise SystemExit(main())

"""Option rules shared by every command group of the CLI (run-time, evaluation, training, deliverables, PACS,
``hai-def``), kept here so that no group module imports another: the one :class:`~cxrtriage.config.Settings` of a
command, the backend options, the data directory and the check for an optional extra."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TypeAlias

from cxrtriage.config import Settings

#: what ``ArgumentParser.add_subparsers`` returns: each command group module registers its commands on it
SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_backend_options(s: argparse.ArgumentParser) -> None:
    """``--backend`` / ``--model``: which model configuration the command's engine is built from."""
    from cxrtriage.backends import BACKENDS

    s.add_argument("--backend", choices=sorted(BACKENDS), help="model backend (default: CXRTRIAGE_BACKEND or bundled)")
    s.add_argument(
        "--model",
        help="model id or directory for the backend, e.g. google/medgemma-4b-it "
        "(default: CXRTRIAGE_MODEL, or the backend's default; for bundled: "
        "CXRTRIAGE_MODEL_DIR, or the bundled model)",
    )


def add_site_option(s: argparse.ArgumentParser) -> None:
    """``--site DIR``: the site profile (``cxrtriage commission``) whose calibration, threshold and review band the
    engine applies; the command's settings take it as ``site_dir`` (:func:`command_settings`)."""
    s.add_argument(
        "--site",
        metavar="SITE_DIR",
        help="site profile folder written by `cxrtriage commission` (default: CXRTRIAGE_SITE, else the bundled "
        "operating point, not validated at this site)",
    )


def site_problem(settings: Settings) -> str | None:
    """Why the configured site profile cannot serve the configured bundled model (another model's, unreadable), read
    before a server starts so the command exits 2 with the sentence instead of a worker failing to load; None when
    there is no profile, it fits, or the backend is not the bundled one (its engine checks at load)."""
    if settings.site_dir is None or settings.backend != "bundled":
        return None
    from cxrtriage.backends.bundle_config import META_FILE, BundleConfig
    from cxrtriage.errors import ConfigurationError, ModelError
    from cxrtriage.schema import ModelInfo
    from cxrtriage.site import load_profile

    try:
        bundle = BundleConfig.load(settings.bundle_dir / META_FILE)
        load_profile(settings.site_dir, ModelInfo(name=bundle.name, version=bundle.version, sha256=bundle.sha256))
    except (ConfigurationError, ModelError) as exc:
        return str(exc)
    return None


def command_settings(args: argparse.Namespace, **values: Any) -> Settings:
    """The command's settings, built once: the environment's ``CXRTRIAGE_*`` values with ``values`` (its options;
    None means not given) on top, then ``--backend`` / ``--model`` when the command has them. Nothing is written to
    the environment: the settings are passed to whatever the command starts. A bad value raises
    :class:`cxrtriage.errors.ConfigurationError` naming the variable (``main`` exits 2 with it)."""
    if getattr(args, "site", None):  # --site (add_site_option) wins over CXRTRIAGE_SITE
        values = {**values, "site_dir": args.site}
    settings = Settings(**{k: v for k, v in values.items() if v is not None})
    backend, model = getattr(args, "backend", None), getattr(args, "model", None)
    return settings.with_model(backend, model) if backend or model else settings


def resolve_data_dir(arg: str | None, settings: Settings | None = None) -> Path:
    """``--data-dir``, else ``CXRTRIAGE_DATA_DIR``, else ``../shared/data``; FileNotFoundError with what to do."""
    if arg:
        return Path(arg)
    settings = settings if settings is not None else Settings()
    found = settings.find_data_dir(required=True)  # FileNotFoundError naming what is wrong and what to do
    if found is None:  # required=True raises instead; kept as a check that survives python -O, unlike an assert
        raise FileNotFoundError("No data directory: set CXRTRIAGE_DATA_DIR")
    return found


def data_dir_or_exit(arg: str | None) -> Path:
    """:func:`resolve_data_dir` for a command: a data directory that cannot be found is a configuration error, so
    the command exits 2 with the sentence saying what to do (``cxrtriage.cli.main``'s exit codes)."""
    try:
        return resolve_data_dir(arg)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Exit 2 with one sentence naming the pip command when an optional dependency is missing (checked before a
    command imports its machinery, so the user never sees an ImportError traceback)."""
    from cxrtriage.optional import MissingDependency, require

    try:
        require(module, extra=extra, purpose=purpose)
    except MissingDependency as exc:
        raise SystemExit(f"error: {exc}") from None

"""How ``cxrtriage serve`` runs the service under uvicorn, with the settings the CLI built.

The app is ``functools.partial(create_app, settings)`` and the HTTP protocol the header-timeout one with the
timeout bound, both handed to uvicorn as objects rather than import strings. With several worker processes,
uvicorn pickles its ``Config`` into each (spawned) worker, so every worker builds its app from the same settings
object: the CLI's options reach the workers without being written to the environment. ``uvicorn.run`` refuses an
app object with ``workers > 1``, so the two ways of running are spelled out here (as ``uvicorn.run`` does them).

With several workers, the supervisor runs inside :func:`cxrtriage.serve.worker_metrics.shared_metrics_dir`: a fresh
directory where every worker keeps its Prometheus values, so that ``/metrics`` answers for all of them. That one
variable (``PROMETHEUS_MULTIPROC_DIR``) does go through the environment, because prometheus_client reads it at import
in each spawned worker, before the pickled settings are unpacked; its module says why and how.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from cxrtriage.config import Settings

#: uvicorn's exit status when the server could not start (uvicorn.config.STARTUP_FAILURE)
STARTUP_FAILURE = 3


def uvicorn_config(settings: Settings, *, workers: int = 1, log_config: dict[str, Any] | None = None) -> Any:
    """The uvicorn ``Config`` of the service: app and protocol built from ``settings``.

    access_log off: uvicorn's line holds client address and query string; cxrtriage logs its own sanitised line.
    ssl_certfile / ssl_keyfile: HTTPS when the settings name a certificate.
    timeout_graceful_shutdown: after SIGTERM, requests still running are cancelled so that the process exits (a
    stalled upload gets 408 from the body timeout first); timeout_keep_alive closes idle connections; the protocol
    gives 408 to a connection whose request headers stall (``header_timeout_s``).
    """
    import uvicorn

    from cxrtriage.serve.app import create_app
    from cxrtriage.serve.protocol import HeaderTimeoutH11Protocol

    extra: dict[str, Any] = {} if log_config is None else {"log_config": log_config}
    if settings.ssl_certfile is not None:  # HTTPS (uvicorn's TLS); the CLI checks that both files exist
        extra.update(ssl_certfile=str(settings.ssl_certfile), ssl_keyfile=str(settings.ssl_keyfile))
    protocol = functools.partial(HeaderTimeoutH11Protocol, header_timeout_s=settings.header_timeout_s)
    return uvicorn.Config(
        functools.partial(create_app, settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        timeout_keep_alive=5,
        http=protocol,
        **extra,
    )


def run_server(settings: Settings, *, workers: int = 1, log_config: dict[str, Any] | None = None) -> int:
    """Serve until stopped (SIGINT/SIGTERM); 0, or :data:`STARTUP_FAILURE` when a single process could not start."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn_config(settings, workers=workers, log_config=log_config)
    server = uvicorn.Server(config=config)
    if config.workers > 1:
        from cxrtriage.serve.worker_metrics import shared_metrics_dir

        sockets = [config.bind_socket()]
        with shared_metrics_dir():  # before the workers are spawned: they inherit it (serve/worker_metrics.py)
            if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn releases take the target
                Multiprocess(config, target=server.run, sockets=sockets).run()
            else:
                Multiprocess(config, sockets=sockets).run()
        return 0
    try:
        server.run()
    except KeyboardInterrupt:  # pragma: no cover - as uvicorn.run
        pass
    return 0 if server.started else STARTUP_FAILURE

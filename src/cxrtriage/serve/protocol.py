"""uvicorn's h11 protocol with a header timeout: a connection that starts a request but does not finish its
headers within the configured header timeout (``CXRTRIAGE_HEADER_TIMEOUT_S``, default 10 s) gets 408 and is closed
(issue 9.4).

uvicorn times out idle keep-alive connections, and the service's middleware times out stalled bodies, but a
client that sends half a request line or half its headers was held open forever (a slow-loris connection).
``cxrtriage serve`` gives uvicorn this class with the timeout of its settings bound
(:func:`cxrtriage.serve.server.run_server`: ``functools.partial(HeaderTimeoutH11Protocol, header_timeout_s=...)``,
which pickles, so worker processes get it too); used by name, it applies the default.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from cxrtriage.config import DEFAULT_HEADER_TIMEOUT_S


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "detail": f"the request headers did not arrive within {seconds:g} s",
            "error_type": "RequestTimeout",
            "request_id": uuid.uuid4().hex,
        }
    ).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class HeaderTimeoutH11Protocol(H11Protocol):
    """Arms a timer when a connection opens and after each response; the timer is disarmed once the next
    request's headers have been parsed (uvicorn then has a request cycle that is not complete)."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = float(header_timeout_s)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        seconds = self.header_timeout_s
        self._header_timer = self.loop.call_later(seconds, self._on_header_timeout, seconds)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self, seconds: float) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._in_request():
            return
        self.transport.write(_timeout_response(seconds))
        self.transport.close()

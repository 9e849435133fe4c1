"""uvicorn's h11 protocol with a header timeout: a connection that starts a request but does not finish its
headers within ``CXRTRIAGE_HEADER_TIMEOUT_S`` (default 10 s) gets 408 and is closed (issue 9.4).

uvicorn times out idle keep-alive connections, and the service's middleware times out stalled bodies, but a
client that sends half a request line or half its headers was held open forever (a slow-loris connection).
``cxrtriage serve`` passes ``http="cxrtriage.serve.protocol:HeaderTimeoutH11Protocol"`` to uvicorn; an import
string, so it also works with several worker processes.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from uvicorn.protocols.http.h11_impl import H11Protocol

from cxrtriage import config
from cxrtriage.serve.settings import DEFAULT_HEADER_TIMEOUT_S


def header_timeout_s() -> float:
    """``CXRTRIAGE_HEADER_TIMEOUT_S`` (seconds, > 0), else the default."""
    return config.header_timeout_s(DEFAULT_HEADER_TIMEOUT_S)


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"detail": f"the request headers did not arrive within {seconds:g} s",
                       "error_type": "RequestTimeout", "request_id": uuid.uuid4().hex}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class HeaderTimeoutH11Protocol(H11Protocol):
    """Arms a timer when a connection opens and after each response; the timer is disarmed once the next
    request's headers have been parsed (uvicorn then has a request cycle that is not complete)."""

    _header_timer: asyncio.TimerHandle | None = None

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
        seconds = header_timeout_s()
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

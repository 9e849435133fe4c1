"""Issue 9.4: a client that stalls its upload gets 408, and SIGTERM ends the service within seconds anyway.

Runs the real `cxrtriage serve` (uvicorn) in a subprocess on a loopback port: timeouts live in the HTTP server and
its middleware, which an in-process test client would bypass."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

STALLED_HEADERS = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 1000000\r\n\r\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "CXRTRIAGE_BODY_TIMEOUT_S": "1.5",
        "CXRTRIAGE_HEADER_TIMEOUT_S": "1.5",
        "CXRTRIAGE_SHUTDOWN_TIMEOUT_S": "2",
        "CXRTRIAGE_UI": "false",
        "CXRTRIAGE_WARMUP": "false",
        "CXRTRIAGE_CROPS_DIR": str(tmp_path / "crops"),
    }
    cli = Path(sys.executable).parent / "cxrtriage"
    proc = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("cxrtriage serve did not answer /health within 60 s")
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def _stalled_upload(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(STALLED_HEADERS + b"--xyz\r\nContent-Dis")  # 20 bytes of a 1 MB body, then nothing
    return sock


def test_a_stalled_upload_gets_408(server) -> None:
    _, port = server
    sock = _stalled_upload(port)
    started = time.monotonic()
    reply = b""
    while chunk := sock.recv(4096):  # the server closes the connection after the 408
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"RequestTimeout" in reply and b"stalled" in reply
    assert time.monotonic() - started < 8


def test_sigterm_exits_within_seconds_despite_a_stalled_upload(server) -> None:
    proc, port = server
    sock = _stalled_upload(port)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    finally:
        sock.close()
    assert time.monotonic() - started < 10


def test_stalled_request_headers_get_408_and_the_connection_closes(server) -> None:
    """A slow-loris connection (half a request, then nothing) was held open forever."""
    _, port = server
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
    reply = b""
    while chunk := sock.recv(4096):  # until the server closes the connection
        reply += chunk
    elapsed = time.monotonic() - t0
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408") and b'"error_type": "RequestTimeout"' in reply, reply[:200]
    assert 1.0 <= elapsed < 6.0, elapsed


def test_header_timer_is_rearmed_after_a_response(server) -> None:
    """After a complete request the same connection may not hold a half-sent second request forever either."""
    _, port = server
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = b""
    while b'"ok"}' not in first:  # the whole first response (headers and body may come in separate segments)
        chunk = sock.recv(4096)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\nHo")
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_the_body_timeout_ends_with_the_body_so_a_long_response_is_not_cut() -> None:
    """A request whose body has arrived may wait longer than the body timeout for the client's disconnect (the UI's
    event stream does, while a triage waits in the queue); only a stalled upload gets 408."""
    import asyncio

    from cxrtriage.serve.middleware import BodySizeLimitMiddleware

    async def app(scope, receive, send) -> None:  # reads the body, answers, then listens for the disconnect
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.body", "body": b"done"})

    def client(stall_before_disconnect_s: float, body_parts: int):
        messages = [{"type": "http.request", "body": b"x", "more_body": i < body_parts - 1} for i in range(body_parts)]

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.sleep(stall_before_disconnect_s)
            return {"type": "http.disconnect"}

        return receive

    async def run(receive) -> list[dict]:
        sent: list[dict] = []

        async def send(message) -> None:
            sent.append(message)

        await BodySizeLimitMiddleware(app, max_bytes=100, body_timeout_s=0.2)(
            {"type": "http", "headers": [], "path": "/"}, receive, send
        )
        return sent

    sent = asyncio.run(run(client(0.5, body_parts=2)))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1].get("body") == b"done"

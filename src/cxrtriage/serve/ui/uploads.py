"""Web-UI uploads stay in memory, and the UI serves no file outside the crops directory (issue 9.2).

Gradio's own upload route stores each file as ``<GRADIO_TEMP_DIR>/<hash>/<original file name>`` for up to an
hour, full DICOM header included, and its ``/file=`` route serves it back to anyone who knows the path; the
original file name is often the patient's. :func:`install_ui_file_routes` registers routes on the service
*before* Gradio is mounted, so they take precedence over Gradio's:

* ``POST <ui>/gradio_api/upload`` reads the multipart upload into memory (:class:`UploadStore`) and answers the
  browser with an opaque reference ``cxrtriage-upload:<random>`` instead of a path. Nothing is written under a
  name: Starlette spools parts over 1 MiB to an anonymous, already-unlinked temporary file.
* ``GET <ui>/gradio_api/upload_progress`` answers "done" at once (the upload above is one request).
* ``GET/HEAD <ui>/gradio_api/file=...`` serves only PNG/JPEG/WebP files inside the UI's files directory (which
  lives in the crops directory: the rendered result images); anything else gets 404.
* Gradio's other file-handling routes (``/proxy=``, ``/process_recording``) get 404.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

__all__ = [
    "UPLOAD_REF_PREFIX",
    "UploadStore",
    "install_ui_file_routes",
    "is_upload_ref",
    "private_files_dir",
    "servable_file",
]

#: what the browser holds instead of a server path; the ``:`` keeps it from ever naming a real file here
UPLOAD_REF_PREFIX = "cxrtriage-upload:"
#: an upload stays this long after it was last used
UPLOAD_TTL_S = 900.0
#: uploads held at once, and their bytes as a multiple of the upload limit
MAX_UPLOADS = 16
UPLOAD_BYTES_FACTOR = 4
#: rendered images the UI may serve from its files directory
_SERVED_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def is_upload_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(UPLOAD_REF_PREFIX)


class UploadStore:
    """Uploaded bytes by random reference, in memory only, bounded in count, bytes and age (thread-safe).

    An upload stays until ``ttl_s`` after it was last used (so Triage can be pressed again with another report),
    or until newer uploads push it out of the ``max_items`` / ``max_bytes`` bounds, oldest first.
    """

    def __init__(
        self,
        *,
        max_items: int = MAX_UPLOADS,
        max_bytes: int = UPLOAD_BYTES_FACTOR * 32 * 1024 * 1024,
        ttl_s: float = UPLOAD_TTL_S,
    ) -> None:
        if max_items < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("max_items, max_bytes and ttl_s must be positive")
        self.max_items, self.max_bytes, self.ttl_s = max_items, max_bytes, ttl_s
        self._items: collections.OrderedDict[str, tuple[bytes, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, data: bytes, *, now: float | None = None) -> str:
        """Keep ``data``; returns its reference (``cxrtriage-upload:<random>``)."""
        ref = UPLOAD_REF_PREFIX + secrets.token_urlsafe(18)
        now = time.monotonic() if now is None else now
        with self._lock:
            self._items[ref] = (bytes(data), now)
            self._evict(now)
        return ref

    def get(self, ref: str, *, now: float | None = None) -> bytes | None:
        """The bytes of an upload, or None when unknown or expired."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._evict(now)
            item = self._items.get(ref)
            if item is None:
                return None
            self._items[ref] = (item[0], now)
            self._items.move_to_end(ref)
            return item[0]

    def discard(self, ref: str) -> None:
        with self._lock:
            self._items.pop(ref, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(len(data) for data, _ in self._items.values())

    def _evict(self, now: float) -> None:
        for ref in [r for r, (_, t) in self._items.items() if now - t > self.ttl_s]:
            del self._items[ref]
        total = sum(len(data) for data, _ in self._items.values())
        while self._items and (len(self._items) > self.max_items or total > self.max_bytes):
            _, (data, _) = self._items.popitem(last=False)
            total -= len(data)


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def servable_file(requested: str, files_dir: Path) -> Path | None:
    """The file the UI may serve for a ``/file=`` request: a rendered image inside ``files_dir``, else None."""
    if not requested or "\x00" in requested:
        return None
    root = files_dir.resolve()
    try:
        path = Path(requested).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not _within(path, root) or path.suffix.lower() not in _SERVED_SUFFIXES:
        return None
    try:
        if not path.is_file() or path.is_symlink():
            return None
    except OSError:
        return None
    return path


def install_ui_file_routes(
    app: FastAPI, prefix: str, store: UploadStore, files_dir: Path, max_upload_bytes: int
) -> None:
    """Register the routes above on ``app`` for a UI mounted at ``prefix``; call before mounting Gradio."""
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

    from cxrtriage.serve.errors import error_response
    from cxrtriage.serve.middleware import BodyTooLargeError, body_error_response, scope_request_id

    api = prefix.rstrip("/") + "/gradio_api"

    def not_found(request: Request, what: str) -> JSONResponse:
        return error_response(404, f"{what} is not served by this UI", "NotFound", request)

    async def upload(request: Request) -> Response:
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception:  # noqa: BLE001 - malformed multipart: the parser's message may echo client text
            return error_response(400, "the upload is not a valid multipart form with one file", "BadRequest", request)
        try:
            parts = [v for v in form.getlist("files") if hasattr(v, "read")]
            if len(parts) != 1:
                return error_response(400, "upload exactly one file", "BadRequest", request)
            data = await parts[0].read(max_upload_bytes + 1)
        finally:
            await form.close()
        if len(data) > max_upload_bytes:
            return body_error_response(BodyTooLargeError(max_upload_bytes), scope_request_id(request.scope))
        return JSONResponse([store.put(data)])

    async def upload_progress(request: Request) -> Response:
        async def done():
            yield f"data: {json.dumps({'msg': 'done'})}\n\n"

        return StreamingResponse(done(), media_type="text/event-stream")

    async def serve_file(request: Request) -> Response:
        found = servable_file(request.path_params.get("path", ""), files_dir)
        if found is None:
            return not_found(request, "this file")
        return FileResponse(
            found,
            media_type=_SERVED_SUFFIXES[found.suffix.lower()],
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def refuse(request: Request) -> Response:
        return not_found(request, "this route")

    # plain Starlette routes (no FastAPI parameter parsing), matched before the Gradio mount added later
    app.add_route(f"{api}/upload", upload, methods=["POST"], include_in_schema=False)
    app.add_route(f"{api}/upload_progress", upload_progress, methods=["GET"], include_in_schema=False)
    for route in (f"{api}/file={{path:path}}", f"{api}/file/{{path:path}}"):
        app.add_route(route, serve_file, methods=["GET", "HEAD"], include_in_schema=False)
    for route in (f"{api}/proxy={{path:path}}", f"{api}/process_recording"):
        app.add_route(route, refuse, methods=["GET", "HEAD", "POST"], include_in_schema=False)


def private_files_dir(parent: Path | None) -> Path:
    """The UI's files directory (Gradio's cache for rendered images): ``<crops dir>/ui``, owner-only."""
    import tempfile

    if parent is None:
        path = Path(tempfile.mkdtemp(prefix="cxrtriage-ui-"))
    else:
        path = Path(parent) / "ui"
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path

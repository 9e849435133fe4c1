"""Pull mode for a PACS with a REST interface: ``cxrtriage orthanc-pull`` polls Orthanc's change log
(``GET /changes``) for new instances, downloads each (``/instances/{id}/file``), triages it with the same
:class:`cxrtriage.pacs.handling.InstanceHandler` as the DICOM node (the download is parsed once and its pixels decoded
once), and stores its DICOM outputs (the SR, and the Secondary Capture) back with ``POST /instances``. The position in
the change log is kept in a state file, so a restart neither misses nor repeats instances. cxrtriage's own results
arrive as new instances too; they are recognised by the one Manufacturer value cxrtriage writes
(:data:`cxrtriage.interop.dicom_output.MANUFACTURER`) and skipped.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cxrtriage.log_text import loggable
from cxrtriage.pacs.handling import InstanceHandler

log = logging.getLogger("cxrtriage.pacs")


class OrthancError(RuntimeError):
    """Orthanc did not answer as expected (unreachable, refused, or not Orthanc)."""


class OrthancClient:
    """The few calls of Orthanc's REST API that pull mode needs, over the standard library (nothing to install)."""

    def __init__(
        self, url: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 30.0
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):  # urllib would also open file: URLs
            raise OrthancError("Orthanc's URL must start with http:// or https://")
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self._auth = None
        if username is not None:
            self._auth = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()

    def _request(self, path: str, data: bytes | None = None, content_type: str | None = None) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - __init__ admits only http(s) URLs
            self.url + path, data=data, method="POST" if data is not None else "GET"
        )
        if content_type:
            request.add_header("Content-Type", content_type)
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only, see __init__
                return response.read()
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"Orthanc answered HTTP {exc.code} to {path.split('?')[0]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OrthancError(f"Orthanc at {self.url} is unreachable ({type(exc).__name__})") from None

    def changes(self, since: int, limit: int = 100) -> dict:
        return json.loads(self._request(f"/changes?since={since}&limit={limit}"))

    def last_change(self) -> int:
        return int(json.loads(self._request("/changes?last"))["Last"])

    def instance_file(self, instance_id: str) -> bytes:
        return self._request(f"/instances/{instance_id}/file")

    def store(self, datasets: list[Any]) -> bool:
        """POST each dataset to ``/instances``; True when Orthanc stored all of them."""
        ok = True
        for ds in datasets:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            try:
                answer = json.loads(self._request("/instances", buffer.getvalue(), "application/dicom"))
                ok &= answer.get("Status") in ("Success", "AlreadyStored")
            except OrthancError as exc:
                log.error("result not stored in Orthanc: %s", loggable(exc))
                ok = False
        return ok


class OrthancPoller:
    """Polls the change log and hands each new instance to the handler."""

    def __init__(
        self, client: OrthancClient, handler: InstanceHandler, state_path: Path, *, from_beginning: bool = False
    ) -> None:
        self.client, self.handler, self.state_path = client, handler, Path(state_path)
        self.since = self._load_state(from_beginning)

    def _load_state(self, from_beginning: bool) -> int:
        if self.state_path.is_file():
            return int(json.loads(self.state_path.read_text())["since"])
        return 0 if from_beginning else self.client.last_change()  # by default only what arrives from now on

    def _save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"since": self.since}))
        os.replace(tmp, self.state_path)

    def poll_once(self) -> int:
        """Handle every new instance in the change log; returns how many were handled."""
        handled = 0
        while True:
            page = self.client.changes(self.since)
            for change in page.get("Changes", []):
                if change.get("ChangeType") == "NewInstance":
                    self.handler.count("received")
                    try:
                        data = self.client.instance_file(change["ID"])
                    except OrthancError as exc:
                        self.handler.count("failed")
                        log.error("instance not downloaded: %s", loggable(exc))  # names an ID Orthanc gave
                    else:
                        self.handler.handle(data)
                        handled += 1
                self.since = int(change["Seq"])
                self._save_state()
            self.since = max(self.since, int(page.get("Last", self.since)))
            self._save_state()
            if page.get("Done", True):
                return handled

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; an unreachable Orthanc is logged and retried."""
        log.info("orthanc-pull polling %s every %.1f s from change %d", self.client.url, interval_s, self.since)
        while not stop.is_set():
            try:
                self.handler.retry()  # results Orthanc refused earlier
                self.poll_once()
            except OrthancError as exc:
                log.error("%s; retrying in %.1f s", loggable(exc), interval_s)
            stop.wait(interval_s)
        log.info("orthanc-pull stopped; %s", self.handler.counts.line())

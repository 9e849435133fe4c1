"""Results the PACS did not take (destination down, association refused, a failed store) wait here on disk until it
does: nothing triaged is lost because the archive was restarting. Files are written atomically into a folder only
the service user can read (the SR and Secondary Capture carry the patient's attributes), named by a hash of their
own SOP Instance UID, and deleted once stored. Re-sending an instance the PACS already holds is harmless: the same
SOP Instance UID is the same object."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cxrtriage.pacs")


class Outbox:
    """A folder of undelivered DICOM results."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)

    def put(self, datasets: list[Any]) -> int:
        """Keep ``datasets`` for a later attempt; returns how many were written."""
        for ds in datasets:
            name = hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest()[:24] + ".dcm"
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as f:
                    ds.save_as(f, enforce_file_format=True)
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return len(datasets)

    def pending(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.dcm") if p.is_file())

    def flush(self, send: Callable[[list[Any]], bool]) -> int:
        """Try to deliver everything waiting, in one go; returns how many were delivered (0 when the destination
        still refuses: all stay for the next attempt)."""
        import pydicom

        paths = self.pending()
        if not paths:
            return 0
        datasets = []
        for path in paths:
            try:
                datasets.append(pydicom.dcmread(path))
            except Exception as exc:  # noqa: BLE001 - a damaged file is set aside, not retried forever
                log.error("outbox file unreadable (%s); moved aside", type(exc).__name__)
                path.rename(path.with_suffix(".damaged"))
                paths.remove(path)
        if not datasets or not send(datasets):
            return 0
        for path in paths:
            path.unlink(missing_ok=True)
        log.info("outbox: %d waiting result(s) delivered", len(datasets))
        return len(datasets)

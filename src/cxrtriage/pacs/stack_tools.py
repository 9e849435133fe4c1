"""What every part of the PACS demo stack (:mod:`cxrtriage.pacs.stack`) shares: the AE titles on loopback, the one
error it raises, finding the installed tools (Orthanc, dcmtk) and reading a loopback HTTP URL (with the web
service's API key where it needs one). Kept apart so the
inputs, the stack and its checks can each use them without importing one another."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

ORTHANC_AET, NODE_AET, MODALITY_AET = "ORTHANC", "CXRTRIAGE", "MODALITY"


class DemoError(RuntimeError):
    """A step of the demo could not run (a tool missing, a server that did not start): one sentence for the user."""


def find_tool(name: str, *extra_dirs: str) -> str:
    """The path of an installed tool (on PATH, else in one of ``extra_dirs``), or DemoError saying how to install it."""
    path = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None)
    if path is None:
        raise DemoError(f"{name} is not installed: on Debian/Ubuntu run `sudo apt-get install orthanc dcmtk`")
    return path


def http_get(url: str, timeout: float = 5.0, api_key: str | None = None) -> bytes:
    """The body of a GET to one of the loopback servers this demo started; ``api_key`` goes as ``X-API-Key``."""
    request = urllib.request.Request(url, headers={"X-API-Key": api_key} if api_key else {})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback servers this demo started
        return response.read()

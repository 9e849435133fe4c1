"""Issue 9.2 without a browser: UI uploads are held in memory by reference, bounded, and never served back."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtriage.serve.ui.uploads import UploadStore, is_upload_ref, servable_file


def test_store_gives_opaque_references_and_returns_the_bytes() -> None:
    store = UploadStore()
    ref = store.put(b"DICM bytes")
    assert is_upload_ref(ref) and "DICM" not in ref and "/" not in ref
    assert store.get(ref) == b"DICM bytes"
    assert store.get(ref + "x") is None


def test_store_is_bounded_in_count_bytes_and_age() -> None:
    store = UploadStore(max_items=2, max_bytes=10, ttl_s=60)
    a = store.put(b"aaaa", now=0)
    b = store.put(b"bbbb", now=1)
    c = store.put(b"cccc", now=2)  # over the count: the oldest goes
    assert store.get(a, now=3) is None and store.get(b, now=3) == b"bbbb" and store.get(c, now=3) == b"cccc"
    store.put(b"dddddddd", now=4)  # over the byte bound: oldest first until it fits
    assert store.total_bytes <= 10 and len(store) == 1
    assert store.get(c, now=100) is None  # expired


def test_only_rendered_images_inside_the_files_dir_are_servable(tmp_path: Path) -> None:
    files = tmp_path / "crops" / "ui"
    (files / "abc").mkdir(parents=True)
    (files / "abc" / "image.png").write_bytes(b"png")
    (files / "abc" / "DOE^JANE.dcm").write_bytes(b"DICM")
    (tmp_path / "outside.png").write_bytes(b"png")
    assert servable_file(str(files / "abc" / "image.png"), files) is not None
    for bad in (
        str(files / "abc" / "DOE^JANE.dcm"),
        str(tmp_path / "outside.png"),
        str(files / ".." / ".." / "outside.png"),
        "/etc/passwd",
        "cxrtriage-upload:abc",
        "",
        "a\x00b.png",
    ):
        assert servable_file(bad, files) is None, bad


def test_upload_route_keeps_the_file_in_memory_and_file_route_refuses_it(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.ui.app import mount_ui

    app = FastAPI()
    settings = Settings(crops_dir=tmp_path / "crops", max_upload_mb=1000 / 2**20)
    assert settings.max_upload_bytes == 1000
    mount_ui(app, get_engine=lambda: None, get_status=dict, settings=settings)
    before = {p for p in tmp_path.rglob("*")}
    with TestClient(app) as client:
        reply = client.post("/ui/gradio_api/upload", files={"files": ("DOE^JANE.dcm", b"DICM header DOE^JANE")})
        assert reply.status_code == 200
        (ref,) = reply.json()
        assert is_upload_ref(ref) and "DOE" not in ref
        assert client.get(f"/ui/gradio_api/file={ref}").status_code == 404
        too_big = client.post("/ui/gradio_api/upload", files={"files": ("x.png", b"x" * 2000)})
        assert too_big.status_code == 413 and too_big.json()["error_type"] == "PayloadTooLarge"
        two = client.post("/ui/gradio_api/upload", files=[("files", ("a.png", b"a")), ("files", ("b.png", b"b"))])
        assert two.status_code == 400
        assert client.post("/ui/gradio_api/process_recording").status_code == 404
    written = [p for p in tmp_path.rglob("*") if p not in before and p.is_file()]
    assert not any(b"DOE" in p.read_bytes() or "DOE" in p.name for p in written), written

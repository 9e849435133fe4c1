"""The reading worklist: every urgent study (Urgent or needs review) before every routine one, overdue first within
each, oldest first; a page at a time with the whole list's totals; a study's state (new, opened, reported), where
reported studies leave the active list but stay; the columns a reader knows (accession, study date, view,
modality) from the image's header; a file of the first schema keeps working; the service files every result."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from pathlib import Path

import pytest
from fake_prediction import fake_prediction

from cxrtriage.worklist import READING_ORDER, StudyInfo, Worklist, is_urgent

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def _ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


def _keys(listing: dict) -> list[str]:
    return [i["key"] for i in listing["items"]]


def test_reading_order_urgent_then_overdue_routine_then_routine_each_oldest_first(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    wl.add(fake_prediction("Non-Urgent", 0.05), "ROUTINE-OLD", _ago(50))
    wl.add(fake_prediction("Non-Urgent", 0.05), "ROUTINE-NEW", _ago(5))
    wl.add(fake_prediction("Urgent", 0.9), "URGENT-NEW", _ago(1))
    wl.add(fake_prediction("Urgent", 0.6), "URGENT-OLD", _ago(20))
    wl.add(fake_prediction("Non-Urgent", 0.2, review=True), "REVIEW", _ago(10))
    wl.add(fake_prediction("Non-Urgent", 0.02), "OVERDUE", _ago(90))  # past the maximum wait: above fresh routine only
    wl.add(fake_prediction("Urgent", 0.7), "URGENT-OVERDUE", _ago(70))  # an overdue urgent study: above everything
    items = wl.items(now=NOW)
    assert [i["key"] for i in items] == [
        "URGENT-OVERDUE",
        "URGENT-OLD",
        "REVIEW",
        "URGENT-NEW",
        "OVERDUE",
        "ROUTINE-OLD",
        "ROUTINE-NEW",
    ]
    assert [i["priority"] for i in items[:5]] == ["overdue", "urgent", "urgent", "urgent", "overdue"]
    assert items[4]["waiting_s"] == pytest.approx(90 * 60)
    assert "every urgent study (Urgent or needs review) before every routine one" in READING_ORDER


def test_205_routine_studies_two_hours_old_then_one_urgent_it_is_first_on_page_one(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    for i in range(205):
        wl.add(fake_prediction("Non-Urgent", 0.05), f"R{i}", _ago(120 + i / 100))
    wl.add(fake_prediction("Urgent", 0.9), "URGENT-NEW", _ago(0.1))
    first = wl.page(page=1, per_page=50, now=NOW)
    assert _keys(first)[0] == "URGENT-NEW"
    assert (first["total"], first["urgent_total"], first["pages"], len(first["items"])) == (206, 1, 5, 50)


def _all_urgent_first_on_page_one(wl: Worklist, urgent: set[str]) -> None:
    first = _keys(wl.page(page=1, per_page=50, now=NOW))
    assert set(first[: len(urgent)]) == urgent, "every urgent study is on page 1, before any routine one"
    assert not urgent & {i["key"] for i in wl.items(now=NOW)[len(urgent) :]}


def test_a_burst_of_1000_studies_puts_every_urgent_one_on_page_one(tmp_path):
    """980 routine and 20 urgent (or needs-review) studies at random times over the last three hours: some of each
    kind are overdue; all 20 urgent ones fill the top of page 1."""
    rng = random.Random(22)
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    kinds = ["routine"] * 980 + ["urgent"] * 10 + ["review"] * 10
    rng.shuffle(kinds)
    urgent = set()
    for i, kind in enumerate(kinds):
        pred = (
            fake_prediction("Urgent", 0.9)
            if kind == "urgent"
            else fake_prediction("Non-Urgent", 0.28 if kind == "review" else 0.05)
        )
        if kind == "review":
            pred = fake_prediction("Non-Urgent", 0.28, review=True)
        wl.add(pred, f"S{i}", _ago(rng.uniform(0, 180)))
        if kind != "routine":
            urgent.add(f"S{i}")
    assert {i["priority"] for i in wl.items(now=NOW)} == {"overdue", "urgent", "routine"}
    _all_urgent_first_on_page_one(wl, urgent)
    assert wl.page(per_page=50, now=NOW)["urgent_total"] == 20


def test_a_day_old_backlog_of_1000_routine_studies_never_hides_new_urgent_ones(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    for i in range(1000):
        wl.add(fake_prediction("Non-Urgent", 0.05), f"R{i}", _ago(24 * 60 + i / 10))
    wl.add(fake_prediction("Non-Urgent", 0.2, review=True), "REVIEW-NEW", _ago(0.5))
    for i in range(3):
        wl.add(fake_prediction("Urgent", 0.9), f"URGENT-{i}", _ago(i))
    _all_urgent_first_on_page_one(wl, {"REVIEW-NEW", "URGENT-0", "URGENT-1", "URGENT-2"})


def test_paging_gives_totals_and_an_empty_page_past_the_end(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    for i in range(7):
        wl.add(fake_prediction("Urgent" if i < 2 else "Non-Urgent", 0.5), f"K{i}", _ago(i))
    pages = [wl.page(page=p, per_page=3, now=NOW) for p in (1, 2, 3, 4)]
    assert [len(p["items"]) for p in pages] == [3, 3, 1, 0]  # page 4 is past the end: no items, no error
    assert all((p["total"], p["urgent_total"], p["pages"], p["per_page"]) == (7, 2, 3, 3) for p in pages)
    assert sum((_keys(p) for p in pages), []) == [i["key"] for i in wl.items(now=NOW)]  # no study twice, none lost
    empty = Worklist(tmp_path / "empty.sqlite").page()
    assert (empty["total"], empty["pages"], empty["items"]) == (0, 0, [])
    for bad, message in (
        ({"per_page": 0}, "per_page must be between 1 and 200"),
        ({"per_page": 201}, "200"),
        ({"page": 0}, "page must be 1 or more"),
        ({"status": "done"}, "status must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            wl.page(**bad)


def test_reported_studies_leave_the_active_list_and_are_kept(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    wl.add(fake_prediction("Urgent", 0.9), "ACC-1", _ago(10))
    wl.add(fake_prediction("Non-Urgent", 0.1), "ACC-2", _ago(5))
    assert [i["state"] for i in wl.items(now=NOW)] == ["new", "new"]
    later = NOW + dt.timedelta(minutes=1)
    opened = wl.set_state("ACC-1", "opened", only_from="new", now=later)
    assert opened["state"] == "opened" and opened["state_changed"] == later.isoformat(timespec="microseconds")
    assert _keys(wl.page(now=NOW)) == ["ACC-1", "ACC-2"]  # opened is still active
    assert wl.set_state("ACC-1", "reported")["state"] == "reported"
    assert wl.set_state("ACC-1", "opened", only_from="new")["state"] == "reported"  # opening again changes nothing
    active, reported = wl.page("active", now=NOW), wl.page("reported", now=NOW)
    assert _keys(active) == ["ACC-2"] and (active["total"], active["urgent_total"]) == (1, 0)
    assert _keys(reported) == ["ACC-1"] and reported["urgent_total"] == 1
    assert _keys(wl.page("all", now=NOW)) == ["ACC-1", "ACC-2"]
    assert wl.result("ACC-1")["label"] == "Urgent"  # kept
    wl.set_state("ACC-1", "new")  # returned to the list
    assert _keys(wl.page(now=NOW)) == ["ACC-1", "ACC-2"]
    assert wl.set_state("NOPE", "reported") is None
    with pytest.raises(ValueError, match="state must be one of new, opened, reported"):
        wl.set_state("ACC-2", "done")


def test_reading_the_list_changes_no_state_and_a_new_result_is_new_again(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.add(fake_prediction("Non-Urgent", 0.1), "ACC-1", _ago(5))
    wl.set_state("ACC-1", "reported")
    for _ in range(3):
        wl.items(), wl.page("all"), wl.result("ACC-1"), wl.item("ACC-1")
    assert wl.item("ACC-1")["state"] == "reported"
    wl.add(fake_prediction("Urgent", 0.9), "ACC-1", _ago(1))  # a new result for the same accession must be read again
    assert wl.item("ACC-1", now=NOW)["state"] == "new" and _keys(wl.page(now=NOW)) == ["ACC-1"]


def test_the_columns_a_reader_knows_are_stored_and_a_random_key_is_shown_short(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    info = StudyInfo(accession="ACC-9", study_date="2026-12-01", study_time="23:41", view="AP", modality="DX")
    wl.add(fake_prediction("Urgent", 0.9), "ACC-9-1a2b3c4d", study=info)
    random_key = wl.add(fake_prediction("Non-Urgent", 0.1), study=StudyInfo(modality="PNG"))
    sender_key = wl.add(fake_prediction("Non-Urgent", 0.1), "SENDER-7")
    rows = {i["key"]: i for i in wl.items()}
    dicom, png, plain = rows["ACC-9-1a2b3c4d"], rows[random_key], rows[sender_key]
    assert (dicom["accession"], dicom["study_date"], dicom["study_time"], dicom["view"], dicom["modality"]) == (
        "ACC-9",
        "2026-12-01",
        "23:41",
        "AP",
        "DX",
    )
    assert png["accession"] == random_key[:8] and png["modality"] == "PNG" and png["study_date"] is None
    assert plain["accession"] == "SENDER-7" and plain["view"] is None
    with pytest.raises(ValueError):
        wl.add(fake_prediction("Urgent", 0.9), "K", study=StudyInfo(accession="Doe^John"))


OLD_SCHEMA = """CREATE TABLE worklist (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, score REAL NOT NULL, needs_review INTEGER NOT NULL,
    received TEXT NOT NULL, result TEXT NOT NULL)"""


def test_a_worklist_file_of_the_first_schema_keeps_working(tmp_path):
    """A file the previous release wrote (no state, no study columns): its studies are listed as new, in order,
    and can be opened, reported and filed again."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        for key, label, minutes in (("OLD-ROUTINE", "Non-Urgent", 30), ("OLD-URGENT", "Urgent", 3)):
            pred = fake_prediction(label, 0.9 if label == "Urgent" else 0.1)
            received = _ago(minutes).isoformat()  # the old writer's format
            db.execute(
                "INSERT INTO worklist VALUES (?, ?, ?, ?, ?, ?)",
                (key, label, pred.score, 0, received, pred.model_dump_json()),
            )
    db.close()
    wl = Worklist(path)
    items = wl.items(now=NOW)
    assert [i["key"] for i in items] == ["OLD-URGENT", "OLD-ROUTINE"]
    assert [i["state"] for i in items] == ["new", "new"] and items[0]["state_changed"] == items[0]["received"]
    assert (items[0]["accession"], items[0]["study_date"], items[0]["modality"]) == ("OLD-URGENT", None, None)
    wl.set_state("OLD-URGENT", "reported")
    wl.add(fake_prediction("Urgent", 0.8), "NEW-1", _ago(1), StudyInfo(modality="PNG"))
    assert _keys(Worklist(path).page(now=NOW)) == ["NEW-1", "OLD-ROUTINE"]  # opened again: nothing migrates twice
    assert Worklist(path).result("OLD-URGENT")["label"] == "Urgent"


def test_it_survives_a_restart_and_a_key_sent_again_lists_its_new_result(tmp_path):
    path = tmp_path / "wl.sqlite"
    Worklist(path).add(fake_prediction("Urgent", 0.9), "ACC-1", _ago(3))
    again = Worklist(path)
    assert [i["key"] for i in again.items(now=NOW)] == ["ACC-1"]
    assert again.result("ACC-1")["label"] == "Urgent"
    again.add(fake_prediction("Non-Urgent", 0.1), "ACC-1", _ago(1))
    assert [(i["key"], i["label"]) for i in again.items(now=NOW)] == [("ACC-1", "Non-Urgent")]
    assert again.result("nope") is None


def test_a_study_sent_again_keeps_its_place_in_the_queue(tmp_path):
    """A routine study re-sent after 90 minutes (a PACS retry) is still overdue: its wait does not restart, so it
    stays above the routine study that arrived after it, and it is new again (its new result is unread)."""
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    wl.add(fake_prediction("Non-Urgent", 0.1), "FIRST", _ago(90))
    wl.add(fake_prediction("Non-Urgent", 0.1), "LATER", _ago(30))
    wl.set_state("FIRST", "opened")
    wl.add(fake_prediction("Non-Urgent", 0.2), "FIRST", _ago(0))
    items = wl.items(now=NOW)
    assert [i["key"] for i in items] == ["FIRST", "LATER"]
    assert items[0]["priority"] == "overdue" and items[0]["waiting_s"] >= 90 * 60 and items[0]["state"] == "new"
    assert items[0]["score"] == pytest.approx(0.2)


def test_only_accession_like_keys_are_stored(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    for bad in ("Doe^John", "../etc/passwd", "", "a" * 65, "12 34"):
        with pytest.raises(ValueError):
            wl.add(fake_prediction("Urgent", 0.9), bad or "\n")
    assert len(wl.add(fake_prediction("Urgent", 0.9))) == 16  # a random key when the sender gives none


def test_study_info_reads_the_dicom_header_and_a_png_gets_its_file_type(data_dir):
    """Study date and time (StudyDate + StudyTime, else AcquisitionDate/Time, old formats too), view, modality,
    accession; a PNG has only its file type."""
    from cxrtriage.imaging.load import load_image
    from cxrtriage.imaging.study import study_info

    siim = study_info(load_image(data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"))
    assert siim == StudyInfo(accession=None, study_date="1901-01-01", study_time="00:00", view="PA", modality="CR")
    fuji = study_info(load_image(data_dir / "dicom" / "CR-MONO1-10-chest.dcm"))  # no StudyDate: acquisition's
    assert fuji == StudyInfo(
        accession="FUJI95714", study_date="1993-02-24", study_time="17:58", view="PA", modality="CR"
    )
    png = study_info(load_image(data_dir / "nih" / "images" / "00000150_002.png"))
    assert png == StudyInfo(modality="PNG")


@pytest.mark.parametrize(
    "tags, when",
    [
        ({"StudyDate": "20261202", "StudyTime": "140559.123"}, ("2026-12-02", "14:05")),
        ({"StudyDate": "20261202", "StudyTime": "0930"}, ("2026-12-02", "09:30")),
        ({"StudyDate": "20261202"}, ("2026-12-02", None)),
        ({"StudyDate": "20261302", "AcquisitionDate": "20261201", "AcquisitionTime": "23"}, ("2026-12-01", "23:00")),
        ({"StudyDate": "2026", "StudyTime": "1405"}, (None, None)),  # no usable date: no time alone either
        ({"StudyDate": "20261202", "StudyTime": "2561"}, ("2026-12-02", None)),
        ({}, (None, None)),
    ],
)
def test_study_date_and_time_are_read_strictly_and_never_logged(tags, when, caplog, recwarn):
    """The values as a parsed file holds them (raw, not yet converted): a malformed one is left out, and neither
    pydicom nor cxrtriage logs or warns with it (pydicom does when it converts a malformed value)."""
    import logging

    import numpy as np
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    from cxrtriage.imaging.load import DicomSource, ImageMeta, LoadedImage
    from cxrtriage.imaging.study import study_info

    ds = Dataset()
    for keyword, value in tags.items():
        tag = Tag(tag_for_keyword(keyword))
        raw = value.encode() + b" " * (len(value) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, True, True)
    image = LoadedImage(np.zeros((4, 4), np.float32), ImageMeta("dicom", 4, 4), DicomSource(ds))
    with caplog.at_level(logging.DEBUG):
        info = study_info(image)
    assert (info.study_date, info.study_time) == when and info.modality == "DICOM"
    said = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert not any(value in said for value in tags.values()), said


def _wait_ready(client) -> None:
    deadline = time.monotonic() + 120
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_service_files_each_result_under_the_senders_key(tmp_path, data_dir):
    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    settings = Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "wl.sqlite")
    image = (data_dir / "nih" / "images" / "00000150_002.png").read_bytes()
    dicom = (data_dir / "dicom" / "CR-MONO1-10-chest.dcm").read_bytes()
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        upload = {"file": ("x.png", image, "image/png")}
        r = client.post("/predict", files=upload, data={"accession": "ACC-100"})  # as a form field
        assert r.status_code == 200 and r.headers["x-worklist-key"] == "ACC-100", r.text
        r = client.post("/predict?accession=ACC-101", files=upload)  # or as a query parameter, never ignored
        assert r.status_code == 200 and r.headers["x-worklist-key"] == "ACC-101", r.text
        anonymous = client.post("/predict", files=upload)  # a random key, which the response names
        assert len(anonymous.headers["x-worklist-key"]) == 16
        assert client.get(f"/worklist/{anonymous.headers['x-worklist-key']}").status_code == 200
        bad = client.post("/predict", files=upload, data={"accession": "Doe^John"})
        assert bad.status_code == 422
        assert client.post("/predict?accession=Doe^John", files=upload).status_code == 422
        twice = client.post("/predict?accession=ACC-1", files=upload, data={"accession": "ACC-2"})
        assert twice.status_code == 422 and "twice" in twice.json()["detail"]
        from_dicom = client.post("/predict", files={"file": ("x.dcm", dicom, "application/dicom")})
        assert from_dicom.status_code == 200, from_dicom.text
        listed = client.get("/worklist").json()
        rows = {i["key"]: i for i in listed["items"]}
        assert listed["total"] == len(rows) == 4 and listed["page"] == 1 and listed["per_page"] == 50
        assert list(rows)[:2] == ["ACC-100", "ACC-101"]  # the older first within a group
        assert rows["ACC-100"]["state"] == "new" and listed["max_wait_min"] == 60.0
        assert listed["urgent_total"] == sum(map(is_urgent, listed["items"]))
        assert "a routine study never rises above an urgent one" in listed["order"]  # the rule the list follows
        png = rows[anonymous.headers["x-worklist-key"]]
        assert (png["accession"], png["modality"], png["study_date"], png["view"]) == (
            anonymous.headers["x-worklist-key"][:8],
            "PNG",
            None,
            None,
        )
        dcm = rows[from_dicom.headers["x-worklist-key"]]  # no accession sent: the header's, its date, view, modality
        assert (dcm["accession"], dcm["study_date"], dcm["study_time"], dcm["view"], dcm["modality"]) == (
            "FUJI95714",
            "1993-02-24",
            "17:58",
            "PA",
            "CR",
        )
        stored = client.get("/worklist/ACC-101")
        assert stored.status_code == 200 and stored.json()["label"] == rows["ACC-101"]["label"]
        assert client.get("/worklist/ACC-999").status_code == 404


def test_a_failed_write_keeps_the_result_with_a_warning(tmp_path, caplog):
    """POST /predict and the UI's Triage button share this: the result is never lost, it says it is not listed."""
    from cxrtriage.worklist import NOT_FILED_WARNING, file_on_worklist

    def broken() -> Worklist:
        raise sqlite3.OperationalError("unable to open database file")

    pred = fake_prediction("Urgent", 0.9)
    kept, key = file_on_worklist(broken, pred, "ACC-1")
    assert key is None and kept.label == "Urgent" and kept.warnings == [NOT_FILED_WARNING]
    assert "worklist write failed: OperationalError" in caplog.text
    wl = Worklist(tmp_path / "wl.sqlite")
    stored = fake_prediction("Non-Urgent", 0.1)
    same, key = file_on_worklist(lambda: wl, pred, stored=stored, study=StudyInfo(modality="PNG"))
    assert same is pred and len(key) == 16 and wl.result(key)["label"] == "Non-Urgent"  # what was asked to be stored
    assert wl.item(key)["modality"] == "PNG"


def _open_at_once(path: str, barrier, errors) -> None:
    barrier.wait()
    try:
        Worklist(Path(path))
    except Exception as exc:  # noqa: BLE001 - the test reports whatever an open raised
        errors.put(repr(exc))


def test_processes_opening_a_new_worklist_at_once_all_succeed(tmp_path):
    """The service's worker processes and the DICOM node open the same new file at start-up: each sees the columns
    missing, and without the write lock the second to add one failed ('duplicate column name'), which lost the
    first results filed (seen under the load test)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(5):
        barrier = ctx.Barrier(4)
        procs = [
            ctx.Process(target=_open_at_once, args=(str(tmp_path / f"wl{round_}.sqlite"), barrier, errors))
            for _ in range(4)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []

"""The DICOM node records each triaged and each refused instance for drift monitoring (source ``node``), with no
identifier from the header, and a monitor that cannot write never stops the instance's handling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("highdicom", reason="the DICOM node needs the [interop] extra")

from cxrtriage.monitoring.record import RECORD_KEYS  # noqa: E402
from cxrtriage.monitoring.store import MonitorStore  # noqa: E402
from cxrtriage.pacs.handling import InstanceHandler  # noqa: E402
from cxrtriage.pacs.synthetic import dicom_from_picture  # noqa: E402
from cxrtriage.schema import ModelInfo, Prediction  # noqa: E402


class Engine:
    """A fixed Non-Urgent result, through the real decoder (what the node's handler needs of an engine)."""

    info = ModelInfo(name="fake", version="1", sha256="0" * 64, backend="fake")

    def __init__(self, _folder: Path) -> None:
        pass

    def load(self, image: Any, *, kind: str | None = None) -> Any:
        from cxrtriage.imaging.load import load_image

        return load_image(image, kind=kind)

    def run(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Any:
        from cxrtriage.pipeline import Triaged

        pred = Prediction(
            label="Non-Urgent",
            score=0.1,
            explanation="fake",
            threshold=0.3,
            review_band=(0.25, 0.35),
            needs_review=False,
            model=self.info,
        )
        return Triaged(pred, image=image, pixels=image.pixels, polarity_flipped=False)


@pytest.fixture()
def instances(tmp_path: Path) -> dict:
    png = tmp_path / "film.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 80), dtype=np.uint8)).save(png)
    return {
        "cr": dicom_from_picture(png, tmp_path / "cr.dcm", patient_id="SYN0042", accession="ACC0042"),
        "ot": dicom_from_picture(png, tmp_path / "ct.dcm", patient_id="SYN0042", accession="ACC0043", modality="OT"),
    }


def test_node_records_results_and_refusals(tmp_path: Path, instances: dict) -> None:
    store = MonitorStore(tmp_path / "state" / "monitor.jsonl")
    handler = InstanceHandler(Engine(tmp_path), None, formats=[], monitor=store)
    assert handler.handle(instances["cr"]).status == "triaged"
    assert handler.handle(instances["ot"]).status == "not_triaged"
    got = store.read().records
    assert [(r["source"], r["outcome"]) for r in got] == [("node", "triaged"), ("node", "refused")]
    assert all(tuple(r) == RECORD_KEYS for r in got)
    assert got[0]["image"]["width"] == 80 and got[0]["image"]["height"] == 96
    text = store.path.read_text()
    assert "SYN0042" not in text and "ACC0042" not in text


def test_a_monitor_that_cannot_write_changes_nothing(tmp_path: Path, instances: dict) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    handler = InstanceHandler(Engine(tmp_path), None, formats=[], monitor=MonitorStore(blocker / "monitor.jsonl"))
    assert handler.handle(instances["cr"]).status == "triaged"
    assert handler.counts.triaged == 1

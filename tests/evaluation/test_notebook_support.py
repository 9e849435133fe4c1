"""The notebooks' shared support: parameters, output folders, timing records, papermill execution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrtriage import config
from cxrtriage.evaluation import notebook_run


def test_start_validates_the_profile_and_resolves_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="PROFILE must be one of smoke, full"):
        notebook_run.start("nb", "quick")
    monkeypatch.setenv("CXRTRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CXRTRIAGE_MODEL", "some/model")
    run = notebook_run.start("nb", " FULL ")
    assert run.full and run.data_dir == tmp_path and run.model == "some/model"
    assert notebook_run.start("nb", "smoke", data_dir=tmp_path / "x", model="m").model == "m"


def test_require_data_says_how_to_provide_it(tmp_path: Path) -> None:
    run = notebook_run.start("nb", "smoke", data_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="CXRTRIAGE_DATA_DIR.*download_datasets.sh"):
        run.require_data()


def test_finish_prints_the_wall_time_and_machine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = notebook_run.start("nbname", "smoke", data_dir=tmp_path)
    seconds = run.finish()
    out = capsys.readouterr().out
    assert seconds >= 0 and "nbname (smoke profile) took" in out and "CPU cores" in out


def test_output_dir_is_inside_the_checkout_runs_folder() -> None:
    path = notebook_run.output_dir("unit-test-notebook")
    root = notebook_run.project_root()
    assert root is not None and path == root / "runs" / "notebooks" / "unit-test-notebook" and path.is_dir()
    path.rmdir()


def test_output_dir_outside_a_checkout_goes_to_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert notebook_run.project_root() is None
    assert "cxrtriage-runs" in str(notebook_run.output_dir("x"))


def _notebook(path: Path, body: str) -> Path:
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell('PROFILE = "smoke"')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_execute_notebook_injects_the_profile_and_writes_html(tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    nb = _notebook(
        tmp_path / "demo.ipynb",
        'import sys\nprint("profile is", PROFILE)\n'
        'for i in range(3):\n    sys.stdout.write(f"\\rprogress {i}/3"); sys.stdout.flush()\nprint()',
    )
    result = notebook_run.execute_notebook(nb, tmp_path / "executed", "full")
    html = result.html.read_text(encoding="utf-8")
    assert "profile is full" in html and result.executed.is_file() and result.seconds > 0
    assert "progress 2/3" in html and "progress 0/3" not in html  # progress redraws collapse to their last state
    timings = notebook_run.record_timing(result, tmp_path / "timings.json")
    assert json.loads((tmp_path / "timings.json").read_text()) == timings
    assert timings["notebooks"]["demo.ipynb"]["full"]["command"] == "make notebooks PROFILE=full"


def test_a_failing_cell_fails_the_execution(tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    nb = _notebook(tmp_path / "bad.ipynb", 'raise RuntimeError("broken cell")')
    with pytest.raises(papermill.PapermillExecutionError, match="broken cell"):
        notebook_run.execute_notebook(nb, tmp_path / "executed")


# --------------------------------------------------------------------------- the committed notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "prototype" / "notebooks"
NOTEBOOKS = ("01_quickstart_inference.ipynb", "02_fine_tune_medgemma.ipynb", "03_evaluation_and_metrics.ipynb")


RADIOGRAPH_TAG = "radiograph-thumbnails"
#: sources whose images may never appear in a committed file (research use only, or per-image licences)
RESEARCH_ONLY = ("shenzhen", "jsrt", "laterals", "iu_reports")
DRAWS_IMAGES = ("imshow", "load_image(", "prediction_plot", "thumbnail")


def _embedded_images(cell) -> list[tuple[int, int]]:
    """(width, height) of every PNG / JPEG a cell's outputs embed."""
    import base64
    import io

    from PIL import Image

    sizes = []
    for out in cell.get("outputs", []):
        for mime, payload in out.get("data", {}).items():
            if mime in ("image/png", "image/jpeg"):
                raw = base64.b64decode("".join(payload) if isinstance(payload, list) else payload)
                sizes.append(Image.open(io.BytesIO(raw)).size)
    return sizes


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(str(out.get("text", "")))
        parts += [str(v) for k, v in out.get("data", {}).items() if not k.startswith("image/")]
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_one_parameters_cell_and_their_outputs(name: str) -> None:
    """A judge browsing the repository sees the results: every code cell ran (`make notebooks` saved it back), no
    error, under 2 MB, and no local path."""
    nbformat = pytest.importorskip("nbformat")
    path = NOTEBOOK_DIR / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from prototype/notebooks/")
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters' (papermill)"
    src = params[0].source
    assert 'PROFILE = "smoke"' in src and "DATA_DIR = None" in src and "MODEL = None" in src
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    code = "\n".join(c.source for c in code_cells)
    assert "notebook_run.start(" in code and "run.finish()" in code
    assert all(c.get("execution_count") is not None for c in code_cells), "run `make notebooks` and commit the result"
    assert not [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "took" in _output_text(code_cells[-1]), "the last cell prints the notebook's wall time"
    assert path.stat().st_size < 2_000_000
    text = path.read_text(encoding="utf-8")
    data_dir = config.Settings().find_data_dir()
    for local in [str(ROOT)] + ([str(data_dir.resolve())] if data_dir else []):
        assert local not in text, f"local path {local}: save through scripts/run_notebooks.py"
    assert "papermill" not in nb.metadata, "per-run metadata: save through scripts/run_notebooks.py"
    assert "not a diagnostic tool" in nb.cells[0].source
    papermill = pytest.importorskip("papermill")
    inferred = papermill.inspect_notebook(str(path))
    assert {"PROFILE", "DATA_DIR", "MODEL"} <= set(inferred), "papermill must parse the parameters cell"
    assert inferred["PROFILE"]["default"] == '"smoke"'


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_show_only_small_images_of_open_sources(name: str) -> None:
    """Radiographs only from NIH ChestX-ray14 and the pediatric set, at most 256 px, credited; only in cells tagged
    for it, which guard the source; nothing of Shenzhen, JSRT, the laterals or IU reports near an image."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("PIL")
    from cxrtriage.evaluation.figures import SHOWABLE_SOURCES, THUMBNAIL_PX

    assert SHOWABLE_SOURCES == ("nih", "kermany")
    nb = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
    tagged = 0
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        sizes = _embedded_images(cell)
        if RADIOGRAPH_TAG in cell.metadata.get("tags", []):
            tagged += 1
            assert sizes, "a cell tagged for radiographs shows some"
            assert all(max(w, h) <= THUMBNAIL_PX for w, h in sizes), sizes
            assert "SHOWABLE_SOURCES" in cell.source, "the cell checks each image's source before drawing it"
            near = (cell.source + _output_text(cell)).lower()
            assert not [s for s in RESEARCH_ONLY if s in near]
        elif sizes:  # a chart: it must not draw an image, and stays a sensible size
            assert not [s for s in DRAWS_IMAGES if s in cell.source], f"untagged cell draws an image: {cell.source}"
            assert all(max(w, h) <= 1600 for w, h in sizes), sizes
    assert tagged, "each notebook shows some radiographs (in a tagged cell)"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "CC BY 4.0" in prose and "public domain" in prose, "an attribution line for the images shown"
    for folder in ("jsrt_scr/images", "shenzhen/images", "laterals/images", "jsrt_scr/masks"):
        assert folder not in "\n".join(_output_text(c) for c in nb.cells if c.cell_type == "code")


def test_save_for_commit_keeps_outputs_and_drops_run_metadata_and_local_paths(tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    nb = _notebook(
        tmp_path / "demo.ipynb", f'print("data in {tmp_path}/data")\nimport sys\nsys.stdout.write("a\\rb\\n")'
    )
    result = notebook_run.execute_notebook(nb, tmp_path / "executed", "smoke")
    saved = notebook_run.save_for_commit(result.executed, tmp_path / "saved.ipynb", {f"{tmp_path}/data": "$DATA"})
    out = nbformat.read(str(saved), as_version=4)
    assert "papermill" not in out.metadata and all("papermill" not in c.metadata for c in out.cells)
    text = "".join(str(o.get("text", "")) for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert "data in $DATA" in text and str(tmp_path) not in text
    assert "b\n" in text and "a\r" not in text  # progress redraws collapsed


def test_prototype_md_results_block_is_current() -> None:
    """prototype.md quotes numbers only through its generated block; it must match the metrics files."""
    from cxrtriage.evaluation.prototype_report import BEGIN, END, render_block

    root = Path(__file__).resolve().parents[2]
    text = (root / "prototype" / "prototype.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == render_block(root / "prototype" / "eval"), "stale: run `make prototype-md`"


def test_prototype_report_rows_name_their_source(tmp_path: Path) -> None:
    from cxrtriage.evaluation.prototype_report import render_block, update_document

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(
        json.dumps({"threshold": 0.3, "nih_test": {"n": 7, "n_pos": 3, "auc": 0.81}})
    )
    block = render_block(tmp_path / "eval")
    assert "| NIH adult test: images (urgent) | 7 (3) | `prototype/eval/metrics.json` (`make evaluate`) |" in block
    assert "n/a" in block  # absent files and fields say so instead of disappearing
    doc = tmp_path / "prototype.md"
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_document(doc, tmp_path / "eval")


def test_shenzhen_rows_come_from_the_operating_points_report_once_it_holds_shenzhen(tmp_path: Path) -> None:
    from cxrtriage.evaluation.prototype_report import render_block

    (tmp_path / "metrics.json").write_text(json.dumps({"nih_test": {"n": 7}}))
    assert "Shenzhen" not in render_block(tmp_path)  # metrics.json scores NIH and pediatric only
    spec = {t: {"specificity": v} for t, v in (("0.95", 0.4), ("0.98", 0.2), ("0.99", 0.1))}
    shz = {"n": 70, "n_urgent": 36, "auc": 0.8, "auc_ci95": [0.7, 0.9], "specificity_at_sensitivity": spec}
    (tmp_path / "operating_points.json").write_text(json.dumps({"sets": {"shenzhen": shz}}))
    block = render_block(tmp_path)
    source = "`prototype/eval/operating_points.json` (`cxrtriage evaluate-operating-points --update-card`)"
    assert f"| Shenzhen adult test (TB vs normal): images (urgent) | 70 (36) | {source} |" in block
    assert "| 0.800 [0.700, 0.900] |" in block and "| 0.400 / 0.200 / 0.100 |" in block
    assert "at the shipped threshold: sensitivity / specificity | n/a / n/a |" in block  # absent: says so


def test_int8_row_comes_from_where_it_was_measured_or_is_left_out(tmp_path: Path) -> None:
    from cxrtriage.evaluation.prototype_report import render_block

    (tmp_path / "metrics.json").write_text(json.dumps({"fp32_vs_int8_nih_test": None}))
    assert "int8 vs fp32" not in render_block(tmp_path)  # measured nowhere: no "n/a vs n/a" row
    runs = {"seed_2": {"int8_vs_fp32_nih_test": {"auc_int8": 0.91, "auc_fp32": 0.9}}, "shipped": {}}
    (tmp_path / "generalisation.json").write_text(json.dumps({"runs": runs}))
    row = next(ln for ln in render_block(tmp_path).splitlines() if "int8 vs fp32" in ln)
    assert "(seed_2;" in row and "| 0.910 vs 0.900 |" in row and "generalisation.json" in row
    m = {"fp32_vs_int8_nih_test": {"auc_int8": 0.8, "auc_fp32": 0.81}}
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    assert "| int8 vs fp32 AUC on NIH test | 0.800 vs 0.810 | `prototype/eval/metrics.json`" in render_block(tmp_path)


def test_facts_a_notebook_records_reach_the_timings_file(tmp_path: Path) -> None:
    """A reader of a wall time must know what ran (e.g. a random-weight stand-in instead of MedGemma)."""
    pytest.importorskip("papermill")
    # a checkout of its own, so the facts file lands in tmp_path/runs, not in a temp folder other runs share
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "cxrtriage"\n')
    nb = _notebook(
        tmp_path / "facts_demo.ipynb",
        "from cxrtriage.evaluation import notebook_run\n"
        "run = notebook_run.start('facts_demo', PROFILE, '.')\n"
        "run.record('MedGemma', 'random-weight stand-in')\nrun.finish()",
    )
    result = notebook_run.execute_notebook(nb, tmp_path / "executed", "smoke")
    assert result.facts == {"MedGemma": "random-weight stand-in"}
    timings = notebook_run.record_timing(result, tmp_path / "timings.json")
    assert timings["notebooks"]["facts_demo.ipynb"]["smoke"]["facts"] == {"MedGemma": "random-weight stand-in"}
    stale = notebook_run.execute_notebook(_notebook(tmp_path / "facts_demo.ipynb", "pass"), tmp_path / "x", "smoke")
    assert stale.facts == {}  # a file left by an earlier run is not attributed to this one

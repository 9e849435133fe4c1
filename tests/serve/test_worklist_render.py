"""What the Worklist tab draws, without a browser: the columns a reader knows (a DICOM-filed study shows its
accession, study date and time, view and modality; a PNG shows "—" and PNG, under the start of its random key), the
line above the table with the whole list's totals, reported rows, and the study heading."""

from __future__ import annotations

import re

from fake_prediction import fake_prediction

from cxrtriage.serve.ui.worklist import study_view, worklist_page
from cxrtriage.serve.ui.worklist_render import summary_html, worklist_html
from cxrtriage.worklist import StudyInfo, Worklist


def _cells(markup: str, key: str) -> list[str]:
    row = re.search(rf'<tr [^>]*data-key="{re.escape(key)}".*?</tr>', markup).group(0)
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_a_dicom_study_shows_its_header_columns_and_a_png_dashes(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    dicom = StudyInfo(accession="ACC-42", study_date="2026-12-01", study_time="23:41", view="AP", modality="DX")
    wl.add(fake_prediction(), "ACC-42-0a1b2c3d", study=dicom)
    png_key = wl.add(fake_prediction("Non-Urgent"), study=StudyInfo(modality="PNG"))
    dated_only = wl.add(fake_prediction("Non-Urgent"), "ACC-7", study=StudyInfo(study_date="1993-02-24", modality="CR"))
    markup = worklist_html(wl.items(), max_wait_s=3600)
    assert _cells(markup, "ACC-42-0a1b2c3d")[1:8] == [
        "ACC-42",
        "2026-12-01 23:41",
        "AP",
        "DX",
        "&lt; 1 min",
        "Urgent",
        "–",
    ]
    png = _cells(markup, png_key)
    assert png[1:5] == [png_key[:8], "—", "—", "PNG"] and f'title="key {png_key}"' in markup  # full key on hover
    assert _cells(markup, dated_only)[1:5] == ["ACC-7", "1993-02-24", "—", "CR"]
    assert [h for h in re.findall(r"<th>(.*?)</th>", markup)] == [
        "#",
        "accession",
        "study date",
        "view",
        "modality",
        "waiting",
        "label",
        "review",
        "state",
    ]


def test_the_line_above_the_table_says_the_whole_lists_totals():
    listing = {"total": 1234, "urgent_total": 12, "page": 1, "per_page": 50, "pages": 25, "items": [{}] * 50}
    assert ">Studies 1–50 of 1,234 · 12 urgent · page 1 of 25<" in summary_html(listing)
    last = {**listing, "page": 25, "items": [{}] * 34}
    assert ">Studies 1,201–1,234 of 1,234 · 12 urgent · page 25 of 25<" in summary_html(last)
    assert ">No studies<" in summary_html({**listing, "total": 0, "urgent_total": 0, "pages": 0, "items": []})


def test_a_page_past_the_end_shows_the_last_page_and_reported_rows_stop_waiting(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    for i in range(3):
        wl.add(fake_prediction(), f"K{i}")
    table, summary, shown, pages = worklist_page(lambda: wl, "active", 9)  # the last study of page 9 was reported
    assert (shown, pages) == (1, 1) and "Studies 1–3 of 3 · 3 urgent" in summary
    wl.set_state("K0", "reported")
    table, summary, _, _ = worklist_page(lambda: wl, "reported", 1)
    cells = _cells(table, "K0")
    assert 'class="cxr-wl-row cxr-wl-reported' in table and cells[5] == "—" and cells[-1] == "reported"
    assert "Studies 1–1 of 1" in summary and 'data-key="K1"' not in table


def test_opening_a_study_marks_it_opened_and_its_heading_names_it(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    info = StudyInfo(accession="ACC-42", study_date="2026-12-01", study_time="23:41", view="PA", modality="CR")
    wl.add(fake_prediction(), "ACC-42-0a1b2c3d", study=info)
    assert "state" in study_view(lambda: wl, "ACC-42-0a1b2c3d") and wl.item("ACC-42-0a1b2c3d")["state"] == "new"
    markup = study_view(lambda: wl, "ACC-42-0a1b2c3d", opening=True)
    assert wl.item("ACC-42-0a1b2c3d")["state"] == "opened"
    assert "Study <code>ACC-42</code>" in markup and "study date 2026-12-01 23:41 · view PA · CR" in markup


def test_a_stored_result_keeps_its_numbers_behind_the_details_toggle(tmp_path):
    """A reader opening a study from the worklist sees the same page as on the Triage tab: words first, and the score
    and threshold only inside the closed Details element."""
    wl = Worklist(tmp_path / "wl.sqlite")
    pred = fake_prediction()
    wl.add(pred, "K9")
    markup = study_view(lambda: wl, "K9")
    details = markup[markup.index("<details") :]
    assert f"{pred.threshold:.2f}" in details and "<details" in markup and "<details open" not in markup


def test_a_study_whose_label_changed_says_so_in_its_row_and_its_study_view(tmp_path):
    """Urgent, then Non-Urgent under the same key: the row is amber (with the urgent studies) and its review column
    says 'changed: Urgent → Non-Urgent'; the opened study names its version and shows the stored warning."""
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.add(fake_prediction("Non-Urgent"), "ROUTINE")
    wl.add(fake_prediction("Urgent"), "ACC-5")
    wl.add(fake_prediction("Non-Urgent"), "ACC-5")
    table, summary, _, _ = worklist_page(lambda: wl, "active", 1)
    cells = _cells(table, "ACC-5")
    assert cells[6:8] == ["Non-Urgent", "changed: Urgent → Non-Urgent"]
    assert 'class="cxr-wl-row cxr-wl-review' in re.search(r'<tr [^>]*data-key="ACC-5"', table).group(0)
    assert _cells(table, "ROUTINE")[7] == "–" and "1 urgent" in summary
    assert table.index('data-key="ACC-5"') < table.index('data-key="ROUTINE"')
    markup = study_view(lambda: wl, "ACC-5")
    assert "version 2 (changed: Urgent → Non-Urgent)" in markup
    assert "filed before with another reading (Urgent → Non-Urgent)" in markup  # the stored result's warning

"""Every number the write-up (and the video's captions) may quote: which file and key it is read from, how it is
printed, and which command writes that file.

Kept apart from the renderer (:mod:`cxrtriage.evaluation.writeup`) so that the list can grow with a model generation
without the renderer growing too, and so that it can be read and tested without a browser. A word that states a
result (the leave-one-source-out target met or missed, a target reached or not) is an entry like any number: it is
computed here from the file's value (:func:`format_number`), never typed into the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

M, A, G, B, H, L, T, J = (
    "prototype/eval/metrics.json",
    "prototype/eval/anatomy_eval.json",
    "prototype/eval/generalisation.json",
    "prototype/eval/bench_results.json",
    "prototype/eval/hai_def_bench.json",
    "prototype/eval/loadtest.json",
    "prototype/eval/notebook_timings.json",
    "src/cxrtriage/weights/model.json",
)
P = "prototype/eval/pacs_demo.json"
#: the operating points of the shipped model per source (Shenzhen's row comes from here: metrics.json has no Shenzhen)
OP = "prototype/eval/operating_points.json"
#: generation 2's figures, kept beside the files that the next generation's commands overwrite
M2, OP2 = "prototype/eval/metrics_gen2.json", "prototype/eval/operating_points_gen2.json"
#: site commissioning measured on a held-back source: commissioned on one half, measured on the other
C = "prototype/eval/commissioning_shenzhen.json"
#: archive scale (cxrtriage batch on Ray) and the page that triages in the browser
BB, BP = "prototype/eval/batch_bench.json", "prototype/eval/browser_parity.json"

#: the commands that write each source file (numbers.json names it beside every number)
WRITTEN_BY = {
    M: "make evaluate",
    A: "make evaluate",
    G: "make generalisation",
    B: "make bench",
    H: "make bench-hai-def",
    L: "make loadtest",
    T: "make notebooks PROFILE=full",
    J: "make export / cxrtriage fit-view-probe / cxrtriage fit-finding-probe",
    P: "make pacs-check",
    OP: "cxrtriage evaluate-operating-points --update-card",
    C: "python -m cxrtriage.evaluation.commissioning_holdout --data-dir ../shared/data --update-card",
    BB: "make bench-batch",
    BP: "make browser-parity",
    M2: "make evaluate (generation 2; kept as cp prototype/eval/metrics.json prototype/eval/metrics_gen2.json)",
    OP2: "cxrtriage evaluate-operating-points --generation 'generation 2 (shipped)' "
    "--out prototype/eval/operating_points_gen2.json",
}

F3, F2, F0, PCT = "{:.3f}", "{:.2f}", "{:.0f}", "pct"
#: formats that print a word for a value the file holds
VERDICT, SOURCE = "verdict", "source"
WORDS: dict[str, dict[Any, str]] = {
    # loso_table.passes: True, False, or None while an adult source was never left out (cxrtriage.evaluation.loso)
    VERDICT: {True: "met", False: "missed", None: "not yet judged (not every adult source was left out)"},
    SOURCE: {"nih": "NIH adults", "shenzhen": "Shenzhen adults", "kermany": "pediatric films", "jsrt": "JSRT"},
}
#: ``at_least:<target>``: "meets our <target> target" or "misses our <target> target"
AT_LEAST = "at_least:"


def spec_at(file: str, source: str, target: str) -> tuple[str, str, str]:
    """The operating-points file's specificity at sensitivity ``target`` for ``source`` (a threshold set on the test
    films themselves: what a site reaches with its own threshold)."""
    return (file, f"sets/{source}/specificity_at_sensitivity/{target}/specificity", F3)


#: name -> (file, key path with "/" between levels, format); ``pct`` formats a fraction as a whole percentage
NUMBERS: dict[str, tuple[str, str, str]] = {
    "nih_n": (M, "nih_test/n", "{}"),
    "nih_n_pos": (M, "nih_test/n_pos", "{}"),
    "nih_auc": (M, "nih_test/auc", F3),
    "nih_auc_lo": (M, "nih_test/auc_ci95/0", F3),
    "nih_auc_hi": (M, "nih_test/auc_ci95/1", F3),
    "nih_sens": (M, "nih_test/operating_point/sensitivity", F3),
    "nih_spec": (M, "nih_test/operating_point/specificity", F3),
    "nih_sens_pct": (M, "nih_test/operating_point/sensitivity", PCT),
    "nih_spec_pct": (M, "nih_test/operating_point/specificity", PCT),
    "nih_spec95": (M, "nih_test/specificity_at_sensitivity_0.95", F3),
    "nih_spec98": spec_at(OP, "nih", "0.98"),
    "nih_spec99": spec_at(OP, "nih", "0.99"),
    "nih_ece": (M, "nih_test/ece", F3),
    "nih_auc_goal": (M, "nih_test/auc", AT_LEAST + "0.92"),
    "nih_spec_goal": (M, "nih_test/operating_point/specificity", AT_LEAST + "0.65"),
    "ped_n": (M, "pediatric_test/n", "{}"),
    "ped_n_pos": (M, "pediatric_test/n_pos", "{}"),
    "ped_auc": (M, "pediatric_test/auc", F3),
    "ped_auc_lo": (M, "pediatric_test/auc_ci95/0", F3),
    "ped_auc_hi": (M, "pediatric_test/auc_ci95/1", F3),
    "ped_sens": (M, "pediatric_test/operating_point/sensitivity", F3),
    "ped_spec": (M, "pediatric_test/operating_point/specificity", F3),
    "ped_sens_pct": (M, "pediatric_test/operating_point/sensitivity", PCT),
    "ped_spec_pct": (M, "pediatric_test/operating_point/specificity", PCT),
    "ped_spec95": (M, "pediatric_test/specificity_at_sensitivity_0.95", F3),
    "ped_spec98": spec_at(OP, "kermany", "0.98"),
    "ped_spec99": spec_at(OP, "kermany", "0.99"),
    "ped_ece": (M, "pediatric_test/ece", F3),
    "shz_n": (OP, "sets/shenzhen/n", "{}"),
    "shz_n_pos": (OP, "sets/shenzhen/n_urgent", "{}"),
    "shz_auc": (OP, "sets/shenzhen/auc", F3),
    "shz_auc_lo": (OP, "sets/shenzhen/auc_ci95/0", F3),
    "shz_auc_hi": (OP, "sets/shenzhen/auc_ci95/1", F3),
    "shz_sens": (OP, "sets/shenzhen/at_threshold/sensitivity", F3),
    "shz_spec": (OP, "sets/shenzhen/at_threshold/specificity", F3),
    "shz_spec95": spec_at(OP, "shenzhen", "0.95"),
    "shz_spec98": spec_at(OP, "shenzhen", "0.98"),
    "shz_spec99": spec_at(OP, "shenzhen", "0.99"),
    "shz_ece": (OP, "sets/shenzhen/ece", F3),
    "shz_review": (OP, "sets/shenzhen/review_rate", PCT),
    "gen2_version": (OP2, "model/version", "{}"),
    "gen2_nih_auc": (M2, "nih_test/auc", F3),
    "gen2_nih_spec95": (M2, "nih_test/specificity_at_sensitivity_0.95", F3),
    "gen2_shz_auc": (OP2, "sets/shenzhen/auc", F3),
    "gen2_shz_spec95": spec_at(OP2, "shenzhen", "0.95"),
    "threshold": (M, "threshold", "{:.4f}"),
    "jsrt_n": (A, "jsrt_test/normal/n", "{}"),
    "jsrt_spec": (A, "jsrt_test/normal/specificity", F3),
    "tr_nih": (J, "training/counts/tr_nih", "{:,}"),
    "tr_shz": (J, "training/counts/tr_shz", "{:,}"),
    "tr_jsrt": (J, "training/counts/tr_jsrt", "{:,}"),
    "ens_members": (J, "ensemble/members", "{}"),
    "seed_nih_auc_min": (G, "seed_spread/nih/auc/min", F3),
    "seed_nih_auc_max": (G, "seed_spread/nih/auc/max", F3),
    "seed_shz_auc_min": (G, "seed_spread/shenzhen/auc/min", F3),
    "seed_shz_auc_max": (G, "seed_spread/shenzhen/auc/max", F3),
    "loso_worst_source": (G, "loso_table/worst_adult/source", SOURCE),
    "loso_worst_value": (G, "loso_table/worst_adult/value", F2),
    "loso_target": (G, "loso_table/target", F2),
    "loso_verdict": (G, "loso_table/passes", VERDICT),
    "review_lo": (M, "review_band/0", F3),
    "review_hi": (M, "review_band/1", F3),
    "nih_review": (M, "nih_test/needs_review_fraction", PCT),
    "ped_review": (M, "pediatric_test/needs_review_fraction", PCT),
    "atyp_n": (A, "frontal_gate/nih_test_made_atypical/n", "{}"),
    "atyp_review": (A, "frontal_gate/nih_test_made_atypical/review", "{}"),
    "atyp_text_crops": (A, "frontal_gate/nih_test_made_atypical/crop_centres_on_burned_in_text", "{}"),
    "rsna_pointing": (A, "rsna_localisation/validation_and_test_patients/pointing_game_top_crop", F2),
    "rsna_n_opacity": (A, "rsna_localisation/validation_and_test_patients/n_opacity", "{}"),
    "crops_off_lungs": (A, "rsna_localisation/validation_and_test_patients/crops_off_lungs", "{}"),
    "crops_total": (A, "rsna_localisation/validation_and_test_patients/crops_total", "{}"),
    "comm_n": (C, "measure_half/n", "{}"),
    "batch_ips_seq": (BB, "configs/sequential_predict/images_per_s", F0),
    "batch_ips2": (BB, "configs/ray_2_workers/images_per_s", F0),
    "br_n": (BP, "summary/files", "{}"),
    "br_same": (BP, "summary/same_label", "{}"),
    "comm_spec_before": (C, "held_out_half/before/specificity", F3),
    "comm_spec_after": (C, "held_out_half/after/specificity", F3),
    "comm_sens": (C, "held_out_half/after/sensitivity", F3),
    "comm_sens_lo": (C, "held_out_half/after/sensitivity_ci95/0", F3),
    "comm_sens_hi": (C, "held_out_half/after/sensitivity_ci95/1", F3),
    "laterals_n": (J, "view_probe/validation/laterals", "{}"),
    "laterals_refused": (J, "view_probe/validation/cv5_laterals_refused", "{}"),
    "laterals_review": (J, "view_probe/validation/cv5_laterals_review", "{}"),
    "laterals_passed": (J, "view_probe/validation/cv5_laterals_passed_as_frontal", "{}"),
    "frontal_refused": (J, "view_probe/validation/cv5_frontal_refused", "{}"),
    "frontal_n": (J, "view_probe/validation/frontal_fit_images", "{:,}"),
    "p50_ms": (B, "end_to_end/p50_ms", F0),
    "p95_ms": (B, "end_to_end/p95_ms", F0),
    "model_ms": (B, "model_int8_onnx/p50_ms", "{:.1f}"),
    "segment_ms": (B, "end_to_end_breakdown_p50_ms/segment", F0),
    "model_mb": (B, "model_int8_size_mb", F2),
    "files_mb": (B, "bundled_model_files_mb", "{:.1f}"),
    "rss_mb": (B, "peak_rss_mb_onnx_path", F0),
    "siglip_int8_s": (H, "medsiglip_vision/ort_int8_dynamic/median_s", F2),
    "siglip_bf16_s": (H, "medsiglip_vision/torch_bf16/median_s", F2),
    "gguf_token_s": (H, "medgemma_gguf/per_token_s", F2),
    "gguf_mb": (H, "medgemma_gguf/size_mb/text_Q4_K_M", F0),
    "opacity_auc": (J, "finding_probes/lung_opacity/held_out/auc", F3),
    "model_version": (J, "version", "{}"),
    "pacs_sent": (P, "sent", "{}"),
    "pacs_triaged": (P, "status/triaged", "{}"),
    "pacs_not_triaged": (P, "status/not_triaged", "{}"),
    "pacs_answer_s": (P, "status/answer_s_median", F2),
}
#: names only generation 2's write-up used (the committed docs/writeup/numbers.json still lists them, and its test
#: re-reads each; several are keys of generation 2's report layout). Delete them once `make writeup` has run on
#: generation 3's files.
NUMBERS.update(
    {
        "jsrt_non_urgent": (A, "jsrt_test/normal/non_urgent", "{}"),
        "jsrt_nod_n": (A, "jsrt_test/nodule/n", "{}"),
        "jsrt_nod_non_urgent": (A, "jsrt_test/nodule/non_urgent", "{}"),
        "jsrt_nod_spec": (A, "jsrt_test/nodule/specificity", F3),
        "seed_n": (G, "seed_spread/nih/auc/n", "{}"),
        "seed_nih_auc_mean": (G, "seed_spread/nih/auc/mean", F3),
        "seed_jsrt_spec_min": (G, "seed_spread/jsrt/specificity_at_threshold/min", F2),
        "seed_jsrt_spec_max": (G, "seed_spread/jsrt/specificity_at_threshold/max", F2),
        "ens_nih_auc": (G, "ensemble_of_seed_runs/nih/auc", F3),
        "loso_ped_auc": (G, "leave_one_source_out/ablation_nih_only/test/kermany/auc/left_out_run", F3),
        "loso_nih_auc": (G, "leave_one_source_out/ablation_no_nih/test/nih/auc/left_out_run", F3),
        "loso_jsrt_spec": (
            G,
            "leave_one_source_out/ablation_no_nih/test/jsrt/specificity_at_threshold/left_out_run",
            F2,
        ),
    }
)
#: where each file that measured a model records that model's sha256: the write-up must not quote two models at once
MODEL_SHA_KEYS = {
    J: "sha256",
    M: "model/sha256",
    A: "model/sha256",
    B: "model_sha256",
    OP: "model/sha256",
    G: "runs/shipped/model_sha256",
}


def dig(data: Any, key: str) -> Any:
    """The value at ``key`` ("a/b/0": keys and list indices between slashes)."""
    for part in key.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def format_number(value: Any, fmt: str) -> str:
    """A value as the write-up prints it: a ``str.format`` pattern, ``pct``, a word of :data:`WORDS`, or
    ``at_least:<target>``."""
    if fmt == PCT:
        return f"{100 * value:.0f}%"
    if fmt in WORDS:
        return WORDS[fmt][value]
    if fmt.startswith(AT_LEAST):
        target = fmt[len(AT_LEAST) :]
        return f"{'meets' if value >= float(target) else 'misses'} our {target} target"
    return fmt.format(value)


def _load(root: Path, path: str) -> Any:
    file = root / path
    if not file.is_file():
        raise FileNotFoundError(f"{path} not found: `{WRITTEN_BY[path]}` writes it")
    return json.loads(file.read_text(encoding="utf-8"))


def _lookup(data: Any, name: str) -> Any:
    path, key, _ = NUMBERS[name]
    try:
        return dig(data, key)
    except (KeyError, IndexError, TypeError) as exc:
        raise KeyError(f"{name}: {path} has no {key!r} (`{WRITTEN_BY[path]}` writes it)") from exc


@dataclass
class NumberBook:
    """Looks numbers up in their source files and remembers every one the template used."""

    root: Path

    def __post_init__(self) -> None:
        self.used: dict[str, dict] = {}
        self._files: dict[str, Any] = {}

    def __call__(self, name: str) -> str:
        if name not in NUMBERS:
            raise KeyError(f"the write-up asks for {name!r}, which NUMBERS does not define")
        path, key, fmt = NUMBERS[name]
        if path not in self._files:
            self._files[path] = _load(self.root, path)
        value = _lookup(self._files[path], name)
        text = format_number(value, fmt)
        self.used[name] = {"text": text, "value": value, "source": path, "key": key, "written_by": WRITTEN_BY[path]}
        return text


def read_number(root: Path, name: str) -> str:
    """A number of the write-up re-read from its source file now (what the test compares with the PDF)."""
    path, _, fmt = NUMBERS[name]
    return format_number(_lookup(_load(root, path), name), fmt)


def other_models(root: Path, sources: set[str]) -> list[str]:
    """The source files among ``sources`` that measured another model than the shipped one (``model.json``'s
    sha256), each as "file (sha256 prefix; rerun `command`)": quoted together, their figures would describe no
    single model. Files that record no model (timings of random-weight stand-ins, the PACS run) are not checked."""
    shipped = dig(_load(root, J), MODEL_SHA_KEYS[J])
    stale = []
    for path in sorted(sources & set(MODEL_SHA_KEYS)):
        try:
            sha = dig(_load(root, path), MODEL_SHA_KEYS[path])
        except (KeyError, IndexError, TypeError):
            sha = None
        if sha != shipped:
            stale.append(f"{path} ({str(sha)[:12]}; rerun `{WRITTEN_BY[path]}`)")
    return stale

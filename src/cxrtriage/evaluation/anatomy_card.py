"""The model card's sections on what surrounds the classifier (:mod:`cxrtriage.evaluation.model_card`): the
lung-and-heart segmentation network, the view probe, the evidence against radiologists, the finding outputs,
generalisation, and the previous generation and calibration kept for comparison. Each section is left out when its
block is missing from ``model.json`` or ``card.json``."""

from __future__ import annotations

from typing import Any

from cxrtriage.backends.finding_probe import NAME_MIN_AUC
from cxrtriage.evaluation.card_format import number as _f
from cxrtriage.evaluation.generalisation_card import generalisation_lines


def anatomy_lines(meta: dict, card: dict[str, Any]) -> list[str]:
    """The segmentation network (segment.json beside model.json), the view probe, the anatomy evaluation, the
    finding outputs, generalisation and the previous generation and calibration."""
    lines: list[str] = []
    seg = meta.get("_segment")
    if seg:
        d = seg.get("test_dice", {})
        orig, low = d.get("original_size_int8_runtime", {}), d.get("original_size_int8_runtime_min", {})
        tr = seg.get("training") or {}
        lines += [
            "## Lung-and-heart segmentation (`segment.onnx`)",
            f"- `{seg['name']}` {seg['version']}: small U-Net ({seg['arch']['widths']} channels), "
            f"{seg['preprocess']['input_size']} px "
            f"input with the percentile window, int8 ONNX ({seg['quantization']['format']}), "
            f"{seg['size_bytes'] / 1e6:.2f} MB, "
            f"sha256 `{seg['sha256']}`.",
            f"- Training data: {seg['training_data']['licence']}. Split: {seg['training_data']['split']}; counts "
            f"{seg['training_data']['counts']}. Best epoch {(tr.get('best_epoch') or {}).get('epoch')} "
            "by mean validation Dice; "
            f"{_f(tr.get('wall_seconds'), 0)} s on 2 CPU threads.",
            "- Dice on the JSRT test split (int8, masks at the original image size, mean / worst image): "
            + ", ".join(f"{k.replace('_', ' ')} {_f(orig.get(k))} / {_f(low.get(k))}" for k in orig)
            + ".",
            "- Used for: evidence boxes only on or next to the lung fields, zone names from each lung's own extent, "
            "the "
            "cardiothoracic ratio (AP films magnify the heart), and the frontal-view check.",
            "",
        ]
    vp = meta.get("view_probe")
    if vp:
        v = vp["validation"]
        held = "; ".join(
            f"{k}: {x['refused']} refused, {x['review']} to review of {x['n']}"
            for k, x in v["held_out_frontal"].items()
        )
        lines += [
            "## View probe (lateral views)",
            f"- Inputs: the classifier embedding and {len(vp['anatomy_features'])} anatomy features. Fit: {vp['fit']}. "
            "Refused above "
            f"{_f(vp['reject_above'])} (above {_f(vp.get('reject_with_lungs_above', 1.0))} "
            "when two lungs were segmented, as on "
            f"{v.get('laterals_with_typical_pair', '?')} of the {v['laterals']} laterals), "
            f"review above {_f(vp['review_above'])}.",
            f"- 5-fold cross-validation over {v['frontal_fit_images']} frontal training/validation films "
            f"and {v['laterals']} laterals: "
            f"{v['cv5_laterals_refused']} laterals refused, {v['cv5_laterals_review']} sent to review, "
            f"{v['cv5_laterals_passed_as_frontal']} "
            f"passed as frontal; {v['cv5_frontal_refused']} frontal films refused, "
            f"{v['cv5_frontal_review']} sent to review.",
            f"- Held-out frontal test films: {held}.",
        ]
        if "cv5_nested" in v:
            lines.append(f"- Nested cross-validation: {v['cv5_nested']} (C per outer fold: {v['cv5_c_per_fold']}).")
        if "variant_films" in v:
            top = max(v["cv5_variant_top_scores"], default=None)
            lines.append(
                f"- Cut-offs: {v['cut_off_rule']}. Acquisition variants ({', '.join(v['variants'])}) of "
                f"{v['variant_films']} fit films, each scored by the fold model that did not see its film: "
                f"{v['cv5_variant_refused']} refused, highest score {_f(top)}."
            )
        lines.append("")
    ae = card.get("anatomy_eval")
    if ae:
        r = ae["rsna_localisation"]
        lines += [
            "## Evidence against radiologists (RSNA re-read of NIH images)",
            f"Measured by `{ae['command']}` on {ae['created']}.",
            "",
            "| images | opacity / normal / other | pointing game | mean best IoU | negatives with crops "
            "| crops off the lungs | AUC opacity vs normal | vs not-normal-no-opacity |",
            "|---|---|---|---|---|---|---|---|",
        ]
        groups = [
            (
                "all RSNA-labelled (includes the training patients, whose boxes a --box-weight model saw)",
                r["all_rsna_images"],
            )
        ]
        if "validation_and_test_patients" in r:
            groups.append(("validation and test patients (held out)", r["validation_and_test_patients"]))
        groups.append(("test patients only", r["test_patients_only"]))
        for name, m in groups:
            lines.append(
                f"| {name} | {m['n_opacity']} / {m['n_normal']} / {m['n_not_normal_no_opacity']} "
                f"| {_f(m['pointing_game_top_crop'])} | "
                f"{_f(m['mean_best_iou'])} | {m['negative_films_with_crops']} of {m['negative_films']} | "
                f"{m['crops_off_lungs']} of {m['crops_total']} | {_f(m['auc_opacity_vs_normal'])} "
                f"| {_f(m['auc_opacity_vs_not_normal_no_opacity'])} |"
            )
        rule = ae.get("evidence_rule")
        if rule:
            lines += [
                "",
                "Crops shown: an Urgent result keeps its boxes (up to three, each holding at least "
                f"{_f(rule['min_strength'], 2)} of the positive map mass inside the lung fields); a Non-Urgent result "
                "shows at most one, only for a region holding "
                f"at least {_f(rule['non_urgent_min_strength'], 2)} of that mass on a map whose peak stands out of "
                f"the lung fields by at least {_f(rule['non_urgent_min_prominence'], 2)} standard deviations (the "
                "95th percentile of non-urgent validation films, fitted by "
                f"{rule['fitted_by']}).",
            ]
        g = ae["frontal_gate"]
        lines += [
            "",
            "Frontal-view check through `Triage.predict` (review = `needs_review` for any reason, the score's "
            "review band included; refused = NotAChestXrayError):",
            "",
        ]
        for name, m in g.items():
            note = (
                " (in-sample: all of them also fitted the view probe; the cross-validated figure is above)"
                if name == "laterals"
                else f" ({m['how']})"
                if "how" in m
                else ""
            )
            lines.append(
                f"- {name.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in m.items() if k != "how") + note
            )
        j = ae["jsrt_test"]
        lines += [
            "",
            "JSRT test films (another adult site): "
            + "; ".join(
                f"{k}: {m['non_urgent']} of {m['n']} Non-Urgent (median score {_f(m['median_score'])})"
                for k, m in j.items()
            )
            + ".",
            "",
        ]
    lines += _finding_lines(meta.get("finding_probes"))
    lines += generalisation_lines(card.get("generalisation"))
    prev = card.get("previous_generation")
    if prev:
        lines += [
            "## Previous generation, for comparison",
            f"`{prev.get('name')}` {prev.get('version')} (sha256 `{prev.get('sha256')}`), "
            f"measured by {prev.get('measured')}:",
            "",
        ]
        lines += [f"- {k}: {_f(v)}" for k, v in (prev.get("summary") or {}).items() if not isinstance(v, (list, dict))]
        lines.append("")
    cal = card.get("previous_calibration")
    if cal:
        old = cal.get("calibration") or {}
        lines += [
            "## Previous calibration of this model, for comparison",
            f"Replaced by `cxrtriage recalibrate` on {cal.get('replaced')}: Platt a={_f(old.get('a'), 4)} "
            f"b={_f(old.get('b'), 4)} fitted on {old.get('fit_on')}, threshold {_f(cal.get('threshold'), 4)}. "
            f"Test figures measured with it by `{cal.get('measured')}`:",
            "",
        ]
        lines += [
            f"- {k}: {_f(v)}" for k, v in (cal.get("test_summary") or {}).items() if not isinstance(v, (list, dict))
        ]
        lines.append("")
    return lines


def _finding_lines(probes: dict | None) -> list[str]:
    """Finding outputs (``cxrtriage fit-finding-probe``): fit, held-out AUC, whether the explanation names them."""
    if not probes:
        return []
    lines = ["## Finding outputs", ""]
    for b in probes.values():
        h = b["held_out"]
        lines.append(
            f"- **{b['name']}** from the {b['inputs']}: {b['fit']}; labels: {b['labels']}. Held out on the "
            f"{h['patients']}: {h['n']} films "
            f"({h['n_opacity']} opacity), AUC {_f(h['auc'])} [{_f(h['auc_ci95'][0])}, {_f(h['auc_ci95'][1])}], "
            f"opacity vs radiologist-normal only {_f(h['auc_opacity_vs_normal'])}. "
            + (
                "Named in the explanation when likely."
                if b["named_in_explanation"]
                else f"Below the {NAME_MIN_AUC} needed to be named: reported in each result's `findings` "
                "with its AUC, never "
                "named in the explanation."
            )
        )
    return lines + [""]

"""Which validation figure picks a training run's epoch (``TrainConfig.select_on``).

Why a module of its own: the rule decides which weights ship, leave-one-source-out runs must never let the left-out
source choose (that would make its "unseen" figures a validation result), and a recipe comparison is only fair when
every run is judged by the same rule. The rules:

* ``nih``: NIH validation AUC (generation 2; pediatric AUC when NIH is left out of training);
* ``worst``: the lowest specificity at sensitivity 0.95 over the validation sources trained on (generation 3);
* ``worst_band``: the lowest mean specificity over sensitivities 0.80-1.00 over those sources. On Shenzhen's 35
  urgent validation films, specificity at 0.95 is set by one or two films' scores and stayed at 0.00-0.03 for 29 of
  a run's 30 epochs (seed 3, session 24), so one noisy epoch chose the weights; the band average moves less.
"""

from __future__ import annotations

RULES = ("nih", "worst", "worst_band")


def epoch_figure(
    select_on: str,
    auc_nih: float,
    auc_ker: float | None,
    spec95: dict[str, float],
    trained: set[str],
    band: dict[str, float] | None = None,
) -> tuple[float, str]:
    """The figure that picks the epoch, and its name. ``spec95`` and ``band`` map validation source names to
    specificity at sensitivity 0.95 and to the 0.80-1.00 band mean; ``trained`` names the sources trained on."""
    if select_on not in RULES:
        raise ValueError(f"select_on must be one of {', '.join(RULES)}, got {select_on!r}")
    per_source = band if select_on == "worst_band" else spec95
    seen = {k: v for k, v in (per_source or {}).items() if k in trained}
    if select_on != "nih" and seen:
        return min(seen.values()), "min_val_spec_band" if select_on == "worst_band" else "min_val_spec95"
    return (auc_nih, "val_auc_nih") if "nih" in trained else (float(auc_ker or "nan"), "val_auc_pediatric")

"""``card.json``: what has been measured about a model, kept beside its ``model.json`` and never loaded by the engine.

Why a second file: ``model.json`` is what the engine runs on (:class:`~cxrtriage.backends.bundle_config.BundleConfig`)
and changes only when the model's behaviour changes (export, recalibration, a probe fit). Measurements are made
afterwards, again and again, on a model that does not change: ``make evaluate`` (test metrics and the anatomy
evaluation), ``make bench``, ``make generalisation``. They go here, so those commands rewrite this file and never
touch the run-time one, and a bundle without ``card.json`` serves exactly the same predictions. The figures of
the model's predecessors (``previous_generation``) and of its replaced calibration (``previous_calibration``) are
measurements too and live here. The model card (``MODEL_CARD.md``) is rendered from both files.

The card names the model it measured (name, version, sha256 of ``model.onnx``): a ``card.json`` left beside another
model is not used (:func:`read_card` starts a fresh one), and ``cxrtriage export`` writes a fresh one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cxrtriage.backends.bundle_blocks import Block, jsonable, validation_message
from cxrtriage.backends.bundle_config import LEGACY_MEASURED_KEYS, META_FILE, BundleConfig
from cxrtriage.errors import ModelError

CARD_DATA_FILE = "card.json"


class MeasuredModel(Block):
    """The model the figures were measured on."""

    name: str
    version: str
    sha256: str


class CardData(Block):
    """``card.json``. Each measured block is written whole by the command named in it and read by the model card."""

    model: MeasuredModel
    #: ``cxrtriage evaluate --update-card``
    test_metrics: dict[str, Any] | None = None
    #: ``cxrtriage evaluate-anatomy --update-card``
    anatomy_eval: dict[str, Any] | None = None
    #: ``cxrtriage bench --update-card``
    bench: dict[str, Any] | None = None
    #: ``cxrtriage evaluate-generalisation --update-card``
    generalisation: dict[str, Any] | None = None
    #: ``cxrtriage evaluate-operating-points --update-card``
    operating_points: dict[str, Any] | None = None
    #: summary figures of the model this one replaced (its ``operating_points`` report, when there is one, is shown
    #: beside this model's in the card)
    previous_generation: dict[str, Any] | None = None
    #: the calibration ``cxrtriage recalibrate`` replaced and the test figures measured with it
    previous_calibration: dict[str, Any] | None = None
    #: ``python -m cxrtriage.evaluation.commissioning_holdout --update-card``: a source's held-back films split in
    #: two, commissioned on one half, measured on the other (``prototype/eval/commissioning_<source>.json``)
    commissioning: dict[str, Any] | None = None

    @classmethod
    def fresh(cls, bundle: BundleConfig) -> CardData:
        """Nothing measured yet on this bundle's model."""
        return cls(model=MeasuredModel(name=bundle.name, version=bundle.version, sha256=bundle.sha256))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str | Path = CARD_DATA_FILE) -> CardData:
        try:
            return cls.model_validate_json(json.dumps(data, default=jsonable))
        except ValidationError as exc:
            raise ModelError(validation_message(source, exc)) from exc

    @classmethod
    def load(cls, path: str | Path) -> CardData:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_mapping(data, source=path)

    def measured(self) -> dict[str, Any]:
        """The measured blocks present, by key (the model card's input)."""
        return {k: v for k, v in self.as_json_dict(exclude={"model"}).items() if v is not None}

    def with_blocks(self, **blocks: dict[str, Any] | None) -> CardData:
        """A new card with measured blocks replaced; None removes a block (e.g. test metrics of a replaced
        calibration)."""
        data = {**self.as_json_dict(), **blocks}
        return CardData.from_mapping({k: v for k, v in data.items() if v is not None})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_DATA_FILE
        path.write_text(json.dumps(self.as_json_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def legacy_measurements(model_dir: Path) -> dict[str, Any]:
    """The measured blocks a ``model.json`` written before ``card.json`` existed still carries (the engine ignores
    them); empty for a current bundle."""
    data = json.loads((Path(model_dir) / META_FILE).read_text(encoding="utf-8"))
    return {k: data[k] for k in LEGACY_MEASURED_KEYS if data.get(k) is not None}


def read_card(model_dir: str | Path, bundle: BundleConfig | None = None) -> CardData:
    """The card of the model in ``model_dir``: its ``card.json`` if it describes that model (same sha256), else a
    fresh card, seeded with the measured blocks of a pre-card.json ``model.json`` if there are any."""
    model_dir = Path(model_dir)
    bundle = bundle or BundleConfig.load(model_dir / META_FILE)
    path = model_dir / CARD_DATA_FILE
    if path.is_file():
        card = CardData.load(path)
        if card.model.sha256 == bundle.sha256:
            return card
        return CardData.fresh(bundle)
    legacy = legacy_measurements(model_dir)
    return CardData.fresh(bundle).with_blocks(**legacy) if legacy else CardData.fresh(bundle)


def _summary_of(card: CardData) -> dict[str, Any]:
    """The headline test figures of a card (its ``make evaluate`` summary and, per test set, AUC and specificity at
    sensitivity 0.95 of its operating-points report), the scalars the model card lists for a previous generation."""
    out = {k: v for k, v in ((card.test_metrics or {}).get("summary") or {}).items() if not isinstance(v, (list, dict))}
    for name, block in ((card.operating_points or {}).get("sets") or {}).items():
        for key in ("auc", "ece"):
            if isinstance(block.get(key), (int, float)):
                out[f"{name}_test_{key}"] = block[key]
        spec = (block.get("specificity_at_sensitivity") or {}).get("0.95")
        value = spec.get("specificity") if isinstance(spec, dict) else spec
        if isinstance(value, (int, float)):
            out[f"{name}_test_specificity_at_sensitivity_0.95"] = value
    return out


def previous_generation_of(old: CardData) -> dict[str, Any] | None:
    """What a new model's card keeps of the model it replaces: name, sha256, which commands measured it, its
    headline figures and its operating-points report (shown beside the new one). None when nothing was measured
    (an export not yet evaluated): then the figures of ITS predecessor are the ones to keep."""
    measured = {k: v for k, v in old.measured().items() if k not in ("previous_generation", "previous_calibration")}
    if not measured:
        return old.previous_generation
    commands = [
        f"{b['command']} ({b.get('created')})" for b in measured.values() if isinstance(b, dict) and b.get("command")
    ]
    block: dict[str, Any] = {
        "name": old.model.name,
        "version": old.model.version,
        "sha256": old.model.sha256,
        "measured": "; ".join(commands) or "its card.json",
        "summary": _summary_of(old),
    }
    if old.operating_points:
        block["operating_points"] = old.operating_points
    return block


def write_fresh_card(model_dir: str | Path, bundle: BundleConfig) -> Path:
    """An export's card: nothing measured yet on the new model (the old model's figures must not stay as its own).
    When the folder held another model's card, that model's figures are kept as ``previous_generation``, so the
    card shows the generation it replaced beside it."""
    path = Path(model_dir) / CARD_DATA_FILE
    fresh = CardData.fresh(bundle)
    try:
        old = CardData.load(path) if path.is_file() else None
    except ModelError:  # an unreadable card: nothing to carry
        old = None
    if old is not None:
        prev = previous_generation_of(old) if old.model.sha256 != bundle.sha256 else old.previous_generation
        fresh = fresh.with_blocks(previous_generation=prev)
    return fresh.save(path)


def keep_measurements(model_dir: str | Path) -> None:
    """Before a fitter rewrites a ``model.json`` from before ``card.json`` (which would drop its measured keys, as
    :class:`BundleConfig` writes only its own): move those blocks into ``card.json``. Nothing to do otherwise."""
    model_dir = Path(model_dir)
    if not (model_dir / CARD_DATA_FILE).exists() and legacy_measurements(model_dir):
        read_card(model_dir).save(model_dir / CARD_DATA_FILE)

"""The output-format registry: every way a triage result leaves cxrtriage (the Prediction's JSON, a FHIR
DiagnosticReport, a DICOM SR, a Secondary Capture, and any later one) declared once, with what it needs.

The REST route (``POST /predict?format=NAME``), the CLI (``cxrtriage predict --format NAME --out-dir DIR``, and its
older ``--fhir DIR`` / ``--sr DIR``) and the DICOM node (every DICOM-encoded format goes back to the PACS) read this
registry instead of naming formats, so adding one is a module with a builder taking an
:class:`~cxrtriage.interop.context.OutputContext`, one entry in :data:`BUILT_IN` (or one :func:`register` call), and
one test. A format declares:

* its media type (the REST answer's Content-Type) and file suffix (the CLI writes ``DIR/<input stem><suffix>``);
* the optional dependency it needs: the module to import and the extra that installs it, so every caller refuses
  it up front with the same "pip install 'cxrtriage[interop]'" sentence (REST 501, CLI exit 2);
* whether it must reference a DICOM source (the SR and the Secondary Capture file with the input's study: a PNG or
  JPEG input gets none; REST answers 422, the CLI says why in the row);
* its encoding (``json``: a JSON-ready dict; ``dicom``: a pydicom dataset, which the DICOM node C-STOREs back);
* whether it is best effort: a picture for old viewers (the Secondary Capture) must never cost the other results.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cxrtriage.interop import fhir, secondary_capture, sr
from cxrtriage.interop.context import OutputContext

__all__ = [
    "BUILT_IN",
    "NoDicomSource",
    "OutputFormat",
    "UnknownFormat",
    "dicom_formats",
    "format_names",
    "get_format",
    "output_formats",
    "register",
    "unregister",
]


class UnknownFormat(ValueError):
    """No format of that name is registered; the message lists those that are."""


class NoDicomSource(ValueError):
    """The format must reference a DICOM source instance and the input was a PNG, JPEG or array."""


@dataclass(frozen=True, eq=False)
class OutputFormat:
    """One output format (see the module docstring for what each field is for)."""

    name: str  # what callers ask for: ``format=NAME``, ``--format NAME``; also the row key ``NAME_path``
    title: str  # what it is, for messages and help ("a FHIR R4B DiagnosticReport")
    media_type: str
    suffix: str
    build: Callable[[OutputContext], Any]
    encoding: Literal["json", "dicom"] = "json"
    module: str | None = None  # the optional module the builder imports...
    extra: str | None = None  # ...and the extra that installs it
    needs_dicom_source: bool = False
    best_effort: bool = False
    schema: dict[str, Any] | None = None  # a JSON payload's schema, for the REST API's documentation

    def require(self, purpose: str | None = None) -> None:
        """Raise :class:`~cxrtriage.optional.MissingDependency` (naming the pip command) when the optional module
        this format needs cannot be imported; ``purpose`` is how the caller asked for it (``format=fhir``...)."""
        if self.module is None:
            return
        from cxrtriage import optional

        optional.require(self.module, extra=self.extra or "interop", purpose=purpose or f"{self.name} output")

    def render(self, context: OutputContext) -> Any:
        """The format's payload for ``context``: a JSON-ready dict, or a pydicom dataset (``encoding``); raises
        :class:`NoDicomSource` when it needs a DICOM source and the input was not DICOM."""
        if self.needs_dicom_source and context.source is None:
            raise NoDicomSource(f"not a DICOM input: {self.title} must reference a source DICOM instance")
        return self.build(context)

    def encode(self, payload: Any) -> bytes:
        """The payload as the bytes of a file of this format (JSON as UTF-8 with indentation, DICOM as a Part 10
        file with its meta)."""
        if self.encoding == "dicom":
            buffer = io.BytesIO()
            payload.save_as(buffer, enforce_file_format=True)
            return buffer.getvalue()
        return json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")


def _prediction_json(context: OutputContext) -> dict:
    """The output format ``json``: the Prediction itself (the specification's fields first)."""
    return context.prediction.model_dump(mode="json")


#: the formats cxrtriage ships, in the order callers list and write them
BUILT_IN: tuple[OutputFormat, ...] = (
    OutputFormat("json", "the triage result (Prediction JSON)", "application/json", ".json", _prediction_json),
    OutputFormat(
        "fhir",
        "a FHIR R4B DiagnosticReport",
        fhir.MEDIA_TYPE,
        ".fhir.json",
        fhir.from_context,
        module="fhir.resources.R4B.diagnosticreport",
        extra="interop",
        schema=fhir.OPENAPI_SCHEMA,
    ),
    OutputFormat(
        "sr",
        "a DICOM SR (TID 1500)",
        "application/dicom",
        ".sr.dcm",
        sr.from_context,
        encoding="dicom",
        module="highdicom",
        extra="interop",
        needs_dicom_source=True,
    ),
    OutputFormat(
        "sc",
        "a DICOM Secondary Capture with the result burned in",
        "application/dicom",
        ".sc.dcm",
        secondary_capture.from_context,
        encoding="dicom",
        module="highdicom",
        extra="interop",
        needs_dicom_source=True,
        best_effort=True,
    ),
)

_registry: dict[str, OutputFormat] = {f.name: f for f in BUILT_IN}


def register(fmt: OutputFormat) -> OutputFormat:
    """Add a format (a plug-in's, or a test's); ValueError when its name is taken."""
    if fmt.name in _registry:
        raise ValueError(f"an output format named {fmt.name!r} is registered already")
    _registry[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a format :func:`register` added (tests clean up with it); built-in formats stay."""
    if any(f.name == name for f in BUILT_IN):
        raise ValueError(f"{name!r} is a built-in output format")
    _registry.pop(name, None)


def get_format(name: str) -> OutputFormat:
    """The format called ``name``, or :class:`UnknownFormat` listing the registered names."""
    try:
        return _registry[name]
    except KeyError:
        raise UnknownFormat(f"unknown output format {name!r}; one of: {', '.join(format_names())}") from None


def output_formats() -> tuple[OutputFormat, ...]:
    """Every registered format, built-in ones first, then in the order they were registered."""
    return tuple(_registry.values())


def format_names() -> tuple[str, ...]:
    return tuple(_registry)


def dicom_formats() -> tuple[OutputFormat, ...]:
    """The formats whose payload is a DICOM object: what the DICOM node sends back to the PACS."""
    return tuple(f for f in _registry.values() if f.encoding == "dicom")

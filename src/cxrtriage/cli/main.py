"""Command line ``cxrtriage``: the top-level parser and the exit codes; each command group lives in its own module.

- run-time (:mod:`cxrtriage.cli.runtime`): ``predict``, ``segment``, ``demo``, ``serve``
- archive scale (:mod:`cxrtriage.cli.archive`): ``batch`` (Ray Data, Parquet, resumable; the ``[batch]`` extra)
- evaluation (:mod:`cxrtriage.cli.evaluation`): ``evaluate``, ``evaluate-anatomy``, ``evaluate-generalisation``,
  ``evaluate-operating-points``, ``bench``, ``test-set``, ``ratings export | summarise``
- training (:mod:`cxrtriage.cli.training`): ``train``, ``export``, ``recalibrate``, ``fit-view-probe``,
  ``fit-finding-probe``, ``train-segmenter``, ``export-segmenter``, ``split``
- HAI-DEF models (:mod:`cxrtriage.cli.hai_def`): ``hai-def tiny | train-probe | export-onnx | finetune |
  convert-gguf | bench``
- deliverables (:mod:`cxrtriage.cli.deliverables`): ``writeup``, ``video``, ``screenshots``, ``browser-build`` (the
  static page that triages in the browser)
- PACS (:mod:`cxrtriage.cli.pacs`): ``dicom-node``, ``orthanc-pull``, ``pacs-demo``
- audit trail (:mod:`cxrtriage.cli.audit`): ``audit verify | export``
- security (:mod:`cxrtriage.cli.security`): ``keys create | list | revoke``
- site commissioning (:mod:`cxrtriage.cli.commission`): ``commission``
- drift monitoring (:mod:`cxrtriage.cli.monitoring`): ``monitor``
- reader feedback (:mod:`cxrtriage.cli.feedback`): ``feedback export``

Each subcommand imports its machinery lazily so that ``cxrtriage predict`` never loads torch. A command that builds
an engine or a server builds its :class:`~cxrtriage.config.Settings` once
(:func:`cxrtriage.cli.options.command_settings`: the environment with its options on top) and passes them down;
nothing is written to the environment.
Exit codes: 0 success, 1 at least one input failed, 2 usage / configuration error.
"""

from __future__ import annotations

import argparse
import sys

from cxrtriage.cli import archive, audit, deliverables, evaluation, feedback, hai_def, pacs, runtime, security, training
from cxrtriage.cli import commission as commissioning
from cxrtriage.cli import monitoring as monitoring_cli
from cxrtriage.errors import ConfigurationError

#: the command groups in the order ``cxrtriage --help`` lists them; each registers its subcommands
GROUPS = (
    runtime,
    archive,
    evaluation,
    training,
    hai_def,
    deliverables,
    pacs,
    security,
    audit,
    commissioning,
    monitoring_cli,
    feedback,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxrtriage", description="Offline chest X-ray triage (decision support only — not a diagnostic tool)."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigurationError as exc:  # a bad CXRTRIAGE_* value or option: the sentence names it
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

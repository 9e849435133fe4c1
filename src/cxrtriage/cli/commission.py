"""``cxrtriage commission``: fit and measure a site profile on the site's own labelled films (needs the [train]
extra for scikit-learn and the [notebooks] extra for the report's plots; the profile it writes is served without
either)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, add_backend_options, command_settings, require_extra


def cmd_commission(args: argparse.Namespace) -> int:
    require_extra("sklearn", "train", "fitting a site profile")
    require_extra("matplotlib", "notebooks", "the commissioning report's plots")
    from cxrtriage.errors import CXRTriageError
    from cxrtriage.evaluation.commissioning import commission
    from cxrtriage.evaluation.commissioning_report import write_site
    from cxrtriage.evaluation.input_files import InputProblem
    from cxrtriage.pipeline import Triage
    from cxrtriage.worklist import Worklist

    settings = command_settings(args).model_copy(update={"site_dir": None})  # fitted from the bundled point
    data_dir = Path(args.data_dir) if args.data_dir else settings.find_data_dir()
    worklist_file = Path(args.worklist) if args.worklist else settings.worklist_path
    try:
        engine = Triage.from_config(settings)
        done = commission(
            engine,
            Path(args.gold),
            name=args.name,
            out=Path(args.out),
            data_dir=data_dir,
            target=args.target_sensitivity,
            site_head=args.site_head,
            progress=lambda i, n: print(f"\r{i}/{n} films", end="", file=sys.stderr, flush=True),
            worklist=Worklist(worklist_file) if worklist_file.is_file() else None,  # never creates one
        )
    except (InputProblem, ValueError, CXRTriageError) as exc:  # TooFewCases is a ValueError: no profile written
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    given = ["--gold", args.gold, "--name", args.name, "--out", args.out]
    given += ["--data-dir", args.data_dir] if args.data_dir else []
    given += ["--worklist", args.worklist] if args.worklist else []
    given += ["--target-sensitivity", f"{args.target_sensitivity:g}", "--site-head", args.site_head]
    command = "cxrtriage commission " + shlex.join(given)  # what was run, rebuilt from the parsed options
    paths = write_site(done, Path(args.out), command)
    s, f = done.sample, done.figures
    print(file=sys.stderr)
    if s.unreadable:
        print(f"{len(s.unreadable)} row(s) refused, their image could not be opened:", file=sys.stderr)
        for line in s.unreadable[:10]:
            print(f"  {line}", file=sys.stderr)
    sens = f["sensitivity"]
    print(
        f"site profile {done.profile.name!r}: {done.profile.n_cases} films ({len(s.refused)} refused by the gate); "
        f"adopted {f['adopted']}; threshold {done.profile.threshold:.4f}; cross-validated specificity "
        f"{f[f['adopted']]['specificity']:.3f} (base model at its threshold: {f['base']['specificity']:.3f}), "
        f"sensitivity {sens['value']:.3f} (exact 95% CI {sens['ci95'][0]:.3f}-{sens['ci95'][1]:.3f})"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def add_parser(sub: SubCommands) -> None:
    """Register ``commission`` on the main CLI's subcommands."""
    s = sub.add_parser(
        "commission",
        help="fit and measure a site profile (calibration, threshold, review band) on the site's labelled films",
    )
    s.add_argument("--gold", required=True, help="the site's labels: JSONL (or CSV) with 'path' and 'label'")
    s.add_argument("--name", required=True, help="the site's name, shown with every result")
    s.add_argument("--out", required=True, metavar="SITE_DIR", help="folder for the profile and its report")
    s.add_argument("--data-dir", help="folder that relative 'path's start from (default: CXRTRIAGE_DATA_DIR)")
    s.add_argument(
        "--worklist",
        help="the worklist whose stored results 'worklist:KEY' rows name (cxrtriage feedback export; default: "
        "CXRTRIAGE_WORKLIST_PATH)",
    )
    s.add_argument(
        "--target-sensitivity", type=float, default=0.95, help="sensitivity the site's threshold keeps (default 0.95)"
    )
    s.add_argument(
        "--site-head",
        choices=("auto", "off"),
        default="auto",
        help="auto: also try a site head on the embedding and logit, adopted only if nested cross-validation "
        "shows it beats recalibration alone (default); off: recalibration only",
    )
    s.set_defaults(func=cmd_commission)
    add_backend_options(s)

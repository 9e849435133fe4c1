#!/usr/bin/env python3
"""Does the gate triage frontal films in other frames, and refuse laterals? (issue 24)

For N test-split films of each source (the committed splits' ``test`` rows: NIH adults, pediatric, Shenzhen adults;
JSRT's test part), every acquisition variant of ``cxrtriage.imaging.acquisition.VARIANTS`` (a black canvas with the
film's own borders, the same with noise and a marker, wide borders, rotation by +-15 degrees, aspect 0.75 and 1.33)
goes through ``Triage.predict`` with the bundled model and segmentation, and is counted as triaged (no review), to
review (``needs_review``) or refused (``NotAChestXrayError``); every lateral film of ``<data>/laterals`` is counted
the same way. With ``--baseline SRC`` the same films go through another source tree as well (e.g. the commit before the
exposed-field stage, unpacked with ``git archive``), in its own process, so before and after sit in one file.

    python scripts/gate_robustness.py [--n 40] [--out prototype/eval/gate_robustness.json] [--baseline /tmp/base/src]

The variants are built by this tree's ``acquisition.py`` in both runs. No image is written anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("triaged", "review", "refused")


def _variants() -> dict:
    """This tree's variants, loaded by path (numpy and Pillow only), whichever ``cxrtriage`` the run imports."""
    spec = importlib.util.spec_from_file_location("_acquisition", REPO / "src/cxrtriage/imaging/acquisition.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.VARIANTS


def _films(data_dir: Path, n: int) -> dict[str, list[Path]]:
    """The first ``n`` test films of each source, in key order (deterministic)."""
    from cxrtriage.data import jsrt_records, jsrt_split, load_split_records

    sources = tuple(d for d in ("nih", "kermany", "shenzhen") if (data_dir / d / "labels.csv").is_file())
    try:
        test = sorted(load_split_records(data_dir, sources)["test"], key=lambda r: r.key)
    except KeyError:  # a baseline tree from before Shenzhen was a source: the sources it knows
        sources = ("nih", "kermany")
        test = sorted(load_split_records(data_dir, sources)["test"], key=lambda r: r.key)
    out = {name: [r.path for r in test if r.dataset == name][:n] for name in sources}
    jsrt = jsrt_split(jsrt_records(data_dir))["test"]
    out["jsrt"] = [r.path for r in jsrt][:n]
    return out


def _outcome(engine, pixels) -> tuple[str, float | None]:
    """The gate's outcome and the score (None when refused)."""
    from cxrtriage.errors import NotAChestXrayError

    try:
        pred = engine.predict(pixels, save_crops=False)
    except NotAChestXrayError:
        return "refused", None
    return ("review" if pred.needs_review else "triaged"), pred.score


def worker(data_dir: Path, n: int) -> dict:
    """One source tree's counts (this process imports whichever ``cxrtriage`` PYTHONPATH names)."""
    from cxrtriage.data import lateral_paths
    from cxrtriage.imaging.load import load_image
    from cxrtriage.pipeline import Triage

    engine = Triage()
    variants = _variants()
    counts: dict[str, dict[str, dict[str, int]]] = {}
    refused: list[str] = []
    scores: dict[str, float | None] = {}  # the unchanged films' scores: does the new stage leave them alone?
    t0 = time.perf_counter()
    for source, paths in _films(data_dir, n).items():
        for path in paths:
            pixels = load_image(path).pixels
            for name, make in variants.items():
                outcome, score = _outcome(engine, make(pixels))
                if name == "original":
                    scores[f"{source}/{path.name}"] = score
                row = counts.setdefault(name, {}).setdefault(source, dict.fromkeys(OUTCOMES, 0))
                row[outcome] += 1
                if outcome == "refused":
                    refused.append(f"{name}: {source}/{path.name}")
    laterals = dict.fromkeys(OUTCOMES, 0)
    for path in lateral_paths(data_dir):
        laterals[_outcome(engine, load_image(path).pixels)[0]] += 1
    n_lat = sum(laterals.values())
    return {
        "variants": counts,
        "frontal_refused": refused,
        "original_scores": scores,
        "laterals": {**laterals, "n": n_lat, "refusal_rate": round(laterals["refused"] / max(n_lat, 1), 3)},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _run_tree(src: Path, data_dir: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--n", str(n), "--data", str(data_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)  # noqa: S603 - our own script
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="test films per source")
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/gate_robustness.json")
    parser.add_argument("--baseline", type=Path, help="src/ folder of another tree to measure the same way")
    parser.add_argument("--data", type=Path, help="data directory (default: the configured one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data is None:
        sys.path.insert(0, str(REPO / "src"))
        from cxrtriage.config import Settings

        args.data = Settings().find_data_dir()
    if args.worker:
        print(json.dumps(worker(args.data, args.n)))
        return
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)  # noqa: S607
    result = {
        "what": "gate outcome of each acquisition variant of N test-split films per source, and of the laterals "
        "(in-sample for the view probe, which was fitted on these laterals: its cross-validated figures are in "
        "model.json view_probe.validation)",
        "command": " ".join(["python", "scripts/gate_robustness.py", *sys.argv[1:]]),
        "commit": head.stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "films_per_source": args.n,
        "after": _run_tree(REPO / "src", args.data, args.n),
    }
    if args.baseline is not None:
        result["before"] = _run_tree(args.baseline, args.data, args.n)
        before, after = result["before"]["original_scores"], result["after"]["original_scores"]
        diffs = [abs(after[k] - before[k]) for k in before if before[k] is not None and after.get(k) is not None]
        result["original_films_max_abs_score_diff"] = max(diffs) if diffs else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for label in ("before", "after"):
        if label in result:
            r = result[label]
            refused = {k: sum(v["refused"] for v in s.values()) for k, s in r["variants"].items()}
            print(label, "frontal refused by variant:", refused, "laterals refused:", r["laterals"]["refusal_rate"])


if __name__ == "__main__":
    main()

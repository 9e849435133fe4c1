#!/usr/bin/env bash
# Rebuild, quantise and verify the bundled int8 ONNX model from a training checkpoint.
#
# This is the specification's "medgemma_quant.onnx" step for what actually ships: the bundled CNN (cxrnet) is
# exported with torch.onnx (fp32), checked against torch, pre-processed, statically quantised to int8 (QDQ) with
# onnxruntime.quantization, checked against fp32, calibrated, and written as a model bundle
# (model.onnx + model.json + index.npz + MODEL_CARD.md). Then this script checks the sha256 recorded in model.json
# and runs one prediction on the new bundle.
#
# Usage: demo_app/onnx/build_onnx.sh [--checkpoint PATH] [--out DIR | --install] [--data-dir DIR] [--trace FILE]
#   --checkpoint PATH  training checkpoint; give it once per member of a seed ensemble (default: the shipped
#                      ensemble's members, runs/seed_1129 and runs/seed_2; `make train` makes them)
#   --out DIR          write the bundle here (default: a new temporary directory, kept and printed)
#   --install          write the bundle over the packaged model in src/cxrtriage/weights (then run `make evaluate`
#                      and `make bench` to put test metrics and speed back into the model card)
#   --data-dir DIR     the public CXR data (default: CXRTRIAGE_DATA_DIR or ../shared/data)
#   --trace FILE       conversion + quantisation log (default: demo_app/onnx/medgemma_quant.tracing.txt with
#                      --install, else DIR/medgemma_quant.tracing.txt)
#   -h, --help         this text
# Environment: PYTHON (default: .venv/bin/python if present, else python3); needs the [train] extra (torch, onnx).
# Exit codes: 0 built and verified, 1 build or verification failed, 2 usage / missing checkpoint or dependencies.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO_ROOT}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

usage() { sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "build_onnx: ERROR: $*" >&2; exit 2; }

checkpoints=()
out=""
install=0
data_dir=""
trace=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --checkpoint) [[ $# -ge 2 ]] || die "--checkpoint needs a path"; checkpoints+=("$2"); shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out="$2"; shift 2 ;;
        --install) install=1; shift ;;
        --data-dir) [[ $# -ge 2 ]] || die "--data-dir needs a directory"; data_dir="$2"; shift 2 ;;
        --trace) [[ $# -ge 2 ]] || die "--trace needs a file"; trace="$2"; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ ${install} -eq 0 || -z "${out}" ]] || die "--out and --install exclude each other"

[[ ${#checkpoints[@]} -gt 0 ]] || checkpoints=(runs/seed_1129/checkpoint.pt runs/seed_2/checkpoint.pt)
for checkpoint in "${checkpoints[@]}"; do
    [[ -f "${checkpoint}" ]] || die "no checkpoint at ${checkpoint}. Train them first with \`make train\` (needs the data directory; about 20 minutes per seed on two CPU cores), or pass --checkpoint PATH."
done
"${PYTHON}" -c "import torch, onnx" 2>/dev/null \
    || die "${PYTHON} lacks torch/onnx: install the [train] extra (make install, or pip install -e '.[train]')"

if [[ ${install} -eq 1 ]]; then
    out="src/cxrtriage/weights"
    trace="${trace:-demo_app/onnx/medgemma_quant.tracing.txt}"
elif [[ -z "${out}" ]]; then
    out="$(mktemp -d "${TMPDIR:-/tmp}/cxrtriage-bundle.XXXXXX")"
fi
mkdir -p "${out}"
trace="${trace:-${out}/medgemma_quant.tracing.txt}"

export_args=()
for checkpoint in "${checkpoints[@]}"; do export_args+=(--checkpoint "${checkpoint}"); done
fp32_copy="${out}/model.fp32.onnx"; [[ ${install} -eq 0 ]] || fp32_copy="runs/bundled/model.fp32.onnx"
export_args+=(--out "${out}" --trace "${trace}" --fp32-copy "${fp32_copy}")
[[ -z "${data_dir}" ]] || export_args+=(--data-dir "${data_dir}")

echo "build_onnx: cxrtriage export ${export_args[*]}"
"${PYTHON}" -m cxrtriage.cli.main export "${export_args[@]}"

echo "build_onnx: verifying ${out}"
"${PYTHON}" - "${out}" "${REPO_ROOT}/src/cxrtriage/weights" <<'PY'
import hashlib
import json
import sys
from pathlib import Path

out, bundled = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((out / "model.json").read_text())
bad = []
for name, recorded in {**meta.get("files", {}), "model.onnx": meta["sha256"]}.items():
    actual = hashlib.sha256((out / name).read_bytes()).hexdigest()
    print(f"  {name}: sha256 {actual} {'matches model.json' if actual == recorded else 'DOES NOT MATCH ' + recorded}")
    if actual != recorded:
        bad.append(name)
size = (out / "model.onnx").stat().st_size
quant = meta.get("quantization") or {}
print(f"  model.onnx: {size / 1e6:.2f} MB, {quant.get('format', '?')}, weights {quant.get('weights', '?')}")
if out.resolve() != bundled.resolve() and (bundled / "model.json").is_file():
    shipped = json.loads((bundled / "model.json").read_text())["sha256"]
    same = "identical to" if shipped == meta["sha256"] else "differs from"
    print(f"  the rebuilt model.onnx is {same} the packaged one ({shipped[:12]}...)")
sys.exit(1 if bad else 0)
PY

image="${data_dir:-${CXRTRIAGE_DATA_DIR:-${REPO_ROOT}/../shared/data}}/nih/images/00000150_002.png"
if [[ -f "${image}" ]]; then
    echo "build_onnx: one prediction with the new bundle on $(basename "${image}")"
    CXRTRIAGE_CROPS_DIR="${out}/crops" "${PYTHON}" -c '
import sys
import cxrtriage
r = cxrtriage.predict(sys.argv[1], model_dir=sys.argv[2])
assert r.label in ("Urgent", "Non-Urgent") and 0.0 <= r.score <= 1.0, r
print(f"  label={r.label} score={r.score:.4f} crops={len(r.crops)} model={r.model.sha256[:12]}...")
' "${image}" "${out}"
    rm -rf "${out}/crops"
else
    echo "build_onnx: no example image at ${image}; skipped the test prediction" >&2
fi

echo "build_onnx: OK: bundle in ${out}, trace in ${trace}"
if [[ ${install} -eq 0 ]]; then
    echo "build_onnx: use it with CXRTRIAGE_MODEL_DIR=${out}, or rerun with --install to replace the packaged model"
else
    echo "build_onnx: packaged model replaced; run \`make evaluate\` and \`make bench\` to refresh the model card's numbers"
fi

#!/usr/bin/env bash
# Download a released cxrtriage model bundle (an archive holding model.onnx + model.json [+ index.npz, MODEL_CARD.md]),
# verify its sha256 and unpack it. You do NOT need this to run the demo: the int8 ONNX model bundled in
# src/cxrtriage/weights works offline. This script never downloads anything unless you give it a URL.
#
# Usage: demo_app/onnx/download_quantized_model.sh URL SHA256 [DEST]
#   URL     the archive (.tar.gz, .tgz, .tar or .zip); http(s):// or file://
#   SHA256  the archive's expected sha256 (64 hex digits), as published with the release
#   DEST    directory to unpack into (default: ./cxrtriage-model); then serve it with CXRTRIAGE_MODEL_DIR=DEST
# Environment: PYTHON (default python3) unpacks the archive safely (no absolute paths, no "..", no links).
# Exit codes: 0 downloaded and verified, 2 usage, 3 URL unreachable (offline), 4 checksum or bundle check failed.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
OFFLINE_HINT="the bundled model in src/cxrtriage/weights already works offline"

usage() { sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
esac
if [[ $# -lt 2 || $# -gt 3 ]]; then
    usage >&2
    echo "download_quantized_model: ERROR: need URL and SHA256 (nothing is downloaded without an explicit URL)" >&2
    exit 2
fi
url="$1"
expected="$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')"
dest="${3:-./cxrtriage-model}"
if [[ ! "${expected}" =~ ^[0-9a-f]{64}$ ]]; then
    echo "download_quantized_model: ERROR: SHA256 must be 64 hex digits, got '$2'" >&2
    exit 2
fi
case "${url}" in
    http://*|https://*|file://*) ;;
    *) echo "download_quantized_model: ERROR: URL must start with http://, https:// or file://, got '${url}'" >&2; exit 2 ;;
esac
command -v curl >/dev/null 2>&1 || { echo "download_quantized_model: ERROR: curl is needed" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/cxrtriage-download.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
archive="${work}/bundle"

echo "download_quantized_model: downloading ${url}"
if ! curl -fsSL --retry 2 --connect-timeout 15 --max-time 1800 -o "${archive}" "${url}"; then
    echo "download_quantized_model: cannot reach ${url}; ${OFFLINE_HINT}" >&2
    exit 3
fi

if command -v sha256sum >/dev/null 2>&1; then
    actual="$(sha256sum "${archive}" | cut -d' ' -f1)"
else
    actual="$("${PYTHON}" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "${archive}")"
fi
if [[ "${actual}" != "${expected}" ]]; then
    echo "download_quantized_model: ERROR: sha256 mismatch: expected ${expected}, got ${actual}; nothing was unpacked" >&2
    exit 4
fi
echo "download_quantized_model: sha256 OK (${actual})"

mkdir -p "${dest}"
if ! "${PYTHON}" - "${archive}" "${dest}" <<'PY'
import hashlib
import json
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

archive, dest = Path(sys.argv[1]), Path(sys.argv[2])
unpack = dest / ".unpack"
unpack.mkdir(parents=True, exist_ok=True)


def safe(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts


if tarfile.is_tarfile(archive):
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        bad = [m.name for m in members if not safe(m.name) or not (m.isfile() or m.isdir())]
        if bad:
            sys.exit(f"refusing unsafe archive members: {bad[:5]}")
        for m in members:
            if m.isdir():
                (unpack / m.name).mkdir(parents=True, exist_ok=True)
            else:
                target = unpack / m.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src, open(target, "wb") as dst:
                    dst.write(src.read())
elif zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as zf:
        bad = [n for n in zf.namelist() if not safe(n)]
        if bad:
            sys.exit(f"refusing unsafe archive members: {bad[:5]}")
        zf.extractall(unpack)
else:
    sys.exit("not a tar or zip archive")

# The bundle may sit at the top of the archive or in one folder inside it.
found = sorted(unpack.rglob("model.json"))
if not found:
    sys.exit("the archive holds no model.json")
bundle = found[0].parent
meta = json.loads((bundle / "model.json").read_text())
for name, recorded in {**meta.get("files", {}), "model.onnx": meta.get("sha256")}.items():
    path = bundle / name
    if not path.is_file():
        sys.exit(f"the bundle lacks {name}")
    if recorded and hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        sys.exit(f"{name} does not match the sha256 in model.json")
for item in bundle.iterdir():
    target = dest / item.name
    if target.exists():
        sys.exit(f"{target} already exists; choose an empty DEST")
for item in list(bundle.iterdir()):
    item.rename(dest / item.name)
shutil.rmtree(unpack)
print(f"unpacked {meta.get('name', 'model')} {meta.get('version', '')} (model sha256 {meta.get('sha256', '?')[:12]}...)")
PY
then
    rm -rf "${dest}/.unpack"
    echo "download_quantized_model: ERROR: the archive is not a valid cxrtriage model bundle (see above)" >&2
    exit 4
fi

dest_abs="$(cd "${dest}" && pwd)"
echo "download_quantized_model: OK: bundle in ${dest_abs}"
echo "download_quantized_model: serve it with: CXRTRIAGE_MODEL_DIR=${dest_abs} cxrtriage serve"

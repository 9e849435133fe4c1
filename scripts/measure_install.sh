#!/usr/bin/env bash
# Measure the two installs the Makefile makes, each into a fresh virtual environment: `make install-demo` (what
# `make demo`, `make demo-cli` and `make smoke` use: cxrtriage[demo,interop], no torch) and `make install` (every
# extra: what `make test` and the other targets use). For each: wall time, size on disk (du -sb of the venv) and
# whether torch / transformers / scikit-learn are importable; written to prototype/eval/install_footprint.json.
#
#   scripts/measure_install.sh [--warm] [--only demo|full] [--out FILE] [--note TEXT]
#
# By default pip runs with --no-cache-dir (every wheel downloaded: a cold install, as on a new machine; needs the
# network). --warm uses pip's cache as it is (say so when quoting the numbers: the JSON records which).
# Wheels that pip finds on this machine's disk (a find-links folder or a file:// index) are not downloaded even so:
# pip's own install report (pip install --report) says where each wheel came from, and the JSON counts them.
# The venvs are made under a scratch folder and removed afterwards; the repository's .venv is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

out=prototype/eval/install_footprint.json
warm=0
only=""
note=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --warm) warm=1 ;;
        --only) only="$2"; shift ;;
        --out) out="$2"; shift ;;
        --note) note="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

python_bin="${PYTHON:-python3}"
flags="--no-cache-dir"
cache="not used (pip --no-cache-dir): every wheel was downloaded, except those pip found on this machine's disk (pip_find_links, a file:// URL of pip_extra_index_urls; counted in wheels_from)"
if [[ $warm -eq 1 ]]; then
    flags=""
    cache="warm: pip's cache as it was ($(du -sh "$("$python_bin" -m pip cache dir 2>/dev/null || echo ~/.cache/pip)" 2>/dev/null | cut -f1 || echo unknown))"
else
    # a cold install needs the network: fail early and clearly when there is none
    probe="$(mktemp -d)"
    if ! "$python_bin" -m pip download --quiet --no-cache-dir --no-deps -d "$probe" tqdm >/dev/null 2>&1; then
        rm -rf "$probe"
        echo "measure_install: pip cannot download (no network?); rerun with --warm to measure with pip's cache" >&2
        exit 3
    fi
    rm -rf "$probe"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
results="$scratch/results.jsonl"
: >"$results"

measure() {  # name make-target
    local name="$1" target="$2" venv="$scratch/venv-$1" start end
    echo "measure_install: $name: make $target into a fresh venv ($flags)" >&2
    start=$(date +%s.%N)
    # the last pip call of the target (pip install -e .[extras]) leaves its report: where each wheel came from
    make --no-print-directory "$target" VENV="$venv" PYTHON="$python_bin" \
        PIP_INSTALL_FLAGS="$flags --report $scratch/pip-report-$name.json" >&2
    end=$(date +%s.%N)
    "$venv/bin/python" - "$name" "$target" "$start" "$end" "$(du -sb "$venv" | cut -f1)" \
        "$scratch/pip-report-$name.json" >>"$results" <<'EOF'
import importlib.util, json, sys
from importlib.metadata import distributions
from urllib.parse import unquote
name, target, start, end, size, report = sys.argv[1:]
have = {m: importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "sklearn", "gradio", "onnxruntime")}
# archives only (the editable project itself is a directory); file:// ones were read from this machine's disk
urls = [i["download_info"]["url"] for i in json.load(open(report))["install"] if "archive_info" in i["download_info"]]
local = sorted(unquote(u.rsplit("/", 1)[-1]) for u in urls if u.startswith("file:"))
print(json.dumps({
    "name": name, "make_target": target, "install_s": round(float(end) - float(start), 1), "venv_bytes": int(size),
    "venv_mb": round(int(size) / 1e6, 1), "packages": len({d.metadata["Name"].lower() for d in distributions()}),
    "importable": have,
    "wheels_from": {"downloaded": len(urls) - len(local), "local_disk": len(local)}, "local_wheels": local,
}))
EOF
    rm -rf "$venv"
}

[[ -z "$only" || "$only" == demo ]] && measure demo install-demo
[[ -z "$only" || "$only" == full ]] && measure full install

mkdir -p "$(dirname "$out")"
find_links="$("$python_bin" -m pip config get global.find-links 2>/dev/null || true)"
find_links="${PIP_FIND_LINKS:-$find_links}"
extra_index="$("$python_bin" -m pip config get global.extra-index-url 2>/dev/null || true)"
extra_index="${PIP_EXTRA_INDEX_URL:-$extra_index}"
"$python_bin" - "$results" "$out" "$cache" "$flags" "$find_links" "$extra_index" "$note" <<'EOF'
import datetime, json, os, platform, sys
from pathlib import Path
results, out, cache, flags, find_links, extra_index, note = sys.argv[1:]
local = sorted(p.name for d in find_links.split() if Path(d).is_dir() for p in Path(d).glob("*.whl"))
envs = [json.loads(line) for line in open(results, encoding="utf-8")]
report = {
    "what": "fresh virtual environments made by the Makefile's install targets: install-demo (make demo, demo-cli, "
    "smoke) and install (make test and every other target); install_s is wall time of the make target (venv, pip "
    "upgrade, pip install -e), venv_bytes is du -sb of the venv",
    "generated_by": "scripts/measure_install.sh",
    "date": datetime.date.today().isoformat(),
    "pip_cache": cache,
    "pip_flags": flags,
    # wheels pip takes from a local folder are not downloaded even with --no-cache-dir
    "pip_find_links": find_links or None,
    "local_wheels_used_if_needed": local,
    # a file:// index is on this machine's disk too: wheels_from in each environment says how many came from it
    "pip_extra_index_urls": extra_index.split() or None,
    "python": platform.python_version(),
    "cpus": os.cpu_count(),
    "note": note or None,
    "environments": {e.pop("name"): e for e in envs},
}
with open(out, "w", encoding="utf-8") as fh:
    json.dump(report, fh, indent=2)
    fh.write("\n")
print(json.dumps(report, indent=2))
EOF

#!/usr/bin/env bash
# End-to-end smoke test of the cxrtriage demo service (API + UI), against a running server or container, or against
# a server this script starts itself. Prints PASS/FAIL per check; exits 0 only when every check passed.
#
# Usage:
#   demo_app/tests/smoke_test.sh [BASE_URL]          # default $BASE_URL, else http://localhost:7860
#   demo_app/tests/smoke_test.sh --start             # start `cxrtriage serve` (through demo_app/docker/entrypoint.sh)
#                                                    # on a free local port with a temporary state folder (worklist,
#                                                    # API keys, audit trail) and crops dir; stopped on exit
# Authentication: every request carries the API key (curl -H 'X-API-Key: ...', read from a 0600 file in the
# scratch folder, so the key is not on curl's command line), and then the test also checks that requests without it,
# or with a wrong one, get 401. With --start the entrypoint creates an admin key on its first start, as in the
# container, and the test reads it from the scratch state folder (and verifies the audit trail at the end). Against
# a running server, give the key with --api-key KEY or CXRTRIAGE_API_KEY (an admin's: /status and /metrics are
# admin-only); without one, the server must be running open and the authentication checks are skipped.
# Options:
#   --api-key KEY    the API key to send (default $CXRTRIAGE_API_KEY); not with --start, which makes its own
#   --image PATH     chest X-ray to post (default: $CXRTRIAGE_DATA_DIR/nih/images/00000150_002.png,
#                    CXRTRIAGE_DATA_DIR defaulting to ../shared/data relative to the repository root; without the
#                    data: the bundled sample src/cxrtriage/samples/nih/00001383_000.png)
#   --dicom PATH     DICOM chest X-ray to post as well (default: $CXRTRIAGE_DATA_DIR/dicom/SIIM_CR_chest_PA_jpegbaseline.dcm
#                    when it exists, else the bundled sample DICOM; --no-dicom to skip)
#   --timeout S      seconds to wait for /ready (default 180, or $SMOKE_READY_TIMEOUT)
#   -h, --help       this text
# Environment: PYTHON (interpreter with the `jsonschema` package, default python3; CI passes .venv/bin/python),
#   BASE_URL, CXRTRIAGE_API_KEY, CXRTRIAGE_DATA_DIR, SMOKE_READY_TIMEOUT, SMOKE_REQUEST_TIMEOUT (seconds per
#   request, default 120).
# Needs curl. Exit codes: 0 all checks passed, 1 a check failed, 2 usage / setup error.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
READY_TIMEOUT="${SMOKE_READY_TIMEOUT:-180}"
REQUEST_TIMEOUT="${SMOKE_REQUEST_TIMEOUT:-120}"
SCHEMA="${REPO_ROOT}/demo_app/schema/prediction.schema.json"
DATA_DIR="${CXRTRIAGE_DATA_DIR:-${REPO_ROOT}/../shared/data}"
SAMPLES="${REPO_ROOT}/src/cxrtriage/samples"  # bundled with the package (SAMPLES.md): a clone without data is tested too
PRIOR_REPORT="Small right pleural effusion. No pneumothorax. Heart size is normal."
DISCLAIMER="For clinical decision support only — not a diagnostic tool."

usage() { sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "smoke_test: ERROR: $*" >&2; exit 2; }

start=0
base_url=""
image=""
dicom=""
no_dicom=0
api_key="${CXRTRIAGE_API_KEY:-}"
key_given=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --start) start=1; shift ;;
        --image) [[ $# -ge 2 ]] || die "--image needs a path"; image="$2"; shift 2 ;;
        --dicom) [[ $# -ge 2 ]] || die "--dicom needs a path"; dicom="$2"; shift 2 ;;
        --no-dicom) no_dicom=1; shift ;;
        --api-key) [[ $# -ge 2 && -n "$2" ]] || die "--api-key needs a key"; api_key="$2"; key_given=1; shift 2 ;;
        --timeout) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds"; READY_TIMEOUT="$2"; shift 2 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [[ -z "${base_url}" ]] || die "more than one BASE_URL given"; base_url="$1"; shift ;;
    esac
done
if [[ ${start} -eq 1 && -n "${base_url}" ]]; then
    die "--start picks its own URL; do not pass BASE_URL with it"
fi
if [[ ${start} -eq 1 && ${key_given} -eq 1 ]]; then
    die "--start makes its own API key (in its scratch state folder); do not pass --api-key with it"
fi
[[ ${start} -eq 0 ]] || api_key=""  # a CXRTRIAGE_API_KEY of the caller's shell is not the scratch server's
[[ ${start} -eq 1 ]] || base_url="${base_url:-${BASE_URL:-http://localhost:7860}}"

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
command -v "${PYTHON}" >/dev/null 2>&1 || die "PYTHON=${PYTHON} not found"
"${PYTHON}" -c "import jsonschema" 2>/dev/null || die "PYTHON=${PYTHON} lacks the jsonschema package (pip install jsonschema, or PYTHON=.venv/bin/python)"
[[ -f "${SCHEMA}" ]] || die "JSON Schema not found: ${SCHEMA}"
if [[ -z "${image}" ]]; then
    image="${DATA_DIR}/nih/images/00000150_002.png"
    [[ -f "${image}" ]] || image="${SAMPLES}/nih/00001383_000.png"
fi
[[ -f "${image}" ]] || die "test image not found: ${image} (set CXRTRIAGE_DATA_DIR or pass --image PATH)"
if [[ ${no_dicom} -eq 0 && -z "${dicom}" ]]; then
    for candidate in "${DATA_DIR}/dicom/SIIM_CR_chest_PA_jpegbaseline.dcm" "${SAMPLES}/dicom/nih_00001323_001_as_CR.dcm"; do
        if [[ -f "${candidate}" ]]; then dicom="${candidate}"; break; fi
    done
fi
[[ ${no_dicom} -eq 1 || -z "${dicom}" || -f "${dicom}" ]] || die "DICOM not found: ${dicom}"

work="$(mktemp -d "${TMPDIR:-/tmp}/cxrtriage-smoke.XXXXXX")"
server_pid=""
server_log="${work}/server.log"

# shellcheck disable=SC2317  # called from the EXIT trap (shellcheck 0.9 cannot see that)
stop_server() {
    [[ -n "${server_pid}" ]] || return 0
    if kill -0 "${server_pid}" 2>/dev/null; then
        kill -TERM "${server_pid}" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "${server_pid}" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "${server_pid}" 2>/dev/null || true
    fi
    wait "${server_pid}" 2>/dev/null || true
    server_pid=""
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT
    stop_server
    if [[ ${rc} -ne 0 && -s "${server_log}" ]]; then
        echo "---- last lines of the server log (${server_log}) ----" >&2
        tail -n 40 "${server_log}" >&2 || true
        echo "----" >&2
    fi
    rm -rf "${work}"
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ ${start} -eq 1 ]]; then
    # Same command as the container: demo_app/docker/entrypoint.sh -> cxrtriage serve --host --port --workers.
    # Prefer the cxrtriage next to $PYTHON, so that the server runs in the same environment.
    py_path="$(command -v "${PYTHON}")"
    py_bin="$(cd "$(dirname "${py_path}")" && pwd)"
    if [[ -x "${py_bin}/cxrtriage" ]]; then
        PATH="${py_bin}:${PATH}"
    fi
    command -v cxrtriage >/dev/null 2>&1 || die "cxrtriage is not installed (make install, or PYTHON=.venv/bin/python)"
    port="$("${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    base_url="http://127.0.0.1:${port}"
    mkdir -p "${work}/crops"
    echo "smoke_test: starting cxrtriage serve on ${base_url} (state in ${work}/state, crops in ${work}/crops, log ${server_log})"
    # its own state folder too: the smoke test's results, keys and audit records must not land in the user's; the
    # entrypoint creates the admin key there on this first start, as in the container
    CXRTRIAGE_HOST=127.0.0.1 CXRTRIAGE_PORT="${port}" CXRTRIAGE_WORKERS="${CXRTRIAGE_WORKERS:-1}" CXRTRIAGE_CROPS_DIR="${work}/crops" \
        CXRTRIAGE_WORKLIST_PATH="${work}/state/worklist.sqlite" CXRTRIAGE_AUDIT_PATH="${work}/state/audit.jsonl" \
        GRADIO_ANALYTICS_ENABLED=False "${REPO_ROOT}/demo_app/docker/entrypoint.sh" >"${server_log}" 2>&1 &
    server_pid=$!
fi
base_url="${base_url%/}"

# The credential, as a curl header file readable by this user only (never on a command line, where `ps` shows it).
auth=()
# set_key KEY: every later request carries it
set_key() {
    (umask 077; printf 'X-API-Key: %s\n' "$1" >"${work}/auth.header")
    auth=(-H "@${work}/auth.header")
}
[[ -z "${api_key}" ]] || set_key "${api_key}"
api_key=""

n_pass=0
n_fail=0
pass() { n_pass=$((n_pass + 1)); printf 'PASS  %s\n' "$*"; }
fail() { n_fail=$((n_fail + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { printf 'SKIP  %s\n' "$*"; }

# http_get URL OUTFILE -> prints "STATUS CONTENT_TYPE"; STATUS 000 when the server cannot be reached.
http_get() {
    curl -sS -L "${auth[@]}" -o "$2" -w '%{http_code} %{content_type}' --max-time "${REQUEST_TIMEOUT}" "$1" 2>>"${work}/curl.err" || true
}
# anon_status METHOD PATH [HEADER FILE] -> the HTTP status of a request without the key (or with the header file's)
anon_status() {
    local args=(-sS -o "${work}/anon.json" -w '%{http_code}' --max-time "${REQUEST_TIMEOUT}" -X "$1")
    [[ -z "${3:-}" ]] || args+=(-H "@$3")
    [[ "$1" != POST ]] || args+=(-F "file=@${image};type=image/png")
    curl "${args[@]}" "${base_url}$2" 2>>"${work}/curl.err" || echo "000"
}

# ---- wait for /ready -------------------------------------------------------------------------------------------
echo "smoke_test: waiting up to ${READY_TIMEOUT}s for ${base_url}/ready"
t0=${SECONDS}
deadline=$((t0 + READY_TIMEOUT))
code="000"
while true; do
    code="$(curl -s -o "${work}/ready.json" -w '%{http_code}' --max-time 5 "${base_url}/ready" 2>/dev/null || true)"
    [[ "${code}" == "200" ]] && break
    if [[ -n "${server_pid}" ]] && ! kill -0 "${server_pid}" 2>/dev/null; then
        fail "GET /ready: the server exited before it was ready"
        echo "smoke_test: FAILED: cxrtriage serve exited during start-up (log below)" >&2
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        fail "GET /ready: not ready after ${READY_TIMEOUT}s (last HTTP status ${code:-000})"
        echo "smoke_test: FAILED: ${base_url} did not become ready within ${READY_TIMEOUT}s; is the server/container running and published on that port?" >&2
        exit 1
    fi
    sleep 1
done
pass "GET /ready -> 200 (after $((SECONDS - t0))s)"

if [[ ${start} -eq 1 ]]; then
    # the entrypoint wrote the admin key before it started the server
    key_file="${work}/state/admin-api-key"
    if [[ -f "${key_file}" && "$(stat -c '%a' "${key_file}")" == "600" ]] && grep -q "${key_file}" "${server_log}"; then
        pass "the entrypoint created an admin API key in ${key_file} (0600) and logged where it is"
        set_key "$(head -n1 "${key_file}")"
    else
        fail "no admin API key file ${key_file} (0600) named in the server log"
    fi
    if grep -q 'cxt_' "${server_log}"; then fail "the server log contains an API key"; else pass "no API key in the server log"; fi
fi

# ---- /health, /status, /metrics, /docs, /ui ----------------------------------------------------------------------
read -r code ctype <<<"$(http_get "${base_url}/health" "${work}/health.json")"
if [[ "${code}" == "200" ]]; then pass "GET /health -> 200"; else fail "GET /health -> ${code} (expected 200)"; fi

read -r code ctype <<<"$(http_get "${base_url}/status" "${work}/status.json")"
if [[ "${code}" == "200" ]] && "${PYTHON}" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d, dict) and d else 1)' "${work}/status.json" 2>/dev/null; then
    pass "GET /status -> 200, JSON object ($(head -c 160 "${work}/status.json" | tr '\n' ' ')...)"
else
    fail "GET /status -> ${code} ${ctype} (expected 200 with a JSON object)"
fi

read -r code ctype <<<"$(http_get "${base_url}/metrics" "${work}/metrics.txt")"
if [[ "${code}" == "200" ]] && grep -q '^# TYPE ' "${work}/metrics.txt"; then
    pass "GET /metrics -> 200, Prometheus text format"
else
    fail "GET /metrics -> ${code} ${ctype} (expected 200 with Prometheus '# TYPE' lines)"
fi

read -r code ctype <<<"$(http_get "${base_url}/docs" "${work}/docs.html")"
if [[ "${code}" == "200" ]]; then pass "GET /docs -> 200"; else fail "GET /docs -> ${code} (expected 200)"; fi

read -r code ctype <<<"$(http_get "${base_url}/ui" "${work}/ui.html")"
if [[ "${code}" == "200" && "${ctype}" == text/html* ]]; then
    pass "GET /ui -> 200 ${ctype} (UI reachable)"
else
    fail "GET /ui -> ${code} ${ctype} (expected 200 text/html)"
fi

# ---- POST /predict with a real chest X-ray and a prior report ----------------------------------------------------
# check_prediction JSONFILE REPORT THUMBS_OUT: JSON Schema + the specification's contract; writes thumb paths.
check_prediction() {
    "${PYTHON}" - "${SCHEMA}" "$1" "$2" "$3" "${DISCLAIMER}" <<'PY'
import json
import sys

import jsonschema

schema_path, doc_path, report, thumbs_out, disclaimer = sys.argv[1:6]
schema = json.load(open(schema_path, encoding="utf-8"))
try:
    doc = json.load(open(doc_path, encoding="utf-8"))
except ValueError as exc:
    print(f"      response is not JSON: {exc}")
    sys.exit(1)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
problems = [f"schema: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc)]
# The specification's contract: {label, score, explanation, crops:[{x,y,w,h,thumb_path}], provenance:[{source, snippet}]}.
if doc.get("label") not in ("Urgent", "Non-Urgent"):
    problems.append(f"label {doc.get('label')!r} is not Urgent / Non-Urgent")
score = doc.get("score")
if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
    problems.append(f"score {score!r} is not a number in [0, 1]")
if not isinstance(doc.get("explanation"), str) or not doc["explanation"].strip():
    problems.append("explanation is empty")
crops = doc.get("crops") if isinstance(doc.get("crops"), list) else []
if len(crops) > 3:
    problems.append(f"{len(crops)} crops (at most 3)")
for i, c in enumerate(crops):
    missing = [k for k in ("x", "y", "w", "h", "thumb_path") if k not in c]
    if missing:
        problems.append(f"crops[{i}] lacks {missing}")
prov = doc.get("provenance") if isinstance(doc.get("provenance"), list) else []
for i, p in enumerate(prov):
    if not isinstance(p, dict) or not {"source", "snippet"} <= set(p):
        problems.append(f"provenance[{i}] lacks source/snippet")
if report:
    quoted = [p for p in prov if isinstance(p, dict) and p.get("source") == "prior_report"]
    if not quoted:
        problems.append("no provenance entry quotes the prior report")
    for p in quoted:
        if p.get("snippet", "") not in report:
            problems.append(f"prior-report snippet {p.get('snippet')!r} is not quoted verbatim")
if doc.get("disclaimer") != disclaimer:
    problems.append(f"disclaimer {doc.get('disclaimer')!r} != {disclaimer!r}")
for line in problems[:20]:
    print("      " + line)
with open(thumbs_out, "w", encoding="utf-8") as fh:
    for c in crops:
        if isinstance(c, dict) and isinstance(c.get("thumb_path"), str):
            fh.write(c["thumb_path"] + "\n")
print(f"      label={doc.get('label')} score={score} crops={len(crops)} provenance={len(prov)}")
sys.exit(1 if problems else 0)
PY
}

# post_predict FILE MIME OUTFILE [REPORT] -> prints the HTTP status
post_predict() {
    local args=(-sS "${auth[@]}" -o "$3" -w '%{http_code}' --max-time "${REQUEST_TIMEOUT}" -F "file=@$1;type=$2")
    if [[ -n "${4:-}" ]]; then
        args+=(--form-string "prior_report=$4")
    fi
    curl "${args[@]}" "${base_url}/predict" 2>>"${work}/curl.err" || echo "000"
}

code="$(post_predict "${image}" image/png "${work}/predict.json" "${PRIOR_REPORT}")"
if [[ "${code}" == "200" ]]; then
    pass "POST /predict $(basename "${image}") + prior report -> 200"
    if check_prediction "${work}/predict.json" "${PRIOR_REPORT}" "${work}/thumbs.txt"; then
        pass "prediction JSON is valid against demo_app/schema/prediction.schema.json and the spec's fields"
    else
        fail "prediction JSON does not match the schema / spec contract (details above)"
    fi
    n_thumbs=0
    while IFS= read -r thumb; do
        [[ -n "${thumb}" ]] || continue
        n_thumbs=$((n_thumbs + 1))
        case "${thumb}" in
            http://*|https://*) url="${thumb}" ;;
            /*) url="${base_url}${thumb}" ;;
            *) fail "thumb_path ${thumb} is neither a URL nor an absolute URL path"; continue ;;
        esac
        read -r code ctype <<<"$(http_get "${url}" "${work}/thumb.png")"
        if [[ "${code}" == "200" && "${ctype}" == image/png* ]] && [[ "$(head -c 8 "${work}/thumb.png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]]; then
            pass "GET ${thumb} -> 200 image/png"
        else
            fail "GET ${thumb} -> ${code} ${ctype} (expected 200 image/png)"
        fi
    done <"${work}/thumbs.txt"
    if [[ ${n_thumbs} -eq 0 ]]; then
        skip "crop thumbnails: the prediction has no crops (no positive evidence), nothing to fetch"
    fi
else
    fail "POST /predict $(basename "${image}") -> ${code} (expected 200): $(head -c 300 "${work}/predict.json" 2>/dev/null || true)"
fi

if [[ -n "${dicom}" ]]; then
    code="$(post_predict "${dicom}" application/dicom "${work}/predict_dcm.json")"
    if [[ "${code}" == "200" ]] && check_prediction "${work}/predict_dcm.json" "" "${work}/thumbs_dcm.txt"; then
        pass "POST /predict $(basename "${dicom}") (DICOM, no report) -> 200, valid JSON"
    else
        fail "POST /predict $(basename "${dicom}") (DICOM) -> ${code}: $(head -c 300 "${work}/predict_dcm.json" 2>/dev/null || true)"
    fi
else
    skip "DICOM upload: no DICOM sample (pass --dicom PATH)"
fi

# ---- the same result as a FHIR DiagnosticReport for the EHR (format=fhir, the [interop] extra) ---------------------
code="$(curl -sS "${auth[@]}" -o "${work}/predict_fhir.json" -w '%{http_code}' --max-time "${REQUEST_TIMEOUT}" \
    -F "file=@${image};type=image/png" "${base_url}/predict?format=fhir" 2>>"${work}/curl.err" || echo "000")"
if [[ "${code}" == "200" ]] && "${PYTHON}" -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d.get("resourceType") == "DiagnosticReport" and d.get("status") == "preliminary" else 1)' "${work}/predict_fhir.json"; then
    pass "POST /predict?format=fhir -> 200, a preliminary FHIR DiagnosticReport"
else
    fail "POST /predict?format=fhir -> ${code}: $(head -c 300 "${work}/predict_fhir.json" 2>/dev/null || true)"
fi

# ---- the worklist (a reader's) with the key ----------------------------------------------------------------------
read -r code ctype <<<"$(http_get "${base_url}/worklist" "${work}/worklist.json")"
if [[ "${code}" == "200" ]] && "${PYTHON}" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d.get("total", 0) >= 1 else 1)' "${work}/worklist.json" 2>/dev/null; then
    pass "GET /worklist -> 200, the triaged studies are on it"
else
    fail "GET /worklist -> ${code} ${ctype} (expected 200 with at least one study)"
fi

# ---- without the key, or with a wrong one: 401 and no result data -------------------------------------------------
if [[ ${#auth[@]} -gt 0 ]]; then
    printf 'X-API-Key: cxt_00000000_not-a-real-key\n' >"${work}/wrong.header"
    first_thumb="$(head -n1 "${work}/thumbs.txt" 2>/dev/null || true)"
    for probe in "GET /worklist" "GET /status" "GET /metrics" "POST /predict" ${first_thumb:+"GET ${first_thumb}"}; do
        read -r method path <<<"${probe}"
        code="$(anon_status "${method}" "${path}")"
        if [[ "${code}" == "401" ]] && ! grep -q '"label"' "${work}/anon.json"; then
            pass "${probe} without a credential -> 401"
        else
            fail "${probe} without a credential -> ${code} (expected 401)"
        fi
    done
    code="$(anon_status GET /worklist "${work}/wrong.header")"
    if [[ "${code}" == "401" ]]; then pass "GET /worklist with a wrong key -> 401"; else fail "GET /worklist with a wrong key -> ${code} (expected 401)"; fi
else
    skip "authentication checks: no API key given (--api-key KEY or CXRTRIAGE_API_KEY); the server runs open"
fi

# ---- a non-image upload must be refused with 4xx (415 Unsupported Media Type) ------------------------------------
printf 'This is a plain text file, not a chest X-ray.\n' >"${work}/not_an_image.txt"
code="$(post_predict "${work}/not_an_image.txt" text/plain "${work}/predict_txt.json")"
if [[ "${code}" == "415" ]]; then
    pass "POST /predict text file -> 415"
elif [[ "${code}" == 4?? ]]; then
    pass "POST /predict text file -> ${code} (refused; 415 expected)"
else
    fail "POST /predict text file -> ${code} (expected 4xx, 415)"
fi

# ---- the audit trail of the server this script started ----------------------------------------------------------
if [[ ${start} -eq 1 ]]; then
    if audit_out="$(CXRTRIAGE_WORKLIST_PATH="${work}/state/worklist.sqlite" cxrtriage audit verify --path "${work}/state/audit.jsonl" 2>&1)" \
        && grep -q '"principal":"admin","role":"admin","via":"api-key","action":"triage"' "${work}/state/audit.jsonl" \
        && grep -q '"action":"auth.failed"' "${work}/state/audit.jsonl" && ! grep -q 'cxt_' "${work}/state/audit.jsonl"; then
        pass "audit trail: ${audit_out}; the triages recorded under the key's name, the refusals as auth.failed, no key"
    else
        fail "audit trail: ${audit_out:-not verified} (expected an intact chain with triage and auth.failed records)"
    fi
fi

# ---- summary -----------------------------------------------------------------------------------------------------
echo
if [[ ${n_fail} -eq 0 ]]; then
    echo "smoke_test: ALL CHECKS PASSED (${n_pass} checks) against ${base_url}"
    exit 0
fi
echo "smoke_test: FAILED: ${n_fail} of $((n_pass + n_fail)) checks failed against ${base_url}" >&2
exit 1

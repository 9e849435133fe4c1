#!/usr/bin/env bash
# Container entry point: serve the cxrtriage API (/predict, /health, /ready, /status, /metrics, /docs) and the
# Gradio UI (/ui) with the bundled int8 ONNX model. Configuration comes from CXRTRIAGE_* environment variables
# (see demo_app/README.md).
#
#   entrypoint.sh                 -> cxrtriage serve --host $CXRTRIAGE_HOST --port $CXRTRIAGE_PORT --workers $CXRTRIAGE_WORKERS
#   entrypoint.sh --log-level x   -> the same, with the extra options appended
#   entrypoint.sh some-command .. -> runs that command instead (e.g. `docker run --rm -it IMAGE bash`)
#
# Authentication: the container listens on all interfaces, so the service requires a credential. On the first start
# with no API key in the state folder (the worklist's folder: /app/state in the image) and no single sign-on
# configured, it creates an admin API key and writes it to admin-api-key in that folder (0600, readable by the
# service user only); the log names the file, never the key (`docker exec CONTAINER cat /app/state/admin-api-key`).
# Later starts find keys.json there and create nothing. `entrypoint.sh --insecure-no-auth` serves without
# authentication instead (a demo on a trusted network; the service warns on every start).
set -euo pipefail

if [[ $# -gt 0 && "$1" != -* ]]; then
    exec "$@"
fi

host="${CXRTRIAGE_HOST:-0.0.0.0}"
port="${CXRTRIAGE_PORT:-7860}"
workers="${CXRTRIAGE_WORKERS:-1}"

if [[ -n "${CXRTRIAGE_CROPS_DIR:-}" ]]; then
    mkdir -p "${CXRTRIAGE_CROPS_DIR}"
    if [[ ! -w "${CXRTRIAGE_CROPS_DIR}" ]]; then
        echo "entrypoint: CXRTRIAGE_CROPS_DIR=${CXRTRIAGE_CROPS_DIR} is not writable by $(id -un 2>/dev/null || id -u)" >&2
        exit 1
    fi
fi

# The state folder as the service computes it (cxrtriage.config: the worklist's folder).
if [[ -n "${CXRTRIAGE_WORKLIST_PATH:-}" ]]; then
    state="$(dirname "${CXRTRIAGE_WORKLIST_PATH}")"
else
    state="${XDG_STATE_HOME:-${HOME:-}/.local/state}/cxrtriage"
fi
key_file="${state}/admin-api-key"
insecure=0
for arg in "$@"; do
    [[ "${arg}" == "--insecure-no-auth" ]] && insecure=1
done
if [[ ${insecure} -eq 0 && -z "${CXRTRIAGE_OIDC_ISSUER:-}" && ! -e "${state}/keys.json" ]]; then
    mkdir -p "${state}"
    cxrtriage keys create --role admin --name admin --key-file "${key_file}" >&2
    echo "entrypoint: no API key was configured, so an admin API key was created; it is in ${key_file} (readable by the service user only). Send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'; make keys for others with 'cxrtriage keys create'." >&2
elif [[ ${insecure} -eq 0 && -e "${key_file}" ]]; then
    echo "entrypoint: API keys in ${state}/keys.json; the admin key made on the first start is in ${key_file}" >&2
fi

echo "entrypoint: cxrtriage serve --host ${host} --port ${port} --workers ${workers} $*" >&2
exec cxrtriage serve --host "${host}" --port "${port}" --workers "${workers}" "$@"

#!/usr/bin/env bash
# Container entry point: serve the cxrtriage API (/predict, /health, /ready, /status, /metrics, /docs) and the
# Gradio UI (/ui) with the bundled int8 ONNX model. Configuration comes from CXRTRIAGE_* environment variables
# (see demo_app/README.md).
#
#   entrypoint.sh                 -> cxrtriage serve --host $CXRTRIAGE_HOST --port $CXRTRIAGE_PORT --workers $CXRTRIAGE_WORKERS
#   entrypoint.sh --log-level x   -> the same, with the extra options appended
#   entrypoint.sh some-command .. -> runs that command instead (e.g. `docker run --rm -it IMAGE bash`)
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

echo "entrypoint: cxrtriage serve --host ${host} --port ${port} --workers ${workers} $*" >&2
exec cxrtriage serve --host "${host}" --port "${port}" --workers "${workers}" "$@"

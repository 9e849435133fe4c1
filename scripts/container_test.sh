#!/usr/bin/env bash
# Build and test both container images with podman (no Docker engine and no container registry are needed):
#   1. demo_app/docker/Dockerfile: build, start the container, wait for /ready, run demo_app/tests/smoke_test.sh
#      against it, stop and remove it;
#   2. prototype/Dockerfile.prototype: build, then execute notebook 01 inside it with the specification's command
#      (jupyter nbconvert --execute notebooks/01_quickstart_inference.ipynb --to html, notebooks mounted at
#      /work/notebooks, data mounted read-only at /data, no network) and check the HTML it writes.
# Base images cannot be pulled here, so the python:3.11 slim base of both Dockerfiles is replaced by a local one
# bootstrapped with mmdebstrap (Debian bookworm's Python 3.11.2), built once and cached. The output says so.
#
# Usage: scripts/container_test.sh [--clean] [--only demo|prototype] [-h]
#   --clean          remove the cached base and both test images first (a cold run)
#   --only WHAT      run only the demo or only the prototype part
#   -h, --help       this text
# Environment: CXRTRIAGE_DATA_DIR (default ../shared/data beside the repository), PYTHON (interpreter with
#   jsonschema for the smoke test, default .venv/bin/python), CONTAINER_TEST_CACHE (default runs/container-cache),
#   CONTAINER_TEST_NOTEBOOKS (folder holding 01_quickstart_inference.ipynb, default prototype/notebooks; it is
#   copied, never written to), CONTAINER_TEST_WHEELS (local wheel folder holding the torch CPU wheel, default
#   /opt/wheels; when absent, the Dockerfile's default PyTorch CPU index is used), CONTAINER_TEST_NOTEBOOK_TIMEOUT
#   (seconds, default 1800), CONTAINER_TEST_MIRROR (Debian mirror; default: the first URIs of
#   /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian).
# Needs root on this machine (rootful podman; apt-get installs podman buildah fuse-overlayfs uidmap slirp4netns
# mmdebstrap runc when missing). Exit codes: 0 all passed, 1 a step failed, 2 usage or setup error.
# Idempotent: a second run reuses the base and the image layers; every container it starts is removed on exit.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"

CACHE_DIR="${CONTAINER_TEST_CACHE:-${REPO_ROOT}/runs/container-cache}"
DATA_DIR="${CXRTRIAGE_DATA_DIR:-${REPO_ROOT}/../shared/data}"
NOTEBOOKS_SRC="${CONTAINER_TEST_NOTEBOOKS:-${REPO_ROOT}/prototype/notebooks}"
NOTEBOOK="01_quickstart_inference.ipynb"
NOTEBOOK_TIMEOUT="${CONTAINER_TEST_NOTEBOOK_TIMEOUT:-1800}"
WHEELS_DIR="${CONTAINER_TEST_WHEELS:-/opt/wheels}"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
OUT_DIR="${REPO_ROOT}/runs/container-test"

BASE_IMAGE="localhost/cxrtriage-ci-base:bookworm"
BASE_TAR="${CACHE_DIR}/bookworm-python3.tar"
DEMO_IMAGE="localhost/medgemma-demo:ci"
PROTO_IMAGE="localhost/medproto:ci"
DEMO_CTR="cxrtriage-ci-demo-$$"
NB_CTR="cxrtriage-ci-notebook-$$"
CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
PACKAGES=(podman buildah fuse-overlayfs uidmap slirp4netns mmdebstrap runc)

usage() { sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "container_test: ERROR: $*" >&2; exit 2; }
fail() { echo "container_test: FAIL: $*" >&2; exit 1; }
log() { echo "container_test: $*"; }

clean=0
only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --clean) clean=1; shift ;;
        --only) [[ $# -ge 2 && ( "$2" == demo || "$2" == prototype ) ]] || die "--only needs demo or prototype"
                only="$2"; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# ---- timing ----------------------------------------------------------------------------------------------------
T0=$(date +%s)
step_names=()
step_secs=()
step_start=0
step_name=""
begin() { step_name="$1"; step_start=$(date +%s); echo; echo "==== ${step_name} ===="; }
end() {
    local s=$(( $(date +%s) - step_start ))
    step_names+=("${step_name}"); step_secs+=("${s}")
    log "${step_name}: done in ${s} s"
}
base_notice() {
    cat <<'EOF'
##################################################################################################################
# NOTE: the images are built on a LOCAL BASE, not on the Dockerfiles' FROM python:3.11.13-slim-bookworm.
# No container registry is reachable here, so the base is Debian bookworm (minbase) with Debian's python3 package,
# i.e. Python 3.11.2 (/usr/bin/python), bootstrapped with mmdebstrap. Results depend on that base, not on
# python:3.11-slim (Python 3.11.13 in /usr/local). Everything else in the Dockerfiles is built as written.
##################################################################################################################
EOF
}
summary() {
    local i
    echo
    echo "==== container_test summary ===="
    for i in "${!step_names[@]}"; do
        printf '  %-52s %5d s\n' "${step_names[$i]}" "${step_secs[$i]}"
    done
    printf '  %-52s %5d s\n' "total" "$(( $(date +%s) - T0 ))"
}

# ---- cleanup: nothing left running -----------------------------------------------------------------------------
work=""
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT
    if command -v podman >/dev/null 2>&1; then
        local c
        for c in "${DEMO_CTR}" "${NB_CTR}"; do
            if podman container exists "${c}" 2>/dev/null; then
                if [[ ${rc} -ne 0 && "${c}" == "${DEMO_CTR}" ]]; then
                    echo "---- last lines of the demo container's log ----" >&2
                    podman logs --tail 40 "${c}" >&2 2>&1 || true
                    echo "----" >&2
                fi
                podman rm -f -t 5 "${c}" >/dev/null 2>&1 || true
            fi
        done
    fi
    [[ -z "${work}" ]] || rm -rf "${work}"
    summary
    if [[ ${rc} -eq 0 ]]; then
        log "PASS (images built on the local Debian bookworm base, Python 3.11.2 - not python:3.11-slim)"
    else
        log "FAILED (exit ${rc})"
    fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. tools ---------------------------------------------------------------------------------------------------
begin "tools"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q "install ok installed" || missing+=("${p}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        die "missing ${missing[*]} and not root: install them (apt-get install -y ${PACKAGES[*]}) or run as root"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    log "apt-get install ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
[[ "$(id -u)" -eq 0 ]] || die "rootful podman is needed here (rootless podman cannot build on this machine): run as root"
command -v curl >/dev/null 2>&1 || die "curl is needed by the smoke test (apt-get install curl)"
[[ -d "${DATA_DIR}" ]] || die "data directory not found: ${DATA_DIR} (set CXRTRIAGE_DATA_DIR)"
DATA_DIR="$(cd "${DATA_DIR}" && pwd)"
[[ -x "${PYTHON}" ]] || PYTHON="$(command -v python3 || true)"
"${PYTHON}" -c "import jsonschema" 2>/dev/null || die "PYTHON=${PYTHON} lacks jsonschema (make install, or PYTHON=.venv/bin/python)"
mkdir -p "${CACHE_DIR}" "${OUT_DIR}"
# containers.conf (measured here): runc, not crun (hybrid cgroups), and ulimits under the host's caps.
export CONTAINERS_CONF="${CACHE_DIR}/containers.conf"
cat >"${CONTAINERS_CONF}" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
log "$(podman --version), CONTAINERS_CONF=${CONTAINERS_CONF}; disk free: $(df -h --output=avail /var/lib 2>/dev/null | tail -n 1 | tr -d ' ')"
end

if [[ ${clean} -eq 1 ]]; then
    begin "clean (cold run)"
    for img in "${DEMO_IMAGE}" "${PROTO_IMAGE}" "${BASE_IMAGE}"; do
        if podman image exists "${img}"; then podman rmi -f "${img}" >/dev/null; log "removed ${img}"; fi
    done
    podman image prune -f >/dev/null || true
    buildah rm --all >/dev/null 2>&1 || true
    rm -f "${BASE_TAR}"
    end
fi

# ---- 2. base image ----------------------------------------------------------------------------------------------
begin "base image (mmdebstrap bookworm)"
if podman image exists "${BASE_IMAGE}"; then
    log "cached: ${BASE_IMAGE}"
else
    if [[ ! -s "${BASE_TAR}" ]]; then
        mirror="${CONTAINER_TEST_MIRROR:-}"
        if [[ -z "${mirror}" && -r /etc/apt/sources.list.d/debian.sources ]]; then
            mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
        fi
        mirror="${mirror:-http://deb.debian.org/debian}"
        log "mmdebstrap bookworm (minbase + python3) from ${mirror}"
        rm -f "${BASE_TAR}.part"
        # shellcheck disable=SC2016  # $1 is expanded by mmdebstrap's hook, not here
        mmdebstrap --quiet --variant=minbase \
            --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
            --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
            --format=tar bookworm "${BASE_TAR}.part" "${mirror}" || fail "mmdebstrap failed"
        mv "${BASE_TAR}.part" "${BASE_TAR}"
    fi
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' "${BASE_TAR}" "${BASE_IMAGE}" >/dev/null || fail "podman import failed"
fi
base_notice
podman run --rm --network none "${BASE_IMAGE}" python --version
end

build_args=(--format docker --network host --force-rm --layers)
[[ -r "${CA_BUNDLE}" ]] && build_args+=(-v "${CA_BUNDLE}:${CA_BUNDLE}:ro")

# Rebuilding after a change leaves the previous image's layers untagged (about 2 GB for the prototype image):
# remove dangling images, never tagged ones or the layer cache of the current images.
prune_dangling() {
    local n
    n="$(podman image prune -f 2>/dev/null | grep -c . || true)"
    [[ "${n}" == 0 ]] || log "removed ${n} dangling image layer(s) left by earlier builds"
}

free_port() {
    "${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---- 3. demo image ----------------------------------------------------------------------------------------------
run_demo() {
    begin "demo: build demo_app/docker/Dockerfile"
    local df="${CACHE_DIR}/Dockerfile.demo.local-base"
    grep -q '^FROM python:3.11' demo_app/docker/Dockerfile || fail "demo_app/docker/Dockerfile: no FROM python:3.11 line to replace"
    sed "s|^FROM python:3.11[^ ]*|FROM ${BASE_IMAGE}|" demo_app/docker/Dockerfile >"${df}"
    log "building from a copy with FROM ${BASE_IMAGE} (was: $(grep '^FROM' demo_app/docker/Dockerfile))"
    podman build "${build_args[@]}" -f "${df}" -t "${DEMO_IMAGE}" . || fail "demo image build failed"
    log "image size: $(podman image inspect --format '{{.Size}}' "${DEMO_IMAGE}" | awk '{printf "%.0f MB", $1/1e6}')"
    prune_dangling
    end

    begin "demo: container + smoke_test.sh"
    local port
    port="$(free_port)"
    podman run -d --name "${DEMO_CTR}" -p "127.0.0.1:${port}:7860" \
        -v "${DATA_DIR}:/data:ro" -e CXRTRIAGE_DATA_DIR=/data "${DEMO_IMAGE}" >/dev/null \
        || fail "podman run of ${DEMO_IMAGE} failed"
    local url="http://127.0.0.1:${port}" waited=0
    log "container ${DEMO_CTR} on ${url}; waiting for /ready"
    until curl -fsS -o /dev/null --max-time 5 "${url}/ready" 2>/dev/null; do
        [[ "$(podman inspect --format '{{.State.Running}}' "${DEMO_CTR}")" == "true" ]] || fail "the demo container exited"
        (( waited < 240 )) || fail "/ready not 200 after ${waited} s"
        sleep 2; waited=$(( waited + 2 ))
    done
    log "/ready after about ${waited} s"
    podman healthcheck run "${DEMO_CTR}" >/dev/null || fail "the image's HEALTHCHECK failed"
    log "HEALTHCHECK (from the Dockerfile) passes"
    [[ "$(podman exec "${DEMO_CTR}" id -u)" == "10001" ]] || fail "the service does not run as uid 10001"
    # authentication on: the entrypoint made an admin key on this first start and logged the file's path, not the key
    # the log read once into a variable: `podman logs | grep -q` under pipefail fails at random when grep stops
    # reading at its first match and podman then gets SIGPIPE (seen in CI: a log that did hold the line)
    local ctr_log
    ctr_log="$(podman logs "${DEMO_CTR}" 2>&1)"
    grep -q "it is in /app/state/admin-api-key" <<<"${ctr_log}" \
        || fail "the container's log does not say where its admin API key is"
    ! grep -q 'cxt_' <<<"${ctr_log}" || fail "the container's log contains an API key"
    [[ "$(podman exec "${DEMO_CTR}" stat -c '%a %u' /app/state/admin-api-key)" == "600 10001" ]] \
        || fail "/app/state/admin-api-key is not 0600 and owned by the service user"
    log "admin API key in /app/state/admin-api-key (0600); the smoke test sends it"
    CXRTRIAGE_API_KEY="$(podman exec "${DEMO_CTR}" cat /app/state/admin-api-key)" PYTHON="${PYTHON}" \
        CXRTRIAGE_DATA_DIR="${DATA_DIR}" demo_app/tests/smoke_test.sh "${url}" \
        || fail "smoke_test.sh failed against the container"
    podman stop -t 10 "${DEMO_CTR}" >/dev/null
    podman rm "${DEMO_CTR}" >/dev/null
    log "container stopped and removed"
    end

    if command -v storescu >/dev/null 2>&1; then
        begin "demo: the DICOM node in the same image + storescu"
        local node_port node_ctr="${DEMO_CTR}-node" waited=0
        node_port="$(free_port)"
        podman run -d --name "${node_ctr}" -p "127.0.0.1:${node_port}:11112" "${DEMO_IMAGE}" \
            cxrtriage dicom-node --host 0.0.0.0 --status-file /tmp/node-status.json >/dev/null \
            || fail "podman run of the DICOM node failed"
        until podman exec "${node_ctr}" grep -q '"listening": true' /tmp/node-status.json 2>/dev/null; do
            [[ "$(podman inspect --format '{{.State.Running}}' "${node_ctr}")" == "true" ]] || fail "the node container exited"
            (( waited < 120 )) || fail "the DICOM node did not listen after ${waited} s"
            sleep 2; waited=$(( waited + 2 ))
        done
        storescu -xy -aet MODALITY -aec CXRTRIAGE 127.0.0.1 "${node_port}" \
            "${DATA_DIR}/dicom/SIIM_CR_chest_PA_jpegbaseline.dcm" || fail "storescu to the node in the container failed"
        waited=0
        until podman exec "${node_ctr}" grep -q '"triaged": 1' /tmp/node-status.json 2>/dev/null; do
            (( waited < 60 )) || fail "the node in the container did not triage the instance in ${waited} s"
            sleep 1; waited=$(( waited + 1 ))
        done
        log "the node in the container received and triaged the shared DICOM"
        podman stop -t 10 "${node_ctr}" >/dev/null
        podman rm "${node_ctr}" >/dev/null
        end
    else
        log "storescu (dcmtk) not installed: the DICOM node in the container is not checked"
    fi
}

# ---- 4. prototype image + notebook 01 ---------------------------------------------------------------------------
run_prototype() {
    [[ -f "${NOTEBOOKS_SRC}/${NOTEBOOK}" ]] || fail "${NOTEBOOKS_SRC}/${NOTEBOOK} not found"
    begin "prototype: build prototype/Dockerfile.prototype"
    local args=("${build_args[@]}" --build-arg "BASE=${BASE_IMAGE}")
    if compgen -G "${WHEELS_DIR}/torch-2.13.0+cpu-*.whl" >/dev/null; then
        # the torch CPU wheel on this machine's disk instead of PyTorch's index (not reachable here)
        args+=(-v "${WHEELS_DIR}:${WHEELS_DIR}:ro" --build-arg "PIP_FIND_LINKS=${WHEELS_DIR}" --build-arg "TORCH_INDEX=")
        log "torch CPU wheel from ${WHEELS_DIR} (build arg PIP_FIND_LINKS; the Dockerfile's default is PyTorch's CPU index)"
    fi
    log "building with --build-arg BASE=${BASE_IMAGE} (the Dockerfile's default: python:3.11.13-slim-bookworm)"
    podman build "${args[@]}" -f prototype/Dockerfile.prototype -t "${PROTO_IMAGE}" . || fail "prototype image build failed"
    log "image size: $(podman image inspect --format '{{.Size}}' "${PROTO_IMAGE}" | awk '{printf "%.0f MB", $1/1e6}')"
    prune_dangling
    local check
    check="$(podman run --rm --network none "${PROTO_IMAGE}" sh -c \
        'pip check && python -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)" && pwd')" \
        || { echo "${check}" >&2; fail "pip check / torch import failed in the prototype image"; }
    echo "${check}"
    grep -q '^torch 2.13.0+cpu cuda None$' <<<"${check}" || fail "the prototype image does not have torch 2.13.0+cpu"
    grep -q '^/work$' <<<"${check}" || fail "the prototype image's WORKDIR is not /work"
    end

    begin "prototype: notebook ${NOTEBOOK%.ipynb} (nbconvert)"
    work="$(mktemp -d "${TMPDIR:-/tmp}/cxrtriage-container-test.XXXXXX")"
    mkdir -p "${work}/notebooks"
    cp -a "${NOTEBOOKS_SRC}/." "${work}/notebooks/"
    rm -f "${work}/notebooks/"*.html
    local html="${work}/notebooks/${NOTEBOOK%.ipynb}.html"
    log "notebooks from ${NOTEBOOKS_SRC} (a copy, mounted at /work/notebooks), data ${DATA_DIR} at /data (read-only), no network"
    # The specification's command, unchanged: its default parameters cell is the smoke profile.
    timeout --signal=TERM "${NOTEBOOK_TIMEOUT}" \
        podman run --rm --name "${NB_CTR}" --network none \
            -v "${work}/notebooks:/work/notebooks" -v "${DATA_DIR}:/data:ro" -e CXRTRIAGE_DATA_DIR=/data \
            "${PROTO_IMAGE}" jupyter nbconvert --execute "notebooks/${NOTEBOOK}" --to html \
        || fail "the notebook failed in the container (or ran past ${NOTEBOOK_TIMEOUT} s)"
    [[ -s "${html}" ]] || fail "no HTML written: ${html}"
    # nbconvert stops on an exception; check that no error output was exported either.
    if grep -q -E 'Traceback \(most recent call last\)|<span class="ansi-red-fg">-{20,}' "${html}"; then
        fail "the HTML holds an error output (see ${OUT_DIR}/${NOTEBOOK%.ipynb}.html)"
    fi
    cp "${html}" "${OUT_DIR}/"
    log "HTML: $(wc -c <"${html}") bytes, copied to ${OUT_DIR#"${REPO_ROOT}"/}/$(basename "${html}")"
    grep -o -E '[^<>]* took [0-9]+ s [^<>]*' "${html}" | head -n 1 | sed 's/^/container_test: notebook says: /' || true
    end
}

[[ "${only}" == prototype ]] || run_demo
[[ "${only}" == demo ]] || run_prototype

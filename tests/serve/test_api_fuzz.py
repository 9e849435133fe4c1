"""Schemathesis fuzzing of the service against its own OpenAPI schema (issue 9: fuzzing in CI).

Every operation of ``/openapi.json`` (``/predict``, ``/health``, ``/ready``, ``/status``, ``/metrics``) is run
through schemathesis' examples, coverage and fuzzing phases with every built-in check (the Python equivalent of
``schemathesis run --checks all``, plus ``max_response_time``), in-process over ASGI against the real app: real
middleware, real lifespan and the real bundled model engine (loaded in the background; the test waits for
``/ready``). A bounded number of examples and a fixed seed keep it deterministic and well under a minute on 2 cores.

Expected: no 5xx, every status code and content type documented, every documented body schema met; with a valid
admin key on every call, and 401 for the same calls without it (schemathesis' ignored_auth).
Schemathesis 4's ``schemathesis.pytest.from_fixture`` does not work with pytest 9 (it sets ``Function._nodeid``),
so the schema is built at import from ``app.openapi()`` (exactly what ``/openapi.json`` serves) without calling the
app; the lifespan (model load) starts only when the first test of this module runs.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import strategies as st  # noqa: E402  (installed with schemathesis)
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.security.keys import KeyStore  # noqa: E402
from cxrtriage.security.principal import Role  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402
from cxrtriage.serve.runtime import load_engine  # noqa: E402

MAX_EXAMPLES = 500  # per operation and phase; GET operations without parameters produce only a handful anyway
MAX_RESPONSE_TIME_S = 15.0  # a hang or a pathological decode fails the run instead of stalling CI

CONFIG = {
    "seed": 9,  # deterministic: the same cases on every CI run
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    # Hypothesis' "too slow" health check measures data generation on the CI box (2 loaded cores), not the service.
    "suppress-health-check": ["too_slow"],
    "checks": {"max_response_time": MAX_RESPONSE_TIME_S},
    "operations": [
        {
            "include-path": "/predict",
            # positive_data_acceptance: the schema can only say "file is a string"; it cannot say "PNG, JPEG or
            # DICOM", so schema-valid uploads are random bytes that the service must refuse by design: 415 (not an
            # image by magic bytes) and 422 (empty, corrupt, not a chest X-ray) are documented content errors, 413
            # a size limit, 429/503 load and readiness. Any other rejection of schema-valid data (400, 404, ...)
            # still fails the check, so it stays meaningful.
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "413", "415", "422", "429", "503"]}},
        },
        {
            "include-path": "/worklist/{key}/feedback",
            # the schema cannot say what the assessment's rules are: a label that agrees with agrees, a reader name
            # that is the signed-in one (or none), which the route refuses with a documented 422 that says why;
            # 404 an unknown study. Any other rejection of schema-valid data still fails the check.
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422", "503"]}},
        },
    ],
}

load_all_checks()
# Every built-in response check (the function-based registry is what `--checks all` selects); the stateful ones
# (use_after_free, ensure_resource_availability) have nothing to act on here (no resources are created); ignored_auth
# checks that the operations that declare security refuse a call without a valid credential.
ALL_CHECKS = [check for check in CHECKS.get_all() if not isinstance(check, type)]
STATUS_CODE_CONFORMANCE = next(check for check in ALL_CHECKS if check.__name__ == "status_code_conformance")

_CROPS = Path(tempfile.gettempdir()) / f"cxrtriage-fuzz-crops-{uuid.uuid4().hex[:8]}"  # made by the lifespan
# Authentication configured, as a deployed service has it: every call carries a valid admin key (admin may use every
# operation), and schemathesis' auth check (ignored_auth) sends the same calls without it and with a wrong one, which
# must get 401. The failed-attempt limit is lifted: those refusals all come from one address.
_SETTINGS = Settings(
    crops_dir=_CROPS,
    ui=False,
    warmup=True,
    worklist_path=_CROPS / "worklist.sqlite",
    auth_failures_per_min=1_000_000,
)
_KEY = KeyStore(_SETTINGS.keys_path).create("fuzz", Role.ADMIN)[1]
_AUTH = {"Authorization": f"Bearer {_KEY}"}
# Schemathesis runs the app's lifespan again for each operation's test; without a cache each run loaded the model
# anew in a daemon thread, and a load still running when pytest exited aborted the interpreter ("terminate called
# without an active exception", exit code 134). One real engine, loaded by the first lifespan, serves every run.
APP = create_app(_SETTINGS, engine_loader=functools.cache(functools.partial(load_engine, _SETTINGS)))
schema = schemathesis.openapi.from_dict(APP.openapi(), config=SchemathesisConfig.from_dict(CONFIG))
schema.app = APP  # what from_asgi sets: calls go in-process through schemathesis' ASGI transport

SEEN: dict[str, Counter] = {}


# Random strings alone never get past the magic-byte check; with these prefixes the generated file bytes reach the
# real decoders too (Pillow's PNG and JPEG parsers, pydicom on a Part 10 preamble or a preamble-less header).
_MAGIC_PREFIXES = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\0" * 128 + b"DICM", b"\x08\x00\x05\x00CS")


@schema.hook
def flatmap_body(context, body):
    operation = getattr(context, "operation", None)
    if (
        operation is None
        or operation.path != "/predict"
        or not isinstance(body, dict)
        or not isinstance(body.get("file"), str)
    ):
        return st.just(body)
    raw = body["file"].encode("utf-8", "surrogatepass")

    # A named function, not a lambda: Hypothesis describes a lambda by parsing this file's source (ast.parse),
    # which once raised SystemError under CI load and made the replay of a failing case "flaky" (stop 16).
    def with_magic(magic: bytes) -> dict:
        return {**body, "file": magic + raw} if magic else body

    return st.sampled_from(_MAGIC_PREFIXES).map(with_magic)


def _wait_ready(client, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (r := client.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"service not ready after {timeout} s: {r.json()}"
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def _ready_app() -> Iterator[None]:
    with asgi.get_client(APP) as client:  # starts the app's lifespan once; it lives until shutdown_lifespans()
        _wait_ready(client)
    yield
    print("\nschemathesis responses per operation and status:", {k: dict(v) for k, v in sorted(SEEN.items())})
    asgi.shutdown_lifespans()
    shutil.rmtree(_CROPS, ignore_errors=True)


@schema.parametrize()
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and Pillow warn about the junk headers they are sent
def test_api_conforms_to_its_schema(case) -> None:
    response = case.call(headers=_AUTH)
    SEEN.setdefault(f"{case.method.upper()} {case.path}", Counter())[response.status_code] += 1
    case.validate_response(response, checks=ALL_CHECKS)


def test_every_operation_was_fuzzed(request: pytest.FixtureRequest) -> None:
    """Guard against a silently empty run (a filter or a schemathesis upgrade that generates nothing).

    Runs after the fuzz test (file order); skipped when the fuzz test itself was deselected (-k)."""
    fuzzed = [item for item in request.session.items if item.originalname == "test_api_conforms_to_its_schema"]
    if len(fuzzed) < 5:
        pytest.skip("the schemathesis test was not (fully) selected in this run")
    documented = {f"{m.upper()} {p}" for p, item in APP.openapi()["paths"].items() for m in item}
    assert documented == {
        "POST /predict",
        "GET /health",
        "GET /ready",
        "GET /status",
        "GET /metrics",
        "GET /worklist",
        "GET /worklist/{key}",
        "GET /worklist/{key}/versions",
        "POST /worklist/{key}/state",
        "POST /worklist/{key}/feedback",
        "GET /worklist/{key}/feedback",
    }
    missing = documented - set(SEEN)
    assert not missing, f"no schemathesis case ran for {sorted(missing)}"
    assert sum(SEEN["POST /predict"].values()) >= MAX_EXAMPLES // 2


def test_predict_400_is_documented() -> None:
    boundary = "b303e3b525acdf6da69a0fcbd31dded9"
    body = f"--{boundary}\r\n1000000.0--{boundary}--\r\n".encode()  # the case schemathesis found
    with asgi.get_client(APP) as client:
        response = client.post(
            "/predict", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"} | _AUTH
        )
    assert response.status_code == 400, response.text
    case = schema["/predict"]["POST"].Case(media_type="multipart/form-data")
    try:
        case.validate_response(response, checks=[STATUS_CODE_CONFORMANCE])
    except FailureGroup as exc:
        pytest.fail(str(exc))

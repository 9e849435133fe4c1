"""``cxrtriage keys create | list | revoke`` and what ``cxrtriage serve`` does about authentication at start-up:
the key alone on the last line of stdout, clear refusals with exit 2, and the refusal to listen on a network
interface without authentication unless --insecure-no-auth (a warning on every start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrtriage.cli.main import main
from cxrtriage.config import Settings
from cxrtriage.security.keys import KeyStore, new_key

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CXRTRIAGE_WORKLIST_PATH", str(tmp_path / "state" / "worklist.sqlite"))
    return tmp_path / "state"


def test_create_prints_the_key_alone_on_the_last_line_of_stdout(state: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["keys", "create", "--role", "submitter", "--name", "ct-gateway"]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("cxt_")  # stdout is the key, nothing else
    key = out.strip()
    assert "shown ONCE" in err and key not in err
    assert KeyStore(state / "keys.json").verify(key).name == "ct-gateway"  # beside the worklist
    assert key not in (state / "keys.json").read_text()


def test_list_and_revoke(state: Path, capsys: pytest.CaptureFixture) -> None:
    main(["keys", "create", "--role", "admin", "--name", "you"])
    key = capsys.readouterr().out.strip()
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "you" in listed and "admin" in listed and key not in listed and "REVOKED" in listed
    assert main(["keys", "revoke", "you"]) == 0
    assert "revoked API key 'you'" in capsys.readouterr().out
    main(["keys", "list"])
    assert "you" in (line := capsys.readouterr().out.splitlines()[1]) and line.rstrip()[-1] != "-"


def test_clear_errors_exit_2(state: Path, capsys: pytest.CaptureFixture) -> None:
    main(["keys", "create", "--role", "reader", "--name", "dup"])
    capsys.readouterr()
    assert main(["keys", "create", "--role", "reader", "--name", "dup"]) == 2
    assert "a key named 'dup' already exists" in capsys.readouterr().err
    assert main(["keys", "revoke", "nobody"]) == 2
    assert "no key named 'nobody'" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "reader", "--name", "has space"]) == 2
    assert "invalid key name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["keys", "create", "--role", "root", "--name", "x"])
    assert exited.value.code == 2 and "invalid choice: 'root'" in capsys.readouterr().err


def test_a_script_captures_the_key_with_tail(state: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = (
        f'KEY=$({sys.executable} -m cxrtriage.cli.main keys create --role reader --name script | tail -n1); echo "$KEY"'
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert KeyStore(state / "keys.json").verify(done.stdout.strip()).name == "script"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """cxrtriage serve up to the server: the settings it would run with (nothing listens)."""
    import cxrtriage.serve.server as server

    runs: list[Settings] = []
    monkeypatch.setattr(server, "run_server", lambda settings, **_: runs.append(settings) or 0)
    return runs


def test_serve_refuses_a_network_interface_without_authentication(
    state: Path, started: list[Settings], capsys: pytest.CaptureFixture
) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without authentication" in err
    assert "cxrtriage keys create --role admin --name you" in err and "CXRTRIAGE_OIDC_ISSUER" in err
    assert not started
    assert main(["serve", "--host", "0.0.0.0", "--port", "7999", "--insecure-no-auth"]) == 0
    assert "WARNING: --insecure-no-auth: serving on 0.0.0.0:7999 WITHOUT authentication" in capsys.readouterr().err
    assert main(["serve", "--host", "127.0.0.1"]) == 0  # loopback stays open, with a warning on every start
    assert "WARNING: no authentication is configured: the service runs OPEN" in capsys.readouterr().err
    main(["keys", "create", "--role", "admin", "--name", "you"])
    capsys.readouterr()
    assert main(["serve", "--host", "0.0.0.0", "--port", "7999"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert len(started) == 3


def test_serve_checks_the_tls_options(state: Path, started: list[Settings], capsys, tmp_path: Path) -> None:
    assert main(["serve", "--ssl-certfile", str(tmp_path / "missing.pem")]) == 2
    assert "needs both --ssl-certfile and --ssl-keyfile" in capsys.readouterr().err
    assert main(["serve", "--ssl-certfile", str(tmp_path / "a.pem"), "--ssl-keyfile", str(tmp_path / "b.pem")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not started


def _trail(state: Path) -> list[dict]:
    from cxrtriage.security.audit import read_records

    return [record for _, record, _ in read_records(state / "audit.jsonl") if record]


def test_key_changes_are_in_the_audit_trail_without_the_key(state: Path, capsys: pytest.CaptureFixture) -> None:
    import getpass

    assert main(["keys", "create", "--role", "reader", "--name", "night-reader"]) == 0
    key = capsys.readouterr().out.strip()
    assert main(["keys", "revoke", "night-reader"]) == 0
    records = _trail(state)  # the audit trail of the same settings: beside the worklist and keys.json
    assert [(r["action"], r["outcome"]) for r in records] == [("key.create", "ok"), ("key.revoke", "ok")]
    info = KeyStore(state / "keys.json").list()[0]
    for record in records:
        assert (record["principal"], record["role"], record["via"]) == (getpass.getuser(), "admin", "cli")
        assert record["reason"] == f"key night-reader (role reader, id {info.id})"
    assert (
        key not in (state / "audit.jsonl").read_text() and key.split("_")[-1] not in (state / "audit.jsonl").read_text()
    )
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0, capsys.readouterr().err
    assert "2 records" in capsys.readouterr().out


def test_refused_key_changes_are_recorded_too(state: Path, capsys: pytest.CaptureFixture) -> None:
    main(["keys", "create", "--role", "admin", "--name", "dup"])
    assert main(["keys", "create", "--role", "admin", "--name", "dup"]) == 2
    assert main(["keys", "revoke", "nobody"]) == 2
    assert main(["keys", "create", "--role", "admin", "--name", "Jane Doe 12345"]) == 2
    records = _trail(state)
    assert [(r["action"], r["outcome"], r["reason"]) for r in records[1:]] == [
        ("key.create", "refused", "key dup: already exists"),
        ("key.revoke", "refused", "key nobody: no such key"),
        ("key.create", "refused", "an invalid key name: refused"),  # typed text that is not a key name stays out
    ]
    assert "Jane" not in (state / "audit.jsonl").read_text()


def test_a_key_whose_creation_cannot_be_recorded_is_revoked_and_not_shown(
    state: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = state / "not-a-file"
    blocked.mkdir(parents=True)
    monkeypatch.setenv("CXRTRIAGE_AUDIT_PATH", str(blocked))  # a folder: the trail cannot be opened as a file
    assert main(["keys", "create", "--role", "admin", "--name", "unrecorded"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "was revoked at once and is not shown" in err and "audit trail" in err
    (info,) = KeyStore(state / "keys.json").list()
    assert info.name == "unrecorded" and not info.active


def test_key_file_writes_the_key_owner_only_and_prints_no_key(state: Path, capsys: pytest.CaptureFixture) -> None:
    target = state / "admin-api-key"
    state.mkdir(parents=True)
    assert main(["keys", "create", "--role", "admin", "--name", "admin", "--key-file", str(target)]) == 0
    out, err = capsys.readouterr()
    key = target.read_text().strip()
    assert out == "" and key not in err and str(target) in err
    assert target.stat().st_mode & 0o777 == 0o600
    assert KeyStore(state / "keys.json").verify(key).name == "admin"
    # an existing file is never overwritten, and no key is made then
    assert main(["keys", "create", "--role", "admin", "--name", "second", "--key-file", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err and target.read_text().strip() == key
    assert [k.name for k in KeyStore(state / "keys.json").list()] == ["admin"]


def test_from_env_registers_the_key_the_variable_holds_and_prints_none_of_it(
    state: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    monkeypatch.setenv("SPACE_KEY", key + "\n")  # pasted with its newline
    assert main(["keys", "create", "--role", "reader", "--name", "judge", "--from-env", "SPACE_KEY"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and key not in err and "Registered the API key in SPACE_KEY as 'judge'" in err
    info = KeyStore(state / "keys.json").list()[0]
    assert KeyStore(state / "keys.json").verify(key).name == "judge"
    assert _trail(state)[-1]["reason"] == f"key judge (role reader, id {info.id}), registered from SPACE_KEY"
    assert key.split("_", 2)[2] not in (state / "audit.jsonl").read_text()


def test_from_env_refusals_never_show_the_key(
    state: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = ["keys", "create", "--role", "reader", "--name", "judge"]
    monkeypatch.delenv("SPACE_NOPE", raising=False)
    assert main([*create, "--from-env", "SPACE_NOPE"]) == 2
    assert "SPACE_NOPE is not set" in capsys.readouterr().err
    weak = "cxt_0123abcd_" + "ab" * 30
    monkeypatch.setenv("SPACE_KEY", weak)
    assert main([*create, "--from-env", "SPACE_KEY"]) == 2
    err = capsys.readouterr().err
    assert "SPACE_KEY: the supplied key is not a strong cxrtriage key" in err and weak not in err
    key = new_key()  # the key itself typed where the variable's name goes
    for wrong in (key, key.replace("-", "A")):
        with pytest.raises(SystemExit) as exited:
            main([*create, "--from-env", wrong])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and "NAME of an environment variable" in err and wrong not in err
    monkeypatch.setenv("SPACE_KEY", key)
    with pytest.raises(SystemExit):
        main([*create, "--from-env", "SPACE_KEY", "--key-file", str(state / "k")])
    assert "not allowed with argument" in capsys.readouterr().err
    assert not KeyStore(state / "keys.json").has_keys()

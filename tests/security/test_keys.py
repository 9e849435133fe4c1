"""API keys (cxrtriage.security.keys): shown once and stored only as salted hashes, owner-only on disk, revocable
with effect on a running reader of the file, and every wrong key refused after the same work as a right one."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cxrtriage.security import keys as keys_module
from cxrtriage.security.keys import DuplicateKeyName, KeyStore, KeyStoreError, UnknownKeyName, new_key
from cxrtriage.security.principal import Principal, Role


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "state" / "keys.json")


def test_a_key_is_stored_only_as_a_salted_hash_in_an_owner_only_file(store: KeyStore) -> None:
    info, secret = store.create("ct-gateway", Role.SUBMITTER)
    other_info, other = store.create("night-reader", "reader")
    assert secret.startswith(f"cxt_{info.id}_") and len(secret) > 40
    text = store.path.read_text()
    assert secret not in text and other not in text
    assert secret.split("_", 2)[2] not in text  # not even the random part
    records = json.loads(text)["keys"]
    assert [r["name"] for r in records] == ["ct-gateway", "night-reader"]
    assert records[0]["salt"] != records[1]["salt"]  # a salt of its own per key
    assert {r["kdf"] for r in records} == {"pbkdf2_sha256"}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert not list(store.path.parent.glob(".keys-*"))  # the atomic write leaves no temporary file


def test_verify_gives_the_keys_principal_and_refuses_every_other_key(store: KeyStore) -> None:
    info, secret = store.create("ct-gateway", Role.SUBMITTER)
    assert store.verify(secret) == Principal("ct-gateway", Role.SUBMITTER, "api-key")
    wrong_secret_same_id = f"cxt_{info.id}_" + "A" * 43
    for wrong in (wrong_secret_same_id, "cxt_00000000_" + "A" * 43, "cxt_", "cxt_zz_y", secret + "x", secret[:-1], ""):
        assert store.verify(wrong) is None, wrong


def test_every_refusal_costs_one_hash_and_one_constant_time_comparison(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown id, a malformed key and a wrong secret do the same work as a right key: the timing does not say
    which part was wrong."""
    info, secret = store.create("k", Role.READER)
    hashes: list[int] = []
    compares: list[int] = []
    real_hash, real_compare = keys_module._hash, keys_module.hmac.compare_digest
    monkeypatch.setattr(keys_module, "_hash", lambda *a: hashes.append(1) or real_hash(*a))
    monkeypatch.setattr(keys_module.hmac, "compare_digest", lambda a, b: compares.append(1) or real_compare(a, b))
    for candidate in (secret, f"cxt_{info.id}_wrong", "cxt_ffffffff_unknown", "not-a-key", "x" * 500):
        hashes.clear()
        compares.clear()
        store.verify(candidate)
        assert (len(hashes), len(compares)) == (1, 1), candidate


def test_a_revoked_key_is_refused_by_a_running_reader_of_the_file(store: KeyStore) -> None:
    _, secret = store.create("laptop", Role.ADMIN)
    running = KeyStore(store.path)  # what the service holds: it re-reads the file when it changes
    assert running.verify(secret) is not None
    revoked = KeyStore(store.path).revoke("laptop")  # what `cxrtriage keys revoke` does, in another process
    assert revoked.revoked is not None and not revoked.active
    assert running.verify(secret) is None
    assert running.has_keys() and not running.has_active()  # revoking every key never opens the service


def test_list_names_the_keys_without_secrets_or_hashes(store: KeyStore) -> None:
    store.create("a", Role.ADMIN)
    store.create("b", Role.READER)
    store.revoke("b")
    listed = store.list()
    assert [(k.name, k.role, k.active) for k in listed] == [("a", Role.ADMIN, True), ("b", Role.READER, False)]
    assert all(set(vars(k)) == {"id", "name", "role", "created", "revoked"} for k in listed)


def test_clear_refusals(store: KeyStore) -> None:
    store.create("gateway", Role.SUBMITTER)
    with pytest.raises(DuplicateKeyName, match="already exists"):
        store.create("gateway", Role.ADMIN)
    with pytest.raises(UnknownKeyName, match="no key named 'nobody'.*gateway"):
        store.revoke("nobody")
    for bad in ("", "with space", "new\nline", "x" * 65, "-dash-first"):
        with pytest.raises(KeyStoreError, match="invalid key name"):
            store.create(bad, Role.READER)
    with pytest.raises(ValueError, match="unknown role 'root'"):
        store.create("ok", "root")


def test_a_supplied_key_is_registered_only_with_the_stores_form_and_a_strong_secret(store: KeyStore) -> None:
    key = new_key()  # what a Space's owner makes and hands over as its secret
    info, returned = store.create("judge", Role.READER, key=key)
    assert returned == key and key.startswith(f"cxt_{info.id}_")
    assert store.verify(key) == Principal("judge", Role.READER, "api-key")
    assert key.split("_", 2)[2] not in store.path.read_text()  # stored as a salted hash, like a made one
    random_part = key.split("_", 2)[2]
    weak = {
        "one letter repeated": "cxt_0123abcd_" + "a" * 43,
        "a repeated word": "cxt_0123abcd_" + "password" * 6,
        "too short": "cxt_0123abcd_" + random_part[:42],
        "not hex": "cxt_0123abcz_" + random_part,
        "no id": "cxt_" + random_part,
        "not URL-safe": "cxt_0123abcd_" + random_part[:-1] + "!",
        "no prefix": random_part,
        "a space": key + " ",
        "too long": "cxt_0123abcd_" + random_part * 5,
    }
    for why, candidate in weak.items():
        with pytest.raises(KeyStoreError, match="not a strong cxrtriage key") as refused:
            store.create(f"x-{why.replace(' ', '-')}", Role.READER, key=candidate)
        assert candidate not in str(refused.value) and random_part not in str(refused.value), why
    other = f"cxt_{info.id}_{new_key().split('_', 2)[2]}"  # another secret behind the same public id
    with pytest.raises(KeyStoreError, match=f"id {info.id} is the id of the key 'judge'"):
        store.create("judge-2", Role.READER, key=other)
    with pytest.raises(DuplicateKeyName):
        store.create("judge", Role.READER, key=new_key())
    assert [k.name for k in store.list()] == ["judge"]  # nothing refused was written
    assert new_key() != new_key() and len(new_key().split("_", 2)[2]) == 43


def test_a_corrupt_file_is_an_error_not_an_open_door(store: KeyStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="cannot be read"):
        store.verify("cxt_00000000_x")
    store.path.write_text(json.dumps({"format": "something-else", "keys": []}))
    with pytest.raises(KeyStoreError, match="not a cxrtriage keys file"):
        store.list()


def test_the_role_order_is_the_one_rule() -> None:
    assert Role.ADMIN.allows(Role.READER) and Role.ADMIN.allows(Role.SUBMITTER) and Role.READER.allows(Role.SUBMITTER)
    assert not Role.SUBMITTER.allows(Role.READER) and not Role.READER.allows(Role.ADMIN)
    assert str(Role.READER) == "reader" and Role.parse(" Admin ") is Role.ADMIN

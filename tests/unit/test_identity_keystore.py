"""Encrypted key files: round trips, wrong passphrases, edited headers, garbage and truncation.

Argon2id runs with a tiny explicit cost here (the library's `cost` parameter); one test checks
the real defaults once.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import suite
from consortia.errors import (
    AlreadyExistsError,
    KeyFileError,
    UnknownSuiteError,
    WrongPassphraseError,
)
from consortia.identity import keystore
from consortia.identity.keystore import (
    DEFAULT_ARGON2,
    Argon2Cost,
    Purpose,
    load_key,
    new_keypair,
    open_key,
    parse_header,
    read_key_header,
    seal_key,
    write_key_file,
)

FAST = Argon2Cost(memory_kib=64, iterations=1, lanes=1)
PASSPHRASE = "correct horse battery staple"
SUITES = ["intl", "gm"]
PURPOSES: list[Purpose] = ["consensus", "account", "tls", "tls-ca", "encryption"]


def sealed(suite_name: str = "intl", purpose: Purpose = "consensus") -> tuple[bytes, bytes]:
    private_key, _public_key = new_keypair(suite_name, purpose)
    return private_key, seal_key(suite_name, purpose, private_key, PASSPHRASE, cost=FAST)


def edited(data: bytes, change: dict[str, object]) -> bytes:
    document = json.loads(data)
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        target = document
        for key in parents:
            target = target[key]
        target[leaf] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize("suite_name", SUITES)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_round_trip(suite_name: str, purpose: Purpose) -> None:
    private_key, data = sealed(suite_name, purpose)
    unlocked = open_key(data, PASSPHRASE, purpose=purpose)
    assert unlocked.private_key == private_key
    header = unlocked.header
    assert (header.suite, header.purpose, header.version) == (suite_name, purpose, 1)
    assert header.public_key_bytes == keystore.public_key_of(
        header.algorithm, suite_name, private_key
    )
    assert parse_header(data) == header


@pytest.mark.parametrize("suite_name", SUITES)
def test_encryption_key_files_hold_the_suites_encryption_keys(suite_name: str) -> None:
    """A party's key for confidential records (X25519 on intl, SM2 on gm) in a key file."""
    private_key, data = sealed(suite_name, "encryption")
    header = parse_header(data)
    chain_suite = suite(suite_name)
    assert header.algorithm == {"intl": "x25519", "gm": "sm2"}[suite_name]
    assert header.public_key_bytes == chain_suite.encryption_public_key(private_key)
    assert chain_suite.valid_encryption_public_key(header.public_key_bytes)
    data_key = chain_suite.generate_aead_key()
    wrapped = chain_suite.wrap_key(header.public_key_bytes, data_key, b"context")
    unlocked = open_key(data, PASSPHRASE, purpose="encryption")
    assert chain_suite.unwrap_key(unlocked.private_key, wrapped, b"context") == data_key
    with pytest.raises(KeyFileError):
        open_key(data, PASSPHRASE, purpose="account")
    with pytest.raises(KeyFileError):
        parse_header(edited(data, {"header.algorithm": "ed25519"}))


@pytest.mark.parametrize("suite_name", SUITES)
def test_uses_the_suite_aead_and_hides_the_private_key(suite_name: str) -> None:
    private_key, data = sealed(suite_name)
    document = json.loads(data)
    ciphertext = bytes.fromhex(document["ciphertext"])
    assert len(ciphertext) == 12 + len(private_key) + 16  # nonce, key, tag
    assert private_key.hex() not in data.decode()
    algorithm = {"intl": "ed25519", "gm": "sm2"}[suite_name]
    assert document["header"]["algorithm"] == algorithm


def test_two_seals_of_one_key_differ() -> None:
    private_key, first = sealed()
    second = seal_key("intl", "consensus", private_key, PASSPHRASE, cost=FAST)
    assert first != second  # fresh salt and nonce


@pytest.mark.parametrize("suite_name", SUITES)
def test_wrong_passphrase(suite_name: str) -> None:
    _private_key, data = sealed(suite_name)
    with pytest.raises(WrongPassphraseError):
        open_key(data, PASSPHRASE + "!")


def test_passphrase_is_normalised_to_nfc() -> None:
    private_key, _ = new_keypair("intl", "consensus")
    data = seal_key("intl", "consensus", private_key, "caf\u00e9 au lait 42", cost=FAST)
    assert open_key(data, "cafe\u0301 au lait 42").private_key == private_key


@pytest.mark.parametrize(
    "change",
    [
        {"header.purpose": "account"},
        {"header.public_key": new_keypair("intl", "consensus")[1].hex()},
        {"header.algorithm": "ed25519", "header.purpose": "account"},
    ],
)
def test_edited_header_is_detected(change: dict[str, object]) -> None:
    _private_key, data = sealed()
    with pytest.raises(KeyFileError, match="altered"):
        open_key(edited(data, change), PASSPHRASE)


@pytest.mark.parametrize(
    "change",
    [
        {"header.version": 2},
        {"header.format": "other-key"},
        {"header.algorithm": "sm2"},
        {"header.suite": "gm"},
        {"header.public_key": "00" * 31},
        {"header.kdf.algorithm": "pbkdf2"},
        {"header.kdf.memory_kib": 2**40},
        {"header.kdf.memory_kib": 8, "header.kdf.lanes": 4},
        {"header.extra": 1},
        {"ciphertext": "zz"},
    ],
)
def test_malformed_header_is_a_key_file_error(change: dict[str, object]) -> None:
    _private_key, data = sealed()
    with pytest.raises(KeyFileError):
        open_key(edited(data, change), PASSPHRASE)


@pytest.mark.parametrize("field", ["salt", "iterations"])
def test_edited_kdf_parameters_read_as_a_wrong_passphrase(field: str) -> None:
    _private_key, data = sealed()
    value = "00" * 16 if field == "salt" else 2
    with pytest.raises(WrongPassphraseError):
        open_key(edited(data, {f"header.kdf.{field}": value}), PASSPHRASE)


def test_edited_ciphertext_is_detected() -> None:
    _private_key, data = sealed()
    document = json.loads(data)
    ciphertext = bytearray(bytes.fromhex(document["ciphertext"]))
    ciphertext[20] ^= 1
    with pytest.raises(KeyFileError, match="altered"):
        open_key(edited(data, {"ciphertext": ciphertext.hex()}), PASSPHRASE)


def test_short_ciphertext_is_detected() -> None:
    _private_key, data = sealed()
    with pytest.raises(KeyFileError):
        open_key(edited(data, {"ciphertext": "00" * 20}), PASSPHRASE)


def test_unknown_suite() -> None:
    _private_key, data = sealed()
    with pytest.raises(UnknownSuiteError):
        parse_header(edited(data, {"header.suite": "rot13"}))


def test_wrong_purpose() -> None:
    _private_key, data = sealed(purpose="account")
    with pytest.raises(KeyFileError, match="account key, not a consensus key"):
        open_key(data, PASSPHRASE, purpose="consensus")


def test_every_truncation_is_a_key_file_error() -> None:
    _private_key, data = sealed()
    body = data.rstrip()
    for cut in range(len(body)):
        with pytest.raises(KeyFileError):
            parse_header(body[:cut])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_is_a_key_file_error(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        open_key(data, PASSPHRASE)


def test_private_key_not_matching_the_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    other_public = new_keypair("intl", "consensus")[1]
    private_key = new_keypair("intl", "consensus")[0]
    with monkeypatch.context() as patch:
        patch.setattr(keystore, "public_key_of", lambda *_args: other_public)
        data = seal_key("intl", "consensus", private_key, PASSPHRASE, cost=FAST)
    with pytest.raises(KeyFileError, match="does not match"):
        open_key(data, PASSPHRASE)


def test_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    _private_key, data = sealed("gm")
    path = tmp_path / "node.key"
    write_key_file(path, data)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_key_header(path).suite == "gm"
    with pytest.raises(AlreadyExistsError):
        write_key_file(path, data)
    assert load_key(path, PASSPHRASE, purpose="consensus").header.suite == "gm"


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_key_header(tmp_path / "absent.key")
    big = tmp_path / "big.key"
    big.write_bytes(b" " * (keystore.KEY_FILE_SIZE_MAX + 1))
    with pytest.raises(KeyFileError, match="larger"):
        read_key_header(big)


def test_repr_never_shows_the_private_key() -> None:
    private_key, data = sealed()
    unlocked = open_key(data, PASSPHRASE)
    assert private_key.hex() not in repr(unlocked)
    assert private_key.hex()[:8] not in repr(unlocked)


def test_default_cost_is_memory_hard() -> None:
    assert Argon2Cost(memory_kib=65536, iterations=3, lanes=4) == DEFAULT_ARGON2
    private_key, _ = new_keypair("gm", "consensus")
    data = seal_key("gm", "consensus", private_key, PASSPHRASE)
    header = parse_header(data)
    assert (header.kdf.memory_kib, header.kdf.iterations, header.kdf.lanes) == (65536, 3, 4)
    assert open_key(data, PASSPHRASE).private_key == private_key


def test_keys_sign_with_their_suite() -> None:
    for suite_name in SUITES:
        _private_key, data = sealed(suite_name)
        unlocked = open_key(data, PASSPHRASE)
        chain_suite = suite(suite_name)
        signature = chain_suite.sign(unlocked.private_key, b"vote")
        assert chain_suite.verify(unlocked.header.public_key_bytes, b"vote", signature)


@pytest.mark.parametrize(
    "kdf",
    [
        {"header.kdf.memory_kib": 1024 * 1024},  # 1 GiB: the old limit
        {"header.kdf.memory_kib": 256 * 1024 + 1},
        {"header.kdf.lanes": 64},
        {"header.kdf.lanes": 9},
        {"header.kdf.iterations": 32},
        {"header.kdf.iterations": 9},
    ],
)
def test_a_file_cannot_demand_an_expensive_kdf(
    kdf: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile key file is refused from its header, before Argon2id runs at all."""
    _private_key, data = sealed()

    def no_derivation(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Argon2id ran for a file that asks too much")

    monkeypatch.setattr(keystore, "derive_passphrase_key", no_derivation)
    with pytest.raises(KeyFileError):
        open_key(edited(data, kdf), PASSPHRASE)
    with pytest.raises(KeyFileError):
        parse_header(edited(data, kdf))


def test_a_repeated_key_in_a_key_file_is_refused() -> None:
    """With two "purpose" keys one reader would see an account key, another a consensus key."""
    _private_key, data = sealed()
    text = data.decode()
    doubled = text.replace('"purpose": "consensus"', '"purpose": "account", "purpose": "consensus"')
    assert doubled != text
    with pytest.raises(KeyFileError, match="repeats the key 'purpose'"):
        parse_header(doubled.encode())
    with pytest.raises(KeyFileError, match="repeats"):
        open_key(doubled.encode(), PASSPHRASE)


def test_keys_open_from_several_threads_at_once() -> None:
    """Regression: the library's Argon2id with several lanes deadlocked when two threads
    derived at once (a client opening keys from a thread pool hung for good)."""
    cost = Argon2Cost(memory_kib=1024, iterations=1, lanes=4)
    keys = []
    for _ in range(4):
        private_key, _public_key = new_keypair("intl", "account")
        keys.append((private_key, seal_key("intl", "account", private_key, PASSPHRASE, cost=cost)))
    opened: list[bytes] = []

    def open_all() -> None:
        for _, data in keys:
            opened.append(open_key(data, PASSPHRASE, purpose="account").private_key)

    threads = [threading.Thread(target=open_all, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)  # a deadline for a deadlock, not a pause: joins when done
    assert not any(thread.is_alive() for thread in threads), "Argon2id deadlocked"
    assert sorted(opened) == sorted(private for private, _ in keys for _ in range(4))

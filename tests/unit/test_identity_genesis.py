"""The genesis document: a stable hash, every edit detected, consistency checks, epoch 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consortia.crypto import suite
from consortia.errors import GenesisError
from consortia.identity.genesis import (
    epoch_config,
    genesis_hash,
    genesis_json,
    load_genesis,
    node_id,
    parse_genesis,
)
from consortia.types.genesis import Genesis, GenesisValidator
from tests.identity_helpers import build


def make_genesis(tmp_path: Path, suite_name: str, nodes: int = 4) -> tuple[bytes, bytes]:
    summary = build(tmp_path / suite_name, nodes=nodes, suite_name=suite_name)
    return (summary.out_dir / "genesis.json").read_bytes(), summary.genesis_hash


@pytest.fixture(scope="module", params=["intl", "gm"])
def document(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    data, digest = make_genesis(tmp_path_factory.mktemp("genesis"), request.param)
    return data, digest


def test_load_checks_the_expected_hash(document: Any, tmp_path: Path) -> None:
    data, digest = document
    path = tmp_path / "genesis.json"
    path.write_bytes(data)
    genesis, loaded = load_genesis(path, digest)
    assert loaded == digest == genesis_hash(genesis)
    with pytest.raises(GenesisError, match="expected"):
        load_genesis(path, bytes(32))


def test_hash_is_stable_across_json_reformatting(document: Any) -> None:
    data, digest = document
    parsed = json.loads(data)
    for text in (
        json.dumps(parsed),
        json.dumps(parsed, indent=7, sort_keys=True),
        json.dumps(dict(reversed(parsed.items())), separators=(",", ":")),
    ):
        assert parse_genesis(text.encode(), digest)[1] == digest
    assert genesis_json(parse_genesis(data)[0]) == data


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if value < 100 else value - 1
    if all(c in "0123456789abcdef" for c in value) and len(value) >= 64:
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    return value + "x" if ":" not in value else "9" + value


def test_every_edited_value_is_detected(document: Any) -> None:
    data, digest = document
    original = json.loads(data)
    paths = list(_leaves(original))
    assert len(paths) > 60
    for path in paths:
        edited = json.loads(data)
        target = edited
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _changed(target[path[-1]])
        with pytest.raises(GenesisError):
            parse_genesis(json.dumps(edited).encode(), digest)


def test_node_id_must_be_the_hash_of_the_public_key(document: Any) -> None:
    data, _digest = document
    edited = json.loads(data)
    edited["validators"][0]["node_id"] = edited["validators"][1]["node_id"]
    with pytest.raises(GenesisError, match="node id is not the hash"):
        parse_genesis(json.dumps(edited).encode())


def test_public_key_size_must_fit_the_suite(document: Any) -> None:
    data, _digest = document
    edited = json.loads(data)
    chain_suite = suite(edited["suite"])
    other = "gm" if edited["suite"] == "intl" else "intl"
    public_key = suite(other).generate_keypair()[1]
    edited["validators"][0]["public_key"] = public_key.hex()
    edited["validators"][0]["node_id"] = node_id(chain_suite, public_key).hex()
    with pytest.raises(GenesisError, match="byte public key"):
        parse_genesis(json.dumps(edited).encode())


def test_duplicate_validator_is_refused(document: Any) -> None:
    data, _digest = document
    edited = json.loads(data)
    edited["validators"].append(edited["validators"][0])
    with pytest.raises(GenesisError, match="duplicate"):
        parse_genesis(json.dumps(edited).encode())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g["validators"][0].update(member="regulator"), "validator_operator"),
        (lambda g: g["governance"]["committee"].append({"member": "x", "weight": 1}), "unknown"),
        (lambda g: g["accounts"][0].update(sponsor="nobody"), "sponsor"),
        (lambda g: g["validators"][0].update(voting_power=2**40), "voting power"),
        (lambda g: g["consensus"].update(round_timeout_ms=10**6), "round_timeout"),
        # What MempoolLimits asserts at a node's start, said by the genesis check first.
        (lambda g: g["mempool"].update(transaction_bytes_max=2**16, bytes_max=2**15), "fit"),
        (lambda g: g["mempool"].update(batch_transactions_max=20, transactions_max=10), "fit"),
        # A transaction admitted that no block could carry would wait in every mempool.
        (lambda g: g["consensus"].update(block_bytes_max=1000), "fit a block"),
        # A transaction larger than a block's payload item, or more items than a block holds.
        (lambda g: g["mempool"].update(transaction_bytes_max=2**16 + 1), "valid genesis"),
        (lambda g: g["consensus"].update(block_payload_items_max=20_001), "valid genesis"),
        (lambda g: g.update(extra=1), "valid genesis"),
        (lambda g: g.pop("validators"), "valid genesis"),
    ],
)
def test_inconsistent_documents_are_refused(document: Any, mutate: Any, message: str) -> None:
    data, _digest = document
    edited = json.loads(data)
    mutate(edited)
    with pytest.raises(GenesisError, match=message):
        parse_genesis(json.dumps(edited).encode())


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b"\xff", b'{"chain_id": 1}'])
def test_malformed_json(data: bytes) -> None:
    with pytest.raises(GenesisError):
        parse_genesis(data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="does not exist"):
        load_genesis(tmp_path / "genesis.json", None)


def test_epoch_config(document: Any) -> None:
    data, _digest = document
    genesis = parse_genesis(data)[0]
    epoch = epoch_config(genesis)
    assert epoch.epoch == 0
    ids = [validator.node_id for validator in epoch.validators]
    assert ids == sorted(ids) and len(ids) == 4
    by_id = {bytes.fromhex(v.node_id): bytes.fromhex(v.public_key) for v in genesis.validators}
    assert all(by_id[v.node_id] == v.public_key for v in epoch.validators)
    assert (epoch.total_power, epoch.quorum_power, epoch.fault_power) == (4, 3, 1)


@pytest.mark.parametrize(("count", "quorum", "faults"), [(1, 1, 0), (3, 3, 0), (7, 5, 2)])
def test_epoch_config_quorum(document: Any, count: int, quorum: int, faults: int) -> None:
    genesis = parse_genesis(document[0])[0]
    chain_suite = suite(genesis.suite)
    validators = []
    for index in range(count):
        public_key = chain_suite.generate_keypair()[1]
        validators.append(
            msgspec.structs.replace(
                genesis.validators[0],
                name=f"v{index}",
                node_id=node_id(chain_suite, public_key).hex(),
                public_key=public_key.hex(),
            )
        )
    epoch = epoch_config(msgspec.structs.replace(genesis, validators=validators))
    assert (epoch.quorum_power, epoch.fault_power) == (quorum, faults)


def test_contents_of_a_new_genesis(document: Any) -> None:
    genesis: Genesis = parse_genesis(document[0])[0]
    members = {member.name: member.roles for member in genesis.members}
    assert members["regulator"] == ["regulator"]
    assert members["bank-0"] == ["validator_operator", "member"]
    assert [seat.member for seat in genesis.governance.committee] == list(members)
    assert all(seat.weight == 1 for seat in genesis.governance.committee)
    validator: GenesisValidator
    for validator in genesis.validators:
        assert validator.voting_power == 1
    assert all(account.balance > 0 for account in genesis.accounts)
    assert genesis.chain_id.startswith("consortia-") and len(genesis.chain_id) == 18


def test_a_repeated_key_in_genesis_is_refused(document: Any) -> None:
    """Two chain_id keys: msgspec would keep the last, another JSON reader the first, so two
    programs would see two chain ids under one genesis hash. Refused, at any depth."""
    data, _digest = document
    text = data.decode()
    top = text.replace('"chain_id": ', '"chain_id": "rehearsal-chain",\n  "chain_id": ', 1)
    with pytest.raises(GenesisError, match="repeats the key 'chain_id'"):
        parse_genesis(top.encode())
    nested = text.replace('"voting_power": 1', '"voting_power": 1, "voting_power": 1', 1)
    with pytest.raises(GenesisError, match="repeats the key 'voting_power'"):
        parse_genesis(nested.encode())

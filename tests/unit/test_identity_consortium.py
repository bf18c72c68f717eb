"""Creating and checking a consortium directory with the library (fast KDF costs)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from consortia.errors import (
    AlreadyExistsError,
    CertificateError,
    ConfigError,
    GenesisError,
    InvalidArgumentError,
    KeyFileError,
    WeakPassphraseError,
    WrongPassphraseError,
)
from consortia.identity import consortium as module
from consortia.identity.addresses import parse_hosts
from consortia.identity.config import load_node_config, parse_node_config, resolve
from consortia.identity.consortium import (
    ConsortiumSummary,
    KeyCosts,
    build_consortium,
    plan_consortium,
)
from consortia.identity.genesis import load_genesis
from consortia.identity.inspection import inspect_consortium, is_consortium
from consortia.identity.keystore import Argon2Cost, load_key
from consortia.identity.pkcs8 import ScryptCost

FAST = KeyCosts(Argon2Cost(64, 1, 1), ScryptCost(4, 8, 1))
PASSPHRASE = "a long enough passphrase"
PRIVATE = ["consensus.key", "tls.key", "accounts/treasury.key"]
PUBLIC = ["config.toml", "genesis.json", "ca.crt", "tls.crt"]


def build(out: Path, nodes: int = 4, suite_name: str = "intl", **kwargs: str) -> ConsortiumSummary:
    plan = plan_consortium(out, nodes=nodes, suite_name=suite_name, **kwargs)
    return build_consortium(plan, PASSPHRASE, costs=FAST)


@pytest.fixture(scope="module", params=["intl", "gm"])
def made(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ConsortiumSummary:
    return build(tmp_path_factory.mktemp("made") / "net", suite_name=request.param)


def copy(made: ConsortiumSummary, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(made.out_dir, target)
    return target


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_layout_and_permissions(made: ConsortiumSummary) -> None:
    root = made.out_dir
    assert mode(root) == 0o700
    assert mode(root / "ca.key") == 0o600
    assert {p.name for p in root.iterdir()} == {"genesis.json", "ca.crt", "ca.key"} | {
        f"node{i}" for i in range(4)
    }
    for index in range(4):
        node = root / f"node{index}"
        assert mode(node) == mode(node / "data") == 0o700
        assert all(mode(node / name) == 0o600 for name in PRIVATE)
        assert all(mode(node / name) == 0o644 for name in PUBLIC)
        assert (node / "genesis.json").read_bytes() == (root / "genesis.json").read_bytes()
        assert (node / "ca.crt").read_bytes() == (root / "ca.crt").read_bytes()
    assert not list(root.parent.glob(".*partial*"))


def test_node_configs(made: ConsortiumSummary) -> None:
    addresses = {node.address for node in made.nodes}
    assert len(addresses) == 4
    for summary in made.nodes:
        path = made.out_dir / summary.name / "config.toml"
        config = load_node_config(path)
        assert config.node.node_id == summary.node_id.hex()
        assert config.chain.genesis_hash == made.genesis_hash.hex()
        assert config.network.advertise == summary.address
        assert config.network.listen.startswith("127.0.0.1:")
        assert config.network.api_listen != config.network.listen
        assert {peer.address for peer in config.peers} == addresses - {summary.address}
        for relative in (config.keys.consensus_key, config.keys.tls_key, config.chain.genesis):
            resolved = resolve(path, relative).resolve()
            assert resolved.is_relative_to(path.parent.resolve())  # self-contained
        load_genesis(resolve(path, config.chain.genesis), made.genesis_hash)


def test_keys_open_with_the_passphrase(made: ConsortiumSummary) -> None:
    node = made.out_dir / "node0"
    unlocked = load_key(node / "consensus.key", PASSPHRASE, purpose="consensus")
    assert unlocked.header.suite == made.suite
    with pytest.raises(WrongPassphraseError):
        load_key(node / "consensus.key", PASSPHRASE + "?")


def test_inspect_accepts_what_was_made(made: ConsortiumSummary) -> None:
    checked = inspect_consortium(made.out_dir, PASSPHRASE)
    assert checked.genesis_hash == made.genesis_hash
    assert checked.nodes == made.nodes
    assert checked.keys_decrypted
    assert not inspect_consortium(made.out_dir, None).keys_decrypted
    with pytest.raises(WrongPassphraseError):
        inspect_consortium(made.out_dir, PASSPHRASE + "?")


def test_inspect_detects_an_edited_node_genesis(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    path = root / "node2" / "genesis.json"
    path.write_text(path.read_text().replace('"voting_power": 1', '"voting_power": 2', 1))
    with pytest.raises(GenesisError, match="expected"):
        inspect_consortium(root, None)


def test_inspect_detects_a_swapped_certificate(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    shutil.copy(root / "node1" / "tls.crt", root / "node0" / "tls.crt")
    with pytest.raises(CertificateError):
        inspect_consortium(root, None)


def test_inspect_detects_a_swapped_key(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    shutil.copy(root / "node1" / "consensus.key", root / "node0" / "consensus.key")
    with pytest.raises(KeyFileError, match="not the key of validator"):
        inspect_consortium(root, None)


def test_inspect_detects_readable_private_keys(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    os.chmod(root / "node3" / "tls.key", 0o644)
    with pytest.raises(KeyFileError, match="0600"):
        inspect_consortium(root, None)


def test_inspect_detects_a_config_for_another_genesis(
    made: ConsortiumSummary, tmp_path: Path
) -> None:
    root = copy(made, tmp_path)
    path = root / "node1" / "config.toml"
    path.write_text(path.read_text().replace(made.genesis_hash.hex(), "ab" * 32))
    with pytest.raises(ConfigError, match="expects genesis"):
        inspect_consortium(root, None)


def test_is_consortium(made: ConsortiumSummary, tmp_path: Path) -> None:
    assert is_consortium(made.out_dir)
    assert not is_consortium(tmp_path)


def test_refuses_a_non_empty_directory_but_fills_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    with pytest.raises(AlreadyExistsError):
        plan_consortium(tmp_path / "full", nodes=1, suite_name="intl")
    (tmp_path / "empty").mkdir()
    summary = build(tmp_path / "empty", nodes=1)
    assert (summary.out_dir / "genesis.json").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlreadyExistsError):
        plan_consortium(tmp_path / "file", nodes=1, suite_name="intl")


def test_plan_then_directory_appears(tmp_path: Path) -> None:
    plan = plan_consortium(tmp_path / "race", nodes=1, suite_name="intl")
    (tmp_path / "race").mkdir()
    (tmp_path / "race" / "other").write_text("x")
    with pytest.raises(AlreadyExistsError):
        build_consortium(plan, PASSPHRASE, costs=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race"]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = getattr(module, "issue_node_certificate")  # noqa: B009
    monkeypatch.setattr(module, "issue_node_certificate", failing)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "net")
    assert list(tmp_path.iterdir()) == []


def test_weak_passphrase_writes_nothing(tmp_path: Path) -> None:
    plan = plan_consortium(tmp_path / "net", nodes=1, suite_name="intl")
    with pytest.raises(WeakPassphraseError):
        build_consortium(plan, "too short", costs=FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("nodes", [0, -1, 257])
def test_node_count_is_bounded(tmp_path: Path, nodes: int) -> None:
    with pytest.raises(InvalidArgumentError, match="--nodes"):
        plan_consortium(tmp_path / "net", nodes=nodes, suite_name="intl")


def test_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="parent"):
        plan_consortium(tmp_path / "a" / "b", nodes=1, suite_name="intl")


@pytest.mark.parametrize("chain_id", ["", "Upper", "-start", "a b", "x" * 65, "a\n"])
def test_bad_chain_id(tmp_path: Path, chain_id: str) -> None:
    with pytest.raises(InvalidArgumentError, match="chain-id"):
        plan_consortium(tmp_path / "net", nodes=1, suite_name="intl", chain_id=chain_id)


def test_hosts_place_nodes_on_several_machines(tmp_path: Path) -> None:
    hosts = "node-a.bank.example:9000, 10.1.2.3:9000,NODE-C.example.:7000"
    summary = build(tmp_path / "net", nodes=3, hosts=hosts, chain_id="test-net")
    assert [node.address for node in summary.nodes] == [
        "node-a.bank.example:9000",
        "10.1.2.3:9000",
        "node-c.example:7000",
    ]
    config = load_node_config(summary.out_dir / "node1" / "config.toml")
    assert config.network.listen == "0.0.0.0:9000"
    assert config.network.api_listen == "127.0.0.1:10000"
    assert config.chain.chain_id == "test-net"
    inspect_consortium(summary.out_dir, PASSPHRASE)


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("a:1", "lists 1"),
        ("a:1,b:2,c:3", "lists 3"),
        ("a:1,", "not HOST:PORT"),
        ("a,b:2", "not HOST:PORT"),
        ("a:0,b:2", "port"),
        ("a:65000,b:2", "API port"),
        ("a:x,b:2", "port"),
        ("[::1]:1,b:2", "IPv6"),
        ("::1:1,b:2", "IPv6"),
        ("a_b:1,c:2", "neither"),
        ("10.0.0:1,c:2", "neither"),
        ("0.0.0.0:1,c:2", "cannot be dialled"),
        ("a:1,a:1", "used twice"),
        ("a:1,a:1001", "used twice"),
    ],
)
def test_bad_hosts(hosts: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_hosts(hosts, 2)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="TOML"):
        parse_node_config(b"[node")
    with pytest.raises(ConfigError, match="valid node config"):
        parse_node_config(b"[node]\nname = 1\n")


def test_ca_key_may_be_offline_but_not_readable(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    os.chmod(root / "ca.key", 0o640)
    with pytest.raises(KeyFileError, match="0600"):
        inspect_consortium(root, None)
    (root / "ca.key").unlink()
    assert inspect_consortium(root, PASSPHRASE).keys_decrypted

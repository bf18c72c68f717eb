"""Creating and checking a consortium directory with the library (fast KDF costs): the layout,
who holds which passphrase, and what `inspect_consortium` catches."""

from __future__ import annotations

import datetime
import json
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
    InsecurePermissionsError,
    InvalidArgumentError,
    KeyFileError,
    WeakPassphraseError,
    WrongPassphraseError,
)
from consortia.identity import consortium as module
from consortia.identity.addresses import parse_hosts
from consortia.identity.authority import create_authority, open_authority
from consortia.identity.certificates import (
    fingerprint,
    load_certificate,
    permitted_names,
    verify_node_certificate,
)
from consortia.identity.config import load_node_config, parse_node_config, resolve
from consortia.identity.consortium import (
    ConsortiumSummary,
    build_consortium,
    plan_consortium,
)
from consortia.identity.custody import CA_HOLDER, Holder
from consortia.identity.genesis import load_genesis
from consortia.identity.inspection import inspect_consortium, is_consortium
from consortia.identity.keystore import load_key, read_key_header
from tests.identity_helpers import FAST, Book, build, holder_passphrases, passphrase_of

PRIVATE = ["consensus.key", "tls.key"]
PUBLIC = ["config.toml", "genesis.json", "ca.crt", "tls.crt"]


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


def node_dir(root: Path, index: int) -> Path:
    return root / f"bank-{index}" / f"node{index}"


def test_layout_and_permissions(made: ConsortiumSummary) -> None:
    root = made.out_dir
    assert mode(root) == 0o700
    names = {"genesis.json", "ca.crt", "ca"} | {f"bank-{i}" for i in range(4)}
    assert {p.name for p in root.iterdir()} == names
    ca = root / "ca"
    assert mode(ca) == mode(ca / "issued") == 0o700 and mode(ca / "ca.key") == 0o600
    assert len(list((ca / "issued").iterdir())) == 4
    for index in range(4):
        institution = root / f"bank-{index}"
        node = node_dir(root, index)
        assert {p.name for p in institution.iterdir()} == {"accounts", "public", f"node{index}"}
        assert mode(institution) == mode(institution / "accounts") == 0o700
        assert mode(institution / "accounts" / "treasury.key") == 0o600
        assert sorted(p.name for p in (institution / "public").iterdir()) == [
            f"bank-{index}.member.json",
            f"node{index}.node.json",
        ]
        assert mode(node) == mode(node / "data") == 0o700
        assert all(mode(node / name) == 0o600 for name in PRIVATE)
        assert all(mode(node / name) == 0o644 for name in PUBLIC)
        assert (node / "genesis.json").read_bytes() == (root / "genesis.json").read_bytes()
        assert (node / "ca.crt").read_bytes() == (root / "ca.crt").read_bytes()
    assert not list(root.parent.glob(".*partial*"))


def test_node_configs(made: ConsortiumSummary) -> None:
    addresses = {node.address for node in made.nodes}
    assert len(addresses) == 4
    for index, summary in enumerate(made.nodes):
        path = node_dir(made.out_dir, index) / "config.toml"
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


def test_each_holder_has_its_own_passphrase(made: ConsortiumSummary) -> None:
    """The CA, each node and each member: each opens its own keys and nothing else's, so a
    bank running its node cannot open the CA key (or another bank's keys)."""
    root = made.out_dir
    ca, node0, bank0 = CA_HOLDER, Holder("node", "node0"), Holder("member", "bank-0")
    keys = {
        ca: [root / "ca" / "ca.key"],
        node0: [node_dir(root, 0) / "consensus.key", node_dir(root, 0) / "tls.key"],
        bank0: [root / "bank-0" / "accounts" / "treasury.key"],
    }
    holders = [*keys, Holder("node", "node1"), Holder("member", "bank-1")]
    for owner, paths in keys.items():
        for path in paths:
            assert load_key(path, passphrase_of(owner)).header.public_key
            for other in holders:
                if other != owner:
                    with pytest.raises(WrongPassphraseError):
                        load_key(path, passphrase_of(other))


def test_tls_key_is_protected_like_every_other_key(made: ConsortiumSummary) -> None:
    """tls.key is a consortia key file under Argon2id, as costly as the consensus key."""
    node = node_dir(made.out_dir, 1)
    tls, consensus = read_key_header(node / "tls.key"), read_key_header(node / "consensus.key")
    assert (tls.purpose, tls.algorithm) == ("tls", "ecdsa-p256")
    assert tls.kdf.algorithm == "argon2id"
    assert (tls.kdf.memory_kib, tls.kdf.iterations) == (
        consensus.kdf.memory_kib,
        consensus.kdf.iterations,
    )
    assert b"PRIVATE KEY" not in (node / "tls.key").read_bytes()


def test_inspect_accepts_what_was_made(made: ConsortiumSummary) -> None:
    book = Book()
    checked = inspect_consortium(made.out_dir, book)
    assert checked.genesis_hash == made.genesis_hash
    assert checked.nodes == made.nodes
    assert checked.keys_decrypted
    assert set(book.asked) == {
        CA_HOLDER,
        *(Holder("node", f"node{i}") for i in range(4)),
        *(Holder("member", f"bank-{i}") for i in range(4)),
    }
    assert not inspect_consortium(made.out_dir, None).keys_decrypted
    wrong_member = Book({Holder("member", "bank-2"): "not the passphrase of bank-2"})
    with pytest.raises(WrongPassphraseError, match="treasury"):
        inspect_consortium(made.out_dir, wrong_member)


def test_inspect_opens_every_account_key(made: ConsortiumSummary, tmp_path: Path) -> None:
    """An account key whose ciphertext was damaged has an intact header: only opening it
    finds the damage, and the check with passphrases must open it."""
    root = copy(made, tmp_path)
    path = root / "bank-3" / "accounts" / "treasury.key"
    document = json.loads(path.read_text())
    ciphertext = document["ciphertext"]
    document["ciphertext"] = ciphertext[:-2] + ("00" if ciphertext[-2:] != "00" else "01")
    path.write_text(json.dumps(document))
    inspect_consortium(root, None)  # the header alone still matches the genesis account
    with pytest.raises(KeyFileError, match="altered"):
        inspect_consortium(root, Book())


def test_inspect_detects_a_swapped_account_key(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    source = root / "bank-1" / "accounts" / "treasury.key"
    target = root / "bank-0" / "accounts" / "treasury.key"
    target.unlink()
    shutil.copy(source, target)
    with pytest.raises(KeyFileError, match="bank-0"):
        inspect_consortium(root, None)


@pytest.mark.parametrize(
    "folder",
    ["", "ca", "bank-1", "bank-1/accounts", "bank-1/node1", "bank-1/node1/data", "ca/issued"],
)
def test_inspect_checks_folder_modes(made: ConsortiumSummary, tmp_path: Path, folder: str) -> None:
    root = copy(made, tmp_path)
    if folder == "ca/issued":
        (root / folder).chmod(0o755)  # it holds only certificates: public is fine
        inspect_consortium(root, None)
        return
    (root / folder).chmod(0o750)
    with pytest.raises(InsecurePermissionsError, match="0750"):
        inspect_consortium(root, None)


def test_inspect_detects_an_edited_node_genesis(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    path = node_dir(root, 2) / "genesis.json"
    path.write_text(path.read_text().replace('"voting_power": 1', '"voting_power": 2', 1))
    with pytest.raises(GenesisError, match="expected"):
        inspect_consortium(root, None)


def test_inspect_detects_a_swapped_certificate(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    shutil.copy(node_dir(root, 1) / "tls.crt", node_dir(root, 0) / "tls.crt")
    with pytest.raises(CertificateError):
        inspect_consortium(root, None)


def test_inspect_detects_a_swapped_key(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    shutil.copy(node_dir(root, 1) / "consensus.key", node_dir(root, 0) / "consensus.key")
    with pytest.raises(KeyFileError, match="not the key of validator"):
        inspect_consortium(root, None)
    root2 = copy(made, tmp_path / "second")
    shutil.copy(node_dir(root2, 1) / "tls.key", node_dir(root2, 0) / "tls.key")
    with pytest.raises(KeyFileError, match=r"tls\.crt"):
        inspect_consortium(root2, None)


def test_inspect_detects_readable_private_keys(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    os.chmod(node_dir(root, 3) / "tls.key", 0o644)
    with pytest.raises(InsecurePermissionsError, match="0600"):
        inspect_consortium(root, None)


def test_inspect_detects_a_config_for_another_genesis(
    made: ConsortiumSummary, tmp_path: Path
) -> None:
    root = copy(made, tmp_path)
    path = node_dir(root, 1) / "config.toml"
    path.write_text(path.read_text().replace(made.genesis_hash.hex(), "ab" * 32))
    with pytest.raises(ConfigError, match="expects genesis"):
        inspect_consortium(root, None)


def test_is_consortium(made: ConsortiumSummary, tmp_path: Path) -> None:
    assert is_consortium(made.out_dir)
    assert not is_consortium(tmp_path)


def test_ca_may_be_offline_but_not_readable(made: ConsortiumSummary, tmp_path: Path) -> None:
    root = copy(made, tmp_path)
    os.chmod(root / "ca" / "ca.key", 0o640)
    with pytest.raises(InsecurePermissionsError, match="0600"):
        inspect_consortium(root, None)
    shutil.rmtree(root / "ca")  # moved to an offline machine
    assert inspect_consortium(root, Book()).keys_decrypted


def test_init_with_an_existing_offline_ca(tmp_path: Path) -> None:
    """`init --ca`: the CA's folder stays where it is, its key never enters the consortium
    folder, and init asks no passphrase of it but the CA's own to issue certificates."""
    now = datetime.datetime.now(datetime.UTC)
    ca_dir = tmp_path / "offline-ca"
    ca_dir.mkdir(mode=0o700)
    ca_passphrase = "the CA's own passphrase"
    create_authority(
        ca_dir,
        chain_id="test-net",
        permitted=permitted_names(["127.0.0.1"]),
        passphrase=ca_passphrase,
        now=now,
        cost=FAST,
    )
    authority = open_authority(ca_dir, ca_passphrase, now)
    plan = plan_consortium(tmp_path / "net", nodes=2, suite_name="gm", chain_id="test-net")
    passphrases = holder_passphrases(plan, with_ca=False)
    assert CA_HOLDER not in passphrases
    summary = build_consortium(plan, passphrases, authority=authority, cost=FAST)
    assert not (summary.out_dir / "ca").exists()
    assert not [p for p in summary.out_dir.rglob("*") if p.name == "ca.key"]
    assert fingerprint(load_certificate(summary.out_dir / "ca.crt")) == fingerprint(
        authority.certificate
    )
    assert len(list((ca_dir / "issued").iterdir())) == 2
    certificate = load_certificate(node_dir(summary.out_dir, 1) / "tls.crt")
    verify_node_certificate(
        certificate, authority.certificate, summary.nodes[1].node_id.hex(), now, "tls.crt"
    )
    inspect_consortium(summary.out_dir, Book(passphrases))


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
        build_consortium(plan, holder_passphrases(plan), cost=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race"]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = getattr(module, "issue")  # noqa: B009
    monkeypatch.setattr(module, "issue", failing)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "net")
    assert list(tmp_path.iterdir()) == []


def test_weak_passphrase_writes_nothing(tmp_path: Path) -> None:
    plan = plan_consortium(tmp_path / "net", nodes=1, suite_name="intl")
    passphrases = holder_passphrases(plan)
    passphrases[Holder("member", "bank-0")] = "too short"
    with pytest.raises(WeakPassphraseError):
        build_consortium(plan, passphrases, cost=FAST)
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
    config = load_node_config(node_dir(summary.out_dir, 1) / "config.toml")
    assert config.network.listen == "0.0.0.0:9000"
    assert config.network.api_listen == "127.0.0.1:10000"
    assert config.chain.chain_id == "test-net"
    inspect_consortium(summary.out_dir, Book())


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


def test_a_folder_of_the_earlier_layout_says_what_to_do(
    made: ConsortiumSummary, tmp_path: Path
) -> None:
    """`make run` on a demo folder made before institution folders existed: one clear line."""
    root = copy(made, tmp_path)
    for index in range(4):
        node_dir(root, index).rename(root / f"node{index}")
    with pytest.raises(ConfigError, match="earlier consortia"):
        inspect_consortium(root, None)


# --- Demo accounts (consortia cluster up) -------------------------------------------------------


def test_demo_accounts_are_funded_after_the_treasuries_with_keys_in_accounts(
    tmp_path: Path,
) -> None:
    """alice..dave: keys in DIR/accounts under their sponsor's passphrase (members take
    turns), funded at genesis after every treasury, so bank-0's treasury still issues CNY."""
    names = ("alice", "bob", "carol", "dave", "erin")
    summary = build(tmp_path / "net", demo_accounts=names)
    root = summary.out_dir
    assert mode(root / "accounts") == 0o700
    genesis, _ = load_genesis(root / "genesis.json", summary.genesis_hash)
    assert [account.id for account in genesis.accounts] == [
        *(f"bank-{i}.treasury" for i in range(4)),
        *names,
    ]
    for index, name in enumerate(names):
        account = genesis.accounts[4 + index]
        sponsor = f"bank-{index % 4}"
        assert (account.sponsor, account.currency) == (sponsor, "CNY")
        assert account.balance == module.DEMO_ACCOUNT_BALANCE == 100_000_000
        path = root / "accounts" / f"{name}.key"
        assert mode(path) == 0o600
        key = load_key(path, passphrase_of(Holder("member", sponsor)), purpose="account")
        assert key.header.public_key == account.public_key
    assert inspect_consortium(root, Book()).keys_decrypted


def test_inspect_checks_demo_account_keys(tmp_path: Path) -> None:
    root = build(tmp_path / "net", demo_accounts=("alice", "bob")).out_dir
    (root / "accounts" / "alice.key").unlink()
    shutil.copy(root / "accounts" / "bob.key", root / "accounts" / "alice.key")
    with pytest.raises(KeyFileError, match="bank-0"):
        inspect_consortium(root, None)
    (root / "accounts").chmod(0o755)
    with pytest.raises(InsecurePermissionsError):
        inspect_consortium(root, None)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("alice", "alice"), "differ"),
        (("bank-1",), "no member's name"),
        (("a.b",), "without '.'"),
        (("../x",), "demo account"),
    ],
)
def test_demo_account_names_are_checked(
    tmp_path: Path, names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        plan_consortium(tmp_path / "net", nodes=4, suite_name="intl", demo_accounts=names)
    assert not (tmp_path / "net").exists()

"""A consortium formed by four institutions that each made their own keys, through the CLI.

Setup: four institution folders (bank-a … bank-d), an offline CA folder and a coordinator's
folder, side by side as they would be on six machines. Every holder has its own passphrase
(the CA, each node, each member), given to each command in its environment.

Test: each institution runs `keys generate` for its member and its node; the coordinator
gathers only the public requests (checking each file's SHA-256 against the one the institution
printed, as it would by phone); the CA issues each node's certificate from its request; the
coordinator builds the genesis; each institution configures its node from the genesis, the CA
certificate and its certificate. Then: no private key file exists anywhere but in the folder
of the institution (or the CA) that made it, each passphrase opens only its holder's keys,
two nodes complete a mutual TLS 1.3 handshake with the keys they made, and revocation works.

Run: .venv/bin/pytest -q tests/integration/test_cli_institutions.py
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from consortia.errors import CertificateError, WrongPassphraseError
from consortia.identity.authority import check_not_revoked, load_crl
from consortia.identity.certificates import load_certificate, verify_node_certificate
from consortia.identity.config import load_node_config
from consortia.identity.genesis import load_genesis
from consortia.identity.keystore import load_key
from consortia.identity.tls import load_node_identity
from tests.cli_helpers import assert_ok, assert_user_error, printed_hash, run

BANKS = ("a", "b", "c", "d")
CHAIN_ID = "interbank-rehearsal"
CA_PASSPHRASE = "the CA operator's own passphrase"
ADDRESSES = {
    "a": "127.0.0.1:19001",
    "b": "127.0.0.1:19002",
    "c": "127.0.0.1:19003",
    "d": "node.bank-d.example:19004",
}


def member_passphrase(bank: str) -> str:
    return f"member passphrase of bank-{bank}"


def node_passphrase(bank: str) -> str:
    return f"node passphrase of node-{bank}"


def is_private_key_file(path: Path) -> bool:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return True
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("header", {}).get("format") == (
        "consortia-key"
    )


class Formed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = root / "ca"
        self.coordinator = root / "coordinator"
        self.institution = {bank: root / f"bank-{bank}" for bank in BANKS}
        self.digests: dict[str, str] = {}
        self.genesis_hash = b""


def request_digest(result: subprocess.CompletedProcess[str]) -> str:
    line = next(x for x in result.stdout.splitlines() if x.startswith("request sha-256: "))
    return line.removeprefix("request sha-256: ").split()[0]


@pytest.fixture(scope="module")
def formed(tmp_path_factory: pytest.TempPathFactory) -> Formed:
    world = Formed(tmp_path_factory.mktemp("world"))
    # The CA, offline: its folder and passphrase belong to the CA operator alone.
    assert_ok(
        run("ca", "init", "--out", world.ca, "--chain-id", CHAIN_ID,
            "--permit", "127.0.0.1,bank-d.example", passphrase=CA_PASSPHRASE)
    )  # fmt: skip
    # Each institution, on its own machine.
    for bank in BANKS:
        folder = world.institution[bank]
        member = assert_ok(
            run("keys", "generate", "--suite", "gm", "--institution", folder,
                "--member", f"bank-{bank}", passphrase=member_passphrase(bank))
        )  # fmt: skip
        node = assert_ok(
            run("keys", "generate", "--suite", "gm", "--institution", folder,
                "--member", f"bank-{bank}", "--node", f"node-{bank}",
                "--address", ADDRESSES[bank], passphrase=node_passphrase(bank))
        )  # fmt: skip
        world.digests[f"bank-{bank}.member.json"] = request_digest(member)
        world.digests[f"node-{bank}.node.json"] = request_digest(node)
    # The coordinator gathers the public requests only, and checks each by its digest.
    world.coordinator.mkdir()
    for bank in BANKS:
        for path in (world.institution[bank] / "public").iterdir():
            shutil.copy(path, world.coordinator / path.name)
    for name, digest in world.digests.items():
        assert hashlib.sha256((world.coordinator / name).read_bytes()).hexdigest() == digest
    # The CA signs each node's certificate request.
    for bank in BANKS:
        request = world.coordinator / f"node-{bank}.node.json"
        assert_ok(run("ca", "issue", "--ca", world.ca, "--request", request,
                      passphrase=CA_PASSPHRASE))  # fmt: skip
    built = assert_ok(
        run("genesis", "build", "--from", world.coordinator,
            "--ca-certificate", world.ca / "ca.crt", "--chain-id", CHAIN_ID,
            "--regulator", "pboc", "--out", world.coordinator / "genesis.json")
    )  # fmt: skip
    world.genesis_hash = printed_hash(built)
    # Each institution configures its node from public files and the announced hash.
    for bank in BANKS:
        assert_ok(
            run("node", "configure", "--node-dir", world.institution[bank] / f"node-{bank}",
                "--genesis", world.coordinator / "genesis.json",
                "--ca-certificate", world.ca / "ca.crt",
                "--certificate", world.coordinator / f"node-{bank}.crt",
                "--genesis-hash", world.genesis_hash.hex())
        )  # fmt: skip
    return world


def test_no_private_key_leaves_the_folder_that_made_it(formed: Formed) -> None:
    owners = {path.name: path for path in formed.root.iterdir()}
    made_by: dict[str, set[str]] = {name: set() for name in owners}
    seen: dict[bytes, str] = {}
    for path in sorted(formed.root.rglob("*")):
        if not path.is_file() or not is_private_key_file(path):
            continue
        owner = path.relative_to(formed.root).parts[0]
        assert owner != "coordinator", f"a private key reached the coordinator: {path}"
        assert path.read_bytes() not in seen, f"{path} is a copy of {seen[path.read_bytes()]}"
        seen[path.read_bytes()] = str(path)
        made_by[owner].add(path.relative_to(owners[owner]).as_posix())
    assert made_by["ca"] == {"ca.key"}
    for bank in BANKS:
        assert made_by[f"bank-{bank}"] == {
            "accounts/treasury.key",
            f"node-{bank}/consensus.key",
            f"node-{bank}/tls.key",
        }
    assert made_by["coordinator"] == set()


def test_every_node_is_configured_for_one_genesis(formed: Formed) -> None:
    genesis, digest = load_genesis(formed.coordinator / "genesis.json", formed.genesis_hash)
    assert genesis.chain_id == CHAIN_ID and genesis.suite == "gm"
    assert [v.name for v in genesis.validators] == [f"node-{bank}" for bank in BANKS]
    assert {m.name for m in genesis.members} == {f"bank-{bank}" for bank in BANKS} | {"pboc"}
    for bank in BANKS:
        node = formed.institution[bank] / f"node-{bank}"
        config = load_node_config(node / "config.toml")
        assert config.chain.genesis_hash == digest.hex()
        assert len(config.peers) == 3 and config.node.member == f"bank-{bank}"
        load_genesis(node / "genesis.json", digest)
    config_d = load_node_config(formed.institution["d"] / "node-d" / "config.toml")
    assert config_d.network.listen == "0.0.0.0:19004"


def test_each_passphrase_opens_only_its_holders_keys(formed: Formed) -> None:
    ca_key = formed.ca / "ca.key"
    node_a = formed.institution["a"] / "node-a"
    treasury_a = formed.institution["a"] / "accounts" / "treasury.key"
    load_key(ca_key, CA_PASSPHRASE, purpose="tls-ca")
    load_key(node_a / "consensus.key", node_passphrase("a"), purpose="consensus")
    load_key(node_a / "tls.key", node_passphrase("a"), purpose="tls")
    load_key(treasury_a, member_passphrase("a"), purpose="account")
    for passphrase in (node_passphrase("a"), member_passphrase("a")):
        with pytest.raises(WrongPassphraseError):
            load_key(ca_key, passphrase)
    for path in (node_a / "consensus.key", node_a / "tls.key"):
        for passphrase in (CA_PASSPHRASE, member_passphrase("a"), node_passphrase("b")):
            with pytest.raises(WrongPassphraseError):
                load_key(path, passphrase)
    with pytest.raises(WrongPassphraseError):
        load_key(treasury_a, node_passphrase("a"))


def _context(formed: Formed, bank: str, side: int) -> ssl.SSLContext:
    node = formed.institution[bank] / f"node-{bank}"
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if side == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False  # peers are named by node id, not host
    load_node_identity(context, node / "tls.crt", node / "tls.key", node_passphrase(bank))
    context.load_verify_locations(cafile=node / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_two_nodes_complete_a_mutual_tls_handshake(formed: Formed) -> None:
    server_ctx = _context(formed, "a", ssl.PROTOCOL_TLS_SERVER)
    client_ctx = _context(formed, "b", ssl.PROTOCOL_TLS_CLIENT)
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(pipes[0], pipes[1], server_side=True)
    client = client_ctx.wrap_bio(pipes[2], pipes[3])
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pipes[0].write(pipes[3].read())
        pipes[2].write(pipes[1].read())
    assert client.version() == server.version() == "TLSv1.3"
    seen = server.getpeercert()
    assert seen is not None
    genesis, _digest = load_genesis(formed.coordinator / "genesis.json", formed.genesis_hash)
    node_b = next(v for v in genesis.validators if v.name == "node-b")
    assert (("commonName", node_b.node_id),) in seen["subject"]


def test_the_ca_refuses_mistakes_and_revokes(formed: Formed, tmp_path: Path) -> None:
    request = formed.coordinator / "node-a.node.json"
    wrong = run("ca", "issue", "--ca", formed.ca, "--request", request,
                "--out", tmp_path / "x.crt", passphrase=node_passphrase("a"))  # fmt: skip
    assert_user_error(wrong, "wrong_passphrase")
    forged = tmp_path / "forged.node.json"
    document = json.loads(request.read_text())
    document["request"]["address"] = "127.0.0.1:19999"
    forged.write_text(json.dumps(document))
    result = run("ca", "issue", "--ca", formed.ca, "--request", forged, passphrase=CA_PASSPHRASE)
    assert_user_error(result, "key_request_invalid")
    assert not list(tmp_path.glob("*.crt"))
    certificate = formed.coordinator / "node-c.crt"
    assert_ok(run("ca", "revoke", "--ca", formed.ca, "--certificate", certificate,
                  passphrase=CA_PASSPHRASE))  # fmt: skip
    crl = load_crl(formed.ca / "ca.crl")
    ca_certificate = load_certificate(formed.ca / "ca.crt")
    with pytest.raises(CertificateError, match="revoked"):
        check_not_revoked(load_certificate(certificate), crl, ca_certificate)
    check_not_revoked(load_certificate(formed.coordinator / "node-a.crt"), crl, ca_certificate)
    now = datetime.datetime.now(datetime.UTC)
    genesis, _digest = load_genesis(formed.coordinator / "genesis.json", formed.genesis_hash)
    node_a = next(v for v in genesis.validators if v.name == "node-a")
    verify_node_certificate(
        load_certificate(formed.coordinator / "node-a.crt"),
        ca_certificate,
        node_a.node_id,
        now,
        "a",
    )

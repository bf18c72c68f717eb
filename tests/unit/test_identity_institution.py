"""Keys made at each institution, signed requests, the CA issuing from them, the genesis built
from them, and a node folder joining the genesis (library level, fast KDF costs)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import stat
from pathlib import Path

import msgspec
import pytest

from consortia.errors import (
    AlreadyExistsError,
    CertificateError,
    ConfigError,
    GenesisError,
    InsecurePermissionsError,
    InvalidArgumentError,
    KeyRequestError,
    PassphraseUnavailableError,
)
from consortia.identity.assembly import assemble_genesis, gather
from consortia.identity.authority import (
    Authority,
    check_not_revoked,
    create_authority,
    issue,
    load_crl,
    revoke,
)
from consortia.identity.certificates import certificate_pem, permitted_names
from consortia.identity.custody import CA_HOLDER, Holder, OnePassphrase, PassphraseDirectory
from consortia.identity.genesis import genesis_json
from consortia.identity.institution import generate_member, generate_node
from consortia.identity.joining import configure_node
from consortia.identity.keystore import load_key
from consortia.identity.requests import (
    load_member_request,
    load_node_request,
    parse_node_request,
    sign_node_request,
)
from tests.identity_helpers import FAST

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
CA_PASSPHRASE = "the CA's own passphrase"


def make_ca(directory: Path, permit: str = "127.0.0.1") -> Authority:
    directory.mkdir(mode=0o700)
    return create_authority(
        directory,
        chain_id="test-net",
        permitted=permitted_names(permit.split(",")),
        passphrase=CA_PASSPHRASE,
        now=NOW,
        cost=FAST,
    )


def make_institution(
    root: Path, name: str, port: int, suite_name: str = "intl", host: str = "127.0.0.1"
) -> Path:
    institution = root / name
    generate_member(
        institution,
        member=name,
        suite_name=suite_name,
        passphrase=f"member passphrase of {name}",
        cost=FAST,
    )
    generate_node(
        institution,
        member=name,
        node=f"{name}-node",
        address=f"{host}:{port}",
        suite_name=suite_name,
        passphrase=f"node passphrase of {name}",
        cost=FAST,
    )
    return institution


def gathered_folder(root: Path, authority: Authority, institutions: list[Path]) -> Path:
    folder = root / "gathered"
    folder.mkdir()
    for institution in institutions:
        for path in (institution / "public").iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
    for request in sorted(folder.glob("*.node.json")):
        certificate = issue(authority, load_node_request(request), NOW)
        (folder / request.name.replace(".node.json", ".crt")).write_bytes(
            certificate_pem(certificate)
        )
    return folder


def test_an_institution_makes_its_own_keys(tmp_path: Path) -> None:
    institution = make_institution(tmp_path, "bank-a", 9001, "gm")
    assert stat.S_IMODE(institution.stat().st_mode) == 0o700
    node = institution / "bank-a-node"
    assert sorted(p.name for p in node.iterdir()) == ["consensus.key", "data", "tls.key"]
    load_key(node / "tls.key", "node passphrase of bank-a", purpose="tls")
    load_key(institution / "accounts" / "treasury.key", "member passphrase of bank-a")
    member = load_member_request(institution / "public" / "bank-a.member.json")
    checked = load_node_request(institution / "public" / "bank-a-node.node.json")
    assert (member.member, member.account_id, member.suite) == ("bank-a", "bank-a.treasury", "gm")
    assert checked.request.address == "127.0.0.1:9001"
    assert checked.certificate_request.node_id == checked.request.node_id
    public = b"".join(p.read_bytes() for p in (institution / "public").iterdir())
    assert b"consortia-key" not in public and b"PRIVATE KEY" not in public
    with pytest.raises(AlreadyExistsError):
        make_institution(tmp_path, "bank-a", 9001)


def test_an_institution_folder_others_can_read_is_refused(tmp_path: Path) -> None:
    institution = tmp_path / "bank-a"
    institution.mkdir()
    institution.chmod(0o755)
    with pytest.raises(InsecurePermissionsError, match="0755"):
        make_institution(tmp_path, "bank-a", 9001)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("node_id", "00" * 32, "hash"),
        ("address", "127.0.0.1:9999", "signed"),
        ("member", "bank-z", "signed"),
        ("consensus_public_key", "11" * 32, "hash"),
    ],
)
def test_an_edited_node_request_is_refused(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    institution = make_institution(tmp_path, "bank-a", 9001)
    path = institution / "public" / "bank-a-node.node.json"
    document = json.loads(path.read_bytes())
    document["request"][field] = value
    with pytest.raises(KeyRequestError, match=message):
        parse_node_request(json.dumps(document).encode(), "edited")


def test_a_signed_request_must_match_its_certificate_request(tmp_path: Path) -> None:
    """Signed by the right consensus key, but asking a certificate for another host."""
    institution = make_institution(tmp_path, "bank-a", 9001)
    path = institution / "public" / "bank-a-node.node.json"
    request = load_node_request(path).request
    unlocked = load_key(institution / "bank-a-node" / "consensus.key", "node passphrase of bank-a")
    moved = msgspec.structs.replace(request, address="10.1.2.3:9001")
    data = sign_node_request(moved, unlocked.private_key)
    with pytest.raises(KeyRequestError, match="another node, member or host"):
        parse_node_request(data, "moved")


def test_a_request_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    institution = make_institution(tmp_path, "bank-a", 9001)
    text = (institution / "public" / "bank-a-node.node.json").read_text()
    doubled = text.replace('"member": "bank-a"', '"member": "bank-z", "member": "bank-a"')
    with pytest.raises(KeyRequestError, match="repeats"):
        parse_node_request(doubled.encode(), "doubled")


def test_four_institutions_form_a_genesis(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca")
    institutions = [make_institution(tmp_path, f"bank-{c}", 9000 + i) for i, c in enumerate("abcd")]
    gathered = gather(gathered_folder(tmp_path, authority, institutions))
    genesis = assemble_genesis(
        gathered,
        chain_id="test-net",
        ca_certificate=authority.certificate,
        regulator="pboc",
        now=NOW,
    )
    assert [v.name for v in genesis.validators] == [f"bank-{c}-node" for c in "abcd"]
    roles = {member.name: member.roles for member in genesis.members}
    assert roles["pboc"] == ["regulator"] and roles["bank-a"] == ["validator_operator", "member"]
    assert [a.id for a in genesis.accounts] == [f"bank-{c}.treasury" for c in "abcd"]
    document = genesis_json(genesis)
    for institution in institutions:
        node = institution / f"{institution.name}-node"
        certificate = next(
            g.certificate for g in gathered.nodes if g.request.request.node == node.name
        )
        joined = configure_node(
            node,
            genesis_document=document,
            expected_hash=None,
            ca_certificate=authority.certificate,
            certificate=certificate,
            now=NOW,
        )
        assert joined.name == node.name and (node / "config.toml").is_file()
        with pytest.raises(AlreadyExistsError):
            configure_node(
                node,
                genesis_document=document,
                expected_hash=None,
                ca_certificate=authority.certificate,
                certificate=certificate,
                now=NOW,
            )


def test_genesis_refuses_a_certificate_for_another_node(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca")
    institutions = [make_institution(tmp_path, f"bank-{c}", 9000 + i) for i, c in enumerate("ab")]
    folder = gathered_folder(tmp_path, authority, institutions)
    (folder / "bank-a-node.crt").write_bytes((folder / "bank-b-node.crt").read_bytes())
    with pytest.raises(CertificateError):
        assemble_genesis(
            gather(folder),
            chain_id="test-net",
            ca_certificate=authority.certificate,
            regulator=None,
            now=NOW,
        )
    (folder / "bank-a-node.crt").unlink()
    with pytest.raises(InvalidArgumentError, match="ca issue"):
        gather(folder)


def test_genesis_refuses_mixed_suites_and_orphan_nodes(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca")
    institutions = [
        make_institution(tmp_path, "bank-a", 9001, "intl"),
        make_institution(tmp_path, "bank-b", 9002, "gm"),
    ]
    gathered = gather(gathered_folder(tmp_path, authority, institutions))
    with pytest.raises(GenesisError, match="mix"):
        assemble_genesis(
            gathered, chain_id="t", ca_certificate=authority.certificate, regulator=None, now=NOW
        )
    (tmp_path / "gm").mkdir()
    gm_only = [make_institution(tmp_path / "gm", "bank-c", 9003, "gm")]
    gathered = gather(gathered_folder(tmp_path / "gm", authority, gm_only))
    orphan = dataclasses.replace(gathered, members=())
    with pytest.raises(GenesisError, match="no member request"):
        assemble_genesis(
            orphan, chain_id="t", ca_certificate=authority.certificate, regulator=None, now=NOW
        )


def test_the_ca_refuses_a_host_its_constraints_do_not_permit(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca", permit="bank-a.example")
    institution = make_institution(tmp_path, "bank-b", 9002, host="node.bank-b.example")
    request = load_node_request(institution / "public" / "bank-b-node.node.json")
    with pytest.raises(CertificateError, match="name constraints"):
        issue(authority, request, NOW)
    assert list((tmp_path / "ca" / "issued").iterdir()) == []


def test_revocation(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca")
    institution = make_institution(tmp_path, "bank-a", 9001)
    request = load_node_request(institution / "public" / "bank-a-node.node.json")
    first, second = issue(authority, request, NOW), issue(authority, request, NOW)
    crl = revoke(authority, first, NOW)
    assert load_crl(tmp_path / "ca" / "ca.crl") == crl
    with pytest.raises(CertificateError, match="revoked"):
        check_not_revoked(first, crl, authority.certificate)
    check_not_revoked(second, crl, authority.certificate)
    with pytest.raises(CertificateError, match="already"):
        revoke(authority, first, NOW)
    crl = revoke(authority, second, NOW)
    assert len(crl) == 2
    other = make_ca(tmp_path / "other-ca")
    with pytest.raises(CertificateError, match="not issued by this CA"):
        revoke(other, second, NOW)
    with pytest.raises(CertificateError, match="not signed"):
        check_not_revoked(second, crl, other.certificate)


def test_configure_refuses_a_node_the_genesis_does_not_list(tmp_path: Path) -> None:
    authority = make_ca(tmp_path / "ca")
    institutions = [make_institution(tmp_path, f"bank-{c}", 9000 + i) for i, c in enumerate("ab")]
    gathered = gather(gathered_folder(tmp_path, authority, institutions))
    only_a = dataclasses.replace(gathered, nodes=gathered.nodes[:1])
    genesis = assemble_genesis(
        only_a, chain_id="t", ca_certificate=authority.certificate, regulator=None, now=NOW
    )
    with pytest.raises(ConfigError, match="no validator"):
        configure_node(
            institutions[1] / "bank-b-node",
            genesis_document=genesis_json(genesis),
            expected_hash=None,
            ca_certificate=authority.certificate,
            certificate=gathered.nodes[1].certificate,
            now=NOW,
        )
    with pytest.raises(CertificateError, match="not the one the genesis lists"):
        configure_node(
            institutions[0] / "bank-a-node",
            genesis_document=genesis_json(genesis),
            expected_hash=None,
            ca_certificate=authority.certificate,
            certificate=issue(authority, gathered.nodes[0].request, NOW),
            now=NOW,
        )
    assert not (institutions[0] / "bank-a-node" / "config.toml").exists()


def test_a_node_joining_a_running_chain_is_configured_from_its_own_request(
    tmp_path: Path,
) -> None:
    authority = make_ca(tmp_path / "ca")
    institutions = [make_institution(tmp_path, f"bank-{c}", 9000 + i) for i, c in enumerate("ab")]
    gathered = gather(gathered_folder(tmp_path, authority, institutions))
    only_a = dataclasses.replace(gathered, nodes=gathered.nodes[:1])
    genesis = assemble_genesis(
        only_a, chain_id="t", ca_certificate=authority.certificate, regulator=None, now=NOW
    )
    document = genesis_json(genesis)
    founder = institutions[0] / "bank-a-node"
    with pytest.raises(ConfigError, match="founding validator"):
        configure_node(
            founder,
            genesis_document=document,
            expected_hash=None,
            ca_certificate=authority.certificate,
            certificate=gathered.nodes[0].certificate,
            now=NOW,
            join=True,
        )
    newcomer = institutions[1] / "bank-b-node"
    with pytest.raises(CertificateError):  # another node's certificate
        configure_node(
            newcomer,
            genesis_document=document,
            expected_hash=None,
            ca_certificate=authority.certificate,
            certificate=gathered.nodes[0].certificate,
            now=NOW,
            join=True,
        )
    joined = configure_node(
        newcomer,
        genesis_document=document,
        expected_hash=None,
        ca_certificate=authority.certificate,
        certificate=gathered.nodes[1].certificate,
        now=NOW,
        join=True,
    )
    request = gathered.nodes[1].request.request
    assert (joined.name, joined.member, joined.node_id.hex()) == (
        request.node,
        request.member,
        request.node_id,
    )
    assert joined.public_key == request.consensus_public_key
    config = (newcomer / "config.toml").read_text()
    assert genesis.validators[0].address in config  # it dials the founders to sync


# --- Where passphrases come from --------------------------------------------------------------


def write_secret(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def test_passphrase_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # no terminal  # noqa: SIM115
    write_secret(tmp_path / "ca.passphrase", "the CA passphrase")
    write_secret(tmp_path / "node0.passphrase", "the node0 passphrase\n")
    source = PassphraseDirectory(tmp_path)
    assert source.passphrase(CA_HOLDER, creating=True) == "the CA passphrase"
    assert source.passphrase(Holder("node", "node0"), creating=True) == "the node0 passphrase"
    with pytest.raises(PassphraseUnavailableError, match=r"bank-0\.passphrase"):
        source.passphrase(Holder("member", "bank-0"), creating=True)
    write_secret(tmp_path / "bank-0.passphrase", "the CA passphrase")
    with pytest.raises(InvalidArgumentError, match="CA's passphrase must be its own"):
        source.passphrase(Holder("member", "bank-0"), creating=True)
    (tmp_path / "bank-1.passphrase").write_text("readable by all")
    (tmp_path / "bank-1.passphrase").chmod(0o644)
    with pytest.raises(InsecurePermissionsError):
        source.passphrase(Holder("member", "bank-1"), creating=True)


def test_one_passphrase_is_demo_custody() -> None:
    source = OnePassphrase("one passphrase for all")
    assert source.demo
    assert source.passphrase(CA_HOLDER, creating=True) == source.passphrase(
        Holder("node", "node3"), creating=False
    )
    assert "one passphrase for all" not in repr(source)

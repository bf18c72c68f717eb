"""Certificates and transports for the consortia.net tests (no tests of its own).

Certificates follow the consortium's conventions (docs/identity.md): an ECDSA P-256 root with
critical name constraints and path length 0, and node certificates whose subject CN is the node
id in lowercase hex and whose SubjectAltName holds the host and `consortia:node:<id hex>`.
They are built here with `cryptography` directly, so the tests of the transport do not depend
on the identity package's signatures.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import random
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.net import TlsContexts, Transport, TransportLimits, contexts_from_pem
from consortia.net.frames import PREAMBLE

NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
LOCALHOST = "127.0.0.1"
WAIT_S = 10.0  # the most any test waits for a condition before it fails

# One P-256 key per name, made once: key generation dominates certificate building.
_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def key_for(name: str) -> ec.EllipticCurvePrivateKey:
    if name not in _KEYS:
        _KEYS[name] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[name]


def node_id(index: int) -> bytes:
    """A stable test node id; ids sort in index order only by chance, so compare bytes."""
    return hashlib.sha256(f"test node {index}".encode()).digest()


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    node_id: bytes
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_authority(name: str = "test-chain") -> Authority:
    key = key_for(f"ca {name}")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consortia"),
        ]
    )
    permitted: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.IPv4Network("127.0.0.0/8")),
        x509.DNSName("localhost"),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - HOUR)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


def issue(
    authority: Authority | None,
    node: bytes,
    *,
    not_before: datetime.datetime = NOW - HOUR,
    not_after: datetime.datetime = NOW + 30 * DAY,
    common_name: str | None = None,
    uri_id: bytes | None = None,
    key_name: str | None = None,
) -> Identity:
    """A node certificate for `node` signed by `authority`, or self-signed when it is None."""
    key = key_for(key_name or f"node {node.hex()}")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or node.hex()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Bank"),
        ]
    )
    issuer_key = authority.key if authority else key
    issuer_name = authority.certificate.subject if authority else subject
    names = [
        x509.IPAddress(ipaddress.ip_address(LOCALHOST)),
        x509.UniformResourceIdentifier(f"consortia:node:{(uri_id or node).hex()}"),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return Identity(node, key, certificate)


def contexts(authority: Authority, identity: Identity) -> TlsContexts:
    """The contexts of a node holding `identity` that trusts `authority`."""
    return contexts_from_pem(authority.pem, identity.pem, identity.key)


FAST = TransportLimits(
    backoff_initial_s=0.01,
    backoff_max_s=0.2,
    handshake_timeout_s=3.0,
    connect_timeout_s=2.0,
    close_timeout_s=1.0,
)


@dataclass
class Node:
    """A transport and everything it received, for tests."""

    identity: Identity
    transport: Transport
    received: list[tuple[bytes, bytes]] = field(default_factory=list)
    allowed: set[bytes] | None = None  # None: allow every node id
    failure: Exception | None = None  # raised by on_frame when set
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.listen_address

    def frames_from(self, peer: bytes) -> list[bytes]:
        return [frame for sender, frame in self.received if sender == peer]


def make_node(
    authority: Authority,
    identity: Identity,
    peers: dict[bytes, tuple[str, int]] | None = None,
    *,
    port: int = 0,
    limits: TransportLimits = FAST,
    seed: int = 1,
    trust: Authority | None = None,
) -> Node:
    """A node that trusts `trust` (default: `authority`, which issued `identity`)."""
    holder: list[Node] = []

    def on_frame(peer: bytes, frame: bytes) -> None:
        if holder[0].failure is not None:
            raise holder[0].failure
        holder[0].received.append((peer, frame))
        holder[0].arrived.set()

    def is_allowed(peer: bytes) -> bool:
        allowed = holder[0].allowed
        return allowed is None or peer in allowed

    transport = Transport(
        identity.node_id,
        (LOCALHOST, port),
        peers=peers or {},
        tls=contexts(trust or authority, identity),
        on_frame=on_frame,
        is_allowed=is_allowed,
        rng=random.Random(seed),
        limits=limits,
    )
    node = Node(identity, transport)
    holder.append(node)
    return node


async def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait until `condition()` holds, checking after every short pause; fail after
    `timeout_s`. The pause is a polling step, never a fixed wait that a test relies on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def mesh(nodes: Iterable[Node]) -> None:
    """Wait until every node has an open link to every other."""
    group = list(nodes)
    for node in group:
        others = [other.node_id for other in group if other is not node]
        assert await node.transport.wait_connected(others, WAIT_S), "mesh did not form"


TEST_TIMEOUT_S = 60.0


def run(scenario: Callable[[], Coroutine[Any, Any, None]], loop: str = "asyncio") -> None:
    """Run one async scenario on a fresh event loop ("asyncio" or "uvloop"), bounded."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), TEST_TIMEOUT_S)

    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


async def raw_link(
    authority: Authority,
    identity: Identity,
    address: tuple[str, int],
    *,
    preamble: bytes = PREAMBLE,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven TLS link to a transport, as a peer holding `identity` (trusting
    `authority`): it writes `preamble` and, when that is the right one, reads the
    transport's."""
    _, client = contexts(authority, identity)
    reader, writer = await asyncio.open_connection(*address, ssl=client)
    writer.write(preamble)
    await writer.drain()
    if preamble == PREAMBLE:
        assert await reader.readexactly(len(PREAMBLE)) == PREAMBLE
    return reader, writer

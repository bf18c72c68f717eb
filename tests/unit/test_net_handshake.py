"""Refused handshakes over real sockets: every certificate a consortium node must not accept,
in both directions, and revocations that take effect at once. Each refusal is counted by
reason and logged with the node's id."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from structlog.testing import capture_logs

from consortia.identity import certificates
from consortia.net import CloseReason, Refusal, TransportLimits, contexts_from_pem, peer_node_id
from consortia.net.frames import PREAMBLE
from tests.unit.test_net_support import (
    DAY,
    NOW,
    Authority,
    Identity,
    Node,
    contexts,
    eventually,
    issue,
    make_authority,
    make_node,
    mesh,
    node_id,
    run,
)

GOOD = 0


async def _close(*nodes: Node) -> None:
    for node in nodes:
        await node.transport.close()


async def _expect_refusal(
    ca: Authority, rogue: Identity, *, inbound: bool, reason: Refusal
) -> list[dict[str, Any]]:
    """The good node refuses a link with `rogue` (which trusts `ca`): the rogue dials it
    (`inbound`) or it dials the rogue. Returns the good node's log entries."""
    with capture_logs() as logs:
        good = make_node(ca, issue(ca, node_id(GOOD)))
        await good.transport.start()
        if inbound:
            other = make_node(ca, rogue, {good.node_id: good.address}, trust=ca)
            await other.transport.start()
        else:
            other = make_node(ca, rogue, trust=ca)
            await other.transport.start()
            good.transport.add_peer(rogue.node_id, other.address)
        await eventually(lambda: good.transport.counters.refusals[reason] >= 2)
        assert good.transport.connected() == set()
        assert good.received == []
        await _close(good, other)
    good_hex = node_id(GOOD).hex()
    return [entry for entry in logs if entry.get("node_id") == good_hex]


def _refusals(logs: list[dict[str, Any]], reason: Refusal) -> list[dict[str, Any]]:
    return [
        entry
        for entry in logs
        if entry["event"] == "handshake refused" and entry["reason"] == str(reason)
    ]


@pytest.mark.parametrize("inbound", [True, False], ids=["inbound", "outbound"])
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("self_signed", Refusal.SELF_SIGNED),
        ("other_ca", Refusal.UNKNOWN_CA),
        ("expired", Refusal.EXPIRED),
        ("not_yet_valid", Refusal.NOT_YET_VALID),
    ],
)
def test_certificates_the_consortium_ca_does_not_vouch_for_are_refused(
    case: str, reason: Refusal, inbound: bool
) -> None:
    async def scenario() -> None:
        ca = make_authority()
        rogue_id = node_id(7)
        rogue = {
            "self_signed": lambda: issue(None, rogue_id),
            "other_ca": lambda: issue(make_authority("other"), rogue_id),
            "expired": lambda: issue(ca, rogue_id, not_before=NOW - 9 * DAY, not_after=NOW - DAY),
            "not_yet_valid": lambda: issue(
                ca, rogue_id, not_before=NOW + DAY, not_after=NOW + 9 * DAY
            ),
        }[case]()
        logs = await _expect_refusal(ca, rogue, inbound=inbound, reason=reason)
        (first, *_) = _refusals(logs, reason)
        assert first["log_level"] == "warning"
        assert "certificate verify failed" in first["detail"]

    run(scenario)


def test_a_dialled_peer_presenting_another_nodes_valid_certificate_is_refused() -> None:
    async def scenario() -> None:
        ca = make_authority()
        impostor = make_node(ca, issue(ca, node_id(2)))  # a real node, but not the one dialled
        await impostor.transport.start()
        with capture_logs() as logs:
            good = make_node(ca, issue(ca, node_id(GOOD)), {node_id(1): impostor.address})
            await good.transport.start()
            await eventually(lambda: good.transport.counters.refusals[Refusal.WRONG_NODE_ID] >= 2)
        assert good.transport.connected() == set()  # neither node 1 nor node 2
        (entry, *_) = _refusals(logs, Refusal.WRONG_NODE_ID)
        assert entry["peer_id"] == node_id(2).hex()
        assert node_id(1).hex() in entry["detail"]
        await _close(good, impostor)

    run(scenario)


def test_a_certificate_whose_cn_and_uri_name_different_nodes_is_refused() -> None:
    async def scenario() -> None:
        ca = make_authority()
        split = issue(ca, node_id(3), uri_id=node_id(4))
        await _expect_refusal(ca, split, inbound=True, reason=Refusal.NO_NODE_ID)

    run(scenario)


def test_a_peer_claiming_this_nodes_own_id_is_refused() -> None:
    async def scenario() -> None:
        ca = make_authority()
        good = make_node(ca, issue(ca, node_id(GOOD)))
        await good.transport.start()
        twin = issue(ca, node_id(GOOD), key_name="twin key")
        _, client = contexts(ca, twin)
        reader, writer = await asyncio.open_connection(*good.address, ssl=client)
        writer.write(PREAMBLE)
        assert await reader.read() == b""  # refused: never the transport's preamble
        writer.close()
        assert good.transport.counters.refusals[Refusal.OWN_ID] == 1
        await _close(good)

    run(scenario)


def test_a_revoked_node_is_refused_at_the_handshake_and_told_so() -> None:
    async def scenario() -> None:
        ca = make_authority()
        good = make_node(ca, issue(ca, node_id(GOOD)))
        good.allowed = set()  # node 1 is not (or no longer) a validator
        await good.transport.start()
        revoked = make_node(ca, issue(ca, node_id(1)), {good.node_id: good.address})
        await revoked.transport.start()
        await eventually(lambda: good.transport.counters.refusals[Refusal.NOT_ALLOWED] >= 2)
        # The refused side learns it was refused, and keeps backing off.
        await eventually(
            lambda: revoked.transport.counters.closes[CloseReason.REFUSED_BY_PEER] >= 2
        )
        assert good.transport.connected() == revoked.transport.connected() == set()
        # A node never dials a peer it refuses.
        good.transport.add_peer(revoked.node_id, revoked.address)
        assert good.transport.counters.dials == 0
        await _close(good, revoked)

    run(scenario)


def test_is_allowed_is_asked_at_every_handshake() -> None:
    async def scenario() -> None:
        ca = make_authority()
        asked: list[bytes] = []
        good = make_node(ca, issue(ca, node_id(GOOD)))
        await good.transport.start()
        original = good.transport._is_allowed

        def counting(peer: bytes) -> bool:
            asked.append(peer)
            return original(peer)

        good.transport._is_allowed = counting
        for round_ in range(3):
            peer = make_node(ca, issue(ca, node_id(1)), {good.node_id: good.address})
            await peer.transport.start()
            await mesh([good, peer])
            assert asked.count(node_id(1)) == round_ + 1
            await peer.transport.close()
            await eventually(lambda: good.transport.connected() == set())
        await _close(good)

    run(scenario)


@pytest.mark.parametrize("how", ["enforce_allowed", "disconnect"])
def test_a_revocation_drops_a_live_link_at_once(how: str) -> None:
    async def scenario() -> None:
        ca = make_authority()
        good = make_node(ca, issue(ca, node_id(GOOD)))
        await good.transport.start()
        peers = [make_node(ca, issue(ca, node_id(i)), {good.node_id: good.address}) for i in (1, 2)]
        for peer in peers:
            await peer.transport.start()
            await mesh([good, peer])
        revoked, kept = peers
        good.allowed = {kept.node_id}
        good.transport.send(revoked.node_id, b"queued for the revoked node")
        if how == "enforce_allowed":
            assert good.transport.enforce_allowed() == 1
        else:
            assert good.transport.disconnect(revoked.node_id) == 1
        assert revoked.node_id not in good.transport.connected()
        await eventually(lambda: good.transport.counters.closes[CloseReason.DISCONNECTED] == 1)
        # It dials back and is refused; the other link never dropped.
        await eventually(lambda: good.transport.counters.refusals[Refusal.NOT_ALLOWED] >= 1)
        assert good.transport.connected() == {kept.node_id}
        assert revoked.received == []
        await _close(good, *peers)

    run(scenario)


def test_a_peer_speaking_anything_but_tls_13_is_refused() -> None:
    async def scenario() -> None:
        ca = make_authority()
        limits = TransportLimits(handshake_timeout_s=2.0)  # a loaded machine stalls too
        node = make_node(ca, issue(ca, node_id(GOOD)), limits=limits)
        await node.transport.start()
        refusals = node.transport.counters.refusals

        # Plain text instead of a ClientHello.
        reader, writer = await asyncio.open_connection(*node.address)
        writer.write(b"GET / HTTP/1.1\r\nHost: consortia\r\n\r\n")
        await reader.read()
        writer.close()
        await eventually(lambda: refusals[Refusal.TLS_ERROR] == 1)

        # A client that offers TLS 1.2 at most, with a valid consortium certificate.
        _, old = contexts(ca, issue(ca, node_id(1)))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        old.minimum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            await asyncio.open_connection(*node.address, ssl=old)
        await eventually(lambda: refusals[Refusal.TLS_ERROR] == 2)

        # A TCP connection that never starts its handshake.
        _, silent = await asyncio.open_connection(*node.address)
        await eventually(lambda: refusals[Refusal.TIMEOUT] == 1)
        silent.close()
        assert node.transport.connected() == set()
        await eventually(lambda: node.transport.link_count == 0)
        await _close(node)

    run(scenario)


def test_certificates_from_the_identity_package_carry_the_id_the_transport_reads() -> None:
    """The conventions of consortia.identity (CN and URI) and of consortia.net agree."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = certificates.generate_tls_key()
    ca = certificates.create_ca_certificate(
        ca_key, "conformance", now, certificates.permitted_names(["127.0.0.1"])
    )
    key = certificates.generate_tls_key()
    issued = certificates.issue_node_certificate(
        ca_key,
        ca,
        node_id=node_id(9),
        member="Conformance Bank",
        host="127.0.0.1",
        public_key=key.public_key(),
        now=now,
    )
    assert peer_node_id(issued.public_bytes(Encoding.DER)) == node_id(9)
    contexts_from_pem(certificates.certificate_pem(ca), certificates.certificate_pem(issued), key)

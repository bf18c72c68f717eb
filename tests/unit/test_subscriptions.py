"""Chain subscriptions over server-sent events: replay from a height, live follow, resume
without gap or duplicate, filters, bounds, the lagging subscriber, and the SDK's reconnection.

Commits are driven explicitly: the tests play the replica's part and hand a node's driver a
`Commit` of blocks built here (the driver executes and records them, then tells its
listeners, exactly as for a commit the replica decided). One test runs a real in-process
network to show a commit the replicas decide reaches a subscriber. Streams are read through
an ASGI transport that streams (httpx's own buffers a whole response), with timeouts only as
a safety net.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from rich.console import Console

from consortia.api import create_app
from consortia.api.openapi import openapi_document
from consortia.cli.events_commands import event_row
from consortia.client import AsyncClient, ClientError, Reconnect
from consortia.consensus.events import Commit
from consortia.node.driver import Driver
from consortia.node.service import NodeService
from consortia.node.subscriptions import SubscriptionHub
from consortia.types.consensus import Block, QuorumCertificate
from consortia.types.signing import block_id, merkle_root
from tests.node_helpers import (
    SUITE,
    Hub,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
)
from tests.sse_helpers import SAFETY_S, Stream, StreamingASGI

# ---------------------------------------------------------------------- a node driven by hand


class Node:
    """A node's driver, API and subscription hub, whose commits the test decides."""

    def __init__(self, driver: Driver, service: NodeService, transport: StreamingASGI) -> None:
        self.driver, self.service, self.transport = driver, service, transport
        self.genesis = make_genesis(4)
        self.nonces: dict[str, int] = {}
        self.http = httpx.AsyncClient(transport=transport, base_url="http://node")

    @property
    def hub(self) -> SubscriptionHub:
        return self.service.subscriptions

    @property
    def height(self) -> int:
        return self.driver.chain.height

    def commit(self, *transfers: tuple[str, str, int]) -> int:
        """Commit one block carrying these transfers (sender, recipient, amount); its height."""
        payload = []
        for sender, to, amount in transfers:
            nonce = self.nonces.get(sender, 0)
            self.nonces[sender] = nonce + 1
            payload.append(transfer(self.genesis, sender, to, amount, nonce))
        chain = self.driver.chain
        tip = chain.store.tip()
        parent_id = tip.block_id if tip is not None else chain.genesis_id
        height = chain.height + 1
        header = msgspec.structs.replace(
            chain.genesis_block.header,
            height=height,
            round=height,
            parent_id=parent_id,
            timestamp_ms=1000 * height,
            payload_root=merkle_root(SUITE, payload),
            payload_count=len(payload),
        )
        block = Block(header=header, payload=payload)
        qc = QuorumCertificate(
            epoch=0, round=height, block_id=block_id(SUITE, header), height=height, signatures=[]
        )
        self.driver._commit(Commit(blocks=[block], certificate=qc, proof=qc))
        return height

    async def open(self, path: str, headers: dict[str, str] | None = None) -> Stream:
        request = self.http.build_request("GET", path, headers=headers)
        response = await self.http.send(request, stream=True)
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        return Stream(response)

    async def attached(self) -> None:
        """Until every subscription has caught up with the store and waits for commits."""
        for _ in range(10_000):
            if all(not s.behind for s in self.hub._subscriptions):
                return
            await asyncio.sleep(0)
        raise AssertionError("a subscription never caught up")


def with_node(
    tmp_path: Path,
    test: Callable[[Node], Awaitable[None]],
    *,
    hub: SubscriptionHub | None = None,
    keepalive_s: float = 15.0,
) -> None:
    async def scenario() -> None:
        network = Hub(asyncio.get_running_loop(), random.Random(1))
        driver = make_driver(network, make_genesis(4), tmp_path, validator_keys(4)[0])
        service = NodeService(
            driver,
            driver.replica.node_id,
            set,
            subscriptions=hub if hub is not None else SubscriptionHub(),
        )
        transport = StreamingASGI(create_app(service, keepalive_s=keepalive_s))
        node = Node(driver, service, transport)
        try:
            await test(node)
        finally:
            service.subscriptions.close()
            await node.http.aclose()
            driver.close()
            driver.chain.store.close()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- blocks


def test_blocks_replay_from_a_height_then_follow_live_commits(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        for _ in range(3):
            node.commit(("alice", "bob", 1))
        stream = await node.open("/v1/subscribe/blocks?from=2")
        replayed = [await stream.next() for _ in range(2)]
        assert [(i, e, d["height"]) for i, e, d in replayed] == [
            ("2", "block", 2),
            ("3", "block", 3),
        ]
        stored = node.driver.chain.store
        for _, _, data in replayed:
            assert data["hash"] == stored.commit_record(data["height"]).certificate.block_id.hex()
            assert data["tx_count"] == 1 and data["timestamp_ms"] == 1000 * data["height"]
        await node.attached()
        node.commit(("carol", "dave", 5), ("dave", "carol", 1))
        message_id, _, live = await stream.next()
        assert message_id == "4" and live["height"] == 4 and live["tx_count"] == 2
        assert live["parent_hash"] == replayed[1][2]["hash"]
        assert live["state_root"] == stored.tip().state_root.hex()  # type: ignore[union-attr]
        await stream.response.aclose()
        assert len(node.hub) == 0  # the place is given back when the client goes

    with_node(tmp_path, test)


def test_without_from_a_stream_starts_after_the_tip_and_from_beyond_the_tip_waits(
    tmp_path: Path,
) -> None:
    async def test(node: Node) -> None:
        node.commit()
        fresh = await node.open("/v1/subscribe/blocks")
        ahead = await node.open("/v1/subscribe/blocks?from=4")
        await node.attached()
        for _ in range(3):
            node.commit()
        assert [(await fresh.next())[0] for _ in range(3)] == ["2", "3", "4"]
        assert (await ahead.next())[0] == "4"

    with_node(tmp_path, test)


def test_a_block_stream_resumes_after_last_event_id_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    async def test(node: Node) -> None:
        for _ in range(5):
            node.commit()
        first = await node.open("/v1/subscribe/blocks?from=1")
        seen = [(await first.next())[0] for _ in range(2)]
        await first.response.aclose()
        node.commit()
        # Last-Event-ID wins over from: it is the client reconnecting.
        again = await node.open("/v1/subscribe/blocks?from=1", {"Last-Event-ID": seen[-1]})
        seen += [(await again.next())[0] for _ in range(4)]
        assert seen == ["1", "2", "3", "4", "5", "6"]

    with_node(tmp_path, test)


def test_keep_alive_comments_flow_while_nothing_commits(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        stream = await node.open("/v1/subscribe/blocks")
        assert await stream.next_comment() == ": keep-alive"
        node.commit()
        assert (await stream.next())[0] == "1"

    with_node(tmp_path, test, keepalive_s=0.01)


# ---------------------------------------------------------------------- events


def _transfers(node: Node) -> None:
    node.commit(("alice", "bob", 1), ("carol", "dave", 2))  # height 1: events 0, 1
    node.commit(("bob", "carol", 3))  # height 2: event 0
    node.commit(("dave", "alice", 4), ("alice", "carol", 5))  # height 3: events 0, 1


def test_events_replay_with_ids_that_name_their_block_and_place(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        _transfers(node)
        stream = await node.open("/v1/subscribe/events?from=1")
        events = [await stream.next() for _ in range(5)]
        assert [i for i, _, _ in events] == ["1:0", "1:1", "2:0", "3:0", "3:1"]
        _, kind, first = events[0]
        assert kind == "chain_event"
        assert first["contract"] == "asset" and first["name"] == "transferred"
        assert first["attributes"] == {
            "currency": "CNY",
            "amount": 1,
            "source": "alice",
            "target": "bob",
        }
        receipt = node.driver.chain.store.receipt(bytes.fromhex(first["tx_hash"]))
        assert receipt is not None and (receipt.height, receipt.index) == (1, 0)
        assert (first["height"], first["index"], first["tx_index"]) == (1, 0, 0)
        await node.attached()
        node.commit(("bob", "alice", 6))
        message_id, _, live = await stream.next()
        assert message_id == "4:0" and live["attributes"]["source"] == "bob"
        replayed = await node.open("/v1/subscribe/events?from=4")
        assert await replayed.next() == (message_id, "chain_event", live)

    with_node(tmp_path, test)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("account=bob", ["1:0", "2:0"]),
        ("account=carol", ["1:1", "2:0", "3:1"]),
        ("account=carol&event=transferred&contract=asset", ["1:1", "2:0", "3:1"]),
        ("account=carol&contract=identity", []),
        ("event=issued", []),
        ("contract=asset", ["1:0", "1:1", "2:0", "3:0", "3:1"]),
    ],
)
def test_event_filters_combine_with_and(tmp_path: Path, query: str, expected: list[str]) -> None:
    async def test(node: Node) -> None:
        _transfers(node)
        stream = await node.open(f"/v1/subscribe/events?from=1&{query}")
        seen = [(await stream.next())[0] for _ in expected]
        await node.attached()  # the whole history read: nothing more matched
        node.hub.close()
        assert await stream.ended()
        assert seen == expected

    with_node(tmp_path, test)


def test_an_event_stream_resumes_inside_a_block_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    async def test(node: Node) -> None:
        _transfers(node)
        first = await node.open("/v1/subscribe/events?from=1")
        seen = [(await first.next())[0] for _ in range(4)]  # up to 3:0, inside block 3
        await first.response.aclose()
        node.commit(("bob", "dave", 1))
        again = await node.open("/v1/subscribe/events", {"Last-Event-ID": seen[-1]})
        seen += [(await again.next())[0] for _ in range(2)]
        assert seen == ["1:0", "1:1", "2:0", "3:0", "3:1", "4:0"]

    with_node(tmp_path, test)


# ---------------------------------------------------------------------- bounds and errors


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/v1/subscribe/blocks?from=abc", {}, "bad_argument"),
        ("/v1/subscribe/blocks?from=-1", {}, "bad_argument"),
        ("/v1/subscribe/blocks?from=" + "9" * 20, {}, "bad_argument"),
        ("/v1/subscribe/blocks?from=1&from=2", {}, "bad_argument"),
        ("/v1/subscribe/blocks?contract=asset", {}, "unknown_parameter"),
        ("/v1/subscribe/events?contact=asset", {}, "unknown_parameter"),
        ("/v1/subscribe/events?contract=", {}, "bad_argument"),
        ("/v1/subscribe/events?account=" + "a" * 129, {}, "bad_argument"),
        ("/v1/subscribe/blocks", {"Last-Event-ID": "3:1"}, "bad_last_event_id"),
        ("/v1/subscribe/events", {"Last-Event-ID": "3"}, "bad_last_event_id"),
        ("/v1/subscribe/events", {"Last-Event-ID": "x:1"}, "bad_last_event_id"),
    ],
)
def test_bad_parameters_are_400_with_a_code(
    tmp_path: Path, path: str, headers: dict[str, str], code: str
) -> None:
    async def test(node: Node) -> None:
        answer = await node.http.get(path, headers=headers)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == code
        assert len(node.hub) == 0

    with_node(tmp_path, test)


def test_subscribers_beyond_the_maximum_are_refused_with_503(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        streams = [await node.open("/v1/subscribe/blocks"), await node.open("/v1/subscribe/events")]
        refused = await node.http.get("/v1/subscribe/blocks")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_subscribers"
        await streams[0].response.aclose()
        replacement = await node.open("/v1/subscribe/blocks")  # a freed place is taken again
        await node.attached()
        node.commit()
        assert (await replacement.next())[0] == "1"

    with_node(tmp_path, test, hub=SubscriptionHub(subscribers_max=2))


def test_a_lagging_subscriber_goes_back_to_the_store_and_misses_nothing(tmp_path: Path) -> None:
    """A subscriber that does not read while blocks commit: its queue never holds more than
    its bound, the hub drops it and counts a lag, and the subscriber then reads what it
    missed from the store, in order, and is handed live commits again once caught up."""

    async def test(node: Node) -> None:
        stream = await node.open("/v1/subscribe/blocks?from=1")
        await node.attached()
        (subscription,) = node.hub._subscriptions
        for _ in range(6):  # the subscriber's task does not run between these commits
            node.commit(("alice", "bob", 1))
            assert len(subscription.queue) <= 2
        assert subscription.behind and node.hub.lags == 1 and not subscription.queue
        assert [(await stream.next())[0] for _ in range(6)] == ["1", "2", "3", "4", "5", "6"]
        await node.attached()
        node.commit()
        assert len(subscription.queue) == 1  # live again: handed the commit
        assert (await stream.next())[0] == "7"
        assert node.hub.lags == 1

    with_node(tmp_path, test, hub=SubscriptionHub(queue_blocks_max=2))


def test_a_stopping_node_ends_its_streams_and_opens_none(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        stream = await node.open("/v1/subscribe/events")
        await node.attached()
        node.hub.close()
        assert await stream.ended()
        refused = await node.http.get("/v1/subscribe/blocks")
        assert refused.json()["error"]["code"] == "too_many_subscribers"

    with_node(tmp_path, test)


def test_the_openapi_document_describes_the_subscriptions() -> None:
    paths = openapi_document()["paths"]
    for path in ("/v1/subscribe/blocks", "/v1/subscribe/events"):
        get = paths[path]["get"]
        assert "text/event-stream" in get["responses"]["200"]["content"]
        assert {"400", "503"} <= set(get["responses"])
    names = {p["name"] for p in paths["/v1/subscribe/events"]["get"]["parameters"]}
    assert names == {"from", "contract", "event", "account", "Last-Event-ID"}


# ---------------------------------------------------------------------- the SDK


def test_the_sdk_resumes_a_dropped_stream_from_the_last_id(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        _transfers(node)
        client = AsyncClient("http://node", transport=node.transport)
        fast = Reconnect(attempts=3, backoff_s=0.001)
        events = client.subscribe_events(1, account="carol", retry=fast)
        seen = [await asyncio.wait_for(anext(events), SAFETY_S) for _ in range(2)]
        # Cut the connection under the client: the node sees it go, the SDK reconnects.
        node.transport.refuse = 2  # and the first two reconnections fail
        node.transport.drop()
        seen.append(await asyncio.wait_for(anext(events), SAFETY_S))
        assert [(e["height"], e["index"]) for e in seen] == [(1, 1), (2, 0), (3, 1)]
        resumed = node.transport.requests[-1]
        assert resumed.headers["last-event-id"] == "2:0"
        assert resumed.url.params["account"] == "carol"
        await events.aclose()  # type: ignore[attr-defined]
        await client.close()

    with_node(tmp_path, test)


def test_the_sdk_pins_the_next_block_when_no_height_is_given(tmp_path: Path) -> None:
    """Without a height the SDK asks the node's and starts after it, so a stream dropped
    before its first message resumes where it began, not at a later tip."""

    async def test(node: Node) -> None:
        node.commit()
        node.commit()
        client = AsyncClient("http://node", transport=node.transport)
        blocks = client.subscribe_blocks(retry=Reconnect(attempts=1, backoff_s=0.001))
        pending = asyncio.ensure_future(anext(blocks))
        for _ in range(10_000):
            if len(node.hub) and all(not s.behind for s in node.hub._subscriptions):
                break
            await asyncio.sleep(0)
        node.transport.drop()  # before any message
        node.commit()
        block = await asyncio.wait_for(pending, SAFETY_S)
        assert block["height"] == 3
        assert all(r.url.params.get("from") == "3" for r in node.transport.requests[1:])
        await blocks.aclose()  # type: ignore[attr-defined]
        await client.close()

    with_node(tmp_path, test)


def test_the_sdk_gives_up_after_its_reconnections_with_a_clear_error(tmp_path: Path) -> None:
    async def test(node: Node) -> None:
        client = AsyncClient("http://node", transport=node.transport)
        node.transport.refuse = 100
        blocks = client.subscribe_blocks(1, retry=Reconnect(attempts=2, backoff_s=0.001))
        with pytest.raises(ClientError) as raised:
            await asyncio.wait_for(anext(blocks), SAFETY_S)
        assert raised.value.code == "subscription_lost"
        assert len(node.transport.requests) == 3  # the first try and two reconnections
        node.transport.refuse = 0
        with pytest.raises(ClientError) as bad:  # a refusal that is final: no reconnection
            await asyncio.wait_for(anext(client.subscribe_events(contract="x" * 200)), SAFETY_S)
        assert bad.value.code == "bad_argument" and bad.value.status == 400
        assert len(node.transport.requests) == 5  # /v1/status, then the refused stream
        await client.close()

    with_node(tmp_path, test)


def test_commits_the_replicas_decide_reach_a_subscriber(tmp_path: Path) -> None:
    """A real in-process network: a transfer submitted through the API is seen on the event
    stream of the node that serves it (the driver's durable commit wakes the hub)."""

    async def scenario() -> None:
        network = Hub(asyncio.get_running_loop(), random.Random(3))
        genesis = make_genesis(4)
        drivers = [make_driver(network, genesis, tmp_path, key) for key in validator_keys(4)]
        for driver in drivers:
            driver.start()
        service = NodeService(drivers[0], drivers[0].replica.node_id, set)
        transport = StreamingASGI(create_app(service))
        async with AsyncClient("http://node", transport=transport) as client:
            events = client.subscribe_events(1, account="dave")
            await client.submit(transfer(genesis, "carol", "dave", 7, 0))
            event = await asyncio.wait_for(anext(events), 30)
            assert event["attributes"]["target"] == "dave" and event["attributes"]["amount"] == 7
            blocks = client.subscribe_blocks(event["height"])
            block = await asyncio.wait_for(anext(blocks), SAFETY_S)
            assert block["height"] == event["height"] and block["tx_count"] >= 1
            await events.aclose()  # type: ignore[attr-defined]
            await blocks.aclose()  # type: ignore[attr-defined]
        service.subscriptions.close()
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def test_the_events_command_prints_one_row_an_event_with_the_header_once() -> None:
    console = Console(width=160, record=True)
    item = {
        "height": 12,
        "index": 3,
        "tx_hash": "ab" * 32,
        "contract": "asset",
        "name": "transferred",
        "attributes": {"source": "alice", "target": "bob", "amount": 5},
    }
    console.print(event_row(item, header=True))
    console.print(event_row(item, header=False))
    text = console.export_text()
    assert text.count("contract") == 1 and text.count("transferred") == 2
    assert "abababababab…" in text and '"target":"bob"' in text

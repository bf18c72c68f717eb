"""Server-sent event streams that follow the chain: `GET /v1/subscribe/blocks` and
`GET /v1/subscribe/events`.

A stream replays committed history from the store, from the height asked for, then follows
live commits (the node's `SubscriptionHub` hands each subscriber the blocks it recorded, in a
bounded queue; a subscriber that falls behind reads the store again). Every message carries an
`id:` (`<height>` for a block, `<height>:<index>` for an event, `index` the event's position
among all events of its block), so a client that reconnects with `Last-Event-ID` (or
`from=`) resumes exactly after the last message it saw: no gap, no duplicate. A comment line
(`: keep-alive`) goes out after KEEPALIVE_S without a message.

Event filters (`contract`, `event`, `account`) combine with AND. `account=A` matches an event
one of whose ACCOUNT_ATTRIBUTES is the string A.

Owns the parameters, the stream's loop and the messages' form. Must never write the store or
change node state, never read more than one block ahead of what the client has taken, and
never hold the event loop for a whole replay (it yields between stored blocks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from consortia.node.service import NodeService
from consortia.node.subscriptions import Subscription, TooManySubscribersError
from consortia.types.consensus import Block

if TYPE_CHECKING:
    from consortia.storage import StoredReceipt

KEEPALIVE_S: Final = 15.0
# Event attributes that name an account: `account=A` matches an event whose value under one
# of these names is exactly the string A.
ACCOUNT_ATTRIBUTES: Final = frozenset(
    {
        "account",
        "bank",
        "by",
        "debtor",
        "holder",
        "member",
        "proposer",
        "seller",
        "source",
        "sponsor",
        "target",
        "to",
    }
)
FILTER_CHARS_MAX: Final = 128
# Messages of one block are sent in chunks of about this many bytes.
CHUNK_BYTES: Final = 64 * 1024
# Receipts read from the store between two yields of the event loop.
RECEIPTS_PER_YIELD: Final = 256
# What a browser's EventSource waits before it reconnects.
RETRY_MS: Final = 2000
# A number in a path, a query or a header: at most 19 decimal digits.
HEIGHT_DIGITS_MAX: Final = 19
_PARAMETERS: Final = {"blocks": {"from"}, "events": {"from", "contract", "event", "account"}}
_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _RefusedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class Start:
    """Where a stream begins: the first height, and at that height the events already seen
    (those of index up to `after_index`; -1 for none)."""

    height: int | None  # None: after the tip at the time of the request
    after_index: int = -1


@dataclass(frozen=True, slots=True)
class EventFilter:
    contract: str | None = None
    event: str | None = None
    account: str | None = None

    def matches(self, contract: str, name: str, attributes: dict[str, Any]) -> bool:
        if self.contract is not None and contract != self.contract:
            return False
        if self.event is not None and name != self.event:
            return False
        if self.account is not None:
            return any(
                key in ACCOUNT_ATTRIBUTES and value == self.account
                for key, value in attributes.items()
            )
        return True


# ---------------------------------------------------------------------- parameters


def parse_start(kind: str, from_: str | None, last_event_id: str | None) -> Start:
    """The stream's start from `from` and `Last-Event-ID` (which wins: it is a reconnect)."""
    if last_event_id is not None:
        head, colon, tail = last_event_id.strip().partition(":")
        if kind == "blocks" and not colon and is_decimal(head):
            return Start(int(head) + 1)
        if kind == "events" and colon and is_decimal(head) and is_decimal(tail):
            return Start(int(head), int(tail))
        form = "<height>" if kind == "blocks" else "<height>:<index>"
        raise _RefusedError("bad_last_event_id", f"Last-Event-ID must be {form}")
    if from_ is None:
        return Start(None)
    if not is_decimal(from_):
        raise _RefusedError("bad_argument", "from must be a non-negative integer height")
    return Start(max(int(from_), 1))


def is_decimal(text: str, digits_max: int = HEIGHT_DIGITS_MAX) -> bool:
    """Whether `text` is a non-negative integer in 1 to `digits_max` ASCII decimal digits: the
    API's one check of a number in a path, a query or a header (`str.isdigit` alone also takes
    "١٢" or "²", which `int` reads as 12 or refuses with a ValueError)."""
    return text.isascii() and text.isdigit() and len(text) <= digits_max


def _parameters(request: Request, kind: str) -> tuple[Start, EventFilter]:
    params = request.query_params
    unknown = sorted(set(params.keys()) - _PARAMETERS[kind])
    if unknown:
        raise _RefusedError("unknown_parameter", f"unknown parameter {unknown[0]!r}")
    values: dict[str, str | None] = {}
    for name in _PARAMETERS[kind]:
        given = params.getlist(name)
        if len(given) > 1:
            raise _RefusedError("bad_argument", f"{name} is given once")
        value = given[0] if given else None
        if name != "from" and value is not None and not 0 < len(value) <= FILTER_CHARS_MAX:
            raise _RefusedError("bad_argument", f"{name} is 1 to {FILTER_CHARS_MAX} characters")
        values[name] = value
    start = parse_start(kind, values["from"], request.headers.get("last-event-id"))
    return start, EventFilter(values.get("contract"), values.get("event"), values.get("account"))


# ---------------------------------------------------------------------- messages


def _message(message_id: str, data: dict[str, Any], event: str) -> bytes:
    return b"".join(
        (
            f"id: {message_id}\nevent: {event}\ndata: ".encode(),
            msgspec.json.encode(data, order="sorted"),  # the same bytes live or replayed
            b"\n\n",
        )
    )


def _block_summary(block: Block, block_hash: bytes, state_root: bytes | None) -> dict[str, Any]:
    header = block.header
    return {
        "height": header.height,
        "hash": block_hash.hex(),
        "parent_hash": header.parent_id.hex(),
        "epoch": header.epoch,
        "round": header.round,
        "timestamp_ms": header.timestamp_ms,
        "tx_count": len(block.payload),
        "state_root": None if state_root is None else state_root.hex(),
    }


def _event_messages(
    height: int, receipts: list[StoredReceipt], after_index: int, wanted: EventFilter
) -> Iterator[bytes]:
    index = -1
    for receipt in receipts:
        for event in receipt.events:
            index += 1
            if index <= after_index or not wanted.matches(event.contract, event.name, event.fields):
                continue
            data = {
                "height": height,
                "index": index,
                "tx_hash": receipt.tx_id.hex(),
                "tx_index": receipt.index,
                "contract": event.contract,
                "name": event.name,
                "attributes": event.fields,
            }
            yield _message(f"{height}:{index}", data, "chain_event")


def _chunks(messages: Iterator[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    size = 0
    for message in messages:
        pending.append(message)
        size += len(message)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


# ---------------------------------------------------------------------- the stream


class _Reader:
    """A block's parts from the store, as a stored commit recorded them."""

    def __init__(self, service: NodeService) -> None:
        self.service = service

    def block(self, height: int) -> tuple[Block, bytes]:
        store = self.service.chain.store
        block, record = store.block(height), store.commit_record(height)
        assert block is not None and record is not None, f"committed block {height} is missing"
        return block, record.certificate.block_id

    async def receipts(self, height: int, block: Block) -> list[StoredReceipt]:
        """The block's receipts, in block order: a transaction whose stored receipt belongs
        to another block (a failed copy of a committed transaction) produced nothing here."""
        chain = self.service.chain
        receipts = []
        for position, raw in enumerate(block.payload):
            receipt = chain.store.receipt(chain.engine.receipt_id(raw))
            if receipt is not None and (receipt.height, receipt.index) == (height, position):
                receipts.append(receipt)
            if position % RECEIPTS_PER_YIELD == RECEIPTS_PER_YIELD - 1:
                await asyncio.sleep(0)  # let consensus run between slices of a large block
        return receipts


async def follow(
    service: NodeService,
    subscription: Subscription,
    *,
    kind: str,
    start: Start,
    wanted: EventFilter,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """The stream's bytes: history from the store from `start` (which names its height),
    then live commits, for ever (until the subscription closes or the client goes)."""
    store = service.chain.store
    reader = _Reader(service)
    assert start.height is not None
    height, after_index = start.height, start.after_index
    yield f"retry: {RETRY_MS}\n\n".encode()
    while not subscription.closed:
        live = subscription.take(height)
        if live is not None:
            block, block_hash, receipts = live.block, live.block_id, live.receipts
        elif height <= (store.height or 0):
            block, block_hash = reader.block(height)
            receipts = await reader.receipts(height, block) if kind == "events" else []
            await asyncio.sleep(0)  # a replay never holds the loop for more than a block
        else:
            subscription.attach()
            if not await subscription.wait(keepalive_s):
                yield b": keep-alive\n\n"
            continue
        if kind == "blocks":
            root = service.subscriptions.state_root(height)
            yield _message(str(height), _block_summary(block, block_hash, root), "block")
        else:
            for chunk in _chunks(_event_messages(height, receipts, after_index, wanted)):
                yield chunk
        height, after_index = height + 1, -1


class _EventStream(StreamingResponse):
    """A text/event-stream response that gives its subscription back however it ends."""

    def __init__(self, content: AsyncIterator[bytes], subscription: Subscription) -> None:
        super().__init__(content, media_type="text/event-stream", headers=_HEADERS)
        self._content = content
        self._subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._subscription.close()
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _handler(service: NodeService, kind: str, keepalive_s: float) -> Callable[[Request], Any]:
    async def subscribe(request: Request) -> Response:
        try:
            start, wanted = _parameters(request, kind)
        except _RefusedError as error:
            return _refuse(400, error.code, error.message)
        try:
            subscription = service.subscriptions.open()
        except TooManySubscribersError as error:
            return _refuse(503, "too_many_subscribers", str(error))
        if start.height is None:  # from the next block on
            start = Start((service.chain.store.height or 0) + 1)
        content = follow(
            service,
            subscription,
            kind=kind,
            start=start,
            wanted=wanted,
            keepalive_s=keepalive_s,
        )
        return _EventStream(content, subscription)

    return subscribe


def subscription_routes(service: NodeService, keepalive_s: float = KEEPALIVE_S) -> list[Route]:
    return [
        Route("/v1/subscribe/blocks", _handler(service, "blocks", keepalive_s), methods=["GET"]),
        Route("/v1/subscribe/events", _handler(service, "events", keepalive_s), methods=["GET"]),
    ]

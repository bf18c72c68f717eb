"""What the chain says for an institution's accounts: every transfer leg touching them between
two heights, each proven with the SDK's light client.

The node's block stream (`GET /v1/subscribe/blocks?from=A`, one streamed answer) names the
heights whose blocks hold transactions; for each, the node is asked for the block's receipts
(`GET /v1/blocks/{h}/receipts`), then for each successful transaction's record
(`GET /v1/tx/{hash}`): those are only used to find the candidates, the transactions whose
`asset.transferred` events name one of the accounts. Each candidate is fetched with its
proof (`?proof=true`) and checked by the light client (its receipt under the receipts root
of an execution header signed by a quorum of its epoch's validators, learnt from the
genesis); the legs are built from the proven receipt's events only. So everything reported
is proven; what a lying node can still do is hide a
transaction (docs/reconcile.md, *What is proven*). An unproven answer that is not of the
documented shape (a node lying, or broken) is `verification_failed`, never a traceback.

Owns the walk, its bounds and the legs' form. Must never report a leg from an answer it has
not verified, nor hold more than LEGS_MAX legs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from consortia.client import AsyncClient, Client, ClientError, VerificationError
from consortia.errors import InvalidArgumentError, NodeRefusalError, NodeUnavailableError
from consortia.reconcile.errors import ChainVerificationError, NotProvenError
from consortia.reconcile.match import Leg
from consortia.types.primitives import HASH_HEX_PATTERN, PAYLOAD_ITEMS_MAX

ASSET: Final = "asset"
TRANSFERRED: Final = "transferred"
ISSUED: Final = "issued"
REDEEMED: Final = "redeemed"
MOVES: Final = frozenset({TRANSFERRED, ISSUED, REDEEMED})  # the asset events that move money
HEIGHTS_MAX: Final = 1_000_000  # heights one reconciliation walks (beyond: a narrower range)
LEGS_MAX: Final = 1_000_000
TX_HASH: Final = re.compile(HASH_HEX_PATTERN)  # as the node shows one: lowercase
TIP_SEARCH_MAX: Final = 64  # heights below the tip searched for the latest certified one
PROOF_WAIT_S: Final = 10.0  # how long a candidate's certificate is waited for
PROOF_POLL_S: Final = 0.1
_NOT_YET: Final = frozenset({"not_certified", "not_committed"})


@dataclass(frozen=True, slots=True)
class Window:
    """The heights walked, both included."""

    first: int
    last: int


def ask(call: Callable[[], Any]) -> Any:
    """A node call; its refusals and absences as ConsortiaErrors, a failed check as
    ChainVerificationError."""
    try:
        return call()
    except VerificationError as error:
        raise ChainVerificationError(f"{error.what}: {error.message}") from None
    except ClientError as error:
        raise _refusal(error) from None


def _refusal(error: ClientError) -> NodeUnavailableError | NodeRefusalError:
    if error.code in ("unreachable", "subscription_lost"):
        return NodeUnavailableError(error.message)
    return NodeRefusalError(error.code, error.message)


def latest_certified(client: Client) -> int:
    """The latest height the node holds an execution certificate for, checked (0: none)."""
    height = int(ask(client.status)["height"])
    for candidate in range(height, max(0, height - TIP_SEARCH_MAX), -1):
        try:
            ask(partial(client.certificate, candidate, verify=True))
        except NodeRefusalError as error:
            if error.node_code in _NOT_YET:
                continue
            raise
        return candidate
    return 0


def window(client: Client, first: int | None, last: int | None) -> Window:
    """The heights to walk: `first` (default 1) to `last` (default, and at most, the latest
    height the node holds a certificate for)."""
    start = 1 if first is None else first
    certified = latest_certified(client)
    end = certified if last is None else last
    if end > certified:
        raise InvalidArgumentError(
            f"--to-height {end}: the node has certified heights up to {certified} only"
        )
    if start < 1 or end < start - 1:
        raise InvalidArgumentError(f"no heights from {start} to {end}")
    if end - start + 1 > HEIGHTS_MAX:
        raise InvalidArgumentError(f"at most {HEIGHTS_MAX} heights a run ({start} to {end})")
    return Window(start, end)


def legs_of(
    events: Iterable[Any], accounts: frozenset[str]
) -> list[tuple[int, str, int, str, str | None]]:
    """(event index, account, signed amount, currency, counterparty) for each side of each
    `asset` event that moves money on one of `accounts`: a transfer's source and target (both
    when both are among them), an issue's receiver and a redemption's issuer (no
    counterparty)."""
    found: list[tuple[int, str, int, str, str | None]] = []
    for index, event in enumerate(events):
        contract, name, fields = _event_parts(event)
        if contract != ASSET or name not in MOVES or not isinstance(fields, dict):
            continue
        amount, currency = int(fields.get("amount", 0)), str(fields.get("currency"))
        if name == TRANSFERRED:
            source, target = str(fields.get("source")), str(fields.get("target"))
            if source in accounts:
                found.append((index, source, -amount, currency, target))
            if target in accounts:
                found.append((index, target, amount, currency, source))
        elif name == ISSUED and str(fields.get("to")) in accounts:
            found.append((index, str(fields.get("to")), amount, currency, None))
        elif name == REDEEMED and str(fields.get("by")) in accounts:
            found.append((index, str(fields.get("by")), -amount, currency, None))
    return found


def _touches(record: Any, accounts: frozenset[str], tx_hash: str) -> bool:
    """Whether the node's unproven record of `tx_hash` names one of `accounts` in a money
    move (only to choose what to prove); ChainVerificationError when it is malformed."""
    receipt = record.get("receipt", {}) if isinstance(record, dict) else None
    events = receipt.get("events", []) if isinstance(receipt, dict) else None
    if not isinstance(events, list):
        raise ChainVerificationError(f"answer: the node's record of {tx_hash} is malformed")
    try:
        return bool(legs_of(events, accounts))
    except (TypeError, ValueError):
        raise ChainVerificationError(
            f"answer: the node's record of {tx_hash} holds a malformed event"
        ) from None


def _successful(block: Any, height: int) -> list[tuple[str, int | None]]:
    """(hash, block time) of each successful transaction the node says block `height`
    holds; ChainVerificationError for an answer not of the documented shape."""
    receipts = block.get("receipts", []) if isinstance(block, dict) else None
    if (
        not isinstance(receipts, list)
        or len(receipts) > PAYLOAD_ITEMS_MAX
        or not all(isinstance(r, dict) for r in receipts)
    ):
        raise ChainVerificationError(f"answer: the node's receipts of block {height} are malformed")
    timestamp = block.get("timestamp_ms")
    time_ms = timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None
    found = []
    for receipt in receipts:
        tx_hash = receipt.get("tx_hash")
        if not isinstance(tx_hash, str) or not TX_HASH.match(tx_hash):
            raise ChainVerificationError(f"answer: block {height} names a malformed hash")
        if receipt.get("ok"):
            found.append((tx_hash, time_ms))
    return found


def _event_parts(event: Any) -> tuple[Any, Any, Any]:
    """(contract, name, fields) of an event as a proven receipt shows it (an object) or as
    the node's plain `GET /v1/tx/{hash}` shows it (a list of the three)."""
    if isinstance(event, dict):
        return event.get("contract"), event.get("name"), event.get("fields")
    if isinstance(event, list | tuple) and len(event) == 3:
        return event[0], event[1], event[2]
    return None, None, None


def _proof(client: Client, tx_hash: str) -> dict[str, Any]:
    """The transaction's answer with its proof, waiting a bounded time for its certificate."""
    deadline = time.monotonic() + PROOF_WAIT_S
    while True:
        try:
            answer: dict[str, Any] = ask(lambda: client.transaction_proof(tx_hash))
            return answer
        except NodeRefusalError as error:
            if error.node_code not in _NOT_YET:
                raise
            if time.monotonic() > deadline:
                raise NotProvenError(
                    f"{tx_hash}: the node holds no execution certificate for its block"
                    " (ask another node with --node or --api)"
                ) from None
        time.sleep(PROOF_POLL_S)


Progress = Callable[[str, int, int], None]  # (what, done, total)


def busy_heights(url: str, heights: Window, progress: Progress | None = None) -> list[int]:
    """The heights in `heights` whose blocks hold transactions, from the node's block stream
    (one streamed answer for the whole range, rather than a request per height)."""
    if heights.last < heights.first:
        return []
    return list(asyncio.run(_busy_heights(url, heights, progress)))


async def _busy_heights(url: str, heights: Window, progress: Progress | None) -> list[int]:
    busy: list[int] = []
    previous = heights.first - 1
    total = heights.last - heights.first + 1
    async with AsyncClient(url) as client:
        blocks = client.subscribe_blocks(heights.first)
        try:
            async for block in blocks:
                height, tx_count = _summary(block, previous)
                previous = height
                if height > heights.last:
                    break
                if tx_count > 0:
                    busy.append(height)
                if progress is not None and (height == heights.last or height % 256 == 0):
                    progress("reading blocks", height - heights.first + 1, total)
                if height == heights.last:
                    break
        except ClientError as error:
            raise _refusal(error) from None
        finally:
            await blocks.aclose()  # type: ignore[attr-defined]
    return busy


def _summary(block: Any, previous: int) -> tuple[int, int]:
    """(height, transactions) of a block stream's summary, which must follow `previous`
    (heights only rise: a stream that repeats or goes back would never end);
    ChainVerificationError for one not of the documented shape."""
    try:
        height, tx_count = int(block["height"]), int(block.get("tx_count", 0))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ChainVerificationError("answer: the node's block stream is malformed") from None
    if height <= previous or tx_count < 0:
        raise ChainVerificationError(
            f"answer: the node's block stream gave height {height} after {previous}"
        )
    return height, tx_count


def collect(
    client: Client,
    accounts: frozenset[str],
    heights: list[int],
    *,
    keep_proofs: bool = False,
    progress: Progress | None = None,
) -> list[Leg]:
    """Every proven transfer leg touching `accounts` committed at `heights` (the busy ones)."""
    legs: list[Leg] = []
    seen: set[str] = set()
    for done, height in enumerate(heights, start=1):
        block = ask(partial(client.block_receipts, height))
        for tx_hash, timestamp in _successful(block, height):
            if tx_hash in seen:
                continue
            seen.add(tx_hash)
            record = ask(partial(client.transaction, tx_hash))
            if not _touches(record, accounts, tx_hash):
                continue
            answer = _proof(client, tx_hash)
            proven = ask(partial(client.check_transaction, answer, tx_hash))
            if not proven["receipt"]["ok"]:
                continue
            for index, account, amount, currency, counterparty in legs_of(
                proven["receipt"]["events"], accounts
            ):
                legs.append(
                    Leg(
                        tx_hash=tx_hash,
                        height=int(proven["height"]),
                        tx_index=int(proven["index"]),
                        event_index=index,
                        account=account,
                        amount=amount,
                        currency=currency,
                        counterparty=counterparty,
                        # The block's time is the node's word (an execution header carries
                        # no time): shown, never compared.
                        timestamp_ms=timestamp if proven["height"] == height else None,
                        header=proven["header"],
                        proof=answer.get("proof") if keep_proofs else None,
                    )
                )
            if len(legs) > LEGS_MAX:
                raise InvalidArgumentError(f"more than {LEGS_MAX} legs: give a narrower range")
        if progress is not None:
            progress("proving transfers", done, len(heights))
    return legs

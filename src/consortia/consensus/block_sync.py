"""Block sync: fetching blocks this replica is missing, and answering peers who are.

Owns the fetch state machine. A fetch starts from an id this replica trusts (named by a
verified certificate or proposal), asks the peer that named it, and walks parents backwards
until the fetched chain connects to the block tree; each answer is checked by hash and by
payload root, a forged answer is dropped whole and never cancels the fetch, and a peer that
never answers is given up on after one round timeout. A replica far behind (more than
`fetched_blocks_max` blocks, or FETCH_BYTES_MAX of payload) fetches in segments: when the
chain in hand is full, the id of its newest block is remembered (it is authenticated by the
hash chain from the trusted id) and the blocks are dropped; the walk goes on down to the
tree, hands that oldest segment back, and then walks down from each remembered id in turn,
newest last, each time to the segment handed back before. Also the one function that builds a
bounded block response (`bounded_response`), used by the replica, the simulator and the test
drivers alike.

Never changes rounds, commits or epochs: a connected chain is handed back to the replica
(`replica.py`), which inserts it and replays its certificates. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.config import Params
from consortia.consensus.events import Action, Counters, Send, ServeBlocks
from consortia.crypto import Suite
from consortia.types.consensus import (
    BLOCK_REQUEST_COUNT_MAX,
    Block,
    BlockRequest,
    BlockResponse,
)
from consortia.types.encoding import MESSAGE_SIZE_MAX
from consortia.types.signing import block_id, merkle_root

# Block fetches in flight at once.
FETCHES_MAX = 4
# Payload bytes in one block response (besides its first block): half the message limit, so
# a response always decodes on the other side.
RESPONSE_PAYLOAD_BYTES_MAX = MESSAGE_SIZE_MAX // 2
# Payload bytes one fetch holds in memory before it cuts a segment.
FETCH_BYTES_MAX = 256 * 1024 * 1024
# Segments one fetch remembers to come back for: how far behind a replica can catch up in one
# fetch (with the default 8,192 blocks a segment, 33 million blocks).
FETCH_SEGMENTS_MAX = 4096


def bounded_response(
    lookup: Callable[[bytes], Block | None], first_id: bytes, count: int
) -> list[Block]:
    """`first_id`'s block and up to `count - 1` ancestors, newest first, as `lookup` knows them.

    Stops at the first ancestor `lookup` does not know, after the genesis block (height 0), and
    before the payloads pass RESPONSE_PAYLOAD_BYTES_MAX bytes (the first block always goes), so
    a response always fits one message. Empty when `first_id` is unknown.
    """
    blocks: list[Block] = []
    current = first_id
    payload_bytes = 0
    while len(blocks) < count:
        block = lookup(current)
        if block is None:
            break
        payload_bytes += sum(len(item) for item in block.payload)
        if blocks and payload_bytes > RESPONSE_PAYLOAD_BYTES_MAX:
            break  # the rest in the next request
        blocks.append(block)
        if block.header.height == 0:
            break
        current = block.header.parent_id
    return blocks


def serve_from_store(
    committed: Callable[[bytes], Block | None],
    voted: Callable[[bytes], Block | None],
    first_id: bytes,
    count: int,
) -> list[Block]:
    """What a block store answers a `BlockRequest` with (the node's and the simulator's alike):
    committed blocks from `first_id` back through their parents (`bounded_response`), else the
    voted, not yet committed block asked for, alone; empty when the store has neither."""
    blocks = bounded_response(committed, first_id, count)
    if blocks:
        return blocks
    block = voted(first_id)
    return [] if block is None else [block]


@dataclass(slots=True)
class Fetch:
    """Blocks being fetched backwards from a trusted id until they connect to the tree."""

    target_id: bytes
    peer: bytes  # the only peer whose answers count
    chain: list[tuple[bytes, Block]]  # newest first; invariant: at most fetched_blocks_max
    next_id: bytes  # the block asked for next
    commit_through: bool  # the target is known committed (an epoch change proof)
    started_ms: int  # when the last request went out
    # Payload bytes in `chain`. Invariant: at most FETCH_BYTES_MAX.
    chain_bytes: int = 0
    # The newest ids of the segments cut so far, oldest cut first; each is an ancestor of the
    # target, walked down from once the segments below it are in the tree. Invariant: at
    # most FETCH_SEGMENTS_MAX.
    segment_tops: list[bytes] = field(default_factory=list)


class BlockSync:
    def __init__(
        self,
        suite: Suite,
        params: Params,
        node_id: bytes,
        tree: BlockTree,
        *,
        counters: Counters,
        out: list[Action],
    ) -> None:
        self._suite = suite
        self._params = params
        self._node_id = node_id
        self._tree = tree
        self._counters = counters
        self._out = out
        # target id -> fetch. Invariant: at most FETCHES_MAX; no target is in the tree when
        # its fetch starts.
        self.fetches: dict[bytes, Fetch] = {}

    def __contains__(self, target_id: bytes) -> bool:
        return target_id in self.fetches

    def clear(self) -> None:
        self.fetches.clear()

    def fetch(
        self, target_id: bytes, peer: bytes, *, epoch: int, now_ms: int, commit_through: bool
    ) -> None:
        """Start fetching `target_id` (and its missing ancestors) from `peer`."""
        existing = self.fetches.get(target_id)
        if existing is not None:
            existing.commit_through = existing.commit_through or commit_through
            return
        if target_id in self._tree or peer == self._node_id:
            return
        if len(self.fetches) >= FETCHES_MAX:
            self._counters.drop("fetches_busy")
            return
        self.fetches[target_id] = Fetch(target_id, peer, [], target_id, commit_through, now_ms)
        self._out.append(Send(peer, BlockRequest(epoch, target_id, BLOCK_REQUEST_COUNT_MAX)))

    def expire(self, now_ms: int) -> bool:
        """Give up on fetches whose peer has not answered for a round timeout, so a silent
        peer never blocks fetching for good. True when one of them was an epoch's ending."""
        deadline = now_ms - self._params.round_timeout_ms
        forget_epoch_proof = False
        for fetch in [f for f in self.fetches.values() if f.started_ms < deadline]:
            forget_epoch_proof |= self._abandon(fetch)
            self._counters.drop("fetch_timed_out")
        return forget_epoch_proof

    def _abandon(self, fetch: Fetch) -> bool:
        """Stop a fetch; True when it was bringing an epoch's ending block, so the replica
        forgets that proof too and asks again at the next sign of a later epoch."""
        del self.fetches[fetch.target_id]
        return fetch.commit_through

    def on_request(
        self, request: BlockRequest, sender: bytes, recent: Callable[[bytes], Block | None]
    ) -> None:
        """Answer a peer from the blocks held in memory (the tree, then `recent`), or ask the
        driver to answer from its store (`ServeBlocks`) when memory holds none of them."""

        def lookup(wanted: bytes) -> Block | None:
            return self._tree.get(wanted) or recent(wanted)

        blocks = bounded_response(lookup, request.block_id, request.count)
        if blocks:
            self._out.append(Send(sender, BlockResponse(request.block_id, blocks)))
        else:
            self._out.append(ServeBlocks(sender, request.block_id, request.count))

    def on_response(
        self, sender: bytes, response: BlockResponse, *, epoch: int, now_ms: int
    ) -> tuple[Fetch | None, bool]:
        """Take a peer's answer. Returns (the fetch whose chain now connects to the tree, or
        None; whether an epoch's ending fetch was abandoned)."""
        fetch = next(
            (
                f
                for f in self.fetches.values()
                if f.next_id == response.request_block_id and f.peer == sender
            ),
            None,
        )
        if fetch is None:
            self._counters.drop("unsolicited_blocks")
            return None, False
        tree = self._tree
        accepted: list[tuple[bytes, Block]] = []
        expected = fetch.next_id
        for block in response.blocks:
            if block_id(self._suite, block.header) != expected or not self.valid_body(block):
                # A forged answer is dropped whole; the fetch waits for an honest one or
                # times out. It never cancels the fetch, whoever sent it.
                self._counters.drop("bad_block_response")
                return None, False
            if expected in tree:
                break
            accepted.append((expected, block))
            expected = block.header.parent_id
            if expected in tree or block.header.height <= tree.root_height:
                break
        if not accepted and expected not in tree:
            self._counters.drop("empty_block_response")
            return None, False
        for entry in accepted:
            if (
                len(fetch.chain) >= self._params.fetched_blocks_max
                or fetch.chain_bytes + _payload_bytes(entry[1]) > FETCH_BYTES_MAX
            ) and not self._cut_segment(fetch):
                return None, self._abandon(fetch)
            fetch.chain.append(entry)
            fetch.chain_bytes += _payload_bytes(entry[1])
        if expected not in tree:
            oldest = fetch.chain[-1][1] if fetch.chain else None
            if oldest is not None and oldest.header.height <= tree.root_height:
                # Ancestors below our committed root that are not our root: another branch.
                self._counters.drop("fetch_below_root")
                return None, self._abandon(fetch)
            self._ask(fetch, sender, expected, epoch, now_ms)
            return None, False
        if not fetch.segment_tops:
            del self.fetches[fetch.target_id]
            return fetch, False
        # A segment connects: hand it back (unless it is empty: its top was in the tree
        # already), then walk down from the next segment's top to it.
        segment = None
        if fetch.chain:
            segment = Fetch(
                fetch.chain[0][0], sender, fetch.chain, expected, fetch.commit_through, now_ms
            )
        fetch.chain, fetch.chain_bytes = [], 0
        self._ask(fetch, sender, fetch.segment_tops.pop(), epoch, now_ms)
        return segment, False

    def _cut_segment(self, fetch: Fetch) -> bool:
        """Drop the full chain in hand, remembering its newest id; False when the fetch already
        remembers FETCH_SEGMENTS_MAX segments (it is given up)."""
        if len(fetch.segment_tops) >= FETCH_SEGMENTS_MAX:
            self._counters.drop("fetch_too_long")
            return False
        fetch.segment_tops.append(fetch.chain[0][0])
        fetch.chain, fetch.chain_bytes = [], 0
        return True

    def _ask(self, fetch: Fetch, peer: bytes, wanted: bytes, epoch: int, now_ms: int) -> None:
        fetch.next_id = wanted
        fetch.started_ms = now_ms
        self._out.append(Send(peer, BlockRequest(epoch, wanted, BLOCK_REQUEST_COUNT_MAX)))

    def valid_body(self, block: Block) -> bool:
        """A block's payload is what its header commits to, within the limits."""
        payload = block.payload
        return (
            len(payload) <= self._params.block_payload_items_max
            and sum(len(item) for item in payload) <= self._params.block_bytes_max
            and block.header.payload_root == merkle_root(self._suite, payload)
        )

    def check(self) -> str | None:
        """The first broken invariant, or None."""
        if len(self.fetches) > FETCHES_MAX:
            return f"{len(self.fetches)} fetches in flight, above {FETCHES_MAX}"
        for fetch in self.fetches.values():
            if len(fetch.chain) > self._params.fetched_blocks_max:
                return f"a fetch holds {len(fetch.chain)} blocks"
            if fetch.chain_bytes > FETCH_BYTES_MAX:
                return f"a fetch holds {fetch.chain_bytes} payload bytes"
            if len(fetch.segment_tops) > FETCH_SEGMENTS_MAX:
                return f"a fetch remembers {len(fetch.segment_tops)} segments"
        return None


def _payload_bytes(block: Block) -> int:
    return sum(len(item) for item in block.payload)

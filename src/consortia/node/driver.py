"""The replica driver: turns the consensus core's actions into I/O, and I/O into its events.

Owns the replica of one node and the effects of its actions: sending and broadcasting (through
the transport), timers (on the asyncio loop), persisting safety state (durable before
`PersistDone`), offering payloads (from the mempool, never a transaction already proposed in
an uncommitted ancestor), executing and recording commits (through `Chain`), answering block
requests from the store, keeping epoch proofs, and halting the node when the replica halts.
It also admits transactions (from clients and from peers: a peer's batch checked here or
admitted on the vouching of the validators that checked it, node/vouching.py) and passes
client ones on (node/gossip.py), and hands executed blocks and peers' execution votes to its
`Certifier` (execution certificates); a node whose execution diverged from a quorum's stops
there.

Idle pacing: a leader with nothing to propose (no transaction ready, none in an uncommitted
ancestor or in the last two committed blocks, no epoch change due) holds its empty payload for
up to a quarter of its replica's current round timer (at most IDLE_DELAY_MAX_MS), and offers
it at once when a transaction arrives. The previous leader's round then spans two pauses, half
its timer at most, and the replica's adaptive timer (4 times the 90th percentile of recent
rounds) grows to match, so no round times out for it; an idle network then commits a few
empty blocks a second instead of dozens (docs/node.md).

Must never decide anything the replica decides, nor sign anything: the core does both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from consortia.consensus.block_sync import serve_from_store
from consortia.consensus.events import (
    Action,
    Broadcast,
    Commit,
    EnterEpoch,
    Event,
    Halt,
    MessageReceived,
    PayloadReady,
    Persist,
    PersistDone,
    RequestPayload,
    Send,
    ServeBlocks,
    SetTimer,
    Start,
    TimerFired,
)
from consortia.consensus.replica import Replica
from consortia.errors import DecodeError
from consortia.mempool import Admission, Mempool
from consortia.node.certifier import Certifier, Peers
from consortia.node.chain import Chain, CommittedBlock
from consortia.node.gossip import Gossip
from consortia.node.vouching import Vouching
from consortia.types.consensus import Block, BlockResponse
from consortia.types.encoding import decode, encode
from consortia.types.network import (
    CertificateRequest,
    CertificateResponse,
    ExecutionVote,
    TxAck,
    TxBatch,
    WireMessage,
)
from consortia.types.signing import block_id
from consortia.types.transaction import Transaction

# The longest a leader holds an empty payload while the network is idle, and the share of its
# replica's round timer it may hold it for. A quarter, because the previous leader's round
# spans two pauses (its own, then the next leader's) and must stay well inside its timer.
IDLE_DELAY_MAX_MS = 250
IDLE_DELAY_TIMER_DIVISOR = 4
# Passes of the loop committed blocks wait for scheduled consensus events (`_apply_commits`):
# a leader's chain is PayloadReady, then the PersistDone of its proposal (and of its vote).
DEFERRALS_MAX = 4


@dataclass(slots=True)
class DriverCounters:
    frames_refused: int = 0
    transactions_committed: int = 0
    persist_ms_total: float = 0.0
    persists: int = 0
    idle_pauses: int = 0  # empty payloads held back while idle
    timeouts: int = 0  # round timers that fired


class Driver:
    def __init__(
        self,
        *,
        replica: Replica,
        chain: Chain,
        mempool: Mempool,
        transport: Peers,
        loop: asyncio.AbstractEventLoop,
        clock_ms: Callable[[], int],
        on_halt: Callable[[str], None],
    ) -> None:
        self.replica = replica
        self.chain = chain
        self.mempool = mempool
        chain.membership.known = mempool.known  # proposals' transactions it already decoded
        self.transport = transport
        self._loop = loop
        self._clock_ms = clock_ms
        self._on_halt = on_halt
        self._timer: asyncio.TimerHandle | None = None
        # Through the attribute at each send: the transport may be replaced after start.
        self._gossip = Gossip(loop, lambda frame: self.transport.broadcast(frame))  # noqa: PLW0108
        # Batches passed on by peers, checked by f+1 validators' power (node/vouching.py).
        self.vouching = Vouching()
        self._vouching_handle: asyncio.TimerHandle | None = None
        self.counters = DriverCounters()
        # Why this driver stopped for good (an exception while handling an event), or None.
        self.failed: str | None = None
        # The payload request held back while idle, and its timer (both None or both set).
        self._idle_request: RequestPayload | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        # The height of the last committed block that carried transactions.
        self._busy_height = 0
        # Commits decided but not yet executed (see `_handle`), in order.
        self._commits_due: list[Commit] = []
        self._commits_scheduled = False
        # Consensus events scheduled on the loop and not yet handled (a `PayloadReady`, a
        # `PersistDone`): executing waits for them (see `_apply_commits`).
        self._consensus_scheduled = 0
        self._deferrals = 0  # passes `_apply_commits` has waited for them
        # Called with every batch of blocks once they are durably recorded.
        self.on_commit: list[Callable[[list[CommittedBlock]], None]] = []
        # Wraps the execution and recording of each commit (the collector's pause, in a node).
        self.around_commit: Callable[[], contextlib.AbstractContextManager[None]] = (
            contextlib.nullcontext
        )
        # Execution votes and certificates; it signs through the replica's safety rules.
        self.certifier = Certifier(
            chain=chain, node_id=replica.node_id, sign=replica.sign_execution, transport=transport
        )
        self._log = structlog.get_logger("consortia.node").bind(node=replica.node_id.hex()[:16])

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        self._handle(Start(now_ms=self._clock_ms()))
        if self.failed is None:
            try:  # this node's votes for its last heights left uncertified (a crash)
                self.certifier.start()
            except Exception as error:  # a failed read or signature: stop the node
                self._fail(error)

    def on_frame(self, sender: bytes, frame: bytes) -> None:
        """A frame from an authenticated peer (`sender` is the node id in its certificate)."""
        if self.failed is not None:
            return
        try:
            message = decode(frame, WireMessage)
        except DecodeError:
            self.counters.frames_refused += 1
            return
        if isinstance(message, TxBatch | TxAck):
            try:
                if isinstance(message, TxBatch):
                    self._on_tx_batch(sender, frame, list(message.transactions))
                else:
                    raws = self.vouching.on_ack(self.replica.validators, sender, message.digest)
                    if raws is not None:
                        self._admit(raws, checked=True)
            except Exception as error:  # a broken invariant or a failed read: stop the node
                self._fail(error)
            return
        if isinstance(message, ExecutionVote | CertificateRequest | CertificateResponse):
            try:
                self._certification(sender, message)
            except Exception as error:  # divergence, or a failed write: stop the node
                self._fail(error)
            return
        self._handle(MessageReceived(self._clock_ms(), sender, message))

    def _on_tx_batch(self, sender: bytes, frame: bytes, raws: list[bytes]) -> None:
        """Transactions a peer passed on: checked here, or admitted on the vouching of their
        checkers (node/vouching.py)."""
        digest = self.chain.suite.hash(frame)
        decision = self.vouching.on_batch(
            self.replica.validators,
            own=self.replica.node_id,
            sender=sender,
            digest=digest,
            raws=raws,
            now_ms=self._monotonic_ms(),
        )
        if decision == "held":
            if self._vouching_handle is None:  # else the running timer sees to it
                self._watch_vouching()
            return
        self._admit(raws, checked=decision == "admit_checked")
        if decision == "check_and_ack" and self.mempool.signatures_valid(raws):
            self.vouching.counters.acks_sent += 1
            self.transport.broadcast(encode(TxAck(digest=digest)))

    def _admit(self, raws: list[bytes], *, checked: bool = False) -> None:
        self.mempool.admit_many(
            raws, height=self.chain.height, next_nonce=self._next_nonce, checked=checked
        )
        self._wake()

    def _watch_vouching(self) -> None:
        """Check here the held batches whose wait is over; look again at the next one's."""
        self._vouching_handle = None
        if self.failed is not None:
            return
        try:
            for raws in self.vouching.due(self._monotonic_ms()):
                self._admit(raws)
        except Exception as error:  # a broken invariant or a failed read: stop the node
            self._fail(error)
            return
        deadline = self.vouching.next_deadline_ms()
        if deadline is not None and self._vouching_handle is None:
            delay_s = max(0, deadline - self._monotonic_ms()) / 1000
            self._vouching_handle = self._loop.call_later(delay_s, self._watch_vouching)

    def _monotonic_ms(self) -> int:
        """The loop's monotonic clock, for local waits (a wall-clock step never stretches
        or cuts them)."""
        return int(self._loop.time() * 1000)

    def _certification(
        self, sender: bytes, message: ExecutionVote | CertificateRequest | CertificateResponse
    ) -> None:
        if isinstance(message, ExecutionVote):
            self.certifier.on_vote(sender, message)
        elif isinstance(message, CertificateRequest):
            self.certifier.on_request(sender, message)
        else:
            self.certifier.on_response(sender, message)

    def submit(self, raw: bytes) -> Admission:
        """A client's transaction: admitted here, then passed on to the peers."""
        return self.submit_many([raw])[0]

    def submit_many(self, raws: list[bytes]) -> list[Admission]:
        """A client's batch of transactions, in order: admitted in one mempool call (their
        signatures checked together, over every core), then the admitted ones passed on to
        the peers together (node/gossip.py)."""
        admissions = self.mempool.admit_many(
            raws, height=self.chain.height, next_nonce=self._next_nonce
        )
        admitted = [raw for raw, answer in zip(raws, admissions, strict=True) if answer.ok]
        if admitted:
            self._wake()
            self._gossip.add(admitted)
        return admissions

    def _fire(self, epoch: int, round_: int) -> None:
        self._timer = None
        self.counters.timeouts += 1
        self._handle(TimerFired(self._clock_ms(), epoch, round_))

    # ------------------------------------------------------------------ actions

    def _handle(self, event: Event) -> None:
        if self.failed is not None:
            return  # stopping: nothing more is decided, sent or written
        try:
            for action in self.replica.handle(event):
                self._perform(action)
        except Exception as error:  # a broken invariant or a failed write: stop the node
            self._fail(error)
            return
        if self._commits_due and not self._commits_scheduled:
            # Execute after the consensus events already scheduled (see `_apply_commits`).
            self._commits_scheduled = True
            self._loop.call_soon(self._apply_commits)

    def _schedule(self, event: PersistDone | PayloadReady) -> None:
        self._consensus_scheduled += 1
        self._loop.call_soon(self._handle_scheduled, event)

    def _handle_scheduled(self, event: PersistDone | PayloadReady) -> None:
        self._consensus_scheduled -= 1
        self._handle(event)

    def _apply_commits(self) -> None:
        """Execute and record the committed blocks due, once no consensus event waits on the
        loop: the `PersistDone` that releases this node's vote, and a leader's `PayloadReady`
        with the `PersistDone` of its proposal after it, go first. So the vote or the proposal
        is on its way before the block runs, and executing a large block (hundreds of
        milliseconds) overlaps the next round's messages instead of holding them back; the
        payload leaves out what the blocks still due carry (`_uncommitted_payload`).

        At most DEFERRALS_MAX passes of the loop, though: a lone validator (or one whose
        peers answer within a pass) forms its certificates from its own events, so a new
        round's events are always scheduled and the blocks would never run."""
        if self._consensus_scheduled and self._deferrals < DEFERRALS_MAX:
            self._deferrals += 1
            self._loop.call_soon(self._apply_commits)
            return
        self._deferrals = 0
        self._commits_scheduled = False
        self._execute_due()

    def _execute_due(self) -> None:
        """Execute and record every committed block due, now."""
        if self.failed is not None:
            return
        try:
            while self._commits_due:
                self._commit(self._commits_due[0])
                del self._commits_due[0]
        except Exception as error:  # a failed execution or write: stop the node
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        """Stop driving the replica for good and ask the process to stop: a node whose
        invariants broke, or whose store failed, must never go on (it could sign or record
        something wrong). The process exits with the halted status and says why."""
        reason = f"{type(error).__name__}: {error}"
        self.failed = reason
        self._cancel_idle()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log.critical("node failing", reason=reason, exc_info=error)
        self._on_halt(reason)

    def _perform(self, action: Action) -> None:
        if isinstance(action, Send):
            self.transport.send(action.to, encode(action.message))
        elif isinstance(action, Broadcast):
            self.transport.broadcast(encode(action.message))
        elif isinstance(action, SetTimer):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(
                action.delay_ms / 1000, self._fire, action.epoch, action.round
            )
        elif isinstance(action, Persist):
            self._persist(action)
        elif isinstance(action, RequestPayload):
            self._offer_payload(action)
        elif isinstance(action, Commit):
            self._commits_due.append(action)
        elif isinstance(action, EnterEpoch):
            if action.proof is not None:
                self.chain.store.save_epoch_proof(action.proof)
            self.certifier.epoch(action.config)
            for raws in self.vouching.forget():  # the new validators vouch anew
                self._admit(raws)
            self._log.info("epoch entered", epoch=action.config.epoch)
        elif isinstance(action, ServeBlocks):
            self._serve_blocks(action)
        elif isinstance(action, Halt):
            self._log.error("replica halted", reason=action.reason)
            self._on_halt(action.reason)

    def _persist(self, action: Persist) -> None:
        """Durable (fsync'd) before the replica hears `PersistDone`, so before any signed
        message it guards leaves this node."""
        started = self._loop.time()
        voted = None
        if action.block is not None:
            voted = (block_id(self.chain.suite, action.block.header), action.block)
        self.chain.store.persist_safety(action.state, voted)
        self.counters.persists += 1
        self.counters.persist_ms_total += (self._loop.time() - started) * 1000
        self._schedule(PersistDone(self._clock_ms(), action.sequence))

    def _offer_payload(self, action: RequestPayload) -> None:
        """Offer a payload for `action` now, or, when there is nothing to propose, after the
        idle pause (sooner if a transaction arrives). A request repeated for the round being
        held keeps its pause: the pause never restarts."""
        held = self._idle_request
        if held is not None and (held.epoch, held.round) == (action.epoch, action.round):
            self._idle_request = action
            return
        self._cancel_idle()
        delay_ms = self._idle_delay_ms(action)
        if delay_ms == 0:
            self._offer_now(action)
            return
        self.counters.idle_pauses += 1
        self._idle_request = action
        self._idle_handle = self._loop.call_later(delay_ms / 1000, self._wake)

    def _idle_delay_ms(self, action: RequestPayload) -> int:
        """How long to hold an empty payload: 0 unless the network is idle."""
        if len(self.mempool) and self.mempool.batch(
            next_nonce=self._next_nonce, items_max=1, bytes_max=action.bytes_max
        ):
            return 0
        if self.chain.height < self._busy_height + 2:
            return 0  # the blocks that commit the last busy one go at once
        if self._uncommitted_payload(action.parent_id):
            return 0
        if self.chain.membership.next_epoch(action.epoch) is not None:
            return 0
        return min(IDLE_DELAY_MAX_MS, self.replica.pacemaker.base_ms() // IDLE_DELAY_TIMER_DIVISOR)

    def _wake(self) -> None:
        """Offer the held-back payload now (a transaction arrived, or the pause is over)."""
        action = self._idle_request
        if action is None:
            return
        self._cancel_idle()
        if self.failed is None:
            self._offer_now(action)

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._idle_request = self._idle_handle = None

    def _offer_now(self, action: RequestPayload) -> None:
        """The mempool's next batch, without what uncommitted ancestors already carry, and
        the next epoch when committed governance says one is due."""
        proposed: dict[str, int] = {}
        for raw in self._uncommitted_payload(action.parent_id):
            known = self.mempool.known(raw)
            if known is not None:
                body = known[1].body
            else:
                try:
                    body = decode(raw, Transaction).body
                except DecodeError:
                    continue
            proposed[body.sender] = max(proposed.get(body.sender, 0), body.nonce + 1)

        def next_nonce(sender: str) -> int | None:
            committed = self._next_nonce(sender)
            if committed is None:
                return None
            return max(committed, proposed.get(sender, 0))

        items = self.mempool.batch(
            next_nonce=next_nonce, items_max=action.items_max, bytes_max=action.bytes_max
        )
        next_epoch = self.chain.membership.next_epoch(action.epoch)
        ready = PayloadReady(self._clock_ms(), action.epoch, action.round, items, next_epoch)
        self._schedule(ready)

    def _uncommitted_payload(self, parent_id: bytes) -> list[bytes]:
        """What the ancestors of `parent_id` carry that this node has not executed yet: the
        replica's uncommitted blocks and the committed blocks still due for execution."""
        tree = self.replica.tree
        items: list[bytes] = [
            raw for due in self._commits_due for entry in due.blocks for raw in entry.payload
        ]
        current = parent_id
        while current != tree.root_id:
            block = tree.get(current)
            if block is None:
                break
            items.extend(block.payload)
            current = block.header.parent_id
        return items

    def _commit(self, action: Commit) -> None:
        with self.around_commit():
            committed = self.chain.apply(
                action, known=self.mempool.known, certificates=self.certifier.take_unsaved()
            )
        for entry in committed:
            if entry.block.payload:
                self._busy_height = entry.block.header.height
            self.mempool.committed(
                entry.block.payload, height=entry.block.header.height, next_nonce=self._next_nonce
            )
            self.counters.transactions_committed += len(entry.receipts)
        for listener in self.on_commit:
            listener(committed)
        self.certifier.executed(committed)
        last = committed[-1]
        self._log.info(
            "committed",
            height=last.block.header.height,
            epoch=last.block.header.epoch,
            round=last.block.header.round,
            transactions=sum(len(c.receipts) for c in committed),
        )

    def _serve_blocks(self, action: ServeBlocks) -> None:
        store = self.chain.store

        def lookup(wanted: bytes) -> Block | None:
            height = store.height_of(wanted)
            return None if height is None else store.block(height)

        def voted(wanted: bytes) -> Block | None:
            blocks = {block_id(self.chain.suite, b.header): b for b in store.voted_blocks()}
            return blocks.get(wanted)

        blocks = serve_from_store(lookup, voted, action.block_id, action.count)
        if blocks:
            self.transport.send(action.to, encode(BlockResponse(action.block_id, blocks)))

    def _next_nonce(self, sender: str) -> int | None:
        return self.chain.next_nonce(sender)

    def close(self) -> None:
        """Stop: the commits decided but not yet executed are executed and recorded first
        (a stopped node's store holds every block its replica saw committed), at once: not
        deferred behind the consensus events still scheduled, as `_apply_commits` is."""
        if self.failed is None and self._commits_due:
            self._execute_due()
        if self.failed is None:
            self.certifier.close()
        self._cancel_idle()
        if self._timer is not None:
            self._timer.cancel()
        self._gossip.close()
        if self._vouching_handle is not None:
            self._vouching_handle.cancel()

"""The mirror's loop: follow a node, verify each block, write verified blocks exactly once.

`Mirror.run` opens the database (migrations, the mirror's lock), resumes from the progress
row (or starts the chain at the genesis), then repeats: learn the node's tip; fetch the next
block and its certificate; have the replayer check and execute it; write what it verified in
batches (at most `batch_blocks_max` blocks, written at once whenever the mirror catches up),
each batch one database transaction with its progress.

Waiting and retrying: a block not yet committed, or a certificate not yet formed, is waited
for (polling with a back-off from `poll_s_min` to `poll_s_max`); a certificate still missing
after `certificate_wait_s` while the node has later blocks is skipped over (the block is kept
pending until a later certificate vouches for it). A node that does not answer is retried
for ever with a back-off from `retry_s_min` to `retry_s_max` (a warning a try, the lag
metric growing); a database connection lost during a write is reconnected and the batch
retried up to `database_attempts_max` times, after checking what the progress row says.
A failed verification stops the mirror at once (the blocks verified before it are written
first); nothing of the failing block is written.

Lag: `metrics.py` gauges, and every `log_every_s` (and once more at a stop) a `mirror
progress` log line with the node's height, the mirrored height and how far behind it is.

Owns the loop, its pacing and its logs. Must never write a block the replayer did not
return, nor log a DSN or a password.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from consortia.mirror.database import MirrorDatabase
from consortia.mirror.errors import (
    DatabaseUnavailableError,
    MirrorConflictError,
    MirrorVerificationError,
)
from consortia.mirror.metrics import MirrorMetrics
from consortia.mirror.replay import PENDING_BLOCKS_MAX, MirroredBlock, Position, Replayer
from consortia.mirror.source import NodeSource, NodeUnreachableError
from consortia.types.genesis import Genesis, genesis_hash

LOGGER: Final = "consortia.mirror"
CLAIM_RETRY_S: Final = 0.5
NEXT_BLOCK: Final = "the next block"


@dataclass(frozen=True, slots=True)
class FollowSettings:
    batch_blocks_max: int = 64
    batch_transactions_max: int = 20_000
    poll_s_min: float = 0.05
    poll_s_max: float = 0.5
    certificate_wait_s: float = 2.0
    retry_s_min: float = 0.25
    retry_s_max: float = 8.0
    database_attempts_max: int = 8
    # How long to wait for the mirror's lock at a start (a killed mirror's connection may
    # linger until the database notices it is gone).
    claim_wait_s: float = 10.0
    log_every_s: float = 10.0
    # Stop (status 0) once this height is written; None: follow for ever.
    until_height: int | None = None


class _NotYetError(Exception):
    """What the next step needs is not at the node yet (`waiting_for` says what): wait and
    try again."""

    def __init__(self, waiting_for: str) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for


class Mirror:
    def __init__(
        self,
        genesis: Genesis,
        source: NodeSource,
        connect: Callable[[], MirrorDatabase],
        *,
        metrics: MirrorMetrics | None = None,
        settings: FollowSettings | None = None,
        stop: threading.Event | None = None,
        database_name: str = "",
    ) -> None:
        self.genesis = genesis
        self.source = source
        self._connect = connect
        self.metrics = metrics or MirrorMetrics()
        self.settings = settings or FollowSettings()
        self.stop = stop or threading.Event()
        self._log = structlog.get_logger(LOGGER).bind(node=source.base_url)
        self._database_name = database_name
        self._db: MirrorDatabase | None = None
        self._replayer: Replayer | None = None
        self._written: Position | None = None
        self._tip = 0
        self._batch: list[MirroredBlock] = []
        self._fetched: tuple[int, bytes] | None = None
        self._missing_since: tuple[int, float] | None = None
        self._waiting: tuple[int, str, float] | None = None  # height, what, since
        self._poll_s = self.settings.poll_s_min
        self._retry_s = self.settings.retry_s_min
        self._counted = (time.monotonic(), 0, 0)  # when, blocks, transactions: for the log
        self._blocks = self._transactions = 0

    @property
    def written(self) -> Position:
        assert self._written is not None, "the mirror has not started"
        return self._written

    # ------------------------------------------------------------------ running

    def run(self) -> Position:
        """Follow until asked to stop (or `until_height` is written); the position
        reached. Raises MirrorError subclasses (a verification failure, the database)."""
        try:
            self._start()
            next_log = time.monotonic() + self.settings.log_every_s
            while not self.stop.is_set() and not self._done():
                try:
                    self._step()
                    self._retry_s = self.settings.retry_s_min
                except NodeUnreachableError as error:
                    self._node_failed(error)
                except _NotYetError as waiting:
                    self._flush()
                    self._note_wait(waiting.waiting_for)
                    self._wait_poll()
                if time.monotonic() >= next_log:
                    self._log_progress()
                    next_log = time.monotonic() + self.settings.log_every_s
            self._flush()
            self._log_progress()  # where it stopped, and how far behind the node
        except MirrorVerificationError as error:
            self._log.error(
                "verification failed", what=error.what, height=error.height, message=str(error)
            )
            self._flush_verified()
            raise
        finally:
            self._close()
        self._log.info("mirror stopped", height=self.written.height)
        return self.written

    def _start(self) -> None:
        self._db = self._open()
        progress = self._db.progress()
        digest = genesis_hash(self.genesis)
        if progress is None:
            replayer = Replayer.from_genesis(self.genesis)
            self._db.begin_chain(
                self.genesis.chain_id, digest, replayer.position, replayer.genesis_state()
            )
        else:
            self._db.check_chain(progress, self.genesis.chain_id, digest)
            replayer = Replayer.resume(self.genesis, progress.position, self._db.current_state())
        self._replayer = replayer
        self._written = replayer.position
        self.metrics.height.set(self._written.height)
        self._log.info(
            "mirror started",
            height=self._written.height,
            database=self._database_name,
            resumed=progress is not None,
        )

    def _open(self) -> MirrorDatabase:
        database = self._connect()
        try:
            applied = database.prepare()
            self._claim(database)
        except BaseException:
            database.close()
            raise
        if applied:
            self._log.info("schema migrated", versions=applied)
        return database

    def _claim(self, database: MirrorDatabase) -> None:
        deadline = time.monotonic() + self.settings.claim_wait_s
        while True:
            try:
                database.claim()
                return
            except MirrorConflictError:
                if time.monotonic() >= deadline or self.stop.wait(CLAIM_RETRY_S):
                    raise
                self._log.warning("waiting for the mirror's lock", wait_s=CLAIM_RETRY_S)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.source.close()

    def _done(self) -> bool:
        until = self.settings.until_height
        return until is not None and self._written is not None and self._written.height >= until

    # ------------------------------------------------------------------ one step

    def _step(self) -> None:
        replayer = self._replayer
        assert replayer is not None
        height = replayer.height + 1
        if height > self._tip:
            self._flush()
            self._tip = int(self.source.status()["height"])
            self._observe()
            if height > self._tip:
                raise _NotYetError(NEXT_BLOCK)
        if self._fetched is None or self._fetched[0] != height:
            encoded = self.source.block(height)
            if encoded is None:
                raise _NotYetError(NEXT_BLOCK)
            self._fetched = (height, encoded)
        encoded = self._fetched[1]
        certificate = self.source.certificate(height)
        if certificate is not None:
            self._learn_epochs(certificate.header.epoch)
            verified = replayer.apply(height, encoded, certificate)
        elif self._skip_certificate(height):
            verified = replayer.apply(height, encoded, None)
        else:
            raise _NotYetError("its execution certificate")
        self._fetched = self._missing_since = self._waiting = None
        self._poll_s = self.settings.poll_s_min
        self._batch.extend(verified)
        self.metrics.pending.set(len(replayer.pending))
        transactions = sum(len(b.transactions) for b in self._batch)
        until = self.settings.until_height
        settled = not replayer.pending
        if (
            len(self._batch) >= self.settings.batch_blocks_max
            or transactions >= self.settings.batch_transactions_max
            or (settled and replayer.height >= self._tip)
            or (settled and until is not None and replayer.height >= until)
        ):
            self._flush()

    def _skip_certificate(self, height: int) -> bool:
        """Whether to execute `height` without its certificate: the node has later blocks,
        the wait for it is over, and room is left among the pending blocks."""
        now = time.monotonic()
        if self._missing_since is None or self._missing_since[0] != height:
            self._missing_since = (height, now)
        waited = now - self._missing_since[1]
        assert self._replayer is not None
        if len(self._replayer.pending) >= PENDING_BLOCKS_MAX:
            return False
        if waited < self.settings.certificate_wait_s:
            return False
        if height >= self._tip:  # the tip seen may be stale: has the node moved on?
            self._tip = int(self.source.status()["height"])
            self._observe()
        return height < self._tip

    def _learn_epochs(self, epoch: int) -> None:
        replayer = self._replayer
        assert replayer is not None
        while (ending := replayer.needs_epoch(epoch)) is not None:
            proof = self.source.epoch_proof(ending)
            if proof is None:
                raise _NotYetError(f"the proof that epoch {ending} ended")
            replayer.learn_epoch(proof)
            self._log.info("epoch learnt", epoch=ending + 1)

    # ------------------------------------------------------------------ writing

    def _flush(self) -> None:
        if not self._batch:
            return
        batch = self._batch
        with self.metrics.write_seconds.time():
            self._written = self._write(batch)
        transactions = sum(len(b.transactions) for b in batch)
        self._blocks += len(batch)
        self._transactions += transactions
        self.metrics.blocks.inc(len(batch))
        self.metrics.transactions.inc(transactions)
        self._batch = []
        self._observe()

    def _flush_verified(self) -> None:
        """After a verification failure: write what was verified before it, if the
        database lets us (its own failure is logged, the verification failure raised)."""
        try:
            self._flush()
        except Exception as error:  # the verification failure is what the caller must see
            self._log.error("could not write the blocks verified before", error=str(error))

    def _write(self, batch: list[MirroredBlock]) -> Position:
        after = self.written
        reached = Position(batch[-1].height, batch[-1].block_id, batch[-1].state_root)
        attempts = 0
        while True:
            try:
                if self._db is None:
                    self._db = self._open()
                    progress = self._db.progress()
                    assert progress is not None
                    if progress.position == reached:
                        return reached  # the lost connection had committed it
                    if progress.position != after:
                        raise MirrorConflictError(
                            f"the progress row is at height {progress.position.height}, not "
                            f"{after.height} where this mirror left it"
                        )
                return self._db.write(batch, after)
            except DatabaseUnavailableError as error:
                attempts += 1
                self.metrics.database_retries.inc()
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if attempts >= self.settings.database_attempts_max:
                    raise
                pause = min(self.settings.retry_s_max, self.settings.retry_s_min * 2**attempts)
                self._log.warning("database unavailable", error=str(error), retry_in_s=pause)
                if self.stop.wait(pause):
                    raise

    # ------------------------------------------------------------------ pacing and logs

    def _note_wait(self, waiting_for: str) -> None:
        """Log a wait for something other than the next block once it lasted `log_every_s`
        (and again every `log_every_s`)."""
        assert self._replayer is not None
        height, now = self._replayer.height + 1, time.monotonic()
        if waiting_for == NEXT_BLOCK:
            self._waiting = None
            return
        if self._waiting is None or self._waiting[:2] != (height, waiting_for):
            self._waiting = (height, waiting_for, now)
        elif now - self._waiting[2] >= self.settings.log_every_s:
            self._log.warning("waiting", height=height, waiting_for=waiting_for)
            self._waiting = (height, waiting_for, now)

    def _wait_poll(self) -> None:
        self.stop.wait(self._poll_s)
        self._poll_s = min(self.settings.poll_s_max, self._poll_s * 2)

    def _node_failed(self, error: NodeUnreachableError) -> None:
        self.metrics.node_retries.inc()
        self._log.warning("node unreachable", error=error.message, retry_in_s=self._retry_s)
        self._flush()
        self.stop.wait(self._retry_s)
        self._retry_s = min(self.settings.retry_s_max, self._retry_s * 2)

    def _observe(self) -> None:
        replayer = self._replayer
        pending = 0 if replayer is None else len(replayer.pending)
        self.metrics.observe(self.written.height, self._tip, pending)

    def _log_progress(self) -> None:
        now = time.monotonic()
        since, blocks, transactions = self._counted
        elapsed = max(now - since, 1e-9)
        self._counted = (now, self._blocks, self._transactions)
        fields: dict[str, Any] = {
            "height": self.written.height,
            "node_height": self._tip,
            "behind": max(0, self._tip - self.written.height),
            "blocks_per_s": round((self._blocks - blocks) / elapsed, 1),
            "transactions_per_s": round((self._transactions - transactions) / elapsed, 1),
        }
        if self._replayer is not None and self._replayer.pending:
            fields["pending"] = len(self._replayer.pending)
        self._log.info("mirror progress", **fields)

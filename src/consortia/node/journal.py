"""Group commit of the node's transaction journal: a client hears `202 pending` only once its
transactions are on disk (storage/tx_journal.py says why and how they are kept).

`record(raws)` adds a client's admitted transactions to the next write and returns a future
that completes when that write is durable; the API awaits it before it answers. One write is
in flight at a time, in the default executor (the event loop never waits for the disk), and
everything recorded meanwhile goes into the next one: under load, one fdatasync covers every
request that arrived during the previous one (about half a millisecond here), never one per
transaction. Before a write, when the file has grown past what the mempool holds (see
`TxJournal.due_for_rewrite`), the journal is rewritten with the mempool's transactions instead
(they include everything recorded so far that is still waiting).

A write that fails (a full or failing disk) fails every future waiting on it and stops the
node through `on_failure`: a node that can no longer keep its promises must not make more.

Owns the pending buffer and the write in flight; must never admit, gossip or decide anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from consortia.storage.tx_journal import TxJournal


@dataclass(slots=True)
class JournalCounters:
    writes: int = 0  # appends (each one fdatasync)
    transactions: int = 0  # transactions appended
    rewrites: int = 0


class JournalWriter:
    def __init__(
        self,
        journal: TxJournal,
        *,
        waiting: Callable[[], list[bytes]],
        waiting_bytes: Callable[[], int],
        on_failure: Callable[[Exception], None],
    ) -> None:
        self._journal = journal
        self._waiting = waiting  # the mempool's transactions, for a rewrite
        self._waiting_bytes = waiting_bytes
        self._on_failure = on_failure
        self._buffer: list[bytes] = []
        self._done: asyncio.Future[None] | None = None  # completes when `_buffer` is durable
        self._task: asyncio.Task[None] | None = None
        self.failed: Exception | None = None
        self.counters = JournalCounters()

    def record(self, raws: list[bytes]) -> asyncio.Future[None]:
        """A future that completes once `raws` are durable (at once for none); it fails with
        the write's error when the write fails, or has failed before."""
        loop = asyncio.get_running_loop()
        if self.failed is not None:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(self.failed)
            return failed
        if not raws:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        self._buffer.extend(raws)
        if self._done is None:
            self._done = loop.create_future()
        if self._task is None:
            self._task = loop.create_task(self._write_all())
        # Each caller its own future: one that gives up (cancelled) never cancels the write's.
        return asyncio.shield(self._done)

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                done, self._done = self._done, None
                assert done is not None
                try:
                    rewrite = None
                    if self._journal.due_for_rewrite(self._waiting_bytes()):
                        rewrite = self._waiting()
                    await loop.run_in_executor(None, self._write, batch, rewrite)
                except Exception as error:  # a full or failing disk (or a bug): never a hang
                    self._fail(error, done)
                    return
                done.set_result(None)
        finally:
            self._task = None

    def _fail(self, error: Exception, done: asyncio.Future[None]) -> None:
        self.failed = error
        done.set_exception(error)
        if self._done is not None:  # recorded during the failed write
            self._done.set_exception(error)
            self._done = None
        self._buffer.clear()
        self._on_failure(error)

    def _write(self, batch: list[bytes], rewrite: list[bytes] | None) -> None:
        if rewrite is None:
            self._journal.append(batch)
            self.counters.writes += 1
            self.counters.transactions += len(batch)
        else:
            self._journal.rewrite(rewrite)
            self.counters.rewrites += 1

    async def close(self) -> None:
        """Wait for the write in flight (and what it left), then close the file."""
        while self._task is not None:
            await asyncio.shield(self._task)
        self._journal.close()

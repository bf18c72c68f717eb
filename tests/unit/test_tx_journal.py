"""The node's journal of admitted transactions (storage/tx_journal.py) and its group commit
(node/journal.py).

Setup: a journal in a temporary folder; transactions are plain byte strings (the journal never
reads them). Test: what was appended is read back in order after a reopen; a tail a crash cut
short, corrupted or absurdly long is dropped and everything before it kept, and the reopened
file holds only whole records; a rewrite replaces the file whole; the writer answers a record
only once it is durable, covers many records with one write, rewrites the journal from the
mempool when it has grown, and on a failing disk fails the waiting records and stops the node.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import httpx
import msgspec
import pytest

from consortia.api import create_app
from consortia.net.counters import Counters
from consortia.node.journal import JournalWriter
from consortia.node.metrics import node_registry
from consortia.node.service import NodeService
from consortia.storage import tx_journal
from consortia.storage.tx_journal import TxJournal, decode_records, encode_records
from tests.node_helpers import Hub, make_genesis, started_drivers, transfer

RECORD_MAX = 1024


def _open(path: Path) -> tuple[TxJournal, list[bytes], int]:
    journal, recovered = TxJournal.open(path, record_bytes_max=RECORD_MAX)
    return journal, recovered.transactions, recovered.torn_bytes


def test_appended_transactions_are_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tx-journal"
    journal, found, torn = _open(path)
    assert (found, torn) == ([], 0)
    journal.append([b"one", b"two"])
    journal.append([b"three"])
    assert journal.size == path.stat().st_size
    journal.close()
    reopened, found, torn = _open(path)
    assert (found, torn) == ([b"one", b"two", b"three"], 0)
    reopened.append([b"four"])
    reopened.close()
    assert _open(path)[1] == [b"one", b"two", b"three", b"four"]


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 12])
def test_a_tail_cut_short_by_a_crash_is_dropped_and_the_rest_kept(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    journal.append([b"kept-1", b"kept-2"])
    journal.append([b"the-last-write"])
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-cut])
    reopened, found, torn = _open(path)
    assert found == [b"kept-1", b"kept-2"]
    assert torn == len(encode_records([b"the-last-write"])) - cut
    # The torn tail is gone from the file: a later append is read back after the kept ones.
    reopened.append([b"after"])
    reopened.close()
    assert _open(path)[1:] == ([b"kept-1", b"kept-2", b"after"], 0)


def test_a_record_failing_its_checksum_ends_the_reading(tmp_path: Path) -> None:
    data = bytearray(encode_records([b"first", b"second", b"third"]))
    second = len(encode_records([b"first"])) + 8  # the first byte of "second"
    data[second] ^= 0x01
    recovered = decode_records(bytes(data), RECORD_MAX)
    assert recovered.transactions == [b"first"]
    assert recovered.torn_bytes == len(data) - len(encode_records([b"first"]))


@pytest.mark.parametrize("length", [0, RECORD_MAX + 1, 2**32 - 1])
def test_a_length_no_record_can_have_ends_the_reading(length: int) -> None:
    good = encode_records([b"good"])
    data = good + length.to_bytes(4, "big") + b"\0\0\0\0" + b"x" * 16
    recovered = decode_records(data, RECORD_MAX)
    assert recovered.transactions == [b"good"]
    assert recovered.torn_bytes == len(data) - len(good)


def test_a_rewrite_replaces_the_file_whole_and_appends_follow_it(tmp_path: Path) -> None:
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    journal.append([b"old-1", b"old-2", b"old-3"])
    journal.rewrite([b"live"])
    assert journal.size == path.stat().st_size == len(encode_records([b"live"]))
    assert not path.with_name("tx-journal.new").exists()
    journal.append([b"new"])
    journal.close()
    assert _open(path)[1] == [b"live", b"new"]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_due_for_rewrite_only_past_twice_the_live_bytes_and_the_floor(tmp_path: Path) -> None:
    journal, _, _ = _open(tmp_path / "tx-journal")
    journal.size = tx_journal.REWRITE_FLOOR_BYTES
    assert not journal.due_for_rewrite(0)
    journal.size = tx_journal.REWRITE_FLOOR_BYTES + 1
    assert journal.due_for_rewrite(0)
    assert not journal.due_for_rewrite(1)
    journal.close()


class _Mempool:
    def __init__(self) -> None:
        self.waiting: list[bytes] = []

    def size(self) -> int:
        return sum(len(raw) for raw in self.waiting)


def _writer(journal: TxJournal, mempool: _Mempool, failures: list[Exception]) -> JournalWriter:
    return JournalWriter(
        journal,
        waiting=lambda: list(mempool.waiting),
        waiting_bytes=mempool.size,
        on_failure=failures.append,
    )


def test_records_are_answered_once_durable_many_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    failures: list[Exception] = []
    writer = _writer(journal, _Mempool(), failures)

    async def scenario() -> None:
        first = writer.record([b"a"])
        assert not first.done()  # nothing is answered before its write
        await asyncio.sleep(0)  # one turn of the loop: the first write is under way
        # Recorded while the first write is in flight: all three go into the next write.
        second, third, fourth = writer.record([b"b"]), writer.record([b"c"]), writer.record([])
        assert fourth.done()  # nothing to write
        await first
        assert _open_copy(path)[:1] == [b"a"]  # (the next write may be done already)
        await asyncio.gather(second, third)
        assert _open_copy(path) == [b"a", b"b", b"c"]
        await writer.close()

    asyncio.run(scenario())
    assert (writer.counters.writes, writer.counters.transactions) == (2, 3)
    assert failures == []


def _open_copy(path: Path) -> list[bytes]:
    return decode_records(path.read_bytes(), RECORD_MAX).transactions


def test_a_grown_journal_is_rewritten_with_what_the_mempool_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tx_journal, "REWRITE_FLOOR_BYTES", 64)
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    mempool = _Mempool()
    writer = _writer(journal, mempool, [])

    async def scenario() -> None:
        for index in range(8):  # 8 records of 16 + 8 bytes: past the floor of 64
            raw = b"tx-%013d" % index
            mempool.waiting.append(raw)
            await writer.record([raw])
        mempool.waiting[:6] = []  # six were committed
        last = b"tx-last-0000000"
        mempool.waiting.append(last)
        await writer.record([last])
        await writer.close()

    asyncio.run(scenario())
    assert writer.counters.rewrites == 1
    assert _open_copy(path) == mempool.waiting


def test_a_failing_disk_fails_the_waiting_records_and_stops_the_node(tmp_path: Path) -> None:
    journal, _, _ = _open(tmp_path / "tx-journal")
    failures: list[Exception] = []
    writer = _writer(journal, _Mempool(), failures)

    def broken(raws: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    journal.append = broken  # type: ignore[method-assign]

    async def scenario() -> None:
        waiting = writer.record([b"a"])
        with pytest.raises(OSError, match="No space"):
            await waiting
        with pytest.raises(OSError, match="No space"):  # and every later record at once
            await writer.record([b"b"])
        await writer.close()

    asyncio.run(scenario())
    assert len(failures) == 1 and isinstance(failures[0], OSError)


class _NoLinks:
    """What /metrics reads of a transport, for in-process nodes (which have none)."""

    counters = Counters()

    def connected(self) -> set[bytes]:
        return set()


def test_the_api_answers_pending_only_for_what_the_journal_holds(tmp_path: Path) -> None:
    """Setup: four in-process nodes; node 0's API over a NodeService that keeps a journal.
    Test: a batch of two good transfers and a forged one is answered pending for the two,
    which are in the journal file by then (the forged one is not), and /metrics counts
    them; a failing journal write answers 503 `journal_failed` and stops the node."""

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(5))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        path = tmp_path / "tx-journal"
        journal, _, _ = _open(path)
        failures: list[Exception] = []
        writer = JournalWriter(
            journal,
            waiting=drivers[0].mempool.transactions,
            waiting_bytes=lambda: drivers[0].mempool.size_bytes,
            on_failure=failures.append,
        )
        service = NodeService(drivers[0], drivers[0].replica.node_id, set, journal=writer)
        app = create_app(service, node_registry(service, drivers[0], _NoLinks()))
        good = [transfer(genesis, "alice", "bob", 1, 0), transfer(genesis, "carol", "bob", 2, 0)]
        forged = transfer(genesis, "dave", "bob", 3, 0)[:-1] + b"\0"
        binary = {"Content-Type": "application/msgpack"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        ) as client:
            answer = await client.post(
                "/v1/txs", content=msgspec.msgpack.encode([*good, forged]), headers=binary
            )
            results = answer.json()["results"]
            assert [r.get("status") for r in results] == ["pending", "pending", None]
            assert decode_records(path.read_bytes(), 1 << 16).transactions == good
            metrics = (await client.get("/metrics")).text
            assert "consortia_journal_transactions_total 2.0" in metrics

            def broken(raws: list[bytes]) -> None:
                raise OSError(5, "Input/output error")

            journal.append = broken  # type: ignore[method-assign]
            late = transfer(genesis, "alice", "bob", 1, 1)
            answer = await client.post(
                "/v1/txs", content=msgspec.msgpack.encode([late]), headers=binary
            )
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "journal_failed"
            assert len(failures) == 1
        await writer.close()
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def test_a_caller_that_gives_up_never_fails_the_others_waiting_on_the_same_write(
    tmp_path: Path,
) -> None:
    """Setup: two requests wait for the same group-committed write (held on the disk); the
    first is cancelled (its client went away, a timeout). Test: the second is still answered
    once the write is durable, and the writer goes on writing. Regression: both waited on one
    shared future, which the first request's cancellation cancelled: the second failed too,
    and the writer's task then died on `set_result` of a cancelled future (an exception never
    retrieved), leaving anything recorded during that write unwritten and unanswered."""
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    writer = _writer(journal, _Mempool(), [])
    disk = threading.Event()
    append = journal.append

    def slow_append(raws: list[bytes]) -> None:
        disk.wait(10)
        append(raws)

    journal.append = slow_append  # type: ignore[method-assign]

    async def request(raw: bytes) -> None:
        await writer.record([raw])

    async def scenario() -> None:
        gives_up = asyncio.create_task(request(b"a"))
        waits = asyncio.create_task(request(b"b"))
        await asyncio.sleep(0.01)  # both recorded, their write under way (held on the disk)
        gives_up.cancel()
        await asyncio.sleep(0)
        late = asyncio.create_task(request(b"c"))  # recorded during the write
        await asyncio.sleep(0.01)
        disk.set()
        await asyncio.wait([waits, late], timeout=60)
        assert waits.done() and not waits.cancelled() and waits.exception() is None
        assert late.done() and not late.cancelled() and late.exception() is None
        await writer.record([b"d"])
        await writer.close()

    asyncio.run(scenario())
    assert _open_copy(path) == [b"a", b"b", b"c", b"d"]


def test_a_write_failing_with_no_os_error_still_answers_and_stops_the_node(
    tmp_path: Path,
) -> None:
    """Setup: the journal's write raises something other than OSError (a bug, memory).
    Test: the waiting record fails with it (the API answers 503 instead of hanging), the node
    is told to stop, and closing the writer does not raise. Regression: only OSError was
    caught; anything else killed the writer's task and left the record's future pending."""
    journal, _, _ = _open(tmp_path / "tx-journal")
    failures: list[Exception] = []
    writer = _writer(journal, _Mempool(), failures)

    def broken(raws: list[bytes]) -> None:
        raise MemoryError

    journal.append = broken  # type: ignore[method-assign]

    async def scenario() -> None:
        with pytest.raises(MemoryError):
            await asyncio.wait_for(writer.record([b"a"]), timeout=60)
        await writer.close()

    asyncio.run(scenario())
    assert len(failures) == 1 and isinstance(failures[0], MemoryError)


def test_a_rewrite_failing_to_reopen_never_leaves_a_closed_descriptor_to_close_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup: a rewrite replaces the file, closes the old descriptor, and then cannot open
    the new file (EMFILE, a failing disk); another file then opens and gets the freed
    descriptor number. Test: closing the journal leaves that other file open. Regression:
    the journal kept the closed number and `close` closed it again: someone else's file
    (the store's, a peer's socket) closed under it."""
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    journal.append([b"old"])
    real_open = os.open

    def failing_reopen(name: object, flags: int, *args: int, **kwargs: object) -> int:
        if name == path and flags & os.O_APPEND:
            raise OSError(24, "Too many open files")
        return real_open(name, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_reopen)
    with pytest.raises(OSError, match="Too many"):
        journal.rewrite([b"live"])
    monkeypatch.undo()
    other = os.open(tmp_path / "someone-elses-file", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        journal.close()
        os.fstat(other)  # still open
    finally:
        os.close(other)
    assert _open(path)[1] == [b"live"]


def test_a_rewrite_failing_on_a_full_disk_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup: a rewrite's write of its temporary file fails (the disk is full). Test: the
    journal is left as it was, and the partial temporary file is removed (it would hold
    up to the mempool's size on the full disk). Regression: it stayed there."""
    path = tmp_path / "tx-journal"
    journal, _, _ = _open(path)
    journal.append([b"old-1", b"old-2"])

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        journal.rewrite([b"live"])
    monkeypatch.undo()
    assert not path.with_name("tx-journal.new").exists()
    journal.close()
    assert _open(path)[1] == [b"old-1", b"old-2"]

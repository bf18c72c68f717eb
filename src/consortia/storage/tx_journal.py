"""The node's journal of admitted transactions: a transaction a client was told is `pending`
(HTTP 202) survives a crash of the node that told it.

The mempool lives in memory. Without this journal, a node killed between answering `202` and
passing the transaction on to its peers loses it, and the client, holding an answer, has no
reason to send it again (a nonce gap then stalls that sender's later transactions). So the
node appends every transaction a client submitted here, durably (fdatasync), before it
answers; a restarted node reads the journal back and admits what it holds again (what was
committed meanwhile is refused by the mempool as a spent nonce, and is simply dropped).

The file is a sequence of records, each `length (4 bytes, big-endian) | crc32 (4 bytes) |
transaction bytes`. Writes only ever append, and a write is acknowledged only after its
fdatasync, so a record cut short or failing its checksum can only be the tail a crash
interrupted, never acknowledged: reading stops there and says how many bytes it left
(`Recovered.torn_bytes`). A length above `record_bytes_max` (the genesis transaction size
limit) is read the same way: no record this node wrote is that long.

The journal is kept short by `rewrite`: the node replaces it (a temporary file, fsync,
atomic rename, fsync of the folder) by what its mempool holds now, when the file has grown
past twice that plus a floor (so rewriting costs at most half the bytes appended since the
last rewrite: amortised O(1) per transaction).

Owns the file's layout and its two writes (append, rewrite); must never decide what is
admitted (the mempool does), never read the clock, and never be imported by the pure cores.
Not thread-safe: one caller at a time (the node runs every write in one executor job at once).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_HEADER: Final = struct.Struct(">II")  # length, crc32 of the transaction bytes
# Rewrite when the file exceeds twice the live bytes plus this floor (a near-empty mempool
# would otherwise rewrite the journal at every append).
REWRITE_FLOOR_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recovered:
    """What `TxJournal.open` read back: the transactions in the order they were appended, and
    how many bytes at the end were no whole record (a write a crash cut short)."""

    transactions: list[bytes]
    torn_bytes: int


def encode_records(raws: Iterable[bytes]) -> bytes:
    return b"".join(_HEADER.pack(len(raw), zlib.crc32(raw)) + raw for raw in raws)


def decode_records(data: bytes, record_bytes_max: int) -> Recovered:
    """The whole records at the start of `data`; reading stops at the first record cut short,
    too long or failing its checksum."""
    transactions: list[bytes] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if not 1 <= length <= record_bytes_max or end > len(data):
            break
        raw = data[start:end]
        if zlib.crc32(raw) != crc:
            break
        transactions.append(raw)
        offset = end
    return Recovered(transactions, len(data) - offset)


class TxJournal:
    """An open journal file, appended to by `append` and replaced by `rewrite`."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self._fd = fd
        self.size = size  # bytes in the file (what `append` and `rewrite` wrote)

    @classmethod
    def open(cls, path: Path, *, record_bytes_max: int) -> tuple[TxJournal, Recovered]:
        """Open (or create) the journal at `path` and read back what it holds. The file is
        then rewritten with exactly the whole records read, so a torn tail never sits in
        front of later appends."""
        assert record_bytes_max >= 1
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        recovered = decode_records(data, record_bytes_max)
        journal = cls(path, -1, 0)
        journal.rewrite(recovered.transactions)
        return journal, recovered

    def append(self, raws: list[bytes]) -> None:
        """Append `raws` and make them durable (one write, one fdatasync)."""
        assert self._fd >= 0, "the journal is closed"
        data = encode_records(raws)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fdatasync(self._fd)
        self.size += len(data)

    def due_for_rewrite(self, live_bytes: int) -> bool:
        """Whether the file has grown past twice `live_bytes` (what the mempool holds now)
        plus the floor."""
        return self.size > 2 * live_bytes + REWRITE_FLOOR_BYTES

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the journal by `raws`, atomically: a crash leaves either the old file or
        the new one, whole."""
        data = encode_records(raws)
        temporary = self.path.with_name(self.path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a partial copy must not hold the full disk
            raise
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1  # never closed twice: the number may be another file's by then
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

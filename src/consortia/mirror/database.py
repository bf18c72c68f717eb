"""The mirror's PostgreSQL database: its progress and the one write path for mirrored blocks.

Exactly once: `write` puts a batch of verified blocks (their blocks, transactions, receipts,
events and state changes, and the current state they lead to) and the new progress row in
ONE transaction: it first locks the progress row and checks that it still names the
position the batch follows, then copies the rows, then advances the progress. Either all of
a batch is committed with the height it reaches, or nothing of it is; a mirror killed at any
moment resumes from the committed progress, so no height is written twice or skipped. A
session-level advisory lock (`claim`) keeps a second mirror out of the same schema;
PostgreSQL releases it when the connection ends, a killed mirror's too.

Owns the SQL of the write path, the progress row and the lock. Must never write a block the
replayer did not return as verified, never write rows outside `write`'s transaction, and
never put a password in an error message (`consortia.postgres.error_message`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from consortia.mirror.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    MirrorConflictError,
    WrongChainError,
)
from consortia.mirror.replay import MirroredBlock, Position
from consortia.mirror.rows import (
    BLOCK_COLUMNS,
    EVENT_COLUMNS,
    RECEIPT_COLUMNS,
    STATE_CHANGE_COLUMNS,
    TRANSACTION_COLUMNS,
    Row,
    block_row,
    event_rows,
    receipt_rows,
    state_change_rows,
    transaction_rows,
)
from consortia.mirror.schema import migrate
from consortia.postgres import error_message
from consortia.types.state_proof import state_key

# The advisory lock a running mirror holds, with its schema: (this, hashtext(schema)), so
# mirrors into two schemas of one database do not exclude each other ("cmir").
MIRROR_LOCK: Final = 0x636D6972
CONNECT_TIMEOUT_S: Final = 10
APPLICATION_NAME: Final = "consortia-mirror"

_STAGE: Final = """
CREATE TEMPORARY TABLE IF NOT EXISTS state_stage (
    contract text NOT NULL, key text NOT NULL, height bigint NOT NULL, value jsonb, raw bytea
) ON COMMIT DELETE ROWS
"""
_MERGE: Final = """
INSERT INTO state_current (contract, key, height, value, raw)
SELECT contract, key, height, value, raw FROM state_stage WHERE raw IS NOT NULL
ON CONFLICT (contract, key) DO UPDATE
SET height = EXCLUDED.height, value = EXCLUDED.value, raw = EXCLUDED.raw
"""
_DELETE: Final = """
DELETE FROM state_current AS s USING state_stage AS d
WHERE d.raw IS NULL AND s.contract = d.contract AND s.key = d.key
"""
_HOLD: Final = "SELECT height, block_hash FROM mirror_progress WHERE id = 1 FOR UPDATE"
_ADVANCE: Final = """
UPDATE mirror_progress SET height = %s, block_hash = %s, state_root = %s, updated_at = now()
WHERE id = 1 AND height = %s AND block_hash = %s
"""

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Progress:
    """The progress row: which chain this database mirrors and where it stands."""

    chain_id: str
    genesis_hash: str
    position: Position


@contextmanager
def database_errors() -> Iterator[None]:
    """psycopg's failures as the mirror's: a lost or refused connection is
    DatabaseUnavailableError (worth retrying), anything else DatabaseError."""
    try:
        yield
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(error_message(error)) from None
    except psycopg.Error as error:
        raise DatabaseError(error_message(error)) from None


class MirrorDatabase:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @classmethod
    def connect(cls, dsn: str) -> MirrorDatabase:
        """Connected in autocommit mode (every write opens its own transaction)."""
        with database_errors():
            connection: Connection = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
            )
        return cls(connection)

    def close(self) -> None:
        self._connection.close()

    def prepare(self) -> list[int]:
        """Apply the migrations this database lacks; the versions applied."""
        with database_errors():
            return migrate(self._connection)

    def claim(self) -> None:
        """Hold the mirror's lock for this connection's life; MirrorConflictError when
        another mirror holds it."""
        with database_errors():
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (MIRROR_LOCK,)
            ).fetchone()
        if row is None or row[0] is not True:
            raise MirrorConflictError("another mirror is writing into this database")

    def progress(self) -> Progress | None:
        with database_errors():
            row = self._connection.execute(
                "SELECT chain_id, genesis_hash, height, block_hash, state_root "
                "FROM mirror_progress WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        chain_id, genesis_hash, height, block_hash, state_root = row
        position = Position(int(height), bytes.fromhex(block_hash), bytes.fromhex(state_root))
        return Progress(str(chain_id), str(genesis_hash), position)

    def check_chain(self, progress: Progress, chain_id: str, genesis_hash: bytes) -> None:
        if progress.chain_id != chain_id or progress.genesis_hash != genesis_hash.hex():
            raise WrongChainError(
                f"this database mirrors chain {progress.chain_id!r} (genesis "
                f"{progress.genesis_hash[:16]}…), not {chain_id!r} (genesis "
                f"{genesis_hash.hex()[:16]}…)"
            )

    def begin_chain(
        self,
        chain_id: str,
        genesis_hash: bytes,
        at: Position,
        genesis_state: dict[bytes, bytes | None],
    ) -> None:
        """The genesis state as height 0's state changes and the current state, and the
        progress row at height 0, in one transaction."""
        with database_errors(), self._connection.transaction():
            self._stage_state(0, genesis_state)
            self._connection.execute(
                "INSERT INTO mirror_progress (chain_id, genesis_hash, height, block_hash, "
                "state_root) VALUES (%s, %s, %s, %s, %s)",
                (chain_id, genesis_hash.hex(), at.height, at.block_id.hex(), at.state_root.hex()),
            )

    def current_state(self) -> dict[bytes, bytes]:
        """Every current state value, by its full state key (what the replayer resumes
        from)."""
        with database_errors():
            rows = self._connection.execute("SELECT contract, key, raw FROM state_current")
            return {state_key(contract, key): bytes(raw) for contract, key, raw in rows}

    def write(self, blocks: Sequence[MirroredBlock], after: Position) -> Position:
        """Write verified `blocks` (consecutive, following `after`) and advance the progress
        to the last of them, all in one transaction; the new position.
        MirrorConflictError (and nothing written) when the progress is no longer `after`."""
        assert blocks and blocks[0].height == after.height + 1
        assert all(b.height == after.height + 1 + i for i, b in enumerate(blocks))
        last = blocks[-1]
        reached = Position(last.height, last.block_id, last.state_root)
        with database_errors(), self._connection.transaction():
            self._hold_progress(after)
            self._copy("blocks", BLOCK_COLUMNS, [block_row(b) for b in blocks])
            self._copy(
                "transactions",
                TRANSACTION_COLUMNS,
                [r for b in blocks for r in transaction_rows(b)],
            )
            self._copy("receipts", RECEIPT_COLUMNS, [r for b in blocks for r in receipt_rows(b)])
            self._copy("events", EVENT_COLUMNS, [r for b in blocks for r in event_rows(b)])
            changes = [r for b in blocks for r in state_change_rows(b.height, b.writes)]
            self._copy("state_changes", STATE_CHANGE_COLUMNS, changes)
            self._merge_current(changes)
            self._connection.execute(
                _ADVANCE,
                (
                    reached.height,
                    reached.block_id.hex(),
                    reached.state_root.hex(),
                    after.height,
                    after.block_id.hex(),
                ),
            )
        return reached

    # ------------------------------------------------------------------ helpers

    def _hold_progress(self, after: Position) -> None:
        """Lock the progress row for this transaction; MirrorConflictError unless it still
        names `after` (another writer moved it: nothing of this batch is written)."""
        row = self._connection.execute(_HOLD).fetchone()
        if row is None or (int(row[0]), str(row[1])) != (after.height, after.block_id.hex()):
            where = "no progress row" if row is None else f"height {row[0]}"
            raise MirrorConflictError(
                f"the progress row names {where}, not height {after.height} where this "
                "mirror left it: another writer moved it"
            )

    def _copy(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        with (
            self._connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,  # names are constants
        ):
            for row in rows:
                copy.write_row(row)

    def _stage_state(self, height: int, writes: dict[bytes, bytes | None]) -> None:
        """Height `height`'s state changes, and the current state they lead to."""
        changes = state_change_rows(height, writes)
        self._copy("state_changes", STATE_CHANGE_COLUMNS, changes)
        self._merge_current(changes)

    def _merge_current(self, changes: list[Row]) -> None:
        """The current state after `changes` (state_changes rows, in height order): each
        key's last value into `state_current`, a deletion removing its row, through a
        staging table filled by COPY."""
        if not changes:
            return
        latest = {(row[0], row[1]): row for row in changes}
        self._connection.execute(_STAGE)
        staged = [(c, k, height, value, raw) for c, k, height, value, raw, _ in latest.values()]
        self._copy("state_stage", ("contract", "key", "height", "value", "raw"), staged)
        self._connection.execute(_MERGE)
        self._connection.execute(_DELETE)

"""The verified mirror against a fake node (a chain the test builds and signs with the
validators' keys) and a real, throwaway PostgreSQL (tests/pg_helpers.py).

What it shows: every block, transaction, receipt, event and state change the mirror writes
is what the engine computed from certified blocks, across an epoch change and past heights
the node never certified; each kind of lie (a changed block, payload, certificate, epoch
proof, a quorum certifying a wrong state root or receipts root) stops the mirror with the
check that failed and writes nothing of that block; a batch is written whole or not at all,
with its progress; the mirror resumes where it stopped, refuses a database of another chain
or one edited by hand, a second mirror, and a DSN holding a password; migrations are
applied once, in order, and an edited or newer one is refused.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from structlog.testing import capture_logs

from consortia.errors import InvalidArgumentError
from consortia.execution.values import state_key
from consortia.mirror.database import MirrorDatabase
from consortia.mirror.dsn import checked, describe
from consortia.mirror.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    MirrorConflictError,
    MirrorCorruptError,
    MirrorVerificationError,
    PasswordInDsnError,
    WrongChainError,
)
from consortia.mirror.follow import FollowSettings, Mirror
from consortia.mirror.replay import Position, Replayer
from consortia.mirror.schema import Migration, bundled, migrate
from consortia.mirror.source import NodeSource
from consortia.types.consensus import Block
from consortia.types.encoding import decode, encode
from consortia.types.execution import ExecutionCertificate
from consortia.types.signing import block_id
from tests.cli_helpers import assert_user_error, run
from tests.mirror_helpers import SUITE, FakeNode, epoch_keys
from tests.node_helpers import make_genesis, transfer
from tests.pg_helpers import PgServer, pg_server

__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

FAST = FollowSettings(
    poll_s_min=0.001,
    poll_s_max=0.01,
    certificate_wait_s=0.0,
    retry_s_min=0.001,
    retry_s_max=0.01,
    log_every_s=3600.0,
    claim_wait_s=0.0,
)


@pytest.fixture
def dsn(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]
    return pg_server.schema(name)


def mirror_of(node: FakeNode, dsn: str, until: int, **settings: Any) -> Mirror:
    return Mirror(
        node.genesis,
        NodeSource("http://fake-node", transport=node.transport()),
        lambda: MirrorDatabase.connect(dsn),
        settings=dataclasses.replace(FAST, until_height=until, **settings),
    )


def rows(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query, args).fetchall()


def busy_chain() -> FakeNode:
    """Blocks with transfers, a failed transfer, bytes that are no transaction, an empty
    block, two heights without a certificate, and an epoch change."""
    node = FakeNode(make_genesis(4))
    genesis = node.genesis
    node.add_block(
        [transfer(genesis, "alice", "bob", 5, 0), transfer(genesis, "bob", "carol", 7, 0)]
    )
    node.add_block([])
    node.add_block([transfer(genesis, "alice", "dave", 10**6 + 1, 1), b"\x00not a transaction"])
    node.add_block([transfer(genesis, "carol", "alice", 3, 0)], certify=False)
    node.add_block([transfer(genesis, "dave", "bob", 1, 0)], certify=False)
    node.add_block([transfer(genesis, "alice", "bob", 2, 2)])
    node.end_epoch([transfer(genesis, "bob", "alice", 4, 1)])
    node.add_block([transfer(genesis, "alice", "carol", 6, 3)])
    node.add_block([])
    return node


def test_the_mirror_writes_what_the_engine_computed_from_certified_blocks(dsn: str) -> None:
    node = busy_chain()
    reached = mirror_of(node, dsn, until=node.height).run()
    assert reached.height == node.height and reached.state_root == node.roots[node.height]
    blocks = rows(
        dsn,
        "SELECT height, block_hash, epoch, tx_count, state_root, certified FROM blocks"
        " ORDER BY height",
    )
    assert [b[0] for b in blocks] == list(range(1, node.height + 1))
    for height, block_hash, epoch, tx_count, state_root, certified in blocks:
        block = node.blocks[height]
        assert block_hash == block_id(SUITE, block.header).hex()
        assert epoch == block.header.epoch and tx_count == len(block.payload)
        assert state_root == node.roots[height].hex()
        assert certified == (height in node.certificates)
    assert [b[5] for b in blocks[2:5]] == [True, False, False]  # 4 and 5 vouched for by 6
    assert blocks[-1][2] == 1  # after the epoch change
    # Transactions and receipts: one each per payload item, as the engine decided.
    receipts = rows(
        dsn, "SELECT height, tx_index, ok, code FROM receipts ORDER BY height, tx_index"
    )
    assert (3, 0, False, "insufficient_funds") in receipts
    assert (3, 1, False, "malformed_transaction") in receipts
    assert sum(1 for r in receipts if r[2]) == 7
    garbage = rows(dsn, "SELECT sender, raw FROM transactions WHERE height = 3 AND tx_index = 1")
    assert garbage == [(None, b"\x00not a transaction")]
    calls = rows(
        dsn,
        "SELECT sender, nonce, contract, method, args FROM transactions WHERE height = 1"
        " ORDER BY tx_index",
    )
    assert calls[0] == ("alice", 0, "asset", "transfer", {"to": "bob", "amount": 5})
    # Events: the transfers, numbered within their block.
    transfers = rows(
        dsn,
        "SELECT height, event_index, source, target, amount FROM transfers"
        " ORDER BY height, event_index",
    )
    assert transfers[:2] == [(1, 0, "alice", "bob", 5), (1, 1, "bob", "carol", 7)]
    assert len(transfers) == 7
    # State: every current value equals the engine's, and the history holds each change.
    current = rows(dsn, "SELECT contract, key, raw FROM state_current")
    assert {state_key(c, k): bytes(raw) for c, k, raw in current} == dict(node.engine.state.current)
    balance = rows(dsn, "SELECT balance FROM balances WHERE account = 'bob' AND currency = 'CNY'")
    assert balance == [(node.engine.query("asset", "balance/CNY/bob"),)]
    history = rows(
        dsn,
        "SELECT height, value FROM state_changes"
        " WHERE contract = 'asset' AND key = 'balance/CNY/bob' ORDER BY height",
    )
    assert [h for h, _ in history] == [0, 1, 5, 6, 7]
    assert history[-1][1] == balance[0][0]
    progress = rows(dsn, "SELECT height, block_hash, state_root FROM mirror_progress")
    assert progress == [(node.height, node.tip_id.hex(), node.roots[node.height].hex())]


def test_the_mirror_resumes_where_it_stopped_and_follows_new_blocks(dsn: str) -> None:
    node = busy_chain()
    assert mirror_of(node, dsn, until=3).run().height == 3
    assert rows(dsn, "SELECT max(height) FROM blocks") == [(3,)]
    node.add_block([transfer(node.genesis, "carol", "dave", 1, 1)])
    reached = mirror_of(node, dsn, until=node.height).run()
    assert reached.state_root == node.roots[node.height]
    heights = rows(dsn, "SELECT height FROM blocks ORDER BY height")
    assert [h for (h,) in heights] == list(range(1, node.height + 1))
    assert rows(dsn, "SELECT count(*), count(DISTINCT (height, tx_index)) FROM transactions") == [
        (10, 10)
    ]


def _hex_edit(
    key: str, change: Callable[[bytes], bytes]
) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    def edit(path: str, answer: dict[str, Any]) -> dict[str, Any]:
        if key in answer and path == "/v1/blocks/6":
            return {**answer, key: change(bytes.fromhex(answer[key])).hex()}
        return answer

    return edit


def _retimed(encoded: bytes) -> bytes:
    block = decode(encoded, Block)
    header = msgspec.structs.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1)
    return encode(msgspec.structs.replace(block, header=header))


def _other_payload(encoded: bytes) -> bytes:
    block = decode(encoded, Block)
    return encode(msgspec.structs.replace(block, payload=[b"another transaction"]))


def _resigned_header(change: dict[str, Any]) -> Callable[[bytes], bytes]:
    """A certificate whose header is changed, its signatures left as they were."""

    def edit(encoded: bytes) -> bytes:
        certificate = decode(encoded, ExecutionCertificate)
        header = msgspec.structs.replace(certificate.header, **change)
        return encode(msgspec.structs.replace(certificate, header=header))

    return edit


def _certificate_edit(
    change: Callable[[bytes], bytes],
) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    def edit(path: str, answer: dict[str, Any]) -> dict[str, Any]:
        if path == "/v1/blocks/6/certificate":
            return {**answer, "encoded": change(bytes.fromhex(answer["encoded"])).hex()}
        return answer

    return edit


LIES: dict[str, tuple[Callable[[FakeNode], None], str]] = {
    "a changed block header": (
        lambda n: setattr(n, "edit", _hex_edit("encoded", _retimed)),
        "block_id",
    ),
    "a transaction added to the payload": (
        lambda n: setattr(n, "edit", _hex_edit("encoded", _other_payload)),
        "payload",
    ),
    "a certificate whose header was changed": (
        lambda n: setattr(
            n, "edit", _certificate_edit(_resigned_header({"state_root": b"\x01" * 32}))
        ),
        "certificate",
    ),
    "the certificate of another height": (
        lambda n: n.certificates.__setitem__(6, n.certificates[3]),
        "certificate",
    ),
    "a certificate signed by strangers": (
        lambda n: n.certify(
            6, n.roots[6], n.certificates[6].header.receipts_root, keys=epoch_keys(7)
        ),
        "certificate",
    ),
    "a quorum certifying a wrong state root": (
        lambda n: n.certify(6, b"\x02" * 32, n.certificates[6].header.receipts_root),
        "state_root",
    ),
    "a quorum certifying a wrong receipts root": (
        lambda n: n.certify(6, n.roots[6], b"\x03" * 32),
        "receipts_root",
    ),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_node_stops_the_mirror_before_it_writes_the_block(dsn: str, lie: str) -> None:
    node = busy_chain()
    make_lie, what = LIES[lie]
    make_lie(node)
    with pytest.raises(MirrorVerificationError) as stopped:
        mirror_of(node, dsn, until=node.height).run()
    assert stopped.value.code == "verification_failed"
    assert stopped.value.what == what and stopped.value.height in (4, 5, 6)
    # Heights 4 and 5 wait for 6's certificate: nothing after 3 is written.
    assert rows(dsn, "SELECT height FROM mirror_progress") == [(3,)]
    for table in ("blocks", "transactions", "receipts", "events", "state_changes"):
        assert rows(dsn, f"SELECT count(*) FROM {table} WHERE height > 3") == [(0,)], table


def test_a_forged_epoch_proof_stops_the_mirror(dsn: str) -> None:
    node = busy_chain()
    proof = node.epoch_proofs[0]
    forged = msgspec.structs.replace(
        proof, ending=msgspec.structs.replace(proof.ending, round=proof.ending.round + 5)
    )
    node.epoch_proofs[0] = forged
    with pytest.raises(MirrorVerificationError) as stopped:
        mirror_of(node, dsn, until=node.height).run()
    assert stopped.value.what == "epoch_proof"
    assert rows(dsn, "SELECT height FROM mirror_progress") == [(7,)]  # epoch 0's blocks


def test_an_unreachable_node_is_retried_until_it_answers(dsn: str) -> None:
    node = busy_chain()
    node.unreachable = True
    mirror = mirror_of(node, dsn, until=node.height)
    answered = threading.Timer(0.3, lambda: setattr(node, "unreachable", False))
    answered.start()
    try:
        assert mirror.run().height == node.height
    finally:
        answered.cancel()
    assert mirror.metrics.node_retries._value.get() >= 1


def test_a_batch_is_written_whole_with_its_progress_or_not_at_all(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = busy_chain()
    mirror_of(node, dsn, until=1).run()
    database = MirrorDatabase.connect(dsn)
    try:
        progress = database.progress()
        assert progress is not None
        resumed = Replayer.resume(node.genesis, progress.position, database.current_state())
        verified = []
        for height in (2, 3):
            verified += resumed.apply(
                height, encode(node.blocks[height]), node.certificates[height]
            )
        assert [b.height for b in verified] == [2, 3]

        def failing(self: MirrorDatabase, changes: list[Any]) -> None:
            raise psycopg.errors.DiskFull("no space left (simulated)")

        with monkeypatch.context() as patch:
            patch.setattr(MirrorDatabase, "_merge_current", failing)
            with pytest.raises(DatabaseError):
                database.write(verified, progress.position)
        assert rows(dsn, "SELECT height FROM mirror_progress") == [(1,)]
        assert rows(dsn, "SELECT count(*) FROM blocks WHERE height > 1") == [(0,)]
        assert rows(dsn, "SELECT count(*) FROM state_changes WHERE height > 1") == [(0,)]
        # Progress that moved under the writer: nothing written either.
        elsewhere = Position(1, b"\x07" * 32, progress.position.state_root)
        with pytest.raises(MirrorConflictError):
            database.write(verified, elsewhere)
        assert rows(dsn, "SELECT count(*) FROM blocks WHERE height > 1") == [(0,)]
        reached = database.write(verified, progress.position)
        assert reached.height == 3 and rows(dsn, "SELECT height FROM mirror_progress") == [(3,)]
        with pytest.raises(MirrorConflictError):
            database.write(verified, progress.position)  # written already: the progress moved
        assert rows(dsn, "SELECT count(*) FROM blocks") == [(3,)]
    finally:
        database.close()


def test_one_mirror_per_database_and_only_of_its_chain(dsn: str) -> None:
    node = busy_chain()
    first = MirrorDatabase.connect(dsn)
    try:
        first.prepare()
        first.claim()
        with pytest.raises(MirrorConflictError):
            mirror_of(node, dsn, until=1).run()
    finally:
        first.close()
    mirror_of(node, dsn, until=1).run()
    other = FakeNode(msgspec.structs.replace(make_genesis(4), chain_id="another-chain"))
    other.add_block([])
    with pytest.raises(WrongChainError):
        mirror_of(other, dsn, until=1).run()


def test_a_database_edited_by_hand_is_refused(dsn: str) -> None:
    node = busy_chain()
    mirror_of(node, dsn, until=3).run()
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "UPDATE state_current SET raw = %s"
            " WHERE contract = 'asset' AND key = 'balance/CNY/bob'",
            (msgspec.msgpack.encode(10**9),),
        )
    with pytest.raises(MirrorCorruptError):
        mirror_of(node, dsn, until=node.height).run()


def test_migrations_apply_once_in_order_and_refuse_edited_or_newer_ones(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        assert migrate(connection) == [m.version for m in bundled()] == [1, 2]
        assert migrate(connection) == []
        recorded = connection.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert recorded == [(1, "tables"), (2, "views")]
        edited = [*bundled()[:1], Migration(2, "views", bundled()[1].sql + "\n-- edited\n")]
        with pytest.raises(DatabaseError, match="another text"):
            migrate(connection, edited)
        with pytest.raises(DatabaseError, match="newer"):
            migrate(connection, bundled()[:1])
        broken = [
            *bundled(),
            Migration(3, "broken", "CREATE TABLE extra (x int); SELECT no_such_function();"),
        ]
        with pytest.raises(psycopg.Error):
            migrate(connection, broken)
        # A failed migration leaves nothing behind: no table, no record.
        assert connection.execute("SELECT to_regclass('extra')").fetchone() == (None,)
        assert connection.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)


def test_a_password_never_travels_in_the_dsn(pg_server: PgServer) -> None:
    with pytest.raises(PasswordInDsnError):
        checked("postgresql://postgres:secret@127.0.0.1:5432/db")
    with pytest.raises(PasswordInDsnError):
        checked("host=127.0.0.1 password=secret dbname=db")
    with pytest.raises(InvalidArgumentError) as refused:
        checked('host=127.0.0.1 password "secret')
    assert "secret" not in str(refused.value)
    parameters = checked(pg_server.dsn("postgres"))
    assert (
        describe(parameters)
        == f"host=127.0.0.1 port={pg_server.port} dbname=postgres user=postgres"
    )
    assert "passfile" not in describe(parameters)


def test_a_missing_certificate_is_waited_for_at_the_tip(dsn: str) -> None:
    """At the node's tip a block whose certificate is not formed yet is not written until it
    is (the mirror polls, and says what it waits for); it is then written as certified."""
    node = FakeNode(make_genesis(4))
    node.add_block([transfer(node.genesis, "alice", "bob", 1, 0)], certify=False)
    root = _receipts_root(node, 1)
    asked = []

    def certify_on_the_fifth_request(path: str) -> None:
        if path == "/v1/blocks/1/certificate":
            asked.append(path)
            if len(asked) == 5:
                node.certify(1, node.roots[1], root)

    node.on_request = certify_on_the_fifth_request
    mirror = mirror_of(node, dsn, until=1, certificate_wait_s=3600.0, log_every_s=0.0)
    with capture_logs() as logs:
        assert mirror.run().height == 1
    assert len(asked) == 5
    assert rows(dsn, "SELECT certified FROM blocks") == [(True,)]
    waits = [entry for entry in logs if entry["event"] == "waiting"]
    assert waits and waits[0]["waiting_for"] == "its execution certificate"
    assert waits[0]["height"] == 1


def test_a_lost_database_connection_neither_loses_nor_repeats_a_batch(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops during a write: before the commit (the batch is written again),
    or after it (the mirror reads the progress row and goes on). Either way every height is
    written once."""
    node = busy_chain()
    real_write = MirrorDatabase.write
    failures = iter(["before", "after"])

    def flaky(self: MirrorDatabase, blocks: Any, after: Position) -> Position:
        failure = next(failures, None)
        if failure == "after":
            real_write(self, blocks, after)
        if failure is not None:
            raise DatabaseUnavailableError(f"connection lost {failure} the commit (simulated)")
        return real_write(self, blocks, after)

    monkeypatch.setattr(MirrorDatabase, "write", flaky)
    mirror = mirror_of(node, dsn, until=node.height, batch_blocks_max=2)
    assert mirror.run().height == node.height
    assert mirror.metrics.database_retries._value.get() == 2
    heights = rows(dsn, "SELECT height FROM blocks ORDER BY height")
    assert [h for (h,) in heights] == list(range(1, node.height + 1))
    assert rows(dsn, "SELECT height FROM mirror_progress") == [(node.height,)]


def test_a_height_the_node_never_certifies_is_vouched_for_by_the_next(dsn: str) -> None:
    """The node never certifies height 1, and had no later block when the mirror first
    looked: once it has one, the mirror executes 1 as pending and writes it with 2, whose
    certificate vouches for both."""
    node = FakeNode(make_genesis(4))
    node.add_block([transfer(node.genesis, "alice", "bob", 1, 0)], certify=False)
    asked = []

    def commit_block_2_on_the_third_request(path: str) -> None:
        if path == "/v1/blocks/1/certificate":
            asked.append(path)
            if len(asked) == 3:
                node.add_block([transfer(node.genesis, "bob", "carol", 1, 0)])

    node.on_request = commit_block_2_on_the_third_request
    mirror = mirror_of(node, dsn, until=2)
    deadline = threading.Timer(60.0, mirror.stop.set)  # a regression fails, never hangs
    deadline.start()
    try:
        reached = mirror.run()
    finally:
        deadline.cancel()
    assert reached.height == 2 and reached.state_root == node.roots[2]
    assert rows(dsn, "SELECT height, certified FROM blocks ORDER BY height") == [
        (1, False),
        (2, True),
    ]


def _receipts_root(node: FakeNode, height: int) -> bytes:
    probe = FakeNode(node.genesis)
    for h in range(1, height + 1):
        probe.add_block(list(node.blocks[h].payload))
    return probe.certificates[height].header.receipts_root


def test_the_node_source_reads_only_what_it_asked_for() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_certified", "message": "later"}})

    source = NodeSource("http://n", transport=httpx.MockTransport(handler))
    assert source.certificate(5) is None and source.block(5) is None
    refusing = NodeSource(
        "http://n",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(400, json={"error": {"code": "bad_argument"}})
        ),
    )
    with pytest.raises(MirrorVerificationError):
        refusing.block(5)


def test_the_command_refuses_a_password_in_the_dsn_and_never_shows_it(tmp_path: Path) -> None:
    refused = run("mirror", "--home", tmp_path, "--dsn", "postgresql://m:s3cret-pw@db/ledger")
    assert_user_error(refused, "password_in_dsn")
    assert "s3cret-pw" not in refused.stdout + refused.stderr
    assert_user_error(run("mirror", "--home", tmp_path, "--dsn", "host=db"), "no_consortium")

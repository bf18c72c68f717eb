"""The outbox against a real PostgreSQL (tests/pg_helpers.py) and a fake node.

Setup: a schema per test standing for a business system's database; `ChainNode`
(tests/outbox_helpers.py) stands for the node's API with the admission rules and answers of
docs/node.md (expired, duplicate, unknown_account, stale_nonce, nonce_taken, forced
refusals), blocks made on demand and certified by the test validators, served over HTTP to
the real SDK and light client.

Test: an intent is enqueued in the business system's transaction and rolled back or committed
with it; bad intents and a second intent for one business key are refused, the transaction
still usable; migrations apply once; the relay's pass: signed and stored before sending, the
outcome recorded with its height and receipt, a failed receipt not retried, a refusal for
good recorded with its code, a transient refusal retried, an expired or outpaced transaction
signed again (filling its nonce), a failed receipt that does not spend the nonce recorded only
once it can no longer be included, and an intent given up after its signings.

Run alone: .venv/bin/pytest tests/unit/test_outbox.py
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from consortia.client import ChainInfo, Client, ClientError, Signer
from consortia.client.outbox import (
    DuplicateIntentError,
    Intent,
    InvalidIntentError,
    OutboxStore,
    Relay,
    RelaySettings,
    enqueue,
    migrate,
)
from consortia.crypto import suite
from consortia.types.encoding import decode
from consortia.types.transaction import Transaction
from tests.outbox_helpers import ALICE, CHAIN, ChainNode, checks
from tests.pg_helpers import PgServer, pg_server

__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture


@pytest.fixture
def dsn(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    name = "ob_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:56]
    dsn = pg_server.schema(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
        connection.execute("CREATE TABLE payments (id text PRIMARY KEY, amount bigint)")
    return dsn


def _rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query, params).fetchall()


def _intent(key: str, amount: int = 5, account: str = ALICE) -> Intent:
    return Intent(key, account, "asset", "transfer", {"to": "bob", "amount": amount})


def _enqueue(dsn: str, *intents: Intent) -> None:
    with psycopg.connect(dsn) as connection:
        for intent in intents:
            enqueue(connection, intent)


# ---------------------------------------------------------------------- enqueue


def test_an_intent_commits_or_rolls_back_with_the_business_change(dsn: str) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute("INSERT INTO payments VALUES ('p-1', 5)")
        enqueue(connection, _intent("p-1"))
        connection.rollback()
        assert connection.execute("SELECT count(*) FROM outbox_intents").fetchone() == (0,)
        connection.execute("INSERT INTO payments VALUES ('p-2', 5)")
        enqueue(connection, _intent("p-2"))
    assert _rows(dsn, "SELECT id FROM payments") == [("p-2",)]
    assert _rows(dsn, "SELECT business_key, state, args FROM outbox_intents") == [
        ("p-2", "pending", {"to": "bob", "amount": 5})
    ]


def test_a_second_intent_for_a_business_key_is_refused_the_transaction_usable(dsn: str) -> None:
    _enqueue(dsn, _intent("k"))
    with psycopg.connect(dsn) as connection:
        connection.execute("INSERT INTO payments VALUES ('k2', 1)")
        with pytest.raises(DuplicateIntentError):
            enqueue(connection, _intent("k", amount=99))
        enqueue(connection, _intent("k2"))  # the transaction carries on
    assert _rows(dsn, "SELECT business_key, args->>'amount' FROM outbox_intents ORDER BY id") == [
        ("k", "5"),
        ("k2", "5"),
    ]


@pytest.mark.parametrize(
    "intent",
    [
        Intent("", ALICE, "asset", "transfer", {}),
        Intent("x" * 201, ALICE, "asset", "transfer", {}),
        Intent("k", "not an account", "asset", "transfer", {}),
        Intent("k", ALICE, "", "transfer", {}),
        Intent("k", ALICE, "asset", "transfer", {"amount": 1.5}),
        Intent("k", ALICE, "asset", "transfer", {"Amount": 1}),
        Intent("k", ALICE, "asset", "transfer", {"amount": 2**64}),
        Intent("k", ALICE, "asset", "transfer", {f"a{i}": i for i in range(33)}),
        Intent("k", ALICE, "asset", "transfer", {"memo": "x" * 5000}),
        Intent("k", ALICE, "asset", "transfer", {"list": [{"nested": 1}]}),
    ],
)
def test_a_bad_intent_is_refused_and_nothing_written(dsn: str, intent: Intent) -> None:
    with psycopg.connect(dsn) as connection, pytest.raises(InvalidIntentError):
        enqueue(connection, intent)
    assert _rows(dsn, "SELECT count(*) FROM outbox_intents") == [(0,)]


def test_migrations_apply_once(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        assert migrate(connection) == []
    assert _rows(dsn, "SELECT version, name FROM outbox_schema_migrations") == [(1, "outbox")]


# ---------------------------------------------------------------------- the relay


def _relay(dsn: str, node: ChainNode, chain: ChainInfo = CHAIN, **settings: Any) -> Relay:
    private_key, _public = suite("intl").generate_keypair()
    signers = {ALICE: Signer(ALICE, private_key, chain)}
    return Relay(
        lambda: OutboxStore.connect(dsn),
        ["http://fake-node"],
        lambda account, _client: signers.get(account),
        checks=checks(),
        settings=RelaySettings(**{"expiry_blocks": 5, **settings}),
        client_for=lambda url: Client(url, transport=node.transport()),
    )


def _states(dsn: str) -> dict[str, tuple[Any, ...]]:
    rows = _rows(
        dsn,
        "SELECT business_key, state, code, nonce, signings, height FROM outbox_intents",
    )
    return {str(row[0]): tuple(row[1:]) for row in rows}


def test_signed_and_stored_before_sending_then_recorded_once(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("a", 1), _intent("b", 2), _intent("c", 3))
    relay = _relay(dsn, node)
    assert relay.run_once()
    stored = dict(_rows(dsn, "SELECT tx_hash, signed_tx FROM outbox_intents"))
    assert sorted(node.mempool) == sorted(stored)  # sent exactly what was stored
    node.block()
    relay.run_once()
    states = _states(dsn)
    assert states == {
        "a": ("committed", "ok", 0, 1, 11),
        "b": ("committed", "ok", 1, 1, 11),
        "c": ("committed", "ok", 2, 1, 11),
    }
    ((receipt,),) = _rows(dsn, "SELECT receipt FROM outbox_intents WHERE business_key = 'a'")
    assert receipt["ok"] is True
    sent = len(node.submitted)
    assert not relay.run_once()
    assert len(node.submitted) == sent  # nothing decided is sent again
    assert relay.counters.committed == 3


def test_a_failed_receipt_is_recorded_and_not_retried(dsn: str) -> None:
    node = ChainNode(outcome={7: "insufficient_funds"})
    _enqueue(dsn, _intent("poor", 7), _intent("next", 8))
    relay = _relay(dsn, node)
    relay.run_once()
    node.block()
    relay.run_once()
    assert _states(dsn) == {
        "poor": ("failed", "insufficient_funds", 0, 1, 11),
        "next": ("committed", "ok", 1, 1, 11),
    }
    assert _rows(dsn, "SELECT nonce_spent FROM outbox_intents WHERE business_key = 'poor'") == [
        (True,)
    ]
    relay.run_once()
    assert _rows(dsn, "SELECT sum(signings) FROM outbox_intents") == [(2,)]


def test_a_refusal_for_good_fails_the_intent_and_frees_its_nonce(dsn: str) -> None:
    node = ChainNode(refuse={"all": "bad_signature"})
    _enqueue(dsn, _intent("bad"))
    # Signed for another genesis: the relay's own check agrees with the node's refusal.
    other = ChainInfo(CHAIN.chain_id, CHAIN.suite, b"\x07" * 32)
    _relay(dsn, node, chain=other).run_once()
    assert _states(dsn)["bad"] == ("failed", "bad_signature", 0, 1, None)
    node.refuse.clear()
    _enqueue(dsn, _intent("good"))
    relay = _relay(dsn, node)
    relay.run_once()
    node.block()
    relay.run_once()
    assert _states(dsn)["good"] == ("committed", "ok", 0, 1, 11)  # the freed nonce 0


def test_a_transient_refusal_is_tried_again(dsn: str) -> None:
    node = ChainNode(refuse={"all": "mempool_full"})
    _enqueue(dsn, _intent("busy"))
    relay = _relay(dsn, node)
    relay.run_once()
    relay.run_once()
    assert _rows(dsn, "SELECT state, submissions, last_error FROM outbox_intents") == [
        ("signed", 2, "mempool_full")
    ]
    node.refuse.clear()
    relay.run_once()
    node.block()
    relay.run_once()
    assert _states(dsn)["busy"] == ("committed", "ok", 0, 1, 11)


def test_an_expired_transaction_is_signed_again_into_its_own_nonce(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("x", 1), _intent("y", 2))
    relay = _relay(dsn, node)
    relay.run_once()
    first = dict(_rows(dsn, "SELECT business_key, tx_hash FROM outbox_intents"))
    node.mempool.clear()  # the node restarted: its mempool is gone
    node.block(5)  # and the chain passed both expiry heights
    relay.run_once()  # both found dead, back to pending
    assert _rows(dsn, "SELECT DISTINCT state FROM outbox_intents") == [("pending",)]
    relay.run_once()  # signed again
    node.block()
    relay.run_once()
    assert _states(dsn) == {
        "x": ("committed", "ok", 0, 2, 16),
        "y": ("committed", "ok", 1, 2, 16),
    }
    fates = _rows(dsn, "SELECT tx_hash, fate, reason FROM outbox_transactions ORDER BY signed_at")
    assert [row[1:] for row in fates[:2]] == [
        (
            "dead",
            "expired at height 15, never executed (the account's nonce is 0 at certified"
            " height 15)",
        )
    ] * 2
    assert {row[0] for row in fates[:2]} == set(first.values())
    assert [row[1] for row in fates[2:]] == ["committed", "committed"]


def test_a_nonce_spent_by_another_signer_is_signed_again_once_proven(dsn: str) -> None:
    """No receipt and a spent nonce: the block that spent the nonce, every receipt proven,
    shows another transaction took it, so this one can never run: signed again."""
    node = ChainNode()
    _enqueue(dsn, _intent("x", 1), _intent("y", 2))
    relay = _relay(dsn, node)
    relay.run_once()
    (x_hash,) = [h for h, t in node.mempool.items() if t.body.nonce == 0]
    del node.mempool[x_hash]
    node.spend(ALICE, 1)  # someone else's transaction spent nonce 0 in block 11 (y ran too)
    relay.run_once()  # x: stale_nonce, no receipt: the block that spent 0 proves it dead
    relay.run_once()  # x signed again: nonce 2
    node.block()
    relay.run_once()
    assert _states(dsn) == {
        "x": ("committed", "ok", 2, 2, 12),
        "y": ("committed", "ok", 1, 1, 11),
    }
    ((reason,),) = _rows(dsn, "SELECT reason FROM outbox_transactions WHERE fate = 'dead'")
    assert reason.startswith("nonce 0 spent by another transaction")


def test_a_failure_that_spends_no_nonce_is_final_only_after_expiry(dsn: str) -> None:
    node = ChainNode(outcome={3: "unknown_account"})
    _enqueue(dsn, _intent("early", 3))
    relay = _relay(dsn, node)
    relay.run_once()
    node.block()  # failed in block 11 without spending the nonce; expiry is 15
    relay.run_once()
    assert _states(dsn)["early"][0] == "signed"  # it could still be committed again
    node.mempool.clear()
    node.block(4)
    relay.run_once()
    assert _states(dsn)["early"] == ("failed", "unknown_account", 0, 1, 11)
    assert _rows(dsn, "SELECT nonce_spent FROM outbox_intents") == [(False,)]


def test_an_intent_is_given_up_after_its_signings(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("doomed"))
    relay = _relay(dsn, node, signings_max=1)
    relay.run_once()
    node.mempool.clear()
    node.block(10)
    relay.run_once()
    assert _states(dsn)["doomed"][:2] == ("failed", "relay_gave_up")


def test_no_account_or_no_key_fails_the_intents_unsigned(dsn: str) -> None:
    node = ChainNode(nonces={ALICE: 0, "bob": 0})
    _enqueue(dsn, _intent("ghost", account="ghost"), _intent("keyless", account="bob"))
    _relay(dsn, node).run_once()
    states = _states(dsn)
    assert states["ghost"][:2] == ("failed", "unknown_account")
    assert states["keyless"][:2] == ("failed", "no_key")
    assert node.submitted == []


def test_a_refusal_a_node_behind_may_give_is_tried_again(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("new-account"))
    relay = _relay(dsn, node)
    node.refuse["all"] = "unknown_account"  # the node asked for the nonce knew it; this one not
    relay.run_once()
    relay.run_once()
    assert _rows(dsn, "SELECT state, last_error FROM outbox_intents") == [
        ("signed", "unknown_account")
    ]
    node.refuse.clear()
    relay.run_once()
    node.block()
    relay.run_once()
    assert _states(dsn)["new-account"] == ("committed", "ok", 0, 1, 11)


def test_sending_goes_round_robin_over_many_signed_intents(dsn: str) -> None:
    node = ChainNode(nonces={ALICE: 0})
    _enqueue(dsn, *(_intent(f"r{i}", i + 1) for i in range(5)))
    relay = _relay(dsn, node, batch_max=2)
    relay.run_once()  # signs 2, sends them
    relay.run_once()  # signs 2 more; sends 2 after the first 2
    relay.run_once()  # signs the last; sends the rest
    assert len(node.mempool) == 5
    for _ in range(3):
        node.block()
        relay.run_once()
        relay.run_once()
    assert {state for state, *_ in _states(dsn).values()} == {"committed"}


def test_enqueue_refuses_to_commit_an_intent_on_its_own(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        with pytest.raises(InvalidIntentError, match="outside a transaction"):
            enqueue(connection, _intent("alone"))
        with connection.transaction():
            connection.execute("INSERT INTO payments VALUES ('together', 5)")
            enqueue(connection, _intent("together"))
    assert _rows(dsn, "SELECT business_key FROM outbox_intents") == [("together",)]


def test_a_transaction_lost_with_the_nodes_mempool_is_sent_again(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("lost"))
    relay = _relay(dsn, node)
    relay.run_once()
    ((stored,),) = _rows(dsn, "SELECT signed_tx FROM outbox_intents")
    node.mempool.clear()  # the node restarted before passing it on
    relay.run_once()
    assert list(node.mempool.values()) == [decode(stored, Transaction)]
    node.block()
    relay.run_once()
    assert _states(dsn)["lost"] == ("committed", "ok", 0, 1, 11)


class _Down:
    """A node that does not answer."""

    def __getattr__(self, name: str) -> Any:
        if name == "close":
            return lambda: None

        def unreachable(*_args: Any) -> Any:
            raise ClientError("unreachable", "ConnectError: connection refused")

        return unreachable


def test_the_relay_moves_to_the_next_node_when_one_stops_answering(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, _intent("moved"))
    private_key, _public = suite("intl").generate_keypair()
    signer = Signer(ALICE, private_key, CHAIN)
    asked: list[str] = []

    def client_for(url: str) -> Any:
        asked.append(url)
        return _Down() if url == "http://down" else Client(url, transport=node.transport())

    def block_when_sent(_counters: Any) -> None:
        if node.mempool:
            node.block()

    relay = Relay(
        lambda: OutboxStore.connect(dsn),
        ["http://down", "http://up"],
        lambda _account, _client: signer,
        checks=checks(),
        settings=RelaySettings(until_idle=True, backoff_max_s=0.01),
        on_pass=block_when_sent,
        client_for=client_for,
    )
    relay.run()
    assert asked == ["http://down", "http://up"]
    assert relay.counters.node_retries == 1
    assert _states(dsn)["moved"] == ("committed", "ok", 0, 1, 11)

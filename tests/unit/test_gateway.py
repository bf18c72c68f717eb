"""The data gateway's pipeline against a chain held in process: the real engine and the real
`datashare` contract (tests/execution_helpers.py), read through a stand-in for the certified
reads, and rows from a stand-in for PostgreSQL holding a planted marker.

A granted, consented fetch answers rows only the consumer (and the escrow key) can open, and
leaves exactly one access record on chain; every refusal (no consent, revoked, expired, a
consumer of another member, a bad signature, a replay, a stale clock, a dataset not served,
parameters not declared, the chain refusing at the last moment) reads no row and logs
nothing; the marker is never in chain state, the logs or the answer's bytes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import structlog

from consortia.client import ChainInfo, ClientError
from consortia.crypto import suite as get_suite
from consortia.execution.contract import Contract
from consortia.execution.contracts import datashare_state, regulator_state
from consortia.execution.contracts.datashare import Datashare
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.contracts.system import System
from consortia.gateway.chain import Certified
from consortia.gateway.consumer import DataConsumer
from consortia.gateway.database import DatasetQuery, parse_query
from consortia.gateway.errors import RefusedError
from consortia.gateway.keys import ChainKeys, KeysFile, PublicKey
from consortia.gateway.protocol import DataRequest
from consortia.gateway.service import Gateway, create_app
from consortia.privacy.envelope import ESCROW_PARTY, decode_sealed, open_sealed
from consortia.types.genesis import Genesis, genesis_hash
from tests.execution_helpers import CHAIN_ID, Ledger, key_for, make_ledger

SUITE = get_suite("intl")
TIME_BASE_MS = 1_764_000_000_000
MARKER = "PLANTED-MARKER-7f3a9c"
ACCOUNTS = {
    "ops0": ("bank-0", 0),
    "gw0": ("bank-0", 0),
    "credit1": ("bank-1", 0),
    "credit2": ("bank-2", 0),
    "reg": ("regulator", 0),
}
CONTRACTS: list[type[Contract]] = [System, Identity, Regulator, Datashare]
ROWS = [
    {"firm": "firm-7", "score": 712, "note": MARKER},
    {"firm": "firm-7", "score": 698, "note": "second"},
]
QUERY = parse_query(
    "firm-credit",
    {"sql": "SELECT * FROM credit WHERE firm = %(firm)s", "parameters": ["firm"], "rows_max": 10},
)


@dataclass
class InProcessChain:
    """`ChainAccess` over an engine in this process: reads of committed state, and the access
    record executed in a block of its own (`before_log` runs first: a race to stage)."""

    ledger: Ledger
    account: str = "gw0"
    before_log: list[bytes] = field(default_factory=list)

    @property
    def chain_id(self) -> str:
        return CHAIN_ID

    @property
    def genesis_hash(self) -> bytes:
        return genesis_hash(self.ledger.genesis)

    def read(self, contract: str, key: str) -> Certified:
        return Certified(self.ledger.engine.query(contract, key), self.ledger.height)

    def log_access(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.before_log:
            self.ledger.block(*self.before_log)
            self.before_log.clear()
        (receipt,) = self.ledger.block(
            self.ledger.tx(self.account, "datashare", "log_access", args)
        )
        outcome = {"ok": receipt.ok, "code": receipt.code, "message": receipt.message}
        return {
            "tx_hash": receipt.tx_id.hex(),
            "height": self.ledger.height,
            "receipt": {**outcome, "result": receipt.result},
        }


@dataclass
class Rows:
    calls: int = 0

    def fetch(self, query: DatasetQuery, params: dict[str, str | int]) -> list[dict[str, Any]]:
        assert query.dataset == "firm-credit" and params == {"firm": "firm-7"}
        self.calls += 1
        return [dict(row) for row in ROWS]


@dataclass
class World:
    ledger: Ledger
    chain: InProcessChain
    rows: Rows
    gateway: Gateway
    consumers: dict[str, DataConsumer]
    escrow_private: bytes
    grant: int

    def send(self, sender: str, method: str, args: dict[str, Any]) -> None:
        (receipt,) = self.ledger.block(self.ledger.tx(sender, "datashare", method, args))
        assert receipt.ok, receipt

    def request(
        self,
        consumer: str = "credit1",
        *,
        dataset: str = "firm-credit",
        grant: int = 0,
        params: dict[str, str | int] | None = None,
    ) -> DataRequest:
        params = {"firm": "firm-7"} if params is None else params
        return self.consumers[consumer].request(dataset, grant, params, now_ms=self.now_ms())

    def now_ms(self) -> int:
        return self.ledger.block_time_ms(self.ledger.height)

    def refused(self, request: DataRequest, code: str) -> None:
        """The gateway refuses `request` with `code`, reads no row and logs nothing."""
        rows, accesses = self.rows.calls, datashare_state.access_count(self.ledger.engine.query)
        with pytest.raises(RefusedError) as refusal:
            self.gateway.fetch(request.as_json())
        assert refusal.value.code == code
        assert self.rows.calls == rows
        assert datashare_state.access_count(self.ledger.engine.query) == accesses


def world(consent: bool = True, suite_name: str = "intl", **grant: Any) -> World:
    suite = get_suite(suite_name)
    ledger = make_ledger(CONTRACTS, ACCOUNTS, suite_name=suite_name)
    # Block times on the same clock as the gateway's and the consumers' (`World.now_ms`): the
    # chain compares a request's timestamp with the time of the block that logs it.
    ledger.time_base_ms = TIME_BASE_MS
    ledger.keys["firm"] = key_for("firm", suite)
    open_firm = {
        "id": "firm",
        "public_key": ledger.keys["firm"][1].hex(),
        "kyc_digest": "4b" * 32,
        "kind": "customer",
    }
    ledger.block(ledger.tx("ops0", "identity", "open_account", open_firm))
    encryption = {name: suite.generate_encryption_keypair() for name in ("credit1", "credit2")}
    escrow_private, escrow_public = suite.generate_encryption_keypair()
    keys = KeysFile.parse(
        {
            "escrow": {"version": 1, "public_key": escrow_public.hex()},
            "accounts": {
                name: {"version": 1, "public_key": public.hex()}
                for name, (_private, public) in encryption.items()
            },
        },
        suite,
    )
    chain = InProcessChain(ledger)
    rows = Rows()
    info = ChainInfo(CHAIN_ID, suite_name, genesis_hash(ledger.genesis))
    consumers = {
        name: DataConsumer("http://gateway", name, ledger.keys[name][0], info, private)
        for name, (private, _public) in encryption.items()
    }
    state = World(ledger, chain, rows, None, consumers, escrow_private, 0)  # type: ignore[arg-type]
    state.gateway = Gateway(
        suite_name, chain, keys, rows, {"firm-credit": QUERY}, clock_ms=state.now_ms
    )
    dataset = {
        "dataset": "firm-credit",
        "name": "Credit file of firm-7",
        "schema_digest": "5c" * 32,
        "location": "bank-0 credit warehouse",
        "classification": "confidential",
        "gateways": ["gw0"],
        "subject": "firm",
    }
    state.send("ops0", "register_dataset", dataset)
    terms = {"dataset": "firm-credit", "consumer": "bank-1", "purpose": "loan assessment"}
    state.send("ops0", "grant", {**terms, "until_height": 100, "consent_required": True, **grant})
    if consent:
        state.send("firm", "consent", {"grant": 0})
    return state


def everything_on_chain(ledger: Ledger) -> bytes:
    state = ledger.engine.state
    return b"".join(key + (state.get(key) or b"") for key in state.keys_with_prefix(b""))


def test_a_granted_fetch_answers_sealed_rows_and_logs_the_access_first() -> None:
    state = world()
    request = state.request()
    with structlog.testing.capture_logs() as logs:
        answer = state.gateway.fetch(request.as_json())
    fetched = state.consumers["credit1"].open(request, answer)
    assert fetched.rows == ROWS
    access = datashare_state.read_access(state.ledger.engine.query, fetched.access)
    assert access is not None
    assert (access["consumer_account"], access["gateway"], access["rows"]) == ("credit1", "gw0", 2)
    assert access["query_digest"] == fetched.query_digest == answer["query_digest"]
    assert access["answer_digest"] == fetched.answer_digest
    assert access["height"] == fetched.height == state.ledger.height
    assert [log["event"] for log in logs] == ["access logged"]
    # The marker is in no state, no log and no byte of the answer as sent.
    assert MARKER.encode() not in everything_on_chain(state.ledger)
    assert MARKER not in json.dumps(logs, default=str)
    assert MARKER not in json.dumps(answer)
    assert "firm-7" not in json.dumps(logs, default=str)  # nor the query's parameter


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_only_the_consumer_and_the_escrow_key_open_the_answer(suite_name: str) -> None:
    state = world(suite_name=suite_name)
    request = state.request()
    answer = state.gateway.fetch(request.as_json())
    assert state.consumers["credit1"].open(request, answer).rows == ROWS
    with pytest.raises(ClientError) as other:
        state.consumers["credit2"].open(request, answer)
    assert other.value.code == "bad_answer"
    sealed = decode_sealed(answer["parts"][0])
    assert sealed.suite == suite_name
    opened = open_sealed(get_suite(suite_name), sealed, ESCROW_PARTY, state.escrow_private)
    assert opened.value["rows"] == ROWS and opened.value["query_digest"] == answer["query_digest"]


def test_an_answer_to_another_request_is_refused_by_the_consumer() -> None:
    state = world()
    first, second = state.request(), state.request()
    answer = state.gateway.fetch(first.as_json())
    with pytest.raises(ClientError) as swapped:
        state.consumers["credit1"].open(second, answer)
    assert swapped.value.code == "bad_answer"
    tampered = {**answer, "parts": [answer["parts"][0][:-2] + "00"]}
    with pytest.raises(ClientError):
        state.consumers["credit1"].open(first, tampered)


def test_without_consent_nothing_is_read_or_logged() -> None:
    state = world(consent=False)
    state.refused(state.request(), "consent_missing")
    state.send("firm", "consent", {"grant": 0})
    state.gateway.fetch(state.request().as_json())
    state.send("firm", "withdraw_consent", {"grant": 0})
    state.refused(state.request(), "consent_withdrawn")


def test_a_revoked_grant_gives_nothing() -> None:
    state = world()
    state.gateway.fetch(state.request().as_json())
    state.send("ops0", "revoke", {"grant": 0})
    state.refused(state.request(), "grant_revoked")


def test_an_expired_grant_gives_nothing() -> None:
    state = world(until_height=5)
    while state.ledger.height < 5:
        state.ledger.block()
    state.refused(state.request(), "grant_expired")  # the next block is past the last height


def test_the_chain_has_the_last_word_when_a_revocation_races_the_fetch() -> None:
    state = world()
    state.chain.before_log.append(state.ledger.tx("ops0", "datashare", "revoke", {"grant": 0}))
    with pytest.raises(RefusedError) as refusal:
        state.gateway.fetch(state.request().as_json())
    assert refusal.value.code == "grant_revoked"
    assert datashare_state.access_count(state.ledger.engine.query) == 0


def test_a_consumer_of_another_member_is_refused() -> None:
    state = world()
    state.refused(state.request("credit2"), "not_consumer")


def test_a_request_signed_with_another_key_is_refused_and_its_nonce_not_spent() -> None:
    state = world()
    genuine = state.request()
    forged = DataRequest(**{**genuine.as_json(), "signature": "ab" * 64})
    state.refused(forged, "bad_signature")
    state.gateway.fetch(genuine.as_json())  # the same nonce, signed: served


def test_a_replayed_or_stale_request_is_refused() -> None:
    state = world()
    request = state.request()
    state.gateway.fetch(request.as_json())
    state.refused(request, "replayed_request")
    old = state.consumers["credit1"].request(
        "firm-credit", 0, {"firm": "firm-7"}, now_ms=state.now_ms() - 121_000
    )
    state.refused(old, "stale_request")


def test_a_dataset_not_served_or_undeclared_parameters_are_refused() -> None:
    state = world()
    state.refused(state.request(dataset="other"), "unknown_dataset")
    state.refused(state.request(params={"firm": "firm-7", "extra": 1}), "bad_parameters")
    state.refused(state.request(grant=9), "unknown_grant")


def test_the_http_face_answers_and_refuses_with_codes() -> None:
    state = world()
    request = state.request()

    async def exchange() -> None:
        transport = httpx.ASGITransport(app=create_app(state.gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            response = await http.post("/v1/fetch", json=request.as_json())
            assert response.status_code == 200
            assert state.consumers["credit1"].open(request, response.json()).rows == ROWS
            again = await http.post("/v1/fetch", json=request.as_json())
            assert (again.status_code, again.json()["error"]["code"]) == (409, "replayed_request")
            big = await http.post("/v1/fetch", content=b"{" + b" " * 20_000 + b"}")
            assert (big.status_code, big.json()["error"]["code"]) == (413, "too_large")
            garbage = await http.post("/v1/fetch", content=b"not json")
            assert (garbage.status_code, garbage.json()["error"]["code"]) == (400, "bad_request")
            health = await http.get("/v1/health")
            assert health.json()["datasets"] == ["firm-credit"]

    asyncio.run(exchange())


class EscrowRegulator(Regulator):
    """The regulator contract with an escrow key set at genesis (no governance needed)."""

    escrow_public_key = SUITE.generate_encryption_keypair()[1]

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        record = regulator_state.with_escrow_key(None, cls.escrow_public_key.hex(), 0)
        return {**super().genesis_state(genesis), regulator_state.ESCROW_KEY: record}


def test_keys_come_from_the_chain_and_a_rotation_counts_from_the_next_request() -> None:
    ledger = make_ledger([System, Identity, EscrowRegulator], ACCOUNTS)
    keys = ChainKeys(InProcessChain(ledger), SUITE)
    assert keys.encryption_key("credit1") is None  # registered none yet
    assert keys.escrow_key() == PublicKey(1, EscrowRegulator.escrow_public_key)
    first, second = SUITE.generate_encryption_keypair()[1], SUITE.generate_encryption_keypair()[1]
    for public_key in (first, second):
        args = {"public_key": public_key.hex()}
        (receipt,) = ledger.block(ledger.tx("credit1", "identity", "set_encryption_key", args))
        assert receipt.ok, receipt
    assert keys.encryption_key("credit1") == PublicKey(2, second)
    assert keys.encryption_key("nobody") is None
    no_escrow = ChainKeys(InProcessChain(make_ledger(CONTRACTS, ACCOUNTS)), SUITE)
    assert no_escrow.escrow_key() is None


@dataclass
class ManyRows:
    rows: list[dict[str, Any]]

    def fetch(self, query: DatasetQuery, params: dict[str, str | int]) -> list[dict[str, Any]]:
        del query, params
        return self.rows


def test_a_long_answer_travels_in_parts_that_the_consumer_puts_back_in_order() -> None:
    state = world()
    rows = [{"line": index, "text": f"{index:04d}" + "x" * 200} for index in range(300)]
    state.gateway.rows = ManyRows(rows)
    request = state.request()
    answer = state.gateway.fetch(request.as_json())
    assert len(answer["parts"]) > 3
    assert state.consumers["credit1"].open(request, answer).rows == rows
    shuffled = {**answer, "parts": [answer["parts"][1], answer["parts"][0], *answer["parts"][2:]]}
    with pytest.raises(ClientError):  # the answer digest no longer matches, nor the order
        state.consumers["credit1"].open(request, shuffled)


def test_an_answer_too_large_to_seal_is_refused_and_not_logged() -> None:
    state = world()
    state.gateway.rows = ManyRows([{"blob": "x" * 20_000}])
    accesses = datashare_state.access_count(state.ledger.engine.query)
    with pytest.raises(RefusedError) as refusal:
        state.gateway.fetch(state.request().as_json())
    assert refusal.value.code == "answer_too_large"
    assert datashare_state.access_count(state.ledger.engine.query) == accesses


def test_a_row_the_envelope_cannot_hold_is_refused_and_not_logged() -> None:
    state = world()
    nested: Any = "deep"
    for _ in range(20):
        nested = [nested]
    state.gateway.rows = ManyRows([{"json_column": nested}])
    with pytest.raises(RefusedError) as refusal:
        state.gateway.fetch(state.request().as_json())
    assert refusal.value.code == "answer_unsealable"
    assert datashare_state.access_count(state.ledger.engine.query) == 0


@dataclass
class LedgerReceipts:
    """A node's proven receipts, as the in-process chain executed them."""

    chain: InProcessChain
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def transaction(self, tx_hash: str, *, verify: bool = False) -> dict[str, Any]:
        assert verify
        return self.records[tx_hash]


def test_the_consumer_checks_its_access_on_chain_and_notices_an_unlogged_answer() -> None:
    state = world()
    receipts = LedgerReceipts(state.chain)
    logged = state.chain.log_access

    def keep(args: dict[str, Any]) -> dict[str, Any]:
        record = logged(args)
        receipts.records[record["tx_hash"]] = record
        return record

    state.chain.log_access = keep  # type: ignore[method-assign]
    consumer = state.consumers["credit1"]
    consumer._node = receipts
    request = state.request()
    fetched = consumer.open(request, state.gateway.fetch(request.as_json()))
    consumer.check_logged(request, fetched)
    other = state.request()
    with pytest.raises(ClientError) as unlogged:  # the same record shown for another request
        consumer.check_logged(other, replace(fetched, query_digest="00" * 32))
    assert unlogged.value.code == "not_logged"

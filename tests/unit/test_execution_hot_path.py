"""The shortcuts of a transfer's hot path change no result: a block's cached deployment
lookups follow every write of a deployment record (kept or discarded), a read that does not
decode is charged as one that does, and a sender's account is written once per transaction."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.execution.block_run import BlockRun
from consortia.execution.contract import (
    GAS_PER_BYTE_READ,
    GAS_PER_BYTE_WRITE,
    GAS_READ,
    GAS_WRITE,
    Context,
    ContractError,
    Meter,
    frozen_now,
)
from consortia.execution.contracts import identity_state, system
from consortia.execution.contracts.asset import Asset
from consortia.execution.registry import ContractRegistry
from consortia.execution.suite_checks import SuiteChecks
from consortia.execution.values import KEY_LENGTH_MAX, canonical, state_key
from tests.execution_helpers import CHAIN_ID, SUITE, make_ledger

DEPLOYMENT = state_key(system.CONTRACT, system.deployment_key("asset"))


def _run(record: dict[str, Any] | None, height: int = 5) -> BlockRun:
    committed = {} if record is None else {DEPLOYMENT: canonical(record)}
    code = ContractRegistry([Asset]).code
    return BlockRun(committed, code, height, 0, SuiteChecks(SUITE, CHAIN_ID, b"\0" * 32))


def _refusal(run: BlockRun) -> str | None:
    try:
        run._active("asset")
    except ContractError as error:
        return error.code
    return None


def test_a_deployment_written_in_the_block_is_seen_at_once_and_forgotten_on_discard() -> None:
    run = _run(system.new_deployment(1))
    assert run.deployment("asset") == system.new_deployment(1)
    assert _refusal(run) is None
    for status, code in ((system.FROZEN, "contract_frozen"), (system.RETIRED, "contract_retired")):
        run.begin()
        run.write(DEPLOYMENT, canonical({**system.new_deployment(1), "status": status}))
        assert run.deployment("asset")["status"] == status  # type: ignore[index]
        assert _refusal(run) == code
        assert _refusal(run) == code  # the cached refusal, raised again
        run.discard()
        assert run.deployment("asset") == system.new_deployment(1)
        assert _refusal(run) is None
    run.begin()
    run.write(DEPLOYMENT, None)
    assert run.deployment("asset") is None
    assert _refusal(run) == "unknown_contract"
    run.keep()
    assert _refusal(run) == "unknown_contract"
    run.write_between_calls(DEPLOYMENT, canonical(system.new_deployment(1)))
    assert _refusal(run) is None


def test_a_rewrite_with_equal_bytes_and_a_lapsing_freeze_are_followed() -> None:
    frozen = {**system.new_deployment(1), "status": system.FROZEN, "frozen_until": 5}
    assert _refusal(_run(frozen, height=5)) == "contract_frozen"
    assert _refusal(_run(frozen, height=6)) is None  # each block's run asks at its height
    run = _run(system.new_deployment(1))
    assert _refusal(run) is None
    run.begin()
    run.write(DEPLOYMENT, canonical(system.new_deployment(1)))  # equal bytes, a new object
    assert _refusal(run) is None
    run.write(DEPLOYMENT, canonical(frozen))
    assert _refusal(run) == "contract_frozen"
    run.keep()


def test_an_unknown_contract_is_refused_and_then_found_once_deployed() -> None:
    run = _run(None)
    assert run.deployment("asset") is None
    assert _refusal(run) == "unknown_contract"
    run.begin()
    run.write(DEPLOYMENT, canonical(system.new_deployment(1)))
    assert _refusal(run) is None
    run.keep()


class _Host:
    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values

    def read(self, key: bytes) -> bytes | None:
        return self.values.get(key)


@pytest.mark.parametrize("present", [True, False])
def test_has_other_is_charged_as_read_other(present: bool) -> None:
    record = canonical({"public_key": "ab" * 32, "nonce": 3})
    key = identity_state.account_key("alice")
    values = {state_key(identity_state.CONTRACT, key): record} if present else {}
    reading = Context(_Host(values), "asset", "a", "a", 1, 0, Meter(10**6))  # type: ignore[arg-type]
    probing = Context(_Host(values), "asset", "a", "a", 1, 0, Meter(10**6))  # type: ignore[arg-type]
    value = reading.read_other(identity_state.CONTRACT, key)
    assert probing.has_other(identity_state.CONTRACT, key) is present
    assert (value is not None) is present
    assert probing.meter.used == reading.meter.used
    full = len(state_key(identity_state.CONTRACT, key))
    assert reading.meter.used == GAS_READ + GAS_PER_BYTE_READ * (full + len(record) * present)
    assert identity_state.account_exists(probing, "alice") is present
    assert probing.meter.used == 2 * reading.meter.used
    for not_an_id in ("", 7, None):
        assert not identity_state.account_exists(probing, not_an_id)  # type: ignore[arg-type]
    assert probing.meter.used == 2 * reading.meter.used  # nothing read, nothing charged


def test_reads_past_the_limit_run_out_of_gas_as_before() -> None:
    ctx = Context(_Host({}), "asset", "a", "a", 1, 0, Meter(GAS_READ * 3))  # type: ignore[arg-type]
    ctx.has("k")
    with pytest.raises(ContractError) as raised:
        for _ in range(3):
            ctx.get("k")
    assert raised.value.code == "out_of_gas"
    with pytest.raises(ContractError) as too_long:
        ctx.get("k" * 300)
    assert too_long.value.code == "key_too_long"


def test_a_transaction_writes_its_sender_s_account_once_and_a_failure_still_spends_it() -> None:
    chain = make_ledger([Asset], {"alice": ("bank-1", 100), "bob": ("bank-2", 0)})
    key = state_key(identity_state.CONTRACT, identity_state.account_key("alice"))
    before = chain.engine.query(identity_state.CONTRACT, identity_state.account_key("alice"))
    ok, failed = chain.block(
        chain.tx("alice", "asset", "transfer", {"to": "bob", "amount": 60}),
        chain.tx("alice", "asset", "transfer", {"to": "bob", "amount": 60}),
    )
    assert (ok.ok, failed.code) == (True, "insufficient_funds")
    after = chain.engine.query(identity_state.CONTRACT, identity_state.account_key("alice"))
    assert after == {**before, "nonce": 2}
    assert chain.engine.last_writes[key] == canonical(after)


class _Store(_Host):
    def write(self, key: bytes, value: bytes | None) -> None:
        self.values[key] = value  # type: ignore[assignment]


@pytest.mark.parametrize("key", ["k", "balance/CNY/alice", "名/é"])
def test_a_context_reads_and_writes_at_the_state_key_charged_by_its_bytes(key: str) -> None:
    store = _Store({})
    ctx = Context(store, "asset", "a", "a", 1, 0, Meter(10**6))  # type: ignore[arg-type]
    full = state_key("asset", key)
    ctx.put(key, 7)
    assert store.values == {full: canonical(7)}
    assert ctx.meter.used == GAS_WRITE + GAS_PER_BYTE_WRITE * (len(full) + len(canonical(7)))
    written = ctx.meter.used
    assert ctx.get(key) == 7
    assert ctx.meter.used - written == GAS_READ + GAS_PER_BYTE_READ * (len(full) + 1)
    ctx.delete(key)
    assert store.values == {full: None}
    assert ctx.get(key, "absent") == "absent"
    size = len(full.decode())  # in characters; the gas counts bytes
    assert (size == len(full)) is key.isascii()


def test_the_byte_length_of_a_key_bounds_it() -> None:
    ctx = Context(_Store({}), "asset", "a", "a", 1, 0, Meter(10**6))  # type: ignore[arg-type]
    fits = "é" * ((KEY_LENGTH_MAX - len("asset/")) // 2)
    ctx.put(fits, 1)
    for too_long in (fits + "é", "k" * (KEY_LENGTH_MAX - len("asset/") + 1)):
        with pytest.raises(ContractError) as writing:
            ctx.put(too_long, 1)
        with pytest.raises(ContractError) as reading:
            ctx.get(too_long)
        assert writing.value.code == reading.value.code == "key_too_long"


def _admission_rule(record: dict[str, Any] | None, height: int) -> str | int:
    """What admission refused or admitted before it took the block's cached lookup."""
    if record is None:
        return "unknown_contract"
    if record["status"] == system.RETIRED:
        return "contract_retired"
    if frozen_now(record, height):
        return "contract_frozen"
    return int(record["active_version"])


def _active_version(run: BlockRun) -> str | int:
    try:
        return run.active_version("asset")
    except ContractError as error:
        assert error.message in ("no contract 'asset'", "asset is retired", "asset is frozen")
        return error.code


@pytest.mark.parametrize(
    "record",
    [
        None,
        system.new_deployment(1),
        {**system.new_deployment(1), "versions": [1, 2], "active_version": 2},
        {**system.new_deployment(1), "status": system.RETIRED},
        {**system.new_deployment(1), "status": system.FROZEN},
        {**system.new_deployment(1), "status": system.FROZEN, "frozen_until": 4},
        {**system.new_deployment(1), "status": system.FROZEN, "frozen_until": 5},
    ],
)
def test_admission_meets_what_a_call_meets_and_follows_the_block(
    record: dict[str, Any] | None,
) -> None:
    expected = _admission_rule(record, 5)
    run = _run(system.new_deployment(1))
    assert _active_version(run) == 1  # cached before the record changes
    run.begin()
    run.write(DEPLOYMENT, None if record is None else canonical(record))
    assert _active_version(run) == expected
    if isinstance(expected, str):
        assert _refusal(run) == expected  # a call into the contract meets the same refusal
    run.discard()
    assert _active_version(run) == 1
    assert _active_version(_run(record)) == expected

"""The shortcuts of a transfer's hot path change no result: a block's cached deployment
lookups follow every write of a deployment record (kept or discarded), a read that does not
decode is charged as one that does, and a sender's account is written once per transaction."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.execution.block_run import BlockRun
from consortia.execution.contract import (
    GAS_PER_BYTE_READ,
    GAS_READ,
    Context,
    ContractError,
    Meter,
)
from consortia.execution.contracts import identity_state, system
from consortia.execution.contracts.asset import Asset
from consortia.execution.registry import ContractRegistry
from consortia.execution.suite_checks import SuiteChecks
from consortia.execution.values import canonical, state_key
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

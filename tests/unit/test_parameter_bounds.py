"""The consensus and mempool parameters' bounds, stated once (types/genesis.py) and read by the
genesis schema, governance's parameter changes and the replica's `Params`.

The danger these tests guard against: a parameter change governance passes that a node then
refuses (a `ConfigError` at start, a block its peers cannot decode), which would stop the
chain. So every bound a proposal may reach must be a value the genesis schema, `Params` and
the wire format all accept.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from consortia.consensus.config import Params
from consortia.errors import ConfigError
from consortia.execution.contracts.governance_kinds import (
    CONSENSUS_PARAM_BOUNDS,
    MEMPOOL_PARAM_BOUNDS,
)
from consortia.mempool.pool import MempoolLimits
from consortia.types.genesis import (
    BACKOFF_PERCENT_MAX,
    BACKOFF_PERCENT_MIN,
    ConsensusParams,
    MempoolParams,
    round_timeouts_ordered,
)
from consortia.types.primitives import PAYLOAD_ITEM_SIZE_MAX, PAYLOAD_ITEMS_MAX

TIMEOUTS = ("round_timeout_ms_min", "round_timeout_ms", "round_timeout_ms_max")


def test_governance_s_back_off_bounds_are_the_genesis_ones() -> None:
    assert CONSENSUS_PARAM_BOUNDS["timeout_backoff_percent"] == (
        BACKOFF_PERCENT_MIN,
        BACKOFF_PERCENT_MAX,
    )


@pytest.mark.parametrize("backoff", [BACKOFF_PERCENT_MIN - 1, BACKOFF_PERCENT_MAX + 1])
def test_a_back_off_out_of_bounds_is_refused_by_schema_and_params(backoff: int) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"timeout_backoff_percent": backoff}, ConsensusParams)
    with pytest.raises(ConfigError):
        Params(timeout_backoff_percent=backoff)


@pytest.mark.parametrize(
    "timeouts",
    [(1, 1, 1), (1, 2, 3), (2, 1, 3), (1, 3, 2), (3, 2, 1), (5, 5, 4), (4, 5, 5)],
)
def test_params_orders_round_timeouts_as_the_owner_s_rule(timeouts: tuple[int, int, int]) -> None:
    minimum, initial, maximum = timeouts
    try:
        Params(round_timeout_ms_min=minimum, round_timeout_ms=initial, round_timeout_ms_max=maximum)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == round_timeouts_ordered(minimum, initial, maximum)


def _with(defaults: dict[str, Any], name: str, value: int) -> dict[str, Any]:
    """The defaults with `name` set to `value`, the round timeouts widened to stay ordered."""
    values = {**defaults, name: value}
    if name in TIMEOUTS:
        values["round_timeout_ms_min"] = min(values["round_timeout_ms_min"], value)
        values["round_timeout_ms_max"] = max(values["round_timeout_ms_max"], value)
        values["round_timeout_ms"] = min(
            max(values["round_timeout_ms"], values["round_timeout_ms_min"]),
            values["round_timeout_ms_max"],
        )
    return values


@pytest.mark.parametrize("name", sorted(CONSENSUS_PARAM_BOUNDS))
def test_every_consensus_value_governance_may_set_a_node_accepts(name: str) -> None:
    defaults = msgspec.to_builtins(ConsensusParams())
    for value in CONSENSUS_PARAM_BOUNDS[name]:
        params = msgspec.convert(_with(defaults, name, value), ConsensusParams)
        assert getattr(Params.from_genesis(params), name) == value
    assert CONSENSUS_PARAM_BOUNDS["block_payload_items_max"][1] <= PAYLOAD_ITEMS_MAX


@pytest.mark.parametrize("name", sorted(MEMPOOL_PARAM_BOUNDS))
def test_every_mempool_value_governance_may_set_the_schema_accepts(name: str) -> None:
    defaults = msgspec.to_builtins(MempoolParams())
    for value in MEMPOOL_PARAM_BOUNDS[name]:
        params = msgspec.convert({**defaults, name: value}, MempoolParams)
        assert getattr(params, name) == value


def test_no_transaction_a_mempool_may_admit_is_too_large_for_a_block() -> None:
    # A block's payload item is at most PAYLOAD_ITEM_SIZE_MAX bytes: a larger admitted
    # transaction would go into blocks no peer can decode (gossiped, it reaches every leader).
    assert MEMPOOL_PARAM_BOUNDS["transaction_bytes_max"][1] <= PAYLOAD_ITEM_SIZE_MAX
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"transaction_bytes_max": PAYLOAD_ITEM_SIZE_MAX + 1}, MempoolParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"block_payload_items_max": PAYLOAD_ITEMS_MAX + 1}, ConsensusParams)


def test_mempool_limits_accept_the_defaults() -> None:
    limits = MempoolLimits.from_genesis(MempoolParams(), expiry_blocks_max=100)
    assert limits.transaction_bytes_max == MempoolParams().transaction_bytes_max


def test_governance_cannot_make_a_block_too_small_for_a_transaction() -> None:
    # The genesis check refuses transaction_bytes_max > block_bytes_max; governance's ranges
    # make that impossible to reach by changing either one.
    smallest_block = CONSENSUS_PARAM_BOUNDS["block_bytes_max"][0]
    assert MEMPOOL_PARAM_BOUNDS["transaction_bytes_max"][1] <= smallest_block

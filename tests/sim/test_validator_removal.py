"""A membership change that removes a validator: it follows the new epoch as an observer.

The simulator's own membership change only adds one; these runs swap a validator out as the
new one comes in (or only remove one), so a replica that validated epoch 0 enters epoch 1 as
an observer and waits in round 0 for its first certificate. Neither it nor anyone else may
halt (the invariant "round >= 1 once started" excepts exactly this observer), and the run
must stay safe and live.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from consortia.consensus.config import Params
from consortia.crypto.base import Suite
from consortia.sim import Scenario
from consortia.sim import harness as harness_module
from consortia.sim.harness import Simulation
from consortia.sim.setup import Consortium, build
from consortia.types.consensus import EpochConfig


def _removing(swap: bool):  # type: ignore[no-untyped-def]
    """`build`, with epoch 1 leaving out one honest validator of epoch 0 (chosen by seed); with
    `swap`, the joining validator still comes in."""

    def build_removing(
        scenario: Scenario, rng: random.Random, suite: Suite, params: Params
    ) -> Consortium:
        built = build(scenario, rng, suite, params)
        assert built.next_config is not None
        old = {v.node_id for v in built.epoch_config.validators}
        honest = [s.node_id for s in built.slots if s.honest and s.node_id in old]
        removed = honest[scenario.seed % len(honest)]
        validators = [
            v
            for v in built.next_config.validators
            if v.node_id != removed and (swap or v.node_id in old)
        ]
        config = EpochConfig(epoch=1, validators=validators)
        built.replicas.next_config = config
        for slot in built.slots:  # rebuilt, so their membership checks accept the new set
            slot.replica = built.replicas.make(slot)
            if slot.attacker is not None:
                object.__setattr__(slot.attacker, "brain", slot.replica)
        return dataclasses.replace(built, next_config=config)

    return build_removing


@pytest.mark.parametrize("swap", [True, False])
def test_a_validator_removed_by_an_epoch_change_follows_as_an_observer(
    monkeypatch: pytest.MonkeyPatch, swap: bool
) -> None:
    """Setup: five validators (one Byzantine, one crashing), partitions on every other seed;
    from height 4 epoch 1 drops one honest validator. Test: every run is safe and live, no
    replica halts, and the removed one ends in epoch 1 as an observer."""
    monkeypatch.setattr(harness_module, "build", _removing(swap))
    for seed in range(6):
        scenario = Scenario(
            nodes=5,
            byzantine=1,
            crash=1,
            partitions=seed % 2 == 0,
            add_validator_at=4,
            heights=12,
            seed=seed,
        )
        simulation = Simulation(scenario)
        result = simulation.run()
        assert result.ok, (scenario.command(), result.safety_violations, result.liveness_failures)
        observers = [
            slot.index
            for slot in simulation.slots
            if slot.honest
            and slot.replica is not None
            and slot.replica.epoch == 1
            and slot.replica.node_id not in slot.replica.validators
        ]
        # Without the swap, the validator meant to join stays an observer too.
        assert len(observers) == (1 if swap else 2), (seed, observers)

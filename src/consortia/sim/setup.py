"""Building one simulated consortium from a scenario and its seed.

Owns the order in which the seed's randomness is drawn at setup (keys, Byzantine validators
and their strategies, voting powers, clock skews, the network's partitions), so one seed is
one consortium. Builds slots, their replicas and attackers, the epoch configurations, the
governance script and the network model; never runs anything (`harness.py` does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from consortia.consensus.config import Params, genesis_block
from consortia.crypto import Suite
from consortia.sim.adversary import STRATEGIES, TWINNED, TWINS, Attacker, make_strategy
from consortia.sim.faults import LeaderTargeting, draw_powers, epoch_config
from consortia.sim.governed import GovernanceScript
from consortia.sim.network import NetworkModel, random_partitions, twin_split_partitions
from consortia.sim.scenario import Scenario
from consortia.sim.slots import (
    CHAIN_ID,
    GENESIS_TIME_MS,
    PROTOCOL_VERSION,
    Disk,
    ReplicaFactory,
    Slot,
)
from consortia.types.consensus import Block, EpochConfig, Validator
from consortia.types.signing import SigningDomain, block_id

# The simulator's chains have no genesis document; their signatures bind to this instead.
SIM_GENESIS_DOMAIN = b"consortia/sim-genesis/v1\x00"


@dataclass(slots=True)
class Consortium:
    slots: list[Slot]
    slots_by_node: dict[bytes, list[int]]
    epoch_config: EpochConfig
    next_config: EpochConfig | None
    script: GovernanceScript | None
    genesis: Block
    genesis_id: bytes
    replicas: ReplicaFactory
    network: NetworkModel
    targeting: LeaderTargeting | None
    domain: SigningDomain


def _check(scenario: Scenario) -> None:
    if scenario.nodes < 1 or not 0 <= scenario.byzantine <= scenario.nodes:
        raise ValueError("need at least one node and at most `nodes` Byzantine validators")
    if scenario.crash > scenario.nodes - scenario.byzantine:
        raise ValueError("cannot crash more validators than there are honest ones")
    unknown = [name for name in scenario.strategies if name not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}")


def build(scenario: Scenario, rng: random.Random, suite: Suite, params: Params) -> Consortium:
    _check(scenario)
    extra = 1 if scenario.add_validator_at else 0
    keys = []
    for _ in range(scenario.nodes + extra):
        private_key = _new_private_key(rng, scenario.suite)
        public_key = suite.public_key(private_key)
        keys.append((suite.hash(public_key), public_key, private_key))
    joining = keys.pop() if extra else None
    keys.sort()
    byzantine = sorted(rng.sample(range(scenario.nodes), scenario.byzantine))
    strategies = {
        index: scenario.strategies[k % len(scenario.strategies)]
        if scenario.strategies
        else rng.choice(STRATEGIES)
        for k, index in enumerate(byzantine)
    }
    powers = draw_powers(rng, scenario.nodes, byzantine, scenario.unequal_power)
    config = epoch_config([(n, p) for n, p, _ in keys], powers, 0)
    next_config = None
    if joining is not None:
        node_id, public_key, _ = joining
        grown = sorted(
            [*config.validators, Validator(node_id, public_key, 1)], key=lambda v: v.node_id
        )
        next_config = EpochConfig(epoch=1, validators=grown)
    script = None
    if joining is not None and scenario.governance:
        node_id, public_key, _ = joining
        script = GovernanceScript(
            suite=suite,
            chain_id=CHAIN_ID,
            config=config,
            joining=Validator(node_id, public_key, 1),
            account_keys=[_new_private_key(rng, scenario.suite) for _ in config.validators],
            from_height=scenario.add_validator_at,
        )
    genesis = genesis_block(suite, CHAIN_ID, PROTOCOL_VERSION, GENESIS_TIME_MS)
    genesis_id = block_id(suite, genesis.header)
    # A governed run's chain is its genesis document's; otherwise the simulator's own.
    chain_hash = (
        script.domain.genesis_hash
        if script is not None
        else suite.hash(SIM_GENESIS_DOMAIN + CHAIN_ID.encode())
    )
    domain = SigningDomain(chain_hash)
    replicas = ReplicaFactory(suite, params, scenario, genesis, next_config, script, chain_hash)

    def new_slot(index: int, key: tuple[bytes, bytes, bytes], honest: bool) -> Slot:
        node_id, _, private_key = key
        disk = Disk(epoch_config=config, epoch_root_id=genesis_id)
        slot = Slot(index, node_id, private_key, honest, None, disk)
        slot.replica = replicas.make(slot)
        return slot

    slots = [new_slot(i, key, i not in byzantine) for i, key in enumerate(keys)]
    peers = [v.node_id for v in config.validators]
    quiet_by_ms = scenario.heights * 3 * scenario.latency_ms_max + 16 * scenario.round_timeout_ms
    for index, name in strategies.items():
        if name in TWINNED:
            slots.append(new_slot(len(slots), keys[index], False))
        if name != TWINS:
            for slot in [s for s in slots if s.node_id == keys[index][0]]:
                _arm(slot, name, rng, suite, domain=domain, peers=peers, quiet_by_ms=quiet_by_ms)
    if joining is not None:  # follows epoch 0 as an observer, validates from epoch 1
        slots.append(new_slot(len(slots), joining, True))
    for slot in slots:
        if scenario.clock_skew_ms:
            slot.skew_ms = rng.randint(0, 2 * scenario.clock_skew_ms)
    slots_by_node: dict[bytes, list[int]] = {}
    for slot in slots:
        slots_by_node.setdefault(slot.node_id, []).append(slot.index)
    network = _network(scenario, rng, slots, slots_by_node)
    targeting = None
    if scenario.adversarial_network:
        honest = [slot.index for slot in slots if slot.honest]
        victims = rng.sample(honest, min(len(honest), config.fault_power or 1))
        targeting = LeaderTargeting(network.delta_ms, frozenset(victims))
    return Consortium(
        slots=slots,
        slots_by_node=slots_by_node,
        epoch_config=config,
        next_config=next_config,
        script=script,
        genesis=genesis,
        genesis_id=genesis_id,
        replicas=replicas,
        network=network,
        targeting=targeting,
        domain=domain,
    )


def _arm(
    slot: Slot,
    name: str,
    rng: random.Random,
    suite: Suite,
    *,
    domain: SigningDomain,
    peers: list[bytes],
    quiet_by_ms: int,
) -> None:
    """Make `slot` a Byzantine validator playing strategy `name` with its own replica."""
    slot.strategy = make_strategy(name, rng, quiet_by_ms)
    slot.attacker = Attacker(
        node_id=slot.node_id,
        private_key=slot.private_key,
        suite=suite,
        chain_id=CHAIN_ID,
        domain=domain,
        peers=[p for p in peers if p != slot.node_id],
        rng=random.Random(rng.getrandbits(64)),
        brain=slot.replica,
    )


def _new_private_key(rng: random.Random, suite_name: str) -> bytes:
    seed = rng.randbytes(32)
    if suite_name == "intl":
        return seed
    return (int.from_bytes(seed, "big") % (2**255) + 1).to_bytes(32, "big")


def _network(
    scenario: Scenario, rng: random.Random, slots: list[Slot], by_node: dict[bytes, list[int]]
) -> NetworkModel:
    network = NetworkModel(
        latency_ms_min=scenario.latency_ms_min,
        latency_ms_max=scenario.latency_ms_max,
        drop_percent=scenario.drop_percent,
        duplicate_percent=scenario.duplicate_percent,
        delta_ms=scenario.latency_ms_max,
    )
    twins = [
        (by_node[slot.node_id][0], by_node[slot.node_id][1])
        for slot in slots
        if len(by_node[slot.node_id]) == 2 and slot.index < scenario.nodes
    ]
    if not scenario.partitions and not twins:
        return network  # synchronous from the start
    timeout = scenario.round_timeout_ms
    network.gst_ms = rng.randint(8 * timeout, 16 * timeout)
    indexes = [slot.index for slot in slots]
    honest = [slot.index for slot in slots if slot.honest]
    if scenario.partitions:
        # Before stabilisation: loss, duplication, long delays (reordering) and partitions.
        network.drop_percent = max(network.drop_percent, 5)
        network.duplicate_percent = max(network.duplicate_percent, 5)
        network.latency_ms_max = max(network.latency_ms_max, 4 * scenario.latency_ms_max)
        network.partitions = random_partitions(
            rng, indexes, network.gst_ms, rng.randint(1, 3), 6 * timeout
        )
    if twins:
        network.partitions += twin_split_partitions(
            rng,
            twins,
            honest,
            until_ms=network.gst_ms,
            count=rng.randint(1, 3),
            length_ms_max=8 * timeout,
        )
    return network

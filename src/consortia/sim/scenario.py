"""What one simulated run is (`Scenario`) and what it found (`RunResult`).

A scenario is plain data: the consortium's size, its faults, the network's misbehaviour and
the seed. Its `command()` is the exact `consortia sim` command that replays it. The harness
(`harness.py`) turns a scenario into a run; the report (`report.py`) summarises many.
Nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consortia.consensus.safety import NO_WEAKENING, WEAKENING_NAMES, Weakening
from consortia.sim.faults import CrashMomentChoice


@dataclass(slots=True)
class Scenario:
    nodes: int = 4
    byzantine: int = 0
    crash: int = 0
    permanent_crash: bool = False
    heights: int = 20
    partitions: bool = False
    seed: int = 0
    suite: str = "intl"
    items_per_block: int = 4
    round_timeout_ms: int = 1000
    latency_ms_min: int = 5
    latency_ms_max: int = 50
    drop_percent: int = 0
    duplicate_percent: int = 0
    leader_reputation: bool = True
    weakening: Weakening = NO_WEAKENING
    # Membership change: from this height on, proposals end epoch 0 and hand over to a set
    # with one more validator (a replica that follows epoch 0 as an observer). 0: never.
    add_validator_at: int = 0
    # With add_validator_at: the change goes through a real governance proposal and votes,
    # executed by every slot's own engine, instead of being scripted into proposals.
    governance: bool = False
    # What the Byzantine validators do (adversary.STRATEGIES). Empty: each seed draws one
    # strategy per Byzantine validator, so many seeds test a mix.
    strategies: tuple[str, ...] = ()
    # When crashing validators go down (faults.CRASH_MOMENTS, or "mix": drawn per validator).
    crash_moment: CrashMomentChoice = "mix"
    # Crash every crashing validator at the first moment that comes, restart them together.
    crash_together: bool = False
    # Voting powers drawn from 1..4 (Byzantine power kept within f) instead of 1 each.
    unequal_power: bool = False
    # Each replica's clock runs ahead of simulated time by a fixed 0..2*skew ms.
    clock_skew_ms: int = 0
    # After stabilisation, the network delays messages to and from the next leader, and
    # proposals to some replicas, to the bound.
    adversarial_network: bool = False

    def command(self) -> str:
        """The exact command that replays this run."""
        parts = [
            "consortia sim",
            f"--nodes {self.nodes}",
            f"--byzantine {self.byzantine}",
            f"--crash {self.crash}",
            f"--heights {self.heights}",
            f"--seed {self.seed}",
        ]
        if self.partitions:
            parts.append("--partitions")
        if self.permanent_crash:
            parts.append("--permanent-crash")
        if self.suite != "intl":
            parts.append(f"--suite {self.suite}")
        if not self.leader_reputation:
            parts.append("--no-leader-reputation")
        if self.add_validator_at:
            parts.append(f"--add-validator-at {self.add_validator_at}")
        if self.governance:
            parts.append("--governance")
        parts.extend(f"--strategy {name}" for name in self.strategies)
        if self.crash and self.crash_moment != "mix":
            parts.append(f"--crash-moment {self.crash_moment}")
        if self.crash_together:
            parts.append("--crash-together")
        if self.unequal_power:
            parts.append("--unequal-power")
        if self.clock_skew_ms:
            parts.append(f"--clock-skew-ms {self.clock_skew_ms}")
        if self.adversarial_network:
            parts.append("--adversarial-network")
        parts.extend(
            f"--weaken {name}" for name in WEAKENING_NAMES if getattr(self.weakening, name)
        )
        return " ".join(parts)


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    safety_violations: list[str]
    liveness_failures: list[str]
    committed_heights: dict[int, int]
    min_committed_height: int
    messages_sent: int
    rounds: int
    sim_time_ms: int
    commit_latency_ms: list[int]
    mean_latency_ms: float
    dropped: dict[str, int] = field(default_factory=dict)
    # The safety rules' refusals, by rule (`safety.RefusalRule`), over all replicas.
    refused: dict[str, int] = field(default_factory=dict)
    # The most rounds the cluster went through without a new commit after stabilisation.
    rounds_without_commit_max: int = 0
    # Frames the receivers' decoders refused (malformed or oversized).
    frames_refused: int = 0
    # The strategy each Byzantine validator played (by slot index).
    strategies: dict[int, str] = field(default_factory=dict)
    # Blocks first committed after stabilisation (and the last restart), and over how long.
    stable_blocks: int = 0
    stable_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.safety_violations and not self.liveness_failures

    @property
    def messages_per_block(self) -> float:
        return self.messages_sent / max(1, self.min_committed_height)

    @property
    def rounds_per_commit(self) -> float:
        return self.rounds / max(1, self.min_committed_height)

    @property
    def commit_latency_round_trips(self) -> float:
        if not self.commit_latency_ms:
            return 0.0
        mean = sum(self.commit_latency_ms) / len(self.commit_latency_ms)
        return mean / (2 * self.mean_latency_ms)

    @property
    def blocks_per_second(self) -> float:
        return 1000 * self.min_committed_height / max(1, self.sim_time_ms)

    @property
    def stable_blocks_per_second(self) -> float:
        """The commit rate once the network is synchronous and every crash is over."""
        return 1000 * self.stable_blocks / max(1, self.stable_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.scenario.seed,
            "command": self.scenario.command(),
            "safety_violations": self.safety_violations,
            "liveness_failures": self.liveness_failures,
            "min_committed_height": self.min_committed_height,
            "messages_per_block": round(self.messages_per_block, 2),
            "rounds_per_commit": round(self.rounds_per_commit, 3),
            "commit_latency_round_trips": round(self.commit_latency_round_trips, 3),
            "blocks_per_simulated_second": round(self.blocks_per_second, 3),
            "stable_blocks_per_simulated_second": round(self.stable_blocks_per_second, 3),
            "sim_time_ms": self.sim_time_ms,
            "rounds_without_commit_max": self.rounds_without_commit_max,
            "frames_refused": self.frames_refused,
            "strategies": sorted(self.strategies.values()),
            "dropped": dict(sorted(self.dropped.items())),
            "refused": dict(sorted(self.refused.items())),
        }

"""Faults the simulator injects besides Byzantine strategies: crashes aimed at the protocol's
dangerous moments, a network that knows the protocol, unequal voting power, clock skew.

Crashes (`CrashPlan`): each crashing validator is given a moment, drawn per seed unless the
scenario names one: at a random time (`random`); right after it voted in a round entered by a
TC (`vote_after_tc`); right after a commit (`commit`); right after the epoch's first commit
(`first_commit`); right after it entered a new epoch (`epoch_change`). With `together`, the
first moment that comes crashes every crashing validator at once and restarts them together.
A moment that never comes falls back to a crash at `fallback_ms`. `--permanent-crash`
validators crash at a random time, possibly the start, and never come back.

The network adversary (`LeaderTargeting`): after stabilisation every message still arrives
within the bound, but messages to and from the next leader take the whole bound, and
proposals (which carry the newest QCs) reach some replicas only at the bound.

Nothing here reads a clock or global randomness: every choice comes from the seed's `rng`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final, Literal, TypeGuard

from consortia.consensus.events import Action, Commit, EnterEpoch
from consortia.types.consensus import EpochConfig, SafetyState, Validator

# When a crashing validator goes down: a closed set (mypy checks every moment named).
CrashMoment = Literal["random", "vote_after_tc", "commit", "first_commit", "epoch_change"]
# What a scenario names: one moment for all, or `mix` (drawn per validator).
CrashMomentChoice = CrashMoment | Literal["mix"]
# The moments in the order a seed draws from (a test checks they are `CrashMoment`'s).
CRASH_MOMENTS: Final[tuple[CrashMoment, ...]] = (
    "random",
    "vote_after_tc",
    "commit",
    "first_commit",
    "epoch_change",
)
MIX: Final = "mix"
# Voting powers drawn for --unequal-power.
POWER_MAX: Final = 4


@dataclass(slots=True)
class CrashPlan:
    """When each crashing validator goes down and comes back."""

    moments: dict[int, CrashMoment]  # slot index -> moment, for crashes not yet fired
    permanent: set[int]
    together: bool
    restart_delay_ms: dict[int, int]
    fallback_ms: int
    timed: list[tuple[int, int, bool]] = field(default_factory=list)  # (time, slot, restart)
    epoch_of_first_commit: dict[int, int] = field(default_factory=dict)

    @property
    def latest_restart_ms(self) -> int:
        """No planned restart happens after this."""
        times = [t for t, _, restart in self.timed if restart]
        if self.moments:
            times.append(self.fallback_ms + max(self.restart_delay_ms.values(), default=0))
        return max(times, default=0)

    def fire(self, slots: list[int], now_ms: int) -> list[tuple[int, int, bool]]:
        """Crash `slots` now (all armed ones, with `together`); the crashes and restarts."""
        chosen = list(self.moments) if self.together else slots
        fired: list[tuple[int, int, bool]] = []
        delay = max((self.restart_delay_ms[s] for s in chosen), default=0)
        for slot in chosen:
            if self.moments.pop(slot, None) is None:
                continue
            fired.append((now_ms, slot, False))
            wait = delay if self.together else self.restart_delay_ms[slot]
            fired.append((now_ms + wait, slot, True))
        return fired

    def after_action(self, slot: int, epoch: int, action: Action) -> list[int]:
        """The armed slots whose moment `action` (of `slot`) is."""
        moment = self.moments.get(slot)
        if moment is None:
            return []
        if isinstance(action, Commit):
            first = self.epoch_of_first_commit.get(slot) != epoch
            self.epoch_of_first_commit[slot] = epoch
            if moment == "commit" or (moment == "first_commit" and first):
                return [slot]
        if isinstance(action, EnterEpoch) and moment == "epoch_change":
            return [slot]
        return []

    def after_durable(self, slot: int, state: SafetyState, voted: bool) -> list[int]:
        """`slot` made a vote durable in a round entered by a TC: its `vote_after_tc`."""
        vote, tc = state.last_vote, state.last_timeout_certificate
        if self.moments.get(slot) != "vote_after_tc" or not voted or vote is None or tc is None:
            return []
        return [slot] if vote.round == tc.round + 1 and vote.epoch == tc.epoch else []

    def fallback(self) -> list[int]:
        return list(self.moments)


def is_crash_moment_choice(name: str) -> TypeGuard[CrashMomentChoice]:
    """`name` is a crash moment or `mix` (what `--crash-moment` accepts)."""
    return name == MIX or name in CRASH_MOMENTS


def plan_crashes(
    rng: random.Random,
    honest: list[int],
    count: int,
    *,
    moment: CrashMomentChoice,
    permanent: bool,
    together: bool,
    epoch_changes: bool,
    expected_ms: int,
    round_timeout_ms: int,
) -> CrashPlan:
    """Choose the crashing validators and their moments."""
    chosen = rng.sample(honest, count)
    usable = [m for m in CRASH_MOMENTS if epoch_changes or m != "epoch_change"]
    plan = CrashPlan(
        moments={},
        permanent=set(chosen) if permanent else set(),
        together=together and not permanent,
        restart_delay_ms={},
        fallback_ms=expected_ms,
    )
    for slot in chosen:
        plan.restart_delay_ms[slot] = rng.randint(200, 4 * round_timeout_ms)
        if permanent:
            # Down for good: at the start or at a random time in the expected run.
            at = 0 if rng.randrange(2) else rng.randint(0, max(1, expected_ms))
            plan.timed.append((at, slot, False))
            continue
        chosen_moment = rng.choice(usable) if moment == MIX else moment
        if chosen_moment == "random":
            crash_at = rng.randint(0, max(1, expected_ms))
            plan.timed.append((crash_at, slot, False))
            plan.timed.append((crash_at + plan.restart_delay_ms[slot], slot, True))
        else:
            plan.moments[slot] = chosen_moment
    return plan


def draw_powers(rng: random.Random, count: int, byzantine: list[int], unequal: bool) -> list[int]:
    """Voting powers: 1 each, or drawn from 1..POWER_MAX with the Byzantine validators'
    power kept within f (their total at most (total - 1) // 3)."""
    if not unequal:
        return [1] * count
    powers = [rng.randint(1, POWER_MAX) for _ in range(count)]
    honest = [i for i in range(count) if i not in byzantine]
    while byzantine and sum(powers[i] for i in byzantine) > (sum(powers) - 1) // 3:
        largest = max(byzantine, key=lambda i: powers[i])
        if powers[largest] > 1:
            powers[largest] -= 1
        else:
            powers[min(honest, key=lambda i: powers[i])] += 1
    return powers


def epoch_config(keys: list[tuple[bytes, bytes]], powers: list[int], epoch: int) -> EpochConfig:
    return EpochConfig(
        epoch=epoch,
        validators=[
            Validator(node_id, public_key, power)
            for (node_id, public_key), power in zip(keys, powers, strict=True)
        ],
    )


@dataclass(slots=True)
class LeaderTargeting:
    """After stabilisation, the network delays what matters most, within the bound."""

    delta_ms: int
    victims: frozenset[int]  # slots that see proposals (hence new QCs) only at the bound

    def delay(
        self, delays: list[int], *, to_leader: bool, from_leader: bool, proposal_to_victim: bool
    ) -> list[int]:
        if to_leader or from_leader or proposal_to_victim:
            return [self.delta_ms for _ in delays]
        return delays

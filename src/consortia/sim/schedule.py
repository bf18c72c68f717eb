"""The simulator's event queue: what happens to which slot, and when, in simulated time.

Each event is a frozen dataclass; the queue orders them by time, then by the order they were
scheduled, so one seed always replays the same history. Events that belong to one life of a
replica (timers, disk writes, payloads) carry its incarnation and are ignored after a crash;
messages in flight (`Deliver`) outlive a crash of their receiver, as on a real network.
Nothing here decides anything: `harness.py` schedules and handles the events.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from consortia.consensus.events import PayloadReady
from consortia.types.consensus import Block, SafetyState


@dataclass(frozen=True, slots=True)
class Crash:
    """The slot's process dies: it loses everything but its disk."""


@dataclass(frozen=True, slots=True)
class Restart:
    """The slot's process starts again from its disk."""


@dataclass(frozen=True, slots=True)
class CrashDue:
    """Crashes aimed at protocol moments that have not come by now happen now."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """A frame on the wire: decoded (or refused) by the receiver, as a node would."""

    sender: bytes
    frame: bytes


@dataclass(frozen=True, slots=True)
class TimerDue:
    incarnation: int
    epoch: int
    round: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class PersistLanded:
    """A `Persist` reached the disk."""

    incarnation: int
    sequence: int
    state: SafetyState
    block: Block | None


@dataclass(frozen=True, slots=True)
class PayloadOffered:
    """The mempool's answer to `RequestPayload`."""

    incarnation: int
    ready: PayloadReady


SimEvent = Crash | Restart | CrashDue | Deliver | TimerDue | PersistLanded | PayloadOffered


@dataclass(order=True, frozen=True, slots=True)
class _Entry:
    time_ms: int
    sequence: int
    slot: int = field(compare=False)
    event: SimEvent = field(compare=False)


class Schedule:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._sequence = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, time_ms: int, slot: int, event: SimEvent) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, _Entry(time_ms, self._sequence, slot, event))

    def pop(self) -> tuple[int, int, SimEvent]:
        """The earliest event: (time, slot index, event)."""
        entry = heapq.heappop(self._heap)
        return entry.time_ms, entry.slot, entry.event

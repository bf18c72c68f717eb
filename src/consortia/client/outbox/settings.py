"""The relay's settings (their bounds checked) and its counters (what this process did, logged
and exported as metrics).

Owns these two records and the relay's default bounds. Must never hold a key, a passphrase or
a DSN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

BATCH_MAX: Final = 256  # intents signed per account and pass; also the most submitted a pass
IN_FLIGHT_MAX: Final = 128  # signed, undecided intents per account (the mempool allows 256)
EXPIRY_BLOCKS: Final = 1000
SIGNINGS_MAX: Final = 8
PAUSE_MIN_S: Final = 0.05
PAUSE_MAX_S: Final = 1.0
WAITING_PAUSE_S: Final = 0.2  # the longest pause while signed transactions wait
BACKOFF_MAX_S: Final = 5.0
# Passes in a row ended by an answer that failed verification before the relay stops.
VERIFICATION_FAILURES_MAX: Final = 16
# An unproven lookup is tried again after this pause, doubling up to the longest.
UNPROVEN_PAUSE_S: Final = 5.0
UNPROVEN_PAUSE_MAX_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class RelaySettings:
    batch_max: int = BATCH_MAX
    in_flight_max: int = IN_FLIGHT_MAX
    expiry_blocks: int = EXPIRY_BLOCKS
    signings_max: int = SIGNINGS_MAX
    pause_max_s: float = PAUSE_MAX_S
    backoff_max_s: float = BACKOFF_MAX_S
    until_idle: bool = False  # stop once nothing is pending or signed
    verification_failures_max: int = VERIFICATION_FAILURES_MAX

    def __post_init__(self) -> None:
        assert 1 <= self.batch_max <= 2000 and 1 <= self.in_flight_max <= 255
        assert 2 <= self.expiry_blocks <= 100_000 and 1 <= self.signings_max <= 100
        assert 1 <= self.verification_failures_max <= 10_000


@dataclass
class RelayCounters:
    """What this process did (and, from the database, what waits): logged and exported."""

    signed: int = 0
    submitted: int = 0
    committed: int = 0
    failed: int = 0
    resigned: int = 0
    node_retries: int = 0
    database_retries: int = 0
    verification_failures: int = 0  # answers refused: a check failed (a lying or broken node)
    unproven: int = 0  # lookups that proved nothing either way (`absence_unproven`)
    waiting: dict[str, int] = field(default_factory=lambda: {"pending": 0, "signed": 0})

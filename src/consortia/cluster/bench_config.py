"""What a `consortia bench` run is asked to do (`BenchConfig`: the workload, the rate, the
duration, the clients and their limits, the seed) and how its progress is shown
(`BenchProgress`), with the defaults the command line shows.

This module only holds settings and checks them; it must never start, send or print
anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from consortia.client.sdk import BATCH_TRANSACTIONS_MAX
from consortia.cluster.bench_workloads import (
    MATURITY_BLOCKS_DEFAULT,
    WORKLOAD_QUERY,
    WORKLOAD_RECEIVABLE,
    WORKLOAD_SMALLBANK,
    WORKLOAD_TRANSFER,
    WORKLOADS,
)
from consortia.errors import InvalidArgumentError
from consortia.identity.bench_accounts import ROLE_CYCLE

# Client processes when --clients is not given. One sends a transfer, smallbank or receivable
# load at 2,000 a second with 5-7% of a core; on this 2-core machine a second one took CPU and
# throughput from the validators (back-to-back pairs at `max`: docs/node.md). A query client
# checks each read's proof and certificate itself, so reads get two.
CLIENTS_DEFAULT: Final = 1
QUERY_CLIENTS_DEFAULT: Final = 2
WINDOW_DEFAULT: Final = 4000  # admitted transactions waiting for a block, at `max`
BATCH_DEFAULT: Final = 250  # transactions a request, at `max`
MAX_PRESIGN_PER_S: Final = 4000  # transactions signed ahead per second of a `max` run
DRAIN_S_DEFAULT: Final = 60.0
SEED_MAX: Final = 2**32


def default_clients(workload: str) -> int:
    """The client processes a workload gets when --clients is not given."""
    return QUERY_CLIENTS_DEFAULT if workload == WORKLOAD_QUERY else CLIENTS_DEFAULT


@dataclass(frozen=True, slots=True)
class BenchConfig:
    duration_s: float
    rate: float | None  # transactions (reads) a second in all; None for `max`
    clients: int = CLIENTS_DEFAULT
    accounts: int | None = None  # the first A benchmark accounts (default: all)
    window: int = WINDOW_DEFAULT
    batch: int = BATCH_DEFAULT
    transactions: int | None = None  # how many to sign ahead (default: rate x duration)
    drain_s: float = DRAIN_S_DEFAULT
    workload: str = WORKLOAD_TRANSFER
    seed: int = 0
    maturity_blocks: int = MATURITY_BLOCKS_DEFAULT

    def check(self) -> None:
        if self.workload not in WORKLOADS:
            raise InvalidArgumentError(
                f"--workload {self.workload!r}: one of {', '.join(WORKLOADS)}"
            )
        if not self.duration_s > 0:
            raise InvalidArgumentError("--duration must be positive")
        if self.rate is not None and not self.rate > 0:
            raise InvalidArgumentError("--rate must be positive, or max")
        if not 1 <= self.clients <= 64:
            raise InvalidArgumentError("--clients must be 1 to 64")
        if not 1 <= self.batch <= BATCH_TRANSACTIONS_MAX:
            raise InvalidArgumentError(f"--batch must be 1 to {BATCH_TRANSACTIONS_MAX}")
        if self.window < 1 or (self.transactions is not None and self.transactions < 1):
            raise InvalidArgumentError("--window and --transactions must be positive")
        if not 0 <= self.seed < SEED_MAX:
            raise InvalidArgumentError(f"--seed must be 0 to {SEED_MAX - 1}")
        if not 2 <= self.maturity_blocks <= 100_000:
            raise InvalidArgumentError("--maturity-blocks must be 2 to 100000")

    def check_accounts(self, accounts: int) -> None:
        """Whether `accounts` benchmark accounts are enough for this workload."""
        if accounts < self.clients:
            raise InvalidArgumentError("each client needs an account: --accounts >= --clients")
        if self.workload == WORKLOAD_SMALLBANK and accounts < 2:
            raise InvalidArgumentError("smallbank needs two customers: --accounts >= 2")
        if self.workload == WORKLOAD_RECEIVABLE and accounts < ROLE_CYCLE * self.clients:
            raise InvalidArgumentError(
                f"receivable needs {ROLE_CYCLE} accounts a client (every role in each client's"
                f" share): --accounts >= {ROLE_CYCLE * self.clients}"
            )

    def presigned(self) -> int:
        if self.workload not in (WORKLOAD_TRANSFER, WORKLOAD_SMALLBANK):
            return 0
        if self.transactions is not None:
            return self.transactions
        per_s = self.rate if self.rate is not None else MAX_PRESIGN_PER_S
        return max(1, math.ceil(per_s * self.duration_s))


@dataclass(frozen=True, slots=True)
class BenchProgress:
    phase: str  # "signing", "running", "draining"
    elapsed_s: float
    duration_s: float
    submitted: int
    committed: int
    failed: int
    waiting: int  # admitted, not yet seen in a block
    height: int
    rejected: int = 0

"""Builders for node tests: a genesis with deterministic keys and funded accounts, and an
in-process network of node drivers (real stores, engines, mempools and replicas; frames carried
by the asyncio loop instead of sockets), so node logic is tested without processes."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from consortia.consensus.config import Params
from consortia.consensus.replica import Replica
from consortia.crypto import suite as get_suite
from consortia.execution.engine import EXPIRY_BLOCKS_MAX
from consortia.mempool import Mempool, MempoolLimits
from consortia.node.chain import Chain
from consortia.node.driver import Driver
from consortia.storage import NodeStore
from consortia.types.encoding import encode
from consortia.types.genesis import (
    CommitteeSeat,
    ConsensusParams,
    Genesis,
    GenesisAccount,
    GenesisValidator,
    Governance,
    Member,
    MempoolParams,
    genesis_hash,
)
from consortia.types.signing import SigningDomain, sign
from consortia.types.transaction import Transaction, TransactionBody

SUITE = get_suite("intl")
CHAIN_ID = "node-test"
ACCOUNTS = ("alice", "bob", "carol", "dave")
BALANCE = 1_000_000


def _key(label: str) -> bytes:
    return SUITE.hash(b"consortia/node-test-key\x00" + label.encode())


def validator_keys(count: int) -> list[tuple[bytes, bytes, bytes]]:
    """(node id, public key, private key) per validator, sorted by node id."""
    keys = []
    for index in range(count):
        private = _key(f"validator-{index}")
        public = SUITE.public_key(private)
        keys.append((SUITE.hash(public), public, private))
    return sorted(keys)


def account_key(name: str) -> tuple[bytes, bytes]:
    private = _key(f"account-{name}")
    return private, SUITE.public_key(private)


def make_genesis(count: int = 4) -> Genesis:
    keys = validator_keys(count)
    return Genesis(
        chain_id=CHAIN_ID,
        suite="intl",
        protocol_version=1,
        genesis_time_ms=0,
        ca_certificate_fingerprint="00" * 32,
        validators=[
            GenesisValidator(
                name=f"node{i}",
                member=f"bank-{i}",
                node_id=node_id.hex(),
                public_key=public.hex(),
                certificate_fingerprint="00" * 32,
                voting_power=1,
                address=f"127.0.0.1:{9000 + i}",
            )
            for i, (node_id, public, _) in enumerate(keys)
        ],
        consensus=ConsensusParams(round_timeout_ms=400, round_timeout_ms_min=50),
        mempool=MempoolParams(),
        members=[
            Member(name=f"bank-{i}", roles=["validator_operator", "member"]) for i in range(count)
        ],
        governance=Governance(
            committee=[CommitteeSeat(member=f"bank-{i}", weight=1) for i in range(count)],
            validators_min=min(4, count),
            validators_warn=min(5, count),
        ),
        accounts=[
            GenesisAccount(
                id=name, sponsor="bank-0", public_key=account_key(name)[1].hex(), balance=BALANCE
            )
            for name in ACCOUNTS
        ],
    )


def transfer(
    genesis: Genesis,
    sender: str,
    to: str,
    amount: int,
    nonce: int,
    expiry: int = 1000,
    *,
    key_of: str | None = None,
) -> bytes:
    args: dict[str, object] = {"to": to, "amount": amount}
    return call(genesis, sender, "asset", "transfer", args, nonce, expiry, key_of=key_of)


def call(
    genesis: Genesis,
    sender: str,
    contract: str,
    method: str,
    args: dict[str, object],
    nonce: int,
    expiry: int = 1000,
    *,
    key_of: str | None = None,
) -> bytes:
    """A signed call by `sender` (its key from `account_key(key_of or sender)`) of any
    contract method."""
    private, public = account_key(key_of or sender)
    body = TransactionBody(
        genesis.chain_id,
        sender,
        public,
        nonce,
        contract,
        1,
        method,
        args,  # type: ignore[arg-type]
        min(expiry, EXPIRY_BLOCKS_MAX),
    )
    return encode(Transaction(body, sign(SUITE, private, body, _domain(genesis))))


# Signing domains by genesis (kept with it, so an id is never reused while remembered): a
# genesis of hundreds of thousands of accounts takes a while to hash, once per signature.
_DOMAINS: dict[int, tuple[Genesis, SigningDomain]] = {}


def _domain(genesis: Genesis) -> SigningDomain:
    known = _DOMAINS.get(id(genesis))
    if known is None or known[0] is not genesis:
        if len(_DOMAINS) >= 64:
            _DOMAINS.clear()
        known = _DOMAINS[id(genesis)] = (genesis, SigningDomain(genesis_hash(genesis)))
    return known[1]


@dataclass
class Hub:
    """Frames between in-process nodes, delivered by the loop after a small random delay."""

    loop: asyncio.AbstractEventLoop
    rng: random.Random
    drivers: dict[bytes, Driver] = field(default_factory=dict)
    down: set[bytes] = field(default_factory=set)

    def link(self, node_id: bytes) -> HubLink:
        return HubLink(self, node_id)

    def deliver(self, sender: bytes, to: bytes, frame: bytes) -> bool:
        driver = self.drivers.get(to)
        if driver is None or to in self.down or sender in self.down:
            return False
        delay = self.rng.uniform(0.0005, 0.003)
        self.loop.call_later(delay, self._receive, sender, to, frame)
        return True

    def _receive(self, sender: bytes, to: bytes, frame: bytes) -> None:
        driver = self.drivers.get(to)
        if driver is not None and to not in self.down and sender not in self.down:
            driver.on_frame(sender, frame)


@dataclass
class HubLink:
    hub: Hub
    node_id: bytes

    def send(self, node_id: bytes, frame: bytes) -> bool:
        return self.hub.deliver(self.node_id, node_id, frame)

    def broadcast(self, frame: bytes) -> int:
        return sum(self.send(other, frame) for other in self.hub.drivers if other != self.node_id)


def make_driver(
    hub: Hub,
    genesis: Genesis,
    directory: Path,
    key: tuple[bytes, bytes, bytes],
    *,
    fetched_blocks_max: int | None = None,
    on_halt: Callable[[str], None] | None = None,
    map_size: int = 256 * 1024**2,
    state_history_heights: int | None = None,
) -> Driver:
    node_id, _, private = key
    store = NodeStore(directory / node_id.hex()[:8], map_size=map_size)
    if state_history_heights is None:
        chain = Chain(genesis, store)
    else:
        chain = Chain(genesis, store, state_history_heights=state_history_heights)
    params = Params.from_genesis(genesis.consensus)
    if fetched_blocks_max is not None:
        params = dataclasses.replace(params, fetched_blocks_max=fetched_blocks_max)
    replica = Replica(chain.replica_setup(private_key=private, node_id=node_id, params=params))
    mempool = Mempool(SUITE, SigningDomain(chain.genesis_hash), genesis.chain_id, MempoolLimits())
    driver = Driver(
        replica=replica,
        chain=chain,
        mempool=mempool,
        transport=hub.link(node_id),
        loop=hub.loop,
        clock_ms=lambda: time.time_ns() // 1_000_000,
        on_halt=on_halt or _never_halts,
    )
    hub.drivers[node_id] = driver
    return driver


def started_drivers(hub: Hub, genesis: Genesis, directory: Path, count: int = 4) -> list[Driver]:
    """`count` validators' drivers on `hub`, each started."""
    drivers = [make_driver(hub, genesis, directory, key) for key in validator_keys(count)]
    for driver in drivers:
        driver.start()
    return drivers


def _never_halts(reason: str) -> None:
    raise AssertionError(f"halted: {reason}")


async def wait_for(condition: object, timeout_s: float = 60.0) -> None:
    """Poll `condition()` on the loop until it holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)

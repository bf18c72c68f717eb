"""One validator process: `consortia node start --home DIR`.

Owns assembling a node from its folder (config, genesis, keys opened with the node's
passphrase, the store, the engine, the mempool, the replica, the TLS transport, the HTTP API)
and running it on one asyncio loop (uvloop) until SIGTERM or SIGINT, then stopping cleanly.
A node that stops says why, in its log and its exit status.

Must never log a secret, and never start with a genesis whose hash differs from the one its
config names, nor with a consensus key that is not the one its node id names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
import uvicorn
import uvloop

from consortia.api import create_app
from consortia.consensus.config import Params
from consortia.consensus.replica import Replica
from consortia.crypto import suite as get_suite
from consortia.errors import ConfigError
from consortia.execution.engine import EXPIRY_BLOCKS_MAX
from consortia.identity.config import NodeConfig, load_node_config, resolve
from consortia.identity.genesis import load_genesis
from consortia.identity.keystore import load_key
from consortia.identity.tls import load_node_identity
from consortia.mempool import Mempool, MempoolLimits
from consortia.net import Transport, TransportLimits
from consortia.net.tls import TlsContexts, build_contexts
from consortia.node.chain import Chain, CommittedBlock, changes_membership
from consortia.node.collector import CollectorPolicy
from consortia.node.driver import Driver
from consortia.node.journal import JournalWriter
from consortia.node.metrics import node_registry
from consortia.node.service import NodeService
from consortia.storage import NodeStore
from consortia.storage.tx_journal import TxJournal
from consortia.types.genesis import Genesis
from consortia.types.primitives import PAYLOAD_ITEM_SIZE_MAX
from consortia.types.signing import SigningDomain

CONFIG_FILE: Final = "config.toml"
STORE_DIR: Final = "store"
# The journal of admitted client transactions (storage/tx_journal.py), beside the store.
JOURNAL_FILE: Final = "tx-journal"
# Exit statuses: 0 stopped on request, 2 the node could not start (a one-line error), 3 the
# replica halted or the driver failed (an invariant broke, the store failed): the log says why.
EXIT_HALTED: Final = 3


@dataclass(slots=True)
class Loaded:
    config: NodeConfig
    config_path: Path
    genesis: Genesis
    node_id: bytes
    private_key: bytes


def load(home: Path, passphrase: str) -> Loaded:
    """Read and check everything a node starts from; ConfigError and friends on mismatch."""
    config_path = home / CONFIG_FILE
    config = load_node_config(config_path)
    genesis, _ = load_genesis(
        resolve(config_path, config.chain.genesis), bytes.fromhex(config.chain.genesis_hash)
    )
    if genesis.chain_id != config.chain.chain_id or genesis.suite != config.chain.suite:
        raise ConfigError(f"{config_path} names another chain than its genesis")
    key = load_key(resolve(config_path, config.keys.consensus_key), passphrase, purpose="consensus")
    node_id = bytes.fromhex(config.node.node_id)
    chain_suite = get_suite(genesis.suite)
    if chain_suite.hash(chain_suite.public_key(key.private_key)) != node_id:
        raise ConfigError(f"{config_path}: the consensus key is not node {config.node.node_id}")
    return Loaded(config, config_path, genesis, node_id, key.private_key)


def _contexts(loaded: Loaded, passphrase: str) -> TlsContexts:
    keys = loaded.config.keys
    ca = resolve(loaded.config_path, keys.ca_certificate).read_bytes()

    def load_identity(context: ssl.SSLContext) -> None:
        load_node_identity(
            context,
            resolve(loaded.config_path, keys.tls_certificate),
            resolve(loaded.config_path, keys.tls_key),
            passphrase,
        )

    return build_contexts(ca, load_identity)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the node handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class NodeProcess:
    def __init__(self, loaded: Loaded, passphrase: str) -> None:
        self.loaded = loaded
        config = loaded.config
        data_dir = resolve(loaded.config_path, config.node.data_dir)
        self.store = NodeStore(data_dir / STORE_DIR)
        self.journal, self.recovered = TxJournal.open(
            data_dir / JOURNAL_FILE,
            record_bytes_max=PAYLOAD_ITEM_SIZE_MAX,  # governance may raise the size up to it
        )
        self.collector = CollectorPolicy()
        opening = time.monotonic()
        # Reopening reads every current value from the state tree (docs/node.md): seconds at
        # hundreds of thousands of accounts, so the start says how long it took. It allocates
        # only what stays, so the collector is paused while it runs.
        with self.collector.paused():
            self.chain = Chain(
                loaded.genesis,
                self.store,
                state_history_heights=config.node.state_history_heights,
            )
        self.state_open_s = round(time.monotonic() - opening, 2)
        params = Params.from_genesis(loaded.genesis.consensus)
        self.replica = Replica(
            self.chain.replica_setup(
                private_key=loaded.private_key, node_id=loaded.node_id, params=params
            )
        )
        self.mempool = Mempool(
            self.chain.suite,
            SigningDomain(self.chain.genesis_hash),
            loaded.genesis.chain_id,
            MempoolLimits.from_genesis(loaded.genesis.mempool, expiry_blocks_max=EXPIRY_BLOCKS_MAX),
        )
        self._passphrase = passphrase
        self.halted: str | None = None
        self._stopping: asyncio.Event | None = None
        self.log = structlog.get_logger("consortia.node").bind(node=config.node.node_id[:16])

    def is_allowed(self, node_id: bytes) -> bool:
        """Asked at every handshake, and again for every link when membership changes."""
        return self.chain.peer_allowed(node_id)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tls = _contexts(self.loaded, self._passphrase)
        config = self.loaded.config
        peers = {
            bytes.fromhex(peer.node_id): _host_port(peer.address)
            for peer in config.peers
            if peer.node_id != config.node.node_id
        }
        driver: Driver | None = None

        def on_frame(sender: bytes, frame: bytes) -> None:
            if driver is not None:
                driver.on_frame(sender, frame)

        transport = Transport(
            self.loaded.node_id,
            _host_port(config.network.listen),
            peers=peers,
            tls=tls,
            on_frame=on_frame,
            is_allowed=self.is_allowed,
            rng=random.Random(int.from_bytes(os.urandom(8), "big")),  # noqa: S311 - back-off jitter
            limits=TransportLimits(),
            logger=self.log,
        )
        driver = Driver(
            replica=self.replica,
            chain=self.chain,
            mempool=self.mempool,
            transport=transport,
            loop=loop,
            clock_ms=lambda: time.time_ns() // 1_000_000,
            on_halt=self._halt,
        )

        def enforce_membership(committed: list[CommittedBlock]) -> None:
            if changes_membership(committed):
                cut = transport.enforce_allowed()
                self.log.info("membership changed", links_cut=cut, height=self.chain.height)

        driver.on_commit.append(enforce_membership)
        collector = self.collector
        collector.start()  # the state is loaded: freeze it out of the collector's scans
        driver.on_commit.append(collector.committed)
        driver.around_commit = collector.paused
        journal = JournalWriter(
            self.journal,
            waiting=self.mempool.transactions,
            waiting_bytes=lambda: self.mempool.size_bytes,
            on_failure=lambda error: self._halt(f"journal write failed: {error}"),
        )
        service = NodeService(driver, self.loaded.node_id, transport.connected, journal=journal)
        registry = node_registry(service, driver, transport)
        host, port = _host_port(config.network.api_listen)
        server = _QuietServer(
            uvicorn.Config(
                create_app(service, registry),
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        await transport.start()
        api = asyncio.create_task(server.serve())
        driver.start()
        self._readmit(driver)
        self.log.info(
            "node started",
            height=self.chain.height,
            state_keys=len(self.chain.engine.state),
            state_open_s=self.state_open_s,
            listen=config.network.listen,
            api=config.network.api_listen,
            peers=len(peers),
        )
        await self._stopping.wait()
        driver.close()
        service.subscriptions.close()  # open event streams end, so the API server can stop
        server.should_exit = True
        await api
        await journal.close()
        await transport.close()
        self.store.close()
        self.log.info(
            "node stopped", reason=self.halted or "asked to stop", height=self.chain.height
        )
        return EXIT_HALTED if self.halted else 0

    def _readmit(self, driver: Driver) -> None:
        """Admit again what the journal held at start (clients were told `pending`), and
        keep in it only what was admitted: what was committed meanwhile, or expired, is
        refused and dropped."""
        recovered = self.recovered
        if recovered.torn_bytes:
            self.log.warning("journal tail cut short by a crash", bytes=recovered.torn_bytes)
        if not recovered.transactions:
            return
        admissions = driver.submit_many(recovered.transactions)
        self.journal.rewrite(self.mempool.transactions())
        self.log.info(
            "journal read back",
            transactions=len(recovered.transactions),
            admitted=sum(answer.ok for answer in admissions),
        )

    def _stop(self, signum: int) -> None:
        self.log.info("stopping", signal=signal.Signals(signum).name)
        if self._stopping is not None:
            self._stopping.set()

    def _halt(self, reason: str) -> None:
        self.halted = reason
        if self._stopping is not None:
            self._stopping.set()


def start(home: Path, passphrase: str) -> int:
    """Run the node in `home` until it is asked to stop or halts; its exit status."""
    loaded = load(home, passphrase)
    node = NodeProcess(loaded, passphrase)
    return uvloop.run(node.run())

"""A real local cluster for integration tests: `consortia cluster up` in a temporary folder,
its nodes as separate processes on loopback, reached through the CLI and the HTTP API.

Every wait here polls a condition until a generous deadline (the machine may have two busy
cores): no test passes because it slept long enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from consortia.client import ChainInfo, Client, ClientError, Signer
from consortia.cluster.accounts import open_signer
from consortia.cluster.home import ClusterHome, NodeEntry, demo_passphrase
from consortia.cluster.monitor import committed_transactions
from consortia.cluster.processes import fetch_status
from tests.cli_helpers import assert_ok, run

WAIT_S = 120.0  # the most a test waits for a condition before it fails
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """The first truthy value of `condition()`, polled with back-off until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = 0.05
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


@dataclass
class LiveCluster:
    root: Path
    home: ClusterHome
    up_output: str
    _signers: dict[str, Signer] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[NodeEntry, ...]:
        return self.home.nodes

    def client(self, index: int = 0) -> Client:
        return Client(self.nodes[index].api_url, timeout_s=10.0)

    def status(self, index: int) -> dict[str, Any] | None:
        return fetch_status(self.nodes[index])

    def height(self, index: int) -> int | None:
        status = self.status(index)
        return None if status is None else int(status["height"])

    def chain(self) -> ChainInfo:
        status = wait_for(lambda: self.status(0), "node 0 to answer")
        return ChainInfo.from_status(status)

    def signer(self, name: str) -> Signer:
        if name not in self._signers:
            passphrase = demo_passphrase(self.home)
            self._signers[name] = open_signer(self.root, name, self.chain(), passphrase)
        return self._signers[name]

    def transfer(
        self, sender: str, to: str, amount: int, *, node: int = 0, wait: bool = True
    ) -> dict[str, Any]:
        with self.client(node) as client:
            args = {"to": to, "amount": amount, "currency": "CNY"}
            return client.call(
                self.signer(sender), "asset", "transfer", args, wait=wait, timeout_s=WAIT_S
            )

    def call(
        self,
        sender: str,
        contract: str,
        method: str,
        args: dict[str, Any],
        *,
        node: int = 0,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Sign `contract.method(args)` as `sender` and submit it; with `wait`, its record."""
        with self.client(node) as client:
            return client.call(
                self.signer(sender), contract, method, args, wait=wait, timeout_s=WAIT_S
            )

    def account(self, account_id: str, node: int = 0) -> dict[str, Any]:
        with self.client(node) as client:
            return client.account(account_id)

    def block(self, index: int, height: int) -> dict[str, Any] | None:
        try:
            with self.client(index) as client:
                return client.block(height)
        except ClientError:
            return None

    def wait_height(self, index: int, at_least: int) -> int:
        return wait_for(
            lambda: (h := self.height(index)) is not None and h >= at_least and h,
            f"node {index} to reach height {at_least}",
        )

    def refusals(self, index: int, reason: str) -> int:
        """Node `index`'s count of peer connections refused at the handshake for `reason`."""
        text = httpx.get(f"{self.nodes[index].api_url}/metrics", timeout=10.0).text
        for line in text.splitlines():
            if line.startswith(f'consortia_peer_refusals_total{{reason="{reason}"}}'):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def committed_transactions(self, index: int) -> int | None:
        text = httpx.get(f"{self.nodes[index].api_url}/metrics", timeout=10.0).text
        return committed_transactions(text)

    def cli(self, *args: str | Path) -> str:
        return assert_ok(run(*args)).stdout

    def stop(self, *indices: int, kill: bool) -> None:
        for index in indices:
            extra = ["--kill"] if kill else []
            self.cli("cluster", "stop", "--home", self.root, "--node", str(index), *extra)

    def start(self, *indices: int) -> None:
        for index in indices:
            self.cli("cluster", "start", "--home", self.root, "--node", str(index))

    def common_tip(self, first: int, second: int, timeout_s: float = WAIT_S) -> int:
        """A height at which both nodes were seen, checking that they report the same block
        hash and state root there; its value.

        Nodes commit a block a few milliseconds apart, so two status calls rarely land on the
        same height: sample both many times and compare at every height both were seen at.
        """
        seen: tuple[dict[int, tuple[str, str]], dict[int, tuple[str, str]]] = ({}, {})
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10.0) as http:
            while time.monotonic() < deadline:
                for index, record in zip((first, second), seen, strict=True):
                    status = fetch_status(self.nodes[index], http)
                    if status is not None:
                        tip = (status["block_hash"], status["state_root"])
                        record[int(status["height"])] = tip
                common = seen[0].keys() & seen[1].keys()
                for height in common:
                    assert seen[0][height] == seen[1][height], f"nodes differ at height {height}"
                if common:
                    return max(common)
        raise AssertionError(f"nodes {first} and {second} were never seen at one height")

    def held_still(self, indices: tuple[int, ...], window_s: float) -> tuple[int, ...] | None:
        """The heights of `indices` if none of them changed during `window_s` (an observation
        window, polled), else None."""
        start = tuple(self.height(index) for index in indices)
        if None in start:
            return None
        deadline = time.monotonic() + window_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if tuple(self.height(index) for index in indices) != start:
                return None
        return tuple(height or 0 for height in start)


@contextmanager
def live_cluster(root: Path, *options: str) -> Iterator[LiveCluster]:
    """`consortia cluster up --home root OPTIONS`, yielded running; every node killed after
    (whatever the test did)."""
    result = run("cluster", "up", "--home", root, *options)
    try:
        assert_ok(result)
        yield LiveCluster(root, ClusterHome.open(root), result.stdout + result.stderr)
    finally:
        if (root / "genesis.json").exists():
            down = run("cluster", "stop", "--home", root, "--kill")
            assert down.returncode == 0, down.stderr

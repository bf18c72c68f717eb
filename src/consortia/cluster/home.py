"""A local cluster's folder: which nodes it has, where each node's config, log and process id
file are, and where the demo passphrase comes from.

A cluster's home is a consortium folder made by `consortia init` or `consortia cluster up`
(identity/layout.py). The genesis lists the validators in order, node I's folder is
DIR/MEMBER/NODE with its config.toml; `cluster up` adds DIR/accounts (demo account keys),
DIR/logs/NODE.log and DIR/run/NODE.pid. A node folder that the genesis does not list but whose
config names this chain (a validator added later by governance) joins the list after them.

The passphrase of a demo consortium (one for every key) comes from CONSORTIA_PASSPHRASE when
it is set, otherwise from DIR/.demo-passphrase (mode 0600), which `cluster up` writes when it
generated the passphrase.

This module only reads files and names paths: it must never start or signal a process, and
never print, log or store a passphrase.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from consortia.errors import ConfigError, InvalidArgumentError, NoConsortiumError
from consortia.errors import PassphraseUnavailableError as NoPassphraseError
from consortia.identity import layout
from consortia.identity.config import NodeConfig, load_node_config
from consortia.identity.genesis import load_genesis
from consortia.identity.inspection import is_consortium
from consortia.identity.passphrase import PASSPHRASE_ENV, read_passphrase_file

LOG_SUFFIX: Final = ".log"
PID_SUFFIX: Final = ".pid"
_ANY_HOST: Final = {"0.0.0.0", "::", ""}  # noqa: S104 - names, not a bind


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One validator of the cluster, as its folder describes it."""

    index: int
    name: str
    member: str
    node_id: str  # lowercase hex
    home: Path  # the node's folder, holding config.toml
    api_url: str  # http://HOST:PORT, where a client on this machine reaches its API
    listen: str  # HOST:PORT of its consensus server


@dataclass(frozen=True, slots=True)
class ClusterHome:
    root: Path
    chain_id: str
    suite: str
    nodes: tuple[NodeEntry, ...]

    @classmethod
    def open(cls, root: Path) -> ClusterHome:
        """The cluster in `root`; NoConsortiumError when it holds none."""
        root = Path(os.path.abspath(root))
        if not is_consortium(root):
            raise NoConsortiumError(
                f"{root} holds no consortium (no {layout.GENESIS_FILE});"
                f" create one with: consortia cluster up --home {root}"
            )
        genesis, digest = load_genesis(root / layout.GENESIS_FILE, None)
        nodes: list[NodeEntry] = []
        for validator in genesis.validators:
            config_path = root / validator.member / validator.name / layout.CONFIG_FILE
            config = load_node_config(config_path)
            if config.node.node_id != validator.node_id:
                raise ConfigError(f"{config_path} is not validator {validator.name}'s config")
            nodes.append(_entry(len(nodes), config_path, config))
        known = {node.node_id for node in nodes}
        for config_path in sorted(root.glob(f"*/*/{layout.CONFIG_FILE}")):
            config = load_node_config(config_path)
            if config.chain.genesis_hash == digest.hex() and config.node.node_id not in known:
                nodes.append(_entry(len(nodes), config_path, config))
                known.add(config.node.node_id)
        return cls(root, genesis.chain_id, genesis.suite, tuple(nodes))

    def node(self, index: int) -> NodeEntry:
        if not 0 <= index < len(self.nodes):
            raise InvalidArgumentError(
                f"--node {index}: the cluster in {self.root} has nodes 0 to {len(self.nodes) - 1}"
            )
        return self.nodes[index]

    def select(self, index: int | None) -> tuple[NodeEntry, ...]:
        """Node `index`, or every node for None."""
        return self.nodes if index is None else (self.node(index),)

    def log_path(self, node: NodeEntry) -> Path:
        return self.root / layout.LOGS_DIR / f"{node.name}{LOG_SUFFIX}"

    def pid_path(self, node: NodeEntry) -> Path:
        return self.root / layout.RUN_DIR / f"{node.name}{PID_SUFFIX}"

    @property
    def passphrase_file(self) -> Path:
        return self.root / layout.DEMO_PASSPHRASE_FILE


def _entry(index: int, config_path: Path, config: NodeConfig) -> NodeEntry:
    return NodeEntry(
        index=index,
        name=config.node.name,
        member=config.node.member,
        node_id=config.node.node_id,
        home=config_path.parent,
        api_url=api_url(config.network.api_listen),
        listen=config.network.listen,
    )


def api_url(api_listen: str) -> str:
    """Where a client on this machine reaches an API that listens on `api_listen`."""
    host, _, port = api_listen.rpartition(":")
    host = host.strip("[]")
    if host in _ANY_HOST:
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def passphrase_from_environment() -> bool:
    """Whether CONSORTIA_PASSPHRASE is set (it then wins over the demo passphrase file)."""
    return bool(os.environ.get(PASSPHRASE_ENV))


def demo_passphrase(home: ClusterHome, passphrase_file: Path | None = None) -> str:
    """The passphrase that opens the cluster's keys: `passphrase_file` when given, else
    CONSORTIA_PASSPHRASE, else DIR/.demo-passphrase."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    if passphrase_from_environment():
        return os.environ[PASSPHRASE_ENV]
    if home.passphrase_file.exists():
        return read_passphrase_file(home.passphrase_file)
    raise NoPassphraseError(
        f"no passphrase for the keys in {home.root}: set {PASSPHRASE_ENV} (or pass"
        f" --passphrase-file); {home.passphrase_file} does not exist"
    )

"""Node processes of a local cluster: start each in the background, find it again, stop it.

A node runs as `python -m consortia.cli node start --home NODE_DIR`, detached from the
terminal that started it (its own session), its output appended to DIR/logs/NODE.log and its
process id in DIR/run/NODE.pid. A process id read back counts only while that process is
alive and is a node of this folder (its command line names the node's folder), so a stale
pid file, or a pid the system gave to another program since, is never signalled.

The passphrase reaches a node through a file of mode 0600 (`--passphrase-file`, the demo
passphrase file) or through the environment it inherits (CONSORTIA_PASSPHRASE); never through
its command line, which every user of the machine can read.

Starting waits for every node to serve its API (`GET /v1/status`), polling with a deadline;
stopping sends SIGTERM (SIGKILL with `kill`) and waits for the process to be gone.

This module must never put a secret on a command line or in a log, and never signal a
process that it cannot show is one of this cluster's nodes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from consortia.cluster.home import ClusterHome, NodeEntry, passphrase_from_environment
from consortia.errors import NodeStartError, NodeStopError, PassphraseUnavailableError
from consortia.identity.files import PRIVATE_DIR_MODE, replace_public_file
from consortia.identity.passphrase import PASSPHRASE_ENV

START_TIMEOUT_S: Final = 120.0  # generous: Argon2 opens two keys per node on a busy machine
STOP_TIMEOUT_S: Final = 30.0
STATUS_TIMEOUT_S: Final = 2.0
POLL_S_MIN: Final = 0.05
POLL_S_MAX: Final = 0.5
LOG_TAIL_BYTES: Final = 4096

# The node processes this process started, so that it reaps them (no zombies while it runs).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class NodeState:
    node: NodeEntry
    pid: int | None  # the node's process id while it runs
    status: dict[str, Any] | None  # its /v1/status, when its API answered

    @property
    def alive(self) -> bool:
        return self.pid is not None


def node_passphrase_file(home: ClusterHome) -> Path | None:
    """The file a node reads its passphrase from; None when it inherits CONSORTIA_PASSPHRASE."""
    if passphrase_from_environment():
        return None
    if home.passphrase_file.exists():
        return home.passphrase_file
    raise PassphraseUnavailableError(
        f"no passphrase for the nodes of {home.root}: set {PASSPHRASE_ENV};"
        f" {home.passphrase_file} does not exist"
    )


def running_pid(home: ClusterHome, node: NodeEntry) -> int | None:
    """The process id of `node` while it runs, from its pid file; None otherwise."""
    try:
        text = home.pid_path(node).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if _is_node_process(pid, node) else None


def start_node(home: ClusterHome, node: NodeEntry, passphrase_file: Path | None) -> int:
    """Start `node` in the background unless it runs; its process id."""
    running = running_pid(home, node)
    if running is not None:
        return running
    for folder in (home.log_path(node).parent, home.pid_path(node).parent):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    command = [sys.executable, "-m", "consortia.cli", "node", "start", "--home", str(node.home)]
    environment = dict(os.environ)
    if passphrase_file is not None:
        command += ["--passphrase-file", str(passphrase_file)]
        environment.pop(PASSPHRASE_ENV, None)  # the file alone, so nothing else can differ
    elif not environment.get(PASSPHRASE_ENV):
        raise PassphraseUnavailableError(f"no passphrase for {node.name}: set {PASSPHRASE_ENV}")
    log_path = home.log_path(node)
    with log_path.open("ab") as log:
        os.chmod(log_path, 0o600)
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        log.write(f"# consortia cluster: starting {node.name} at {stamp}\n".encode())
        log.flush()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=home.root,
            start_new_session=True,  # Ctrl-C in the terminal that started it does not reach it
        )
    _CHILDREN[process.pid] = process
    replace_pid_file(home.pid_path(node), process.pid)
    return process.pid


def replace_pid_file(path: Path, pid: int) -> None:
    replace_public_file(path, f"{pid}\n".encode("ascii"))


def wait_serving(
    home: ClusterHome,
    nodes: Iterable[NodeEntry],
    *,
    timeout_s: float = START_TIMEOUT_S,
    on_ready: Callable[[NodeEntry, dict[str, Any]], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Wait until every node in `nodes` serves its API; their statuses by index.

    NodeStartError, with the end of its log, as soon as one of them exits, or when they do not
    all serve within `timeout_s`.
    """
    waiting = {node.index: node for node in nodes}
    ready: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    pause = POLL_S_MIN
    with httpx.Client(timeout=STATUS_TIMEOUT_S) as client:
        while waiting:
            for index, node in list(waiting.items()):
                status = fetch_status(node, client)
                if status is not None and status.get("node_id") == node.node_id:
                    ready[index] = status
                    del waiting[index]
                    if on_ready is not None:
                        on_ready(node, status)
                elif running_pid(home, node) is None:
                    raise NodeStartError(
                        f"{node.name} exited while starting: {_last_words(home, node)}"
                    )
            if not waiting:
                break
            if time.monotonic() > deadline:
                names = ", ".join(node.name for node in waiting.values())
                raise NodeStartError(
                    f"{names} did not serve within {timeout_s:.0f} s;"
                    f" see {home.log_path(next(iter(waiting.values())))}"
                )
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_S_MAX)
    return ready


def stop_nodes(
    home: ClusterHome,
    nodes: Iterable[NodeEntry],
    *,
    kill: bool = False,
    timeout_s: float = STOP_TIMEOUT_S,
) -> list[NodeEntry]:
    """Stop each of `nodes` that runs (SIGTERM, or SIGKILL with `kill`; all are signalled
    first, then each is waited for); those that were running. NodeStopError for a node still
    there `timeout_s` after its signal."""
    signalled: list[tuple[NodeEntry, int]] = []
    for node in nodes:
        pid = running_pid(home, node)
        if pid is None:
            home.pid_path(node).unlink(missing_ok=True)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        signalled.append((node, pid))
    deadline = time.monotonic() + timeout_s
    for node, pid in signalled:
        pause = POLL_S_MIN
        while _is_node_process(pid, node):
            if time.monotonic() > deadline:
                raise NodeStopError(
                    f"{node.name} (pid {pid}) did not exit within {timeout_s:.0f} s of"
                    f" {'SIGKILL' if kill else 'SIGTERM'}; stop it with --kill"
                )
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_S_MAX)
        home.pid_path(node).unlink(missing_ok=True)
    return [node for node, _pid in signalled]


def exit_status(pid: int) -> int | None:
    """The exit status of a node this process started and that has exited (else None)."""
    process = _CHILDREN.get(pid)
    return None if process is None else process.poll()


def fetch_status(node: NodeEntry, client: httpx.Client | None = None) -> dict[str, Any] | None:
    """The node's /v1/status, or None when its API does not answer."""
    try:
        if client is None:
            response = httpx.get(f"{node.api_url}/v1/status", timeout=STATUS_TIMEOUT_S)
        else:
            response = client.get(f"{node.api_url}/v1/status")
        if response.status_code != 200:
            return None
        status = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def node_states(home: ClusterHome, nodes: Iterable[NodeEntry] | None = None) -> list[NodeState]:
    """Each node's process id and, when it answers, its status."""
    with httpx.Client(timeout=STATUS_TIMEOUT_S) as client:
        states = []
        for node in home.nodes if nodes is None else nodes:
            pid = running_pid(home, node)
            status = fetch_status(node, client) if pid is not None else None
            states.append(NodeState(node, pid, status))
        return states


def _is_node_process(pid: int, node: NodeEntry) -> bool:
    """Whether `pid` is alive (not a zombie) and runs `node start` for this node's folder."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False  # our own child, exited and now reaped
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no procfs: all we can ask is whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # another user's process: not ours
        return True
    try:
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    names = [argument.decode(errors="replace") for argument in arguments]
    return "node" in names and "start" in names and str(node.home) in names


def _last_words(home: ClusterHome, node: NodeEntry) -> str:
    """The node's last log line (why it stopped), and where its log is."""
    path = home.log_path(node)
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    said = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    last = said[-1] if said else "it wrote nothing"
    return f"{last} (log: {path})"

"""Where each node of a new consortium listens: free local ports, or the operator's --hosts.

On one machine every node gets 127.0.0.1 and two free TCP ports (consensus and API), drawn
below the kernel's ephemeral range where it says what that is, and below Kubernetes' NodePorts
(`local_ports`): the kernel hands ports of that range to outgoing connections and to any
program binding port 0, so one of them could take a node's port between this choice and the
node's bind, or while a node is stopped, and the node would then fail to start.

With `--hosts HOST:PORT,...` each node goes to its own machine: consensus binds all interfaces
on PORT and the API, which cannot be probed on a remote machine, takes PORT + 1000 on the
loopback interface (an operator opens it up in config.toml when clients need it).

This module only validates and chooses addresses; it must never keep a socket open.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from consortia.errors import InvalidArgumentError

LOCAL_HOST: Final = "127.0.0.1"
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - a consensus server must be reachable by peers
API_PORT_OFFSET: Final = 1000
PORT_MAX: Final = 65535
HOST_LENGTH_MAX: Final = 253
# A local consortium's ports: from LOCAL_PORT_FLOOR up to the kernel's ephemeral range, and
# below LOCAL_PORT_CEILING (Kubernetes' NodePorts, 30000-32767, may be forwarded on 127.0.0.1
# with no socket a probe would see), when at least LOCAL_PORTS_MIN lie there.
EPHEMERAL_RANGE_PATH: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOCAL_PORT_FLOOR: Final = 20000
LOCAL_PORT_CEILING: Final = 30000
LOCAL_PORTS_MIN: Final = 1000
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class Placement:
    """One node's addresses: `address` is what peers dial and the genesis records."""

    host: str
    port: int
    listen: str
    api_listen: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def local_placements(count: int) -> list[Placement]:
    """`count` placements on 127.0.0.1, each with two distinct free ports."""
    ports = free_ports(2 * count)
    return [
        Placement(
            host=LOCAL_HOST,
            port=ports[2 * i],
            listen=f"{LOCAL_HOST}:{ports[2 * i]}",
            api_listen=f"{LOCAL_HOST}:{ports[2 * i + 1]}",
        )
        for i in range(count)
    ]


def parse_hosts(text: str, count: int) -> list[Placement]:
    """The placements named by `--hosts HOST:PORT,...`, which must list exactly `count`."""
    entries = [entry.strip() for entry in text.split(",")]
    if len(entries) != count:
        raise InvalidArgumentError(
            f"--hosts lists {len(entries)} address(es) but there are {count} nodes;"
            " give exactly one HOST:PORT per node"
        )
    placements = [_placement(entry) for entry in entries]
    _check_distinct(placements)
    return placements


def _placement(entry: str) -> Placement:
    host, port = parse_host_port(entry)
    api_port = port + API_PORT_OFFSET
    if api_port > PORT_MAX:
        raise InvalidArgumentError(
            f"--hosts entry {entry!r}: the API port would be {port} + {API_PORT_OFFSET},"
            f" above {PORT_MAX}; choose a consensus port up to {PORT_MAX - API_PORT_OFFSET}"
        )
    return Placement(
        host=host,
        port=port,
        listen=f"{ALL_INTERFACES}:{port}",
        api_listen=f"{LOCAL_HOST}:{api_port}",
    )


def parse_host_port(entry: str, option: str = "--hosts entry") -> tuple[str, int]:
    """(host, port) from `HOST:PORT`; the host is a DNS name or an IPv4 address. Errors name
    `option` (the command-line option the entry came from)."""
    where = f"{option} {entry!r}"
    if entry.startswith("[") or entry.count(":") > 1:
        raise InvalidArgumentError(f"{where}: IPv6 addresses are not supported; use a DNS name")
    host, separator, port_text = entry.rpartition(":")
    if not separator or not host:
        raise InvalidArgumentError(f"{where} is not HOST:PORT")
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= PORT_MAX):
        raise InvalidArgumentError(f"{where}: port must be 1 to {PORT_MAX}")
    return check_host(host.lower(), where), int(port_text)


def node_placement(address: str, option: str = "--address") -> Placement:
    """Where a node listens, from the HOST:PORT peers dial: consensus binds that port on the
    loopback interface for a 127.x host and on all interfaces otherwise; the API takes
    PORT + 1000 on the loopback interface."""
    host, port = parse_host_port(address, option)
    if port + API_PORT_OFFSET > PORT_MAX:
        raise InvalidArgumentError(
            f"{option} {address!r}: the API port would be {port} + {API_PORT_OFFSET},"
            f" above {PORT_MAX}; choose a consensus port up to {PORT_MAX - API_PORT_OFFSET}"
        )
    loopback = host.startswith("127.") or host == "localhost"
    listen_host = host if loopback else ALL_INTERFACES
    return Placement(
        host=host,
        port=port,
        listen=f"{listen_host}:{port}",
        api_listen=f"{LOCAL_HOST}:{port + API_PORT_OFFSET}",
    )


def check_host(host: str, where: str) -> str:
    """`host` (lowercase) without a trailing dot if it is a DNS name or an IPv4 address that
    can be dialled; InvalidArgumentError starting with `where` otherwise."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        valid = len(host) <= HOST_LENGTH_MAX and all(_DNS_LABEL.match(x) for x in labels)
        if not valid or labels[-1].isdigit():
            raise InvalidArgumentError(
                f"{where}: {host!r} is neither a DNS name nor an IPv4 address"
            ) from None
        return host.removesuffix(".")
    if address.is_unspecified or address.is_multicast:
        raise InvalidArgumentError(f"{where}: {host} cannot be dialled")
    return host


def _check_distinct(placements: list[Placement]) -> None:
    seen: set[tuple[str, int]] = set()
    for placement in placements:
        api_port = placement.port + API_PORT_OFFSET
        for endpoint in ((placement.host, placement.port), (placement.host, api_port)):
            if endpoint in seen:
                raise InvalidArgumentError(
                    f"--hosts: port {endpoint[1]} on {endpoint[0]} is used twice"
                    f" (each node needs its PORT and PORT + {API_PORT_OFFSET})"
                )
            seen.add(endpoint)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago (for a node, or a
    gateway, that binds one later): drawn in random order from `local_ports`, else (no span
    known, or every port of it taken) from the kernel's port 0."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []

        def probe(port: int) -> int | None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((LOCAL_HOST, port))
            except OSError:
                sock.close()
                return None
            stack.enter_context(sock)  # held until every port is chosen: no port twice
            return int(sock.getsockname()[1])

        span = local_ports()
        if span is not None:
            draws = list(range(*span))
            random.SystemRandom().shuffle(draws)
            for port in draws:
                if len(ports) == count:
                    break
                if probe(port) is not None:
                    ports.append(port)
        while len(ports) < count:
            chosen = probe(0)
            if chosen is None:
                raise InvalidArgumentError("no free TCP port on 127.0.0.1")
            ports.append(chosen)
    return ports


def local_ports(range_path: Path | None = None) -> tuple[int, int] | None:
    """The ports a local consortium draws from, [start, stop): from `LOCAL_PORT_FLOOR` to the
    start of the kernel's ephemeral range (Linux's `ip_local_port_range`) or
    `LOCAL_PORT_CEILING`, whichever is lower; None when that range is unknown or leaves fewer
    than `LOCAL_PORTS_MIN` ports below it."""
    try:
        low = int((range_path or EPHEMERAL_RANGE_PATH).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    stop = min(low, LOCAL_PORT_CEILING)
    if stop - LOCAL_PORT_FLOOR < LOCAL_PORTS_MIN:
        return None
    return LOCAL_PORT_FLOOR, stop

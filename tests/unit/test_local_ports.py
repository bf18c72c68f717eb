"""Where a local consortium's nodes listen (identity/addresses.py): ports drawn below the
kernel's ephemeral range, so that no outgoing connection and no other program's bind to port 0
takes one before its node binds it (or while its node is stopped)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consortia.identity import addresses
from consortia.identity.addresses import (
    LOCAL_PORT_CEILING,
    LOCAL_PORT_FLOOR,
    free_ports,
    local_placements,
    local_ports,
)


def _range_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ip_local_port_range"
    path.write_text(text, encoding="ascii")
    return path


def test_the_span_ends_where_the_kernels_ephemeral_range_starts(tmp_path: Path) -> None:
    """Or below Kubernetes' NodePorts (30000 up), whichever is lower."""
    assert local_ports(_range_file(tmp_path, "25000\t60999\n")) == (LOCAL_PORT_FLOOR, 25000)
    for text in ("32768\t60999\n", "40000 60999", "99999999 99999999"):
        assert local_ports(_range_file(tmp_path, text)) == (LOCAL_PORT_FLOOR, LOCAL_PORT_CEILING)


@pytest.mark.parametrize("text", ["1024 65535", "20500 60999", "", "many ports"])
def test_no_span_when_the_range_leaves_too_few_below_it_or_says_nothing(
    tmp_path: Path, text: str
) -> None:
    assert local_ports(_range_file(tmp_path, text)) is None
    assert local_ports(tmp_path / "absent") is None


def test_ports_are_drawn_below_the_ephemeral_range_distinct_and_bindable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(addresses, "EPHEMERAL_RANGE_PATH", _range_file(tmp_path, "32768 60999"))
    ports = free_ports(16)
    assert len(set(ports)) == 16
    assert all(LOCAL_PORT_FLOOR <= port < LOCAL_PORT_CEILING for port in ports), ports
    for port in ports:  # none held open: a node can bind each
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    placements = local_placements(4)
    chosen = [p.port for p in placements] + [int(p.api_listen.rsplit(":")[1]) for p in placements]
    assert len(set(chosen)) == 8
    assert all(LOCAL_PORT_FLOOR <= port < LOCAL_PORT_CEILING for port in chosen)


def test_a_taken_port_is_never_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The span is a single port, held here: once the span is used up, the choice falls back
    to the kernel's port 0 instead of answering the taken one."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        monkeypatch.setattr(addresses, "local_ports", lambda: (taken, taken + 1))
        ports = free_ports(3)
    assert taken not in ports and len(set(ports)) == 3


def test_without_a_known_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(addresses, "EPHEMERAL_RANGE_PATH", tmp_path / "absent")
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(0 < port <= 65535 for port in ports)

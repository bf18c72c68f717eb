"""The data gateway's parts on their own: the request format and its bounds, the replay
window, the dataset queries checked at start, column values as sealed values, and the
command refusing a DSN that holds a password before anything starts.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consortia.cli.gateway_commands import gateway_command
from consortia.errors import ConsortiaError, InvalidArgumentError
from consortia.gateway.database import parse_query, plain
from consortia.gateway.errors import RefusedError
from consortia.gateway.protocol import DataRequest, ReplayWindow, integer_within, parse_request


@pytest.mark.parametrize(
    "change",
    [
        {"grant": -1},
        {"grant": True},
        {"consumer": "a" * 65},
        {"dataset": "x/y"},
        {"nonce": "00"},
        {"signature": "XYZ"},
        {"params": {f"p{i}": i for i in range(17)}},
        {"params": {"Bad": 1}},
        {"params": {"ok": 1.5}},
        {"params": {"ok": "x" * 257}},
        {"extra": 1},
    ],
)
def test_a_malformed_request_is_refused_before_anything_is_read(change: dict[str, Any]) -> None:
    body = {
        "consumer": "credit1",
        "dataset": "firm-credit",
        "grant": 0,
        "params": {},
        "timestamp_ms": 1,
        "nonce": "0" * 32,
        "signature": "ab",
        **change,
    }
    with pytest.raises(RefusedError) as refusal:
        parse_request(msgspec.json.decode(msgspec.json.encode(body)))
    assert refusal.value.code == "bad_request"


def test_the_replay_window_is_bounded_and_forgets_only_what_is_stale() -> None:
    window = ReplayWindow(freshness_ms=1000, capacity=2)

    def request(nonce: int, stamp: int) -> DataRequest:
        return DataRequest("a", "d", 0, {}, stamp, f"{nonce:032x}", "ab")

    window.admit(request(1, 1000), 1000)
    window.admit(request(2, 1500), 1500)
    with pytest.raises(RefusedError) as busy:
        window.admit(request(3, 1600), 1600)
    assert busy.value.code == "busy"
    window.admit(request(3, 2100), 2100)  # request 1 is stale now: forgotten
    with pytest.raises(RefusedError) as replay:
        window.admit(request(2, 1500), 2100)
    assert replay.value.code == "replayed_request"
    assert len(window) == 2


@pytest.mark.parametrize(
    "entry",
    [
        {"sql": "SELECT 1", "parameters": ["firm"]},  # a parameter the SQL never uses
        {"sql": "SELECT %(firm)s", "parameters": []},  # a placeholder not declared
        {"sql": "SELECT %(firm)s", "parameters": ["firm", "firm"]},
        {"sql": "SELECT %(Firm)s", "parameters": ["Firm"]},
        {"sql": "", "parameters": []},
        {"sql": "SELECT 1", "parameters": [], "rows_max": 0},
        {"sql": "SELECT 1", "parameters": [], "rows_max": 10_001},
    ],
)
def test_a_dataset_query_is_checked_when_the_gateway_starts(entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_query("firm-credit", entry)


def test_column_values_become_values_a_sealed_record_holds() -> None:
    moment = datetime.datetime(2026, 12, 1, 8, 30, tzinfo=datetime.UTC)
    assert plain(Decimal("125.00")) == 125 and plain(Decimal("1.25")) == "1.25"
    assert plain(moment) == "2026-12-01T08:30:00+00:00"
    assert plain(2**70) == str(2**70) and plain(1.5) == "1.5" and plain(b"\x01") == "01"
    assert plain([None, True, {"a": Decimal("2")}]) == [None, True, {"a": 2}]


def test_a_dsn_with_a_password_stops_the_gateway_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConsortiaError) as error:
        gateway_command(
            home=tmp_path,
            dsn="host=127.0.0.1 dbname=bank0 user=gateway password=hunter2",
            dataset=["firm-credit"],
            queries=tmp_path / "queries.json",
            account="bank-0.gateway",
        )
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, True), (5, True), (-1, False), (6, False), (True, False), (False, False), (1.0, False)],
)
def test_the_gateway_s_one_integer_check(value: object, expected: bool) -> None:
    # A bool is an int to Python, never to the gateway: {"grant": true} is no grant number.
    assert integer_within(value, 0, 5) is expected

"""The bench's second-by-second figures: which second each committed transaction falls in,
the latency percentiles of each second, and the sparklines the report prints from them."""

from __future__ import annotations

from statistics import fmean as mean

import pytest

from consortia.cli.bench_commands import SPARK_BLOCKS, SPARK_COLUMNS_MAX, sparkline
from consortia.cluster.bench_report import Tally, per_second


def test_each_commit_counts_in_the_second_it_was_seen() -> None:
    start = 100.0
    settled = [99.9, 100.2, 100.9, 101.0, 103.5]  # one before the start, none in second 2
    latencies = [0.1, 0.2, 0.4, 1.0, 2.0]
    timeline = per_second(settled, latencies, start)
    assert [second["second"] for second in timeline] == [0, 1, 2, 3]
    assert [second["committed"] for second in timeline] == [3, 1, 0, 1]
    assert timeline[0]["p50_ms"] == 200.0 and timeline[0]["p99_ms"] == 400.0
    assert timeline[2] == {"second": 2, "committed": 0, "p50_ms": 0.0, "p99_ms": 0.0}
    assert timeline[3]["p99_ms"] == 2000.0
    assert per_second([], [], start) == []
    with pytest.raises(AssertionError):
        per_second([100.0], [], start)


def test_the_tally_keeps_when_each_transaction_was_seen() -> None:
    tally = Tally(window_start=10.0, window_end=12.0)
    tally.admitted("a", 10.0, "transfer", 0)
    tally.seen("b", 10.5, True, "ok")  # seen before its admission was reported
    tally.admitted("b", 10.1, "transfer", 0)
    assert tally.seen("a", 11.5, True, "ok")
    assert tally.settled_at == [10.5, 11.5] and tally.latencies == pytest.approx([0.4, 1.5])
    timeline = per_second(tally.settled_at, tally.latencies, tally.window_start)
    assert [second["committed"] for second in timeline] == [1, 1]


def test_a_sparkline_scales_to_its_largest_and_shows_a_stall_as_a_gap() -> None:
    line = sparkline([0.0, 1.0, 4.0, 8.0, 0.0, 8.0], mean)
    assert line[0] == " " and line[4] == " "
    assert line[3] == line[5] == SPARK_BLOCKS[-1]
    assert SPARK_BLOCKS.index(line[1]) < SPARK_BLOCKS.index(line[2]) < SPARK_BLOCKS.index(line[3])
    assert sparkline([], mean) == ""
    assert sparkline([0.0, 0.0], max) == "  "


def test_a_long_series_is_grouped_to_the_widest_line() -> None:
    values = [1.0] * (3 * SPARK_COLUMNS_MAX)
    values[7] = 9.0  # one slow second: a group's max keeps it, its mean dilutes it
    assert len(sparkline(values, mean)) == SPARK_COLUMNS_MAX
    by_max = sparkline(values, max)
    slow = by_max[7 // 3]
    assert slow == SPARK_BLOCKS[-1] and set(by_max) - {slow} == {SPARK_BLOCKS[1]}

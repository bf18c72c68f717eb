"""Checks on how the test session itself runs; it holds no fixtures.

The cluster tests share one live consortium per module in file order, so `make test` runs
them on one xdist worker (`--dist loadgroup` and the `xdist_group("cluster")` mark). xdist
puts a test in its group by appending `@group` to the test's id; when a pytest release
changes how ids are stored, that silently stops working and the tests spread over workers,
where they fail at random. This hook stops the session with a clear message instead.

Hypothesis measures each example in wall time (a 200 ms deadline, a health check on slow
data generation); on a loaded 2-core machine a pause fails such a test for no defect, so the
session's profile drops both. Every property test still runs all its examples.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("consortia", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("consortia")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):
        return  # not an xdist worker under --dist loadgroup
    ungrouped = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid
    ]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not group {len(ungrouped)} test(s) marked xdist_group (first: "
            f"{ungrouped[0]}): this pytest and pytest-xdist do not work together; pin the "
            "versions in constraints.txt that do"
        )

"""The one back-off of every wait that polls a node (SDK, asynchronous SDK, data gateway)."""

from __future__ import annotations

import itertools

from consortia.client.sdk import POLL_S_MAX, POLL_S_MIN, poll_pauses


def test_pauses_double_from_the_first_and_stop_growing_at_the_most() -> None:
    assert list(itertools.islice(poll_pauses(0.05, 0.3), 5)) == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_the_default_starts_at_the_sdk_s_first_pause_and_never_passes_its_most() -> None:
    pauses = list(itertools.islice(poll_pauses(), 40))
    assert pauses[0] == POLL_S_MIN
    assert max(pauses) == POLL_S_MAX
    assert pauses == sorted(pauses)

"""Directories made all at once: signals during the build, leftovers of killed runs, the
parent directory synced after the rename."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from consortia.errors import AlreadyExistsError, InterruptedByUserError
from consortia.identity import staging
from consortia.identity.staging import leftovers, staged_directory


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_build_leaves_nothing(tmp_path: Path, signum: int) -> None:
    before = signal.getsignal(signum)
    target = tmp_path / "net"
    stopped = pytest.raises(InterruptedByUserError, match=signal.Signals(signum).name)
    with stopped, staged_directory(target) as building:
        (building / "secret.key").write_text("encrypted, but still")
        os.kill(os.getpid(), signum)
        pytest.fail("the signal should have stopped the build")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signum) == before


def test_success_renames_and_syncs_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(staging, "sync_directory", synced.append)
    with staged_directory(tmp_path / "net") as building:
        (building / "genesis.json").write_text("{}")
    assert (tmp_path / "net" / "genesis.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["net"]
    assert synced == [tmp_path]


def test_leftovers_of_a_killed_run_are_found(tmp_path: Path) -> None:
    (tmp_path / ".net.partial-abc123").mkdir()
    (tmp_path / ".other.partial-x").mkdir()
    (tmp_path / ".net.partial-file").write_text("not a folder")
    assert leftovers(tmp_path / "net") == [tmp_path / ".net.partial-abc123"]
    assert leftovers(tmp_path / "missing" / "net") == []


def test_a_directory_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "net"
    with pytest.raises(AlreadyExistsError), staged_directory(target) as building:
        (building / "a").write_text("mine")
        target.mkdir()
        (target / "theirs").write_text("precious")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["net"]

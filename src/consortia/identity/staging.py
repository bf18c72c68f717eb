"""Creating a directory all at once: build it in a hidden sibling, then rename it into place.

`staged_directory(out_dir)` yields a fresh private (0700) directory `.NAME.partial-XXXX` next
to `out_dir`, on the same file system. When the block ends normally, the directory is renamed
to `out_dir` (atomic: it appears complete or not at all) and the parent directory is fsynced
so the rename survives a power cut. When the block raises, or SIGTERM or SIGHUP arrives (they
raise InterruptedByUserError inside the block; Ctrl-C raises KeyboardInterrupt), the partial
directory is removed. Only SIGKILL (or a power cut) can leave one behind: `leftovers` finds
those so the next run can report them.

This module must never remove anything but the partial directory it made itself, nor replace
an existing non-empty directory.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Final

from consortia.errors import AlreadyExistsError, InterruptedByUserError, InvalidArgumentError
from consortia.identity.files import PRIVATE_DIR_MODE, sync_directory

PARTIAL_MARKER: Final = ".partial-"
HANDLED_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)


def partial_prefix(out_dir: Path) -> str:
    """The name every partial directory for `out_dir` starts with."""
    return f".{out_dir.name}{PARTIAL_MARKER}"


def leftovers(out_dir: Path) -> list[Path]:
    """Partial directories for `out_dir` that an earlier, killed run left behind."""
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    prefix = partial_prefix(out_dir)
    found = [
        path
        for path in parent.iterdir()
        if path.name.startswith(prefix) and path.is_dir() and not path.is_symlink()
    ]
    return sorted(found)


def all_leftovers(directory: Path) -> list[Path]:
    """Every partial directory directly inside `directory`, whatever it was for."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.startswith(".")
        and PARTIAL_MARKER in path.name
        and path.is_dir()
        and not path.is_symlink()
    )


@contextlib.contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A private directory that becomes `out_dir` when the block succeeds (see the module)."""
    staging = _make_staging(out_dir)
    with _signals_raise(out_dir) as guard:
        try:
            yield staging
            _move_into_place(staging, out_dir)
            guard.finished = True
        except BaseException:
            guard.cleaning = True
            shutil.rmtree(staging, ignore_errors=True)
            raise
    sync_directory(out_dir.parent)


class _Guard:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.cleaning = False
        self.finished = False
        self.late_signal: int | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.finished:  # too late to stop: deliver it again once our handlers are gone
            self.late_signal = signum
            return
        if self.cleaning:  # already stopping; let the clean-up finish
            return
        self.cleaning = True
        name = signal.Signals(signum).name
        raise InterruptedByUserError(
            f"stopped by {name}; {self.out_dir} was not created and nothing was left behind"
        )


@contextlib.contextmanager
def _signals_raise(out_dir: Path) -> Iterator[_Guard]:
    guard = _Guard(out_dir)
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may install handlers; elsewhere a signal stops the process.
        yield guard
        return
    previous = {number: signal.signal(number, guard.handle) for number in HANDLED_SIGNALS}
    try:
        yield guard
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if guard.late_signal is not None:
            signal.raise_signal(guard.late_signal)


def _make_staging(out_dir: Path) -> Path:
    try:
        path = Path(tempfile.mkdtemp(prefix=partial_prefix(out_dir), dir=out_dir.parent))
    except OSError as error:
        raise InvalidArgumentError(f"cannot create {out_dir}: {error.strerror}") from None
    path.chmod(PRIVATE_DIR_MODE)
    return path


def _move_into_place(staging: Path, out_dir: Path) -> None:
    try:
        staging.rename(out_dir)  # atomic; replaces out_dir only if it is an empty directory
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise AlreadyExistsError(f"{out_dir} appeared while it was being created") from None
        raise InvalidArgumentError(f"cannot create {out_dir}: {error.strerror}") from None

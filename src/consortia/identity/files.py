"""Small file helpers for identity material: exclusive writes with fixed modes, bounded reads.

Private material is written with mode 0600 and public material with 0644, both created
exclusively (an existing file is never overwritten) and flushed to disk before returning.
Directories that hold private material are 0700. Secrets read from a user's file (passphrase
files) must be reachable by their owner only.

This module must never follow a caller's path into overwriting an existing file, and never
read an unbounded amount of data from a file a user hands it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from consortia.errors import (
    AlreadyExistsError,
    ConsortiaError,
    InsecurePermissionsError,
    InvalidArgumentError,
)

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
# Permission bits that give anyone but the owner access.
NOT_OWNER_BITS = 0o077


def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 holding `data`; AlreadyExistsError if it exists."""
    _write_exclusive(path, data, PRIVATE_FILE_MODE)


def write_public_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0644 holding `data`; AlreadyExistsError if it exists."""
    _write_exclusive(path, data, PUBLIC_FILE_MODE)


def replace_public_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0644), atomically replacing what was there: readers see
    the old file or the new one, never a mix."""
    temporary = path.with_name(f".{path.name}.new-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    _write_exclusive(temporary, data, PUBLIC_FILE_MODE)
    try:
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise InvalidArgumentError(f"cannot replace {path}: {error.strerror}") from None
    sync_directory(path.parent)


def make_private_dir(path: Path) -> None:
    """Create the directory `path` with mode 0700 (its parent must exist)."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        raise AlreadyExistsError(f"{path} already exists") from None
    except OSError as error:
        raise InvalidArgumentError(f"cannot create {path}: {error.strerror}") from None


def read_bounded(path: Path, size_max: int, error: type[ConsortiaError], what: str) -> bytes:
    """The bytes of `path`, refusing anything larger than `size_max`; `error` on any failure."""
    try:
        with path.open("rb") as handle:
            data = handle.read(size_max + 1)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory") from None
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror}") from None
    if len(data) > size_max:
        raise error(f"{what} {path} is larger than {size_max} bytes")
    return data


def read_owner_only(path: Path, size_max: int, error: type[ConsortiaError], what: str) -> bytes:
    """Like `read_bounded`, but InsecurePermissionsError when group or others have any access
    to `path` (checked on the opened file, so a swap between check and read cannot pass)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise error(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & NOT_OWNER_BITS:
            raise InsecurePermissionsError(
                f"{what} {path} has mode {mode:04o}; only its owner may read it (chmod 600)"
            )
        data = _read_up_to(descriptor, size_max + 1)
    finally:
        os.close(descriptor)
    if len(data) > size_max:
        raise error(f"{what} {path} is larger than {size_max} bytes")
    return data


def _read_up_to(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(descriptor, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def sync_directory(path: Path) -> None:
    """fsync the directory `path`, so a rename or a new entry in it survives a power cut."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_mode(path: Path) -> int:
    """The permission bits of `path` (0 when it cannot be read)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise AlreadyExistsError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as error:
        raise InvalidArgumentError(f"cannot create {path}: {error.strerror}") from None
    try:
        _write_all(descriptor, data, mode)
    except BaseException as failure:
        os.close(descriptor)
        path.unlink(missing_ok=True)  # never leave a half-written file behind
        if isinstance(failure, OSError):
            raise InvalidArgumentError(f"cannot write {path}: {failure.strerror}") from None
        raise
    os.close(descriptor)


def _write_all(descriptor: int, data: bytes, mode: int) -> None:
    os.fchmod(descriptor, mode)  # the umask may have narrowed the mode; set it exactly
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]
    os.fsync(descriptor)

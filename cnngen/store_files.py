"""Files beside a results store: the single-writer lock and atomic CSV exports.

This module owns the ``fcntl.flock`` that lets one writer at a time open a results store, and
the write-then-rename of exported CSV files. It leaves the database itself to
``cnngen.store``.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from cnngen.errors import StoreError

logger = logging.getLogger(__name__)


def acquire_lock(lock_path: Path):
    """Open lock_path and take an exclusive flock on it, or raise StoreError."""
    try:
        import fcntl
    except ImportError:
        # NOTE: without fcntl (Windows) two processes can write the same run directory.
        logger.warning("fcntl is unavailable: the results store is not locked against other runs")
        return None
    lock_file = open(lock_path, "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise StoreError(
            f"results store {str(lock_path.with_suffix(''))!r} is in use by another writer "
            f"(process {holder}); wait for that run to finish, choose another run directory, "
            "or open the store with read_only=True"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()))
    lock_file.flush()
    return lock_file


def write_csv_atomically(frame, target: Path) -> None:
    """Write a DataFrame as CSV with a header to a temporary file, then rename it over target.

    A reader never sees a half-written file, and a failed write leaves target unchanged.

    Raises:
        StoreError: If the file cannot be written.
    """
    _remove_stale_temporaries(target)
    # A unique name opened with "x" gets the umask's permissions, unlike tempfile.mkstemp.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "x", newline="", encoding="utf-8") as stream:
            frame.to_csv(stream, index=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except OSError as error:
        raise StoreError(f"could not write {str(target)!r}: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files of earlier exports to target whose process no longer runs.

    A killed export skips its cleanup, so its temporary file would otherwise stay forever.
    """
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        pid_text = leftover.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid_text.isdigit() and not _process_exists(int(pid_text)):
            leftover.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The two file rules every writer follows, written once:

- `write_atomic` / `atomic_path`: a file written whole or not at all. It is written under a hidden temporary name in
  the same folder (so the rename stays on one file system), optionally flushed to disk, then renamed over the target:
  a reader, or a process killed half way, sees the old file or the new one, never a part; a failed write leaves
  nothing behind.
- `FileLock`: an exclusive advisory lock on a file (`fcntl.flock`), held by the open file, so the kernel releases it
  when the holder exits, however it exits. Blocking (wait for the holder) or non-blocking (say who is busy), and a
  probe that asks whether anyone holds it now.
"""
from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for the caller to write (by name: for writers that want a file name, not a
    file object); renamed over `path` when the block ends without an error, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # (not created: the usual mode)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, write: Callable[[BinaryIO], object], fsync: bool = True) -> None:
    """Write `path` through `write(file)`; OSError on failure, with nothing left behind. `fsync`: on disk before
    the rename (off for caches that are cheap to make again)."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        write(f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


class FileLock:
    """An exclusive lock on the file `path` (created if missing; its folder must exist).

    `with FileLock(path):` waits for the holder; `with FileLock(path, busy=SomeError("...")):` raises that error at
    once instead when another process (or another open of the file) holds it. `acquire(wait=False)` answers
    whether it got the lock, for callers that simply skip; `held()` probes without taking it."""

    def __init__(self, path: Path, busy: BaseException | None = None):
        self.path = Path(path)
        self.busy = busy
        self._fh = None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with `wait=False` return False at once when someone else holds it."""
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            return False
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                fh.close()

    def __enter__(self) -> FileLock:
        if not self.acquire(wait=self.busy is None):
            raise self.busy
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held(self) -> bool:
        """Whether some process holds the lock now, probed with a moment's shared lock (True when unsure; False
        when the file does not exist)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)  # read-only: works in a read-only folder too
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:  # BlockingIOError: held
            return True
        finally:
            os.close(fd)  # (releases the probe's lock)

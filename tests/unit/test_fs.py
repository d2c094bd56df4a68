"""The file rules of picseek._fs: atomic writes and the exclusive lock."""
from __future__ import annotations

import pytest

from picseek._fs import FileLock, atomic_path, write_atomic


def test_write_atomic_replaces_whole_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    write_atomic(target, lambda f: f.write(b"one"))
    write_atomic(target, lambda f: f.write(b"two"), fsync=False)
    assert target.read_bytes() == b"two"

    def fail(f):
        f.write(b"part")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_bytes() == b"two" and sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_atomic_path_renames_on_success_only(tmp_path):
    target = tmp_path / "index.faiss"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".index.faiss.") and tmp.name.endswith(".tmp")
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def test_file_lock_waits_refuses_or_skips(tmp_path):
    path = tmp_path / "index.lock"
    assert not FileLock(path).held()  # no file yet
    with FileLock(path):
        assert FileLock(path).held()
        assert FileLock(path).acquire(wait=False) is False
        with pytest.raises(LookupError, match="busy"):
            with FileLock(path, busy=LookupError("busy")):
                pass
    assert not FileLock(path).held()
    other = FileLock(path)
    assert other.acquire(wait=False) is True
    assert FileLock(path).held()
    other.release()
    other.release()  # (twice: harmless)
    assert not FileLock(path).held()

"""OS and SQLite errors at the library's edge (issue 13): each is one LibraryIOError that says what to do, raised
through the Python API (never a bare sqlite3 or OS error), and the library keeps its last committed state for the
run after it. Errors are injected here; real full, read-only and vanished disks are in
tests/integration/test_cli_disk.py. Also: a run that died without recording its end shows as interrupted."""
import errno
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from picseek import Library
from picseek._fs import FileLock
from picseek.cli import main
from picseek.errors import LibraryIOError, library_io_error
from picseek.server import thumbs
from picseek.server.errors import picseek_status
from picseek.store import sqlite as sqlite_store
from picseek.store import vectorcache
from picseek.store.base import ImageRecord
from picseek.store.sqlite import DB_NAME, SQLiteStore

from conftest import ColourEmbedder, make_folder


@pytest.fixture
def photos(tmp_path):
    make_folder(tmp_path / "photos", 12)
    return tmp_path / "photos"


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # what SQLite sets (Python >= 3.11)
    return exc


def stored(lib: Library) -> dict[str, np.ndarray]:
    rows = lib.store.read("SELECT i.path, v.vec FROM images i JOIN vectors v ON v.image_id = i.id "
                          "WHERE v.space = 'main'")
    return {r[0]: np.frombuffer(r[1], dtype=np.float16) for r in rows}


def intact(lib: Library) -> bool:
    return lib.store.read("PRAGMA integrity_check")[0][0] == "ok"


@pytest.mark.parametrize("err, words", [
    (errno.ENOSPC, "the disk holding library {lib} is full (writing picseek.db): free some space"),
    (errno.EDQUOT, "is full"),
    (errno.EROFS, "is on a read-only file system (writing picseek.db): remount it read-write"),
    (errno.EACCES, "permission denied on library {lib} (opening picseek.db): give this user write access"),
    (errno.ENOENT, "cannot be reached (opening picseek.db): No such file or directory; is its disk"),
    (errno.ENOTCONN, "cannot be reached"),
    (errno.EIO, "disk I/O error on library {lib} (opening picseek.db): check that its disk is mounted"),
])
def test_os_errors_on_library_files_become_one_line_that_says_what_to_do(tmp_path, err, words):
    exc = OSError(err, os.strerror(err), str(tmp_path / "picseek.db"))
    out = library_io_error(exc, tmp_path)
    assert isinstance(out, LibraryIOError) and words.format(lib=tmp_path) in str(out)
    assert "\n" not in str(out)


def test_other_errors_are_left_alone(tmp_path):
    assert library_io_error(OSError(errno.EINVAL, "Invalid argument", "x"), tmp_path) is None
    assert library_io_error(ValueError("a bug"), tmp_path) is None
    assert library_io_error(sqlite3.OperationalError("no such table: imagez"), tmp_path) is None
    assert library_io_error(sqlite_error("database is locked", 5), tmp_path) is None


def test_sqlite_errors_are_told_apart_by_asking_the_file_system(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"")
    full = library_io_error(sqlite_error("database or disk is full", 13), tmp_path, DB_NAME, "writing")
    assert "is full (writing picseek.db)" in str(full)
    assert "disk I/O error on library" in str(library_io_error(sqlite_error("disk I/O error", 778), tmp_path, DB_NAME))
    gone = library_io_error(sqlite_error("unable to open database file", 14), tmp_path / "unmounted", DB_NAME)
    assert "cannot be reached" in str(gone) and "No such file or directory" in str(gone)
    moved = library_io_error(sqlite_error("attempt to write a readonly database", 1032), tmp_path, DB_NAME)
    assert "cannot be reached" in str(moved)


def test_a_full_disk_at_commit_keeps_what_was_committed_and_the_next_run_completes(tmp_path, photos, monkeypatch):
    commits = []
    real_execute = sqlite_store._Connection.execute

    def execute(conn, sql, *args):
        if sql == "COMMIT" and conn.in_transaction and len(commits) == 3:
            commits.append("full")
            raise sqlite_error("database or disk is full", 13)
        if sql == "COMMIT":
            commits.append(sql)
        return real_execute(conn, sql, *args)

    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    monkeypatch.setattr(sqlite_store._Connection, "execute", execute)
    with pytest.raises(LibraryIOError, match=r"is full \(writing picseek.db\): free some space.*nothing indexed"):
        lib.index([photos], workers=0, batch_size=4)
    monkeypatch.undo()
    committed = stored(lib)
    assert 0 < len(committed) < 12 and intact(lib)
    assert lib.status()["last_run"]["status"] == "failed"
    lib.index([photos], workers=0, batch_size=4)
    clean = Library(tmp_path / "clean", model=ColourEmbedder())
    clean.index([photos], workers=0, batch_size=4)
    after, want = stored(lib), stored(clean)
    assert sorted(after) == sorted(want) and all(np.array_equal(after[p], want[p]) for p in want)
    assert intact(lib) and lib.status()["last_run"]["status"] == "completed"


def test_a_disk_io_error_on_a_read_is_one_error(tmp_path, photos, monkeypatch):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([photos], workers=0)
    real_execute = sqlite_store._Connection.execute

    def execute(conn, sql, *args):
        if sql.startswith("SELECT count(*) FROM images"):
            raise sqlite_error("disk I/O error", 266)  # SQLITE_IOERR_READ
        return real_execute(conn, sql, *args)

    monkeypatch.setattr(sqlite_store._Connection, "execute", execute)
    with pytest.raises(LibraryIOError, match=r"disk I/O error on library .* \(reading picseek.db\)"):
        lib.status()


def test_a_library_folder_that_cannot_be_reached_is_one_error(tmp_path, monkeypatch):
    gone = tmp_path / "share" / "lib"
    real_exists = Path.exists

    def exists(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "share")):
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))
        return real_exists(path, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(LibraryIOError, match="cannot be reached .*Transport endpoint is not connected; is its disk"):
        Library(gone, model=ColourEmbedder())


def test_an_index_lock_without_permission_is_one_error(tmp_path, photos, monkeypatch):
    import picseek._fs as fs_module

    lib = Library(tmp_path / "lib", model=ColourEmbedder())

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(fs_module, "open", denied, raising=False)  # (the lock file's open)
    with pytest.raises(LibraryIOError, match=r"permission denied on library .* \(opening index.lock\)"):
        lib.index([photos], workers=0)


def test_os_errors_about_other_files_pass_through_the_library_unchanged(tmp_path, photos, monkeypatch):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/else/model-cache/x.onnx")

    monkeypatch.setattr("picseek.library.run_index", broken)
    with pytest.raises(OSError) as info:
        lib.index([photos], workers=0)
    assert not isinstance(info.value, LibraryIOError) and info.value.filename.startswith("/somewhere")


def test_the_cli_shows_any_other_os_error_as_one_line(tmp_path, monkeypatch, capsys):
    def broken(self):
        raise OSError(errno.EIO, "Input/output error", "/etc/picseek/config.toml")

    Library(tmp_path / "lib", model=ColourEmbedder())
    monkeypatch.setattr(Library, "status", broken)
    with pytest.raises(SystemExit) as info:
        main(["-L", str(tmp_path / "lib"), "status"])
    assert info.value.code == 3
    assert capsys.readouterr().err == "picseek: error: /etc/picseek/config.toml: Input/output error\n"


def test_a_full_disk_while_writing_the_vector_cache_falls_back_and_leaves_no_partial_files(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "lib")
    vecs = np.eye(4, dtype=np.float32)
    store.write_images([ImageRecord(f"/p/{i}.jpg", 1, 1, "h", {}, {"main": vecs[i]}) for i in range(2)])
    store.vector_table("main")  # generation 0 on disk
    cache = tmp_path / "lib" / vectorcache.CACHE_DIR
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", self.fh.name)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return Full(fh) if "b" in mode else fh

    monkeypatch.setattr(vectorcache, "open", full_open, raising=False)
    store.delete_paths(["/p/0.jpg"])  # a removal: a new generation is written
    store.write_images([ImageRecord("/p/9.jpg", 1, 1, "h", {}, {"main": vecs[3]})])
    ids, mat = store.vectors("main")  # from memory: the database stays the truth
    assert len(ids) == 2 and np.allclose(np.sort(mat @ vecs[3]), [0, 1])
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before  # no partial generation left behind


def test_a_thumbnail_that_cannot_be_written_is_one_error_and_a_503(tmp_path, monkeypatch):
    from PIL import Image

    def full(img, dest):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(thumbs, "_write_atomic", full)
    photo = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48), "red").save(photo)
    with open(photo, "rb") as source, pytest.raises(LibraryIOError, match=r"is full \(writing thumbs/"):
        thumbs.thumbnail(tmp_path / "lib", {"path": str(photo), "content_hash": "", "format": "JPEG"}, 160, 10**8,
                         source)
    assert picseek_status(LibraryIOError("x")) == (503, "library_unavailable")


def test_a_run_that_died_without_its_end_shows_as_interrupted(tmp_path, photos):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([photos], workers=0)
    dead = lib.store.start_run([str(photos)])  # what a SIGKILLed run leaves
    assert lib.status()["last_run"]["status"] == "interrupted"
    assert lib.store.last_run()["status"] == "running"  # a reader never writes
    with FileLock(tmp_path / "lib" / "index.lock"):  # while a run holds the lock, its "running" is true
        assert lib.status()["last_run"]["status"] == "running"
    lib.index([photos], workers=0)  # the next run records the dead one
    statuses = {r["id"]: r["status"] for r in lib.store.read("SELECT id, status FROM runs")}
    assert statuses[dead] == "interrupted" and lib.status()["last_run"]["status"] == "completed"


def test_one_line_is_the_one_rule_for_an_exception_in_a_message():
    from picseek.errors import one_line

    multi = ValueError("  first  line\nsecond line\n")
    assert one_line(multi) == "first  line"
    assert one_line(multi, whole=True) == "first line second line"
    assert one_line(multi, whole=True, named=True) == "ValueError: first line second line"
    assert one_line(OSError(5, "Input/output error"), named=True) == "[Errno 5] Input/output error"  # (no prefix)
    assert one_line(KeyError()) == "KeyError" and one_line(RuntimeError(""), named=True) == "RuntimeError"
    assert one_line(ValueError("x" * 500), limit=200) == "x" * 197 + "..."

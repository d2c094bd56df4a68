"""A live library (ingest/watch.py, Library.watch) with a real watcher (watchfiles) on temporary folders: added,
changed, moved, deleted photos, a burst, a renamed folder, a restart after changes made while nothing watched, a
busy library, events that never come (the re-scan), and the rules that pick what matters."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from picseek import Library
from picseek._fs import FileLock
from picseek.errors import UsageError
from picseek.ingest import watch as watching
from picseek.ingest.watch import DELETED, folder_of, is_hidden, outermost, relevant, watch_roots

from conftest import ColourEmbedder, draw_photo, make_folder

DEADLINE = 30.0  # seconds a change may take to reach the library before a test fails (it takes ~0.5 s)


class Running:
    """Library.watch in a thread, stopped at the end; `events` are its runs."""

    def __init__(self, lib: Library, roots, **kwargs):
        self.lib, self.events, self.stop = lib, [], threading.Event()
        kwargs = {"debounce": 0.2, "rescan": 0, "workers": 0, **kwargs}
        self.thread = threading.Thread(target=self._run, args=(list(roots),), kwargs=kwargs, daemon=True)
        self.error: BaseException | None = None
        self.thread.start()

    def _run(self, roots, **kwargs):
        try:
            self.lib.watch(roots, stop=self.stop, on_event=self.events.append, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def close(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the watcher did not stop"
        assert self.error is None, self.error

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def indexed(lib: Library, root: Path) -> set[str]:
    return {os.path.relpath(p, root) for p in lib.store.file_states([str(root)])}


def wait_until(check, what: str):
    deadline = time.monotonic() + DEADLINE
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.05)


def reported(w: Running, field: str, total: int, kind: str = "events") -> None:
    """Wait until the runs of `kind` have reported `total` of `field` (a run's report reaches on_event just after
    its last commit, so the rows can be there a moment before it)."""
    wait_until(lambda: sum(getattr(e.report, field) for e in w.events if e.kind == kind and e.report) == total,
               f"runs that reported {total} {field}")


def wait_for(lib: Library, root: Path, want: set[str]):
    last = set()

    def check():
        nonlocal last
        last = indexed(lib, root)
        return last == want

    try:
        wait_until(check, f"index holds {sorted(want)}")
    except AssertionError:
        raise AssertionError(f"index holds {sorted(last)}, not {sorted(want)}") from None


def write_atomic(path: Path, img: Image.Image) -> None:
    """As cameras and sync tools do: a hidden temporary name, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="JPEG")
    os.replace(tmp, path)


@pytest.fixture
def setup(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    running = []

    def start(**kwargs) -> Running:
        running.append(Running(lib, [photos], **kwargs))
        return running[-1]

    yield lib, photos, start
    for r in running:
        r.stop.set()
    for r in running:
        r.close()
    lib.close()


def test_added_changed_moved_and_deleted_photos_reach_the_index(setup):
    lib, photos, start = setup
    w = start()
    start_names = {"img_000.jpg", "img_001.jpg", "img_002.jpg"}
    wait_for(lib, photos, start_names)
    assert w.kinds()[0] == "initial"

    write_atomic(photos / "new.jpg", draw_photo("blue", seed=7))
    (photos / "sub").mkdir()
    make_folder(photos / "sub", 1, prefix="deep")
    wait_for(lib, photos, start_names | {"new.jpg", "sub/deep_000.jpg"})
    [new] = lib.search("blue", limit=20, keywords=False, where=["name=new.jpg"])
    assert new.path.endswith("new.jpg")

    before = lib.store.file_states([str(photos)])[str(photos / "img_000.jpg")]
    draw_photo("yellow", size=(300, 200), seed=9).save(photos / "img_000.jpg")  # changed in place
    wait_until(lambda: lib.store.file_states([str(photos)])[str(photos / "img_000.jpg")].size != before.size,
               "the changed photo re-indexed")

    os.rename(photos / "img_001.jpg", photos / "sub" / "moved.jpg")
    (photos / "img_002.jpg").unlink()
    (photos / "sub" / "deep_000.jpg").unlink()  # the last photo of a subfolder: gone, not "a disk not mounted"
    wait_for(lib, photos, {"img_000.jpg", "new.jpg", "sub/moved.jpg"})
    reported(w, "removed", 2)
    reports = [e.report for e in w.events if e.kind == "events"]
    assert sum(r.moved for r in reports) == 1 and sum(r.removed for r in reports) == 2
    assert sum(r.updated for r in reports) == 1 and sum(r.added for r in reports) == 2
    assert lib.errors() == []


def test_a_burst_of_500_photos_is_indexed_in_few_runs(setup, tmp_path):
    lib, photos, start = setup
    w = start(workers=1)
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg"})
    small = draw_photo("red", size=(16, 16))
    for i in range(500):
        folder = photos / f"burst{i // 100}"
        folder.mkdir(exist_ok=True)
        small.save(folder / f"b{i:03d}.png")
    wait_until(lambda: lib.store.count() == 503, "all 500 photos indexed")
    reported(w, "added", 500)
    runs = [e for e in w.events if e.kind == "events"]
    assert sum(e.report.added for e in runs) == 500 and len(runs) <= 10


def test_a_renamed_folder_moves_its_photos_without_embedding_them_again(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos / "2023" / "trip", 4)
    emb = ColourEmbedder()
    with Library(tmp_path / "lib", model=emb) as lib:
        w = Running(lib, [photos], debounce=0.2, rescan=0, workers=0)
        try:
            wait_until(lambda: lib.store.count() == 4, "first run")
            calls = emb.calls
            os.rename(photos / "2023", photos / "2023-italy")
            want = {f"2023-italy/trip/img_{i:03d}.jpg" for i in range(4)}
            wait_for(lib, photos, want)
            reported(w, "moved", 4)
            assert emb.calls == calls  # moved, not embedded again
            assert sum(e.report.moved for e in w.events if e.kind == "events") == 4
        finally:
            w.close()


def test_a_restarted_watcher_catches_up_with_what_changed_while_it_was_down(setup):
    lib, photos, start = setup
    w = start()
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg"})
    w.close()
    (photos / "img_000.jpg").unlink()
    os.rename(photos / "img_001.jpg", photos / "renamed.jpg")
    (photos / "later").mkdir()
    for i in range(2):
        draw_photo("green", seed=50 + i).save(photos / "later" / f"new_{i}.jpg")  # (content unlike the deleted one)
    w2 = start()
    wait_for(lib, photos, {"renamed.jpg", "img_002.jpg", "later/new_0.jpg", "later/new_1.jpg"})
    reported(w2, "added", 2, kind="initial")
    first = w2.events[0]
    assert first.kind == "initial" and (first.report.added, first.report.moved, first.report.removed) == (2, 1, 1)


def test_a_busy_library_is_tried_again_not_a_crash(setup):
    lib, photos, start = setup
    w = start()
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg"})
    other = FileLock(lib.path / "index.lock")  # another index run (picseek index, a server) holds the library
    assert other.acquire(wait=False)
    try:
        shutil.copy(photos / "img_000.jpg", photos / "copy.jpg")
        time.sleep(1.0)
        assert "copy.jpg" not in indexed(lib, photos) and w.thread.is_alive()
    finally:
        other.release()
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg", "copy.jpg"})
    assert w.error is None


def test_the_rescan_finds_what_no_event_announced(setup, monkeypatch):
    lib, photos, start = setup
    monkeypatch.setattr(watching, "relevant", lambda *a: False)  # every event lost, as on a network mount
    w = start(rescan=0.5)
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg"})
    shutil.copy(photos / "img_000.jpg", photos / "unannounced.jpg")
    wait_for(lib, photos, {"img_000.jpg", "img_001.jpg", "img_002.jpg", "unannounced.jpg"})
    assert "rescan" in w.kinds() and "events" not in w.kinds()


def test_hidden_files_temp_names_and_the_library_inside_the_folder_are_ignored(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 1)
    with Library(photos / "lib", model=ColourEmbedder()) as lib:  # the library inside the watched folder
        w = Running(lib, [photos], debounce=0.1, rescan=0, workers=0)
        try:
            wait_until(lambda: lib.store.count() == 1, "first run")
            draw_photo("red").save(photos / ".hidden.jpg")
            (photos / ".cache").mkdir()
            draw_photo("red").save(photos / ".cache" / "thumb.jpg")
            (photos / "notes.txt").write_text("not a photo")
            lib.tag_add(1, ["busy"])  # writes to the library's own files
            time.sleep(1.0)
            assert [e.kind for e in w.events] == ["initial"] and lib.store.count() == 1
        finally:
            w.close()


def test_the_rules_that_pick_what_matters(tmp_path):
    root, lib = str(tmp_path / "photos"), str(tmp_path / "photos" / "lib")
    (tmp_path / "photos" / "a" / "b").mkdir(parents=True)
    assert relevant(1, f"{root}/a/x.JPG", [root], [lib])
    assert not relevant(1, f"{root}/a/x.txt", [root], [lib])
    assert relevant(1, f"{root}/a/b", [root], [lib])  # a folder (created, renamed here)
    assert relevant(DELETED, f"{root}/gone-folder", [root], [lib])  # maybe a folder that was removed
    assert not relevant(1, f"{root}/.x.jpg.tmp", [root], [lib])
    assert not relevant(1, f"{root}/a/._x.jpg", [root], [lib])
    assert not relevant(1, f"{root}/.thumbs/x.jpg", [root], [lib])
    assert not relevant(1, f"{lib}/thumbs/x.jpg", [root], [lib])
    assert not relevant(1, f"{tmp_path}/elsewhere.jpg", [root], [lib])
    assert is_hidden(f"{root}/.a/x.jpg", root) and not is_hidden(f"{root}/a/x.jpg", root)
    assert folder_of(f"{root}/a/b/x.jpg", [root]) == f"{root}/a/b"
    assert folder_of(f"{root}/a/gone/deeper/x.jpg", [root]) == f"{root}/a"  # the nearest folder still there
    assert folder_of(f"{root}/x.jpg", [root]) == root
    assert folder_of(f"{tmp_path}/other/x.jpg", [root]) is None
    assert outermost([f"{root}/a/b", f"{root}/a", f"{root}/ab", root + "2"]) == [f"{root}/a", f"{root}/ab",
                                                                                 root + "2"]
    assert watch_roots([tmp_path / "photos", tmp_path / "photos" / "a"]) == [root]
    with pytest.raises(UsageError, match="only local folders"):
        watch_roots(["s3://bucket/photos"])
    with pytest.raises(UsageError, match="folder not found"):
        watch_roots([tmp_path / "missing"])

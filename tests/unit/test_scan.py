import os

from picseek.ingest.images import file_hash
from picseek.ingest.scan import FileEntry, WalkProblem, diff, walk
from picseek.store.base import FileState

from conftest import make_folder


def test_walk_finds_images_recursively_and_skips_junk(tmp_path):
    make_folder(tmp_path / "a", 2)
    make_folder(tmp_path / "a" / "deep" / "er", 1)
    make_folder(tmp_path / ".hidden", 1)
    make_folder(tmp_path / "lib", 1)
    (tmp_path / "a" / "._img_000.jpg").write_bytes(b"\0" * 10)  # macOS resource fork
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / "UPPER.JPG").write_bytes((tmp_path / "a" / "img_000.jpg").read_bytes())
    found = sorted(os.path.relpath(e.path, tmp_path) for e in walk([str(tmp_path)], skip=[str(tmp_path / "lib")]))
    assert found == ["a/UPPER.JPG", "a/deep/er/img_000.jpg", "a/img_000.jpg", "a/img_001.jpg"]


def test_walk_survives_symlink_loops_and_visits_each_folder_once(tmp_path):
    make_folder(tmp_path / "a", 2)
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "alias")
    found = [e.path for e in walk([str(tmp_path)])]
    assert len(found) == 2


def test_walk_accepts_a_single_file_root(tmp_path):
    (p,) = make_folder(tmp_path, 1)
    assert [e.path for e in walk([str(p)])] == [str(p)]


def _state(i, path, size, mtime, h):
    return FileState(i, path, size, mtime, h)


def test_diff_tells_new_changed_unchanged_missing_and_known_errors():
    indexed = {"/r/same.jpg": _state(1, "/r/same.jpg", 10, 1, "a"), "/r/edit.jpg": _state(2, "/r/edit.jpg", 10, 1, "b"),
               "/r/gone.jpg": _state(3, "/r/gone.jpg", 77, 1, "c")}
    entries = [FileEntry("/r/same.jpg", 10, 1), FileEntry("/r/edit.jpg", 11, 2), FileEntry("/r/new.jpg", 5, 1),
               FileEntry("/r/bad.jpg", 3, 1), FileEntry("/r/bad-changed.jpg", 4, 9)]
    errors = {"/r/bad.jpg": (3, 1), "/r/bad-changed.jpg": (4, 1)}
    res = diff(entries, indexed, errors)
    assert sorted(e.path for e in res.todo) == ["/r/bad-changed.jpg", "/r/edit.jpg", "/r/new.jpg"]
    assert res.changed == {"/r/edit.jpg"} and res.unchanged == 1 and res.known_errors == 1
    assert res.missing == ["/r/gone.jpg"] and res.moved == []
    assert "/r/bad.jpg" in [e.path for e in diff(entries, indexed, errors, retry_errors=True).todo]


def test_diff_finds_a_moved_file_by_size_and_content_hash(tmp_path):
    a, b = make_folder(tmp_path, 2)
    moved = tmp_path / "renamed.jpg"
    os.rename(a, moved)
    st = moved.stat()
    indexed = {str(a): _state(7, str(a), st.st_size, 1, file_hash(moved)),
               str(b): _state(8, str(b), b.stat().st_size, b.stat().st_mtime_ns, file_hash(b))}
    res = diff(walk([str(tmp_path)]), indexed, {})
    assert res.moved == [(7, str(moved), st.st_size, st.st_mtime_ns)]
    assert res.todo == [] and res.missing == [] and res.unchanged == 1


def test_diff_same_size_different_content_is_new_not_moved(tmp_path):
    a, b = make_folder(tmp_path, 2)
    size = a.stat().st_size
    indexed = {"/old/x.jpg": _state(1, "/old/x.jpg", size, 1, "not-the-same-hash")}
    res = diff([FileEntry(str(a), size, 1)], indexed, {})
    assert [e.path for e in res.todo] == [str(a)] and res.missing == ["/old/x.jpg"] and res.moved == []


def _walk(root, **kw):
    problems = []
    found = sorted(os.path.relpath(e.path, root) for e in walk([str(root)], problems=problems, **kw))
    return found, {os.path.relpath(p.path, root): p for p in problems}


def test_walk_reports_dangling_links_loops_and_links_leading_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_folder(root / "a", 1)
    make_folder(outside, 1)
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    os.symlink(root / "gone-folder", root / "dangling-folder")
    os.symlink(root, root / "a" / "loop")
    os.symlink(root / "self.jpg", root / "self.jpg")
    os.symlink(outside, root / "out-folder")
    os.symlink(outside / "img_000.jpg", root / "out.jpg")
    os.symlink(root / "a" / "img_000.jpg", root / "inside.jpg")
    found, problems = _walk(root, follow_links=False)
    assert found == ["a/img_000.jpg", "inside.jpg"], "links that stay inside are followed"
    assert set(problems) == {"dangling.jpg", "dangling-folder", "a/loop", "self.jpg", "out-folder", "out.jpg"}
    assert "broken symbolic link" in problems["dangling.jpg"].reason
    assert "loop" in problems["a/loop"].reason and "loop" in problems["self.jpg"].reason
    assert "follow_links" in problems["out.jpg"].reason
    assert problems["dangling-folder"].folder and not problems["dangling.jpg"].folder
    found, problems = _walk(root, follow_links=True)
    assert found == ["a/img_000.jpg", "inside.jpg", "out-folder/img_000.jpg", "out.jpg"]
    assert set(problems) == {"dangling.jpg", "dangling-folder", "a/loop", "self.jpg"}


def test_walk_follow_links_defaults_to_the_setting(tmp_path, monkeypatch):
    make_folder(tmp_path / "outside", 1)
    os.symlink(tmp_path / "outside", tmp_path / "root")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "real" / "link")
    assert _walk(tmp_path / "real")[0] == []
    monkeypatch.setenv("PICSEEK_FOLLOW_LINKS", "yes")
    assert _walk(tmp_path / "real")[0] == ["link/img_000.jpg"]


def test_diff_keeps_what_lies_below_a_folder_that_could_not_be_walked():
    indexed = {p: _state(i, p, 10, 1, "h") for i, p in enumerate(["/r/usb/a.jpg", "/r/usb/b.jpg", "/r/gone.jpg"])}
    errors = {"/r/usb/bad.jpg": (1, 1), "/r/old-bad.jpg": (1, 1), "/r/link.jpg": (1, 1)}
    problems = [WalkProblem("/r/usb", 0, 0, "cannot read folder: Permission denied", folder=True),
                WalkProblem("/r/link.jpg", 1, 1, "broken symbolic link")]
    res = diff([], indexed, errors, problems=problems)
    assert res.missing == ["/r/gone.jpg"]
    assert res.stale_errors == ["/r/old-bad.jpg"], "errors of files that are gone are dropped, not the rest"

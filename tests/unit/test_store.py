import os
import sqlite3

import numpy as np
import pytest

from picseek.errors import FilterError, LibraryError
from picseek.request import Filter
from picseek.store.base import ImageRecord
from picseek.store.sqlite import DB_NAME, SCHEMA_VERSION, SQLiteStore


def rec(path, vec, size=10, mtime=1, h="h"):
    return ImageRecord(path, size, mtime, h, {"width": 4, "height": 3, "taken_at": "2021-06-01T10:00:00"},
                       {"main": np.asarray(vec, np.float32)})


def test_new_library_has_schema_and_no_images(tmp_path):
    s = SQLiteStore(tmp_path / "lib")
    assert s.count() == 0
    conn = sqlite3.connect(tmp_path / "lib" / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_library_is_a_clear_error_when_not_creating(tmp_path):
    with pytest.raises(LibraryError, match="no picseek library"):
        SQLiteStore(tmp_path / "nope", create=False)


def test_library_from_newer_picseek_is_refused(tmp_path):
    SQLiteStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LibraryError, match="newer picseek"):
        SQLiteStore(tmp_path)


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError):
        SQLiteStore(tmp_path)


def test_write_and_read_vectors_roundtrip_float16(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0, 0]), rec("/p/b.jpg", [0, 0.6, 0.8])])
    ids, mat = s.vectors("main")
    assert mat.dtype == np.float32 and mat.shape == (2, 3)
    rows = s.get_images(ids)
    by_path = {rows[i]["path"]: mat[k] for k, i in enumerate(ids)}
    np.testing.assert_allclose(by_path["/p/b.jpg"], [0, 0.6, 0.8], atol=1e-3)
    assert rows[ids[0]]["taken_at"] == "2021-06-01T10:00:00"


def test_vector_cache_extends_on_insert_and_rebuilds_on_delete(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0])])
    ids1, _ = s.vectors("main")
    s.write_images([rec("/p/b.jpg", [0, 1])])
    ids2, mat2 = s.vectors("main")
    assert len(ids2) == 2 and ids2[0] == ids1[0]
    assert s.delete_paths(["/p/a.jpg"]) == 1
    ids3, mat3 = s.vectors("main")
    assert len(ids3) == 1 and mat3.shape == (1, 2)
    np.testing.assert_allclose(mat3[0], [0, 1], atol=1e-3)


def test_updating_a_file_replaces_its_vector_and_keeps_its_id(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0])])
    (id_a,), _ = s.vectors("main")
    s.write_images([rec("/p/a.jpg", [0, 1], size=99)])
    ids, mat = s.vectors("main")
    assert list(ids) == [id_a] and mat.shape == (1, 2)
    np.testing.assert_allclose(mat[0], [0, 1], atol=1e-3)
    assert s.file_states(["/p"])["/p/a.jpg"].size == 99


def test_a_second_reader_sees_writes(tmp_path):
    writer, reader = SQLiteStore(tmp_path), SQLiteStore(tmp_path)
    assert len(reader.vectors("main")[0]) == 0
    writer.write_images([rec("/p/a.jpg", [1, 0])])
    assert len(reader.vectors("main")[0]) == 1
    writer.delete_paths(["/p/a.jpg"])
    assert len(reader.vectors("main")[0]) == 0


def test_errors_recorded_and_a_now_broken_file_leaves_the_index(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0])])
    s.write_images([], [("/p/a.jpg", 5, 2, "truncated JPEG"), ("/p/b.jpg", 0, 1, "empty file")])
    assert s.count() == 0 and len(s.vectors("main")[0]) == 0
    assert {e["path"]: e["reason"] for e in s.errors()} == {"/p/a.jpg": "truncated JPEG", "/p/b.jpg": "empty file"}
    assert s.known_errors(["/p"]) == {"/p/a.jpg": (5, 2), "/p/b.jpg": (0, 1)}
    s.write_images([rec("/p/b.jpg", [1, 0])])  # fixed later: the error goes away
    assert [e["path"] for e in s.errors()] == ["/p/a.jpg"]


def test_roots_select_only_their_own_subtree(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec(p, [1, 0]) for p in ["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/bc/z.jpg", "/a/b", "/a/b%/w.jpg"]])
    assert set(s.file_states(["/a/b"])) == {"/a/b/x.jpg", "/a/b/c/y.jpg", "/a/b"}
    assert set(s.file_states(["/a/b/"])) == {"/a/b/x.jpg", "/a/b/c/y.jpg", "/a/b"}
    assert set(s.file_states(["/a/b%"])) == {"/a/b%/w.jpg"}
    assert len(s.file_states(["/"])) == 5


def test_move_keeps_vector(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0])])
    (i,), _ = s.vectors("main")
    s.move([(int(i), "/p/moved/a.jpg", 10, 5)])
    assert s.find_path("/p/moved/a.jpg") == i and s.find_path("/p/a.jpg") is None
    assert len(s.vectors("main")[0]) == 1


def test_model_record_and_runs(tmp_path):
    s = SQLiteStore(tmp_path)
    assert s.get_model() is None
    s.set_model({"name": "m", "model_id": "m@1", "dim": 2})
    assert SQLiteStore(tmp_path).get_model()["model_id"] == "m@1"
    run = s.start_run(["/p"])
    s.finish_run(run, "completed", {"added": 3})
    last = s.last_run()
    assert last["status"] == "completed" and last["stats"] == {"added": 3} and last["roots"] == ["/p"]


def test_failed_transaction_rolls_back(tmp_path):
    s = SQLiteStore(tmp_path)
    bad = ImageRecord("/p/b.jpg", 1, 1, "h", {}, {"main": np.zeros(2, np.float32)})
    bad.size = None  # NOT NULL violation mid-transaction
    with pytest.raises(sqlite3.IntegrityError):
        s.write_images([rec("/p/a.jpg", [1, 0]), bad])
    assert s.count() == 0 and len(s.vectors("main")[0]) == 0


def test_schema_1_library_migrates_keeping_its_images(tmp_path):
    from picseek.store.sqlite import MIGRATIONS
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    conn.execute("INSERT INTO images (path, size, mtime_ns, content_hash, indexed_at) "
                 "VALUES ('/p/a.jpg', 1, 1, 'h', 0)")
    conn.commit()
    conn.close()
    s = SQLiteStore(tmp_path)
    assert s.count() == 1
    (i,) = s.get_images([1])
    assert s.set_fields([(i, {"description": "a red car", "width_cm": 12})]) == 2
    assert s.get_fields([i]) == {i: {"description": "a red car", "width_cm": "12"}}


def test_fields_keep_a_numeric_twin_for_numbers_and_dates(tmp_path):
    from picseek.store.values import field_number
    assert field_number(12) == 12.0 and field_number("3.5") == 3.5 and field_number("abc") is None
    assert field_number("1970-01-02") == 1.0
    assert field_number("1970-01-01T12:00:00Z") == 0.5 and field_number("1970-01-01T13:00:00+01:00") == 0.5
    assert field_number(float("nan")) is None and field_number("nan") is None
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0])])
    s.set_fields([(1, {"taken": "2021-06-01", "note": None})])
    num = sqlite3.connect(tmp_path / DB_NAME).execute("SELECT num FROM fields WHERE key='taken'").fetchone()[0]
    assert num == field_number("2021-06-01")
    s.set_fields([(1, {"taken": None})])
    assert s.get_fields([1]) == {1: {}}


def test_tags_add_remove_and_cascade_with_the_image(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images([rec("/p/a.jpg", [1, 0]), rec("/p/b.jpg", [0, 1])])
    assert s.add_tags([(1, " Beach ", "user", None), (1, "sunset", "auto", 0.42), (2, "beach", "import", None),
                       (2, "  ", "user", None)]) == 3
    assert [t["tag"] for t in s.get_tags([1])[1]] == ["beach", "sunset"]
    assert s.get_tags([1])[1][1] == {"tag": "sunset", "source": "auto", "score": 0.42}
    assert s.remove_tags([1], ["BEACH"]) == 1
    s.delete_paths(["/p/b.jpg"])
    assert sqlite3.connect(tmp_path / DB_NAME).execute("SELECT count(*) FROM tags WHERE image_id=2").fetchone()[0] == 0


@pytest.mark.parametrize("raised, status", [(None, "completed"), (KeyboardInterrupt, "interrupted"),
                                            (RuntimeError, "failed")])
def test_recorded_run_logs_the_outcome_and_its_summary(tmp_path, raised, status):
    from picseek.store.base import recorded_run

    s = SQLiteStore(tmp_path / "lib")
    calls = []

    def summary():
        calls.append(1)
        return {"embedded": 3}

    def body():
        with recorded_run(s, ["/photos"], summary):
            if raised is not None:
                raise raised()

    if raised is None:
        body()
    else:
        with pytest.raises(raised):
            body()
    run = s.last_run()
    assert run["status"] == status and run["roots"] == ["/photos"] and run["stats"] == {"embedded": 3}
    assert calls == [1]
    s.close()


def test_a_library_that_cannot_be_written_is_read_without_migrating_or_writing(tmp_path, monkeypatch):
    """A read-only mount or another user's files: opened read-only (never a write, not even WAL set-up); a library
    one migration behind (only the browse index missing) is read as it is."""
    from picseek.store import sqlite as sqlite_module

    s = SQLiteStore(tmp_path / "lib")
    s.write_images([ImageRecord("/p/a.jpg", 1, 1, "h", {"taken_at": "2021-06-01T10:00:00"},
                                {"main": np.ones(4, np.float32)})])
    s.close()
    db = sqlite3.connect(tmp_path / "lib" / "picseek.db")
    db.execute("DROP INDEX images_browse")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    before = (tmp_path / "lib" / "picseek.db").read_bytes()
    monkeypatch.setattr(sqlite_module.os, "access", lambda path, mode: mode != os.W_OK)
    ro = SQLiteStore(tmp_path / "lib", create=False)
    assert ro.read_only and ro.count() == 1 and ro.find_path("/p/a.jpg") == 1
    assert ro.browse(ro.select([], [], [], ""), 10).items == [(1, "2021-06-01T10:00:00")]
    assert ro.read("PRAGMA user_version")[0][0] == 4  # not migrated
    with pytest.raises(LibraryError):
        ro.add_tags([(1, "x", "user", None)])
    ro.close()
    assert (tmp_path / "lib" / "picseek.db").read_bytes() == before


def test_a_read_only_library_from_before_ocr_is_searched_and_says_it_has_no_words(tmp_path, monkeypatch):
    from picseek.store import sqlite as sqlite_module

    s = SQLiteStore(tmp_path / "lib")
    s.write_images([ImageRecord("/p/a.jpg", 1, 1, "h", {}, {"main": np.ones(4, np.float32)})])
    s.close()
    db = sqlite3.connect(tmp_path / "lib" / "picseek.db")
    db.execute("DROP TABLE texts")  # (what a library from before the words read in images lacks)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    db.commit()
    db.close()
    monkeypatch.setattr(sqlite_module.os, "access", lambda path, mode: mode != os.W_OK)
    ro = SQLiteStore(tmp_path / "lib", create=False)
    assert ro.get_texts([1]) == {} and ro.keyword_ids("a", "", ro.select([], [], [], ""), 5) == [1]
    with pytest.raises(FilterError, match="older picseek"):
        ro.select([Filter("has_text", "=", "yes", "has_text=yes")], [], [], "")
    ro.close()


def test_no_new_library_on_the_empty_mount_point_of_a_disk_that_is_not_mounted(tmp_path, monkeypatch):
    """A library on a disk that is not mounted now (in /etc/fstab, not in /proc/self/mounts): its empty mount point
    must not become a new, empty library (the next mount would hide it, or an index would start from nothing)."""
    from picseek import paths
    from picseek.errors import LibraryIOError
    from picseek.store import sqlite as sqlite_module

    disk = tmp_path / "my disk"
    disk.mkdir()
    fstab, mounts = tmp_path / "fstab", tmp_path / "mounts"
    fstab.write_text("# a comment\nUUID=1234 / ext4 defaults 0 1\n"
                     f"/dev/sdb1 {str(disk).replace(' ', chr(92) + '040')} ext4 defaults,nofail 0 2\n")
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n")
    assert paths.unmounted_mount_point(disk / "lib", str(fstab), str(mounts)) == str(disk)
    assert paths.unmounted_mount_point(tmp_path / "elsewhere", str(fstab), str(mounts)) is None
    monkeypatch.setattr(sqlite_module, "unmounted_mount_point",
                        lambda p: paths.unmounted_mount_point(p, str(fstab), str(mounts)))
    with pytest.raises(LibraryIOError, match=f"its disk is not mounted \\({disk} is in /etc/fstab"):
        SQLiteStore(disk / "lib")
    assert list(disk.iterdir()) == []  # nothing made
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 {str(disk).replace(' ', chr(92) + '040')} ext4 rw 0 0\n")
    assert SQLiteStore(disk / "lib").count() == 0  # mounted: a new library is fine


def test_a_batch_is_written_as_a_whole_and_a_path_given_twice_keeps_its_last_record(tmp_path):
    """write_images writes a batch in a few statements (issue 20): the same rows, ids and vectors as one upsert per
    image, an updated image keeps its id, and a repeated path is one image with its last vector."""
    s = SQLiteStore(tmp_path / "lib")
    s.write_images([rec(f"/p/{i}.jpg", [i, 1, 0]) for i in range(1200)])  # more than one chunk of bound parameters
    ids_before = dict((r[0], r[1]) for r in s.read("SELECT path, id FROM images"))
    epoch = s._meta("vec_epoch")
    s.write_images([rec("/p/5.jpg", [0, 0, 1], size=99), rec("/p/new.jpg", [1, 0, 0]), rec("/p/new.jpg", [0, 1, 0])],
                   [("/p/7.jpg", 1, 1, "broken now")])
    rows = {r[0]: (r[1], r[2]) for r in s.read("SELECT path, id, size FROM images")}
    assert len(rows) == 1200 and "/p/7.jpg" not in rows and rows["/p/5.jpg"] == (ids_before["/p/5.jpg"], 99)
    ids, mat = s.vectors("main")
    by_id = dict(zip(ids.tolist(), mat))
    np.testing.assert_allclose(by_id[rows["/p/new.jpg"][0]], [0, 1, 0])
    np.testing.assert_allclose(by_id[rows["/p/5.jpg"][0]], [0, 0, 1])
    assert len(ids) == 1200 and s._meta("vec_epoch") != epoch  # vectors replaced or deleted: a new epoch
    assert s.errors()[0]["path"] == "/p/7.jpg"


def _text_tables(s: SQLiteStore) -> dict:
    """Every row the words read in images leave (texts, ocr_words, ocr_vocab, the keyword text), by path."""
    path = {r[0]: r[1] for r in s.read("SELECT id, path FROM images")}

    def by_path(sql):
        return sorted((path[r[0]], *r[1:]) for r in s.read(sql))

    return {
        "texts": by_path("SELECT image_id, text, lines, error FROM texts"),
        "ocr_words": by_path("SELECT rowid, text FROM ocr_words"),
        "ocr_vocab": sorted(tuple(r) for r in s.read("SELECT term, doc, cnt FROM ocr_vocab")),
        "search_text": by_path("SELECT rowid, name, folder, fields, tags, text FROM search_text"),
        "matches": {w: sorted(path[r[0]] for r in s.read("SELECT rowid FROM search_text WHERE search_text MATCH ?",
                                                          (f"text : {w}",))) for w in ("alpha", "beta", "delta")},
    }


def test_a_batch_writes_the_words_read_as_one_record_at_a_time_does(tmp_path):
    """write_images writes a batch's words (texts, and through triggers ocr_words, ocr_vocab and the keyword text)
    in a statement or two per batch: the same rows as writing the same records one at a time, with an image's old
    words replaced (or dropped: None) when it is written again."""
    from picseek.store.base import TextRecord

    def r(path, text):
        return ImageRecord(path, 10, 1, "h", {}, {"main": np.ones(3, np.float32)}, text)

    line = {"text": "alpha beta", "box": [[0, 0], [1, 0], [1, 1], [0, 1]], "score": 0.9}
    first = [r("/p/a.jpg", TextRecord("alpha beta", [line])), r("/p/b.jpg", None), r("/p/c.jpg", TextRecord("alpha")),
             r("/p/d.jpg", TextRecord("", [], "reading text failed: boom"))] + \
        [r(f"/p/n{i}.jpg", TextRecord(f"beta w{i}") if i % 3 else None) for i in range(1200)]  # (> one chunk of ids)
    again = [r("/p/a.jpg", TextRecord("delta", [])), r("/p/b.jpg", TextRecord("beta delta")), r("/p/c.jpg", None),
             r("/p/e.jpg", TextRecord("alpha alpha"))] + [r(f"/p/n{i}.jpg", None) for i in range(0, 1200, 2)]
    batched, single = SQLiteStore(tmp_path / "batched"), SQLiteStore(tmp_path / "single")
    for records in (first, again):
        batched.write_images(records)
        for record in records:
            single.write_images([record])
    tables = _text_tables(batched)
    assert tables == _text_tables(single)
    texts = {row[0]: row[1:] for row in tables["texts"]}
    assert texts["/p/a.jpg"] == ("delta", "[]", None) and texts["/p/b.jpg"] == ("beta delta", "[]", None)
    assert "/p/c.jpg" not in texts and texts["/p/d.jpg"] == ("", "[]", "reading text failed: boom")
    kept = [f"/p/n{i}.jpg" for i in range(1200) if i % 3 and i % 2]  # (n0, n3, ...: no words; n2, n4, ...: dropped)
    assert len(kept) == 400 and sorted(texts) == sorted(["/p/a.jpg", "/p/b.jpg", "/p/d.jpg", "/p/e.jpg"] + kept)
    vocab = {term: (doc, cnt) for term, doc, cnt in tables["ocr_vocab"]}
    assert vocab["alpha"] == (1, 2) and vocab["delta"] == (2, 2) and vocab["beta"] == (401, 401)
    assert tables["matches"] == {"alpha": ["/p/e.jpg"], "beta": sorted(["/p/b.jpg"] + kept),
                                 "delta": ["/p/a.jpg", "/p/b.jpg"]}

"""The float16 vector cache files next to the database: opened instead of reading SQLite, kept in step with new
and deleted rows, rebuilt when they disagree with the database, and never needed (memory fallback)."""
import json
import sqlite3

import numpy as np
import pytest

from picseek.models.base import l2_normalize
from picseek.store import vectorcache
from picseek.store.base import ImageRecord
from picseek.store.sqlite import DB_NAME, SQLiteStore

DIM = 6


def records(start, n, seed=0):
    vecs = l2_normalize(np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32))
    return [ImageRecord(f"/p/{start + i:05d}.jpg", 1, 1, "h", {}, {"main": vecs[i]}) for i in range(n)]


def expected(store):
    """(image id -> float16 vector) straight from the database."""
    rows = store.read("SELECT image_id, vec FROM vectors WHERE space = 'main'")
    return {r[0]: np.frombuffer(r[1], dtype=np.float16) for r in rows}


def assert_in_step(store):
    table = store.vector_table("main")
    want = expected(store)
    assert sorted(table.ids.tolist()) == sorted(want)
    for row, image_id in enumerate(table.ids.tolist()):
        assert np.array_equal(np.asarray(table.mat16[row]), want[image_id])
    ids, mat = store.vectors("main")
    assert mat.dtype == np.float32 and np.array_equal(ids, table.ids)
    np.testing.assert_array_equal(mat, np.asarray(table.mat16, dtype=np.float32))
    return table


def meta(folder):
    return json.loads((folder / "cache" / "vectors-main.json").read_text())


def test_cache_files_are_written_and_a_new_store_maps_them_without_reading_the_vectors(tmp_path, monkeypatch):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 50))
    table = assert_in_step(s)
    assert isinstance(table.mat16, np.memmap) and meta(tmp_path)["rows"] == 50
    s.close()
    reads = []
    real = vectorcache.read_rows
    monkeypatch.setattr(vectorcache, "read_rows", lambda conn, space, after: reads.append(after) or real(
        conn, space, after))
    s2 = SQLiteStore(tmp_path)
    assert_in_step(s2)
    assert reads == []  # every row came from the files


def test_new_rows_are_appended_to_the_same_generation(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 30))
    first = assert_in_step(s)
    s.write_images(records(30, 20, seed=1))
    second = assert_in_step(s)
    assert second.rows == 50 and second.gen == first.gen == meta(tmp_path)["gen"]
    assert second.lineage == first.lineage
    assert np.array_equal(second.seqs[:30], first.seqs)
    other = SQLiteStore(tmp_path)  # another process that opens the files later sees them whole
    assert_in_step(other)


def test_deleted_rows_leave_in_a_new_generation_and_old_files_go(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 40))
    before = assert_in_step(s)
    reader = SQLiteStore(tmp_path)
    old_view = reader.vector_table("main")  # a reader that holds the old generation keeps a whole copy
    s.delete_paths([f"/p/{i:05d}.jpg" for i in range(0, 40, 3)])
    after = assert_in_step(s)
    assert after.rows == 40 - 14 and after.gen == before.gen + 1
    assert after.lineage == before.lineage  # the same seqs still name the same vectors
    files = sorted(p.name for p in (tmp_path / "cache").glob("vectors-main.*.*"))
    assert files == [f"vectors-main.{after.gen}.{k}" for k in ("f16", "ids", "seq")]
    assert old_view.rows == 40 and np.asarray(old_view.mat16).shape == (40, DIM)
    assert_in_step(reader)


def test_a_changed_image_gets_its_new_vector(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 10))
    assert_in_step(s)
    s.write_images(records(3, 1, seed=5))  # the same path again: its vector row is replaced
    assert_in_step(s)


def test_files_that_disagree_with_the_database_are_rebuilt(tmp_path):
    s = SQLiteStore(tmp_path / "lib")
    s.write_images(records(0, 20))
    old = assert_in_step(s)
    s.close()
    # a new database in the same folder (same epoch, same seqs, other vectors): the old files must not be used
    (tmp_path / "lib" / DB_NAME).unlink()
    for extra in (tmp_path / "lib").glob(DB_NAME + "-*"):
        extra.unlink()
    s2 = SQLiteStore(tmp_path / "lib")
    s2.write_images(records(0, 20, seed=9))
    assert assert_in_step(s2).lineage != old.lineage  # what was built on the old seqs (an index) must not be used


def test_cache_rows_missing_from_a_file_are_rebuilt(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 20))
    table = assert_in_step(s)
    s.close()
    (tmp_path / "cache" / f"vectors-main.{table.gen}.ids").write_bytes(b"\0" * 16)  # truncated
    assert_in_step(SQLiteStore(tmp_path))


def test_unwritable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch, caplog):
    def refuse(*a, **k):
        raise PermissionError("read-only")

    monkeypatch.setattr(vectorcache.VectorFiles, "sync", refuse)
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 12))
    with caplog.at_level("WARNING", logger="picseek"):
        table = assert_in_step(s)
    assert table.gen == -1 and "vector cache" in caplog.text
    s.write_images(records(12, 3, seed=2))
    assert assert_in_step(s).rows == 15
    s.delete_paths(["/p/00000.jpg"])
    assert assert_in_step(s).rows == 14


def test_float32_copy_is_extended_not_rebuilt_on_append(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 10))
    _, mat1 = s.vectors("main")
    s.write_images(records(10, 5, seed=3))
    table = s.vector_table("main")
    assert table._f32 is not None and table._f32.shape == (15, DIM)  # carried over, ready before vectors()
    np.testing.assert_array_equal(table._f32[:10], mat1)
    assert_in_step(s)


def test_rows_of_ids_and_vectors_of_rows(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 8))
    table = s.vector_table("main")
    rows = table.rows_of_ids([int(table.ids[5]), 99999, -1])
    assert rows.tolist() == [5, -1, -1]
    np.testing.assert_array_equal(table.vectors_of_rows([5]), np.asarray(table.mat16[[5]], np.float32))


@pytest.mark.parametrize("space", ["main", "image"])
def test_each_space_has_its_own_files(tmp_path, space):
    s = SQLiteStore(tmp_path)
    vec = l2_normalize(np.ones(DIM, np.float32))
    s.write_images([ImageRecord("/p/a.jpg", 1, 1, "h", {}, {"main": vec, "image": -vec})])
    table = s.vector_table(space)
    assert table.rows == 1 and (tmp_path / "cache" / f"vectors-{space}.json").is_file()
    np.testing.assert_allclose(table.vectors_of_rows([0])[0], vec if space == "main" else -vec, atol=1e-3)


def test_disk_bytes_counts_the_cache(tmp_path):
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 100))
    db_only = sum(p.stat().st_size for p in tmp_path.glob(DB_NAME + "*"))
    s.vectors("main")
    assert s.disk_bytes() >= db_only + 100 * DIM * 2


def test_rows_deleted_behind_the_epochs_back_are_noticed(tmp_path):
    """A row removed without bumping vec_epoch (another writer): the row counts disagree, the files are rebuilt."""
    s = SQLiteStore(tmp_path)
    s.write_images(records(0, 5))
    assert_in_step(s)
    s.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("DELETE FROM vectors WHERE seq = 2")
    conn.commit()
    conn.close()
    assert assert_in_step(SQLiteStore(tmp_path)).rows == 4

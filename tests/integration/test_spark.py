"""Spark indexing (picseek.scale): Spark in local mode on images the tests make, shards merged into libraries.

One SparkSession for the module (local[2,2]: two cores, a failed task is tried twice). The Spark jobs use the
built-in model (real weights, no download) for the equivalence with the single-machine pipeline, and a small
colour model pickled to the workers for the retry check. The merge checks without Spark use hand-made shards.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from picseek import Library
from picseek.errors import ModelMismatchError, UsageError
from picseek.ingest import contenthash
from picseek.scale import shards
from picseek.store.base import ImageRecord

from conftest import ColourEmbedder, make_folder
from needs import need_module, need_program

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    need_module("pyspark")
    need_program("java")
    from pyspark import cloudpickle

    from picseek.scale.spark import spark_session

    # the workers cannot import the tests: the test models' code travels with the tasks (by value)
    cloudpickle.register_pickle_by_value(sys.modules[ColourEmbedder.__module__])
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    # the Python workers inherit this environment once, at start-up: the same isolation the autouse fixture gives
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PICSEEK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "picseek-cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        mp.setenv("OMP_NUM_THREADS", "1")
        with spark_session("local[2,2]", conf={"spark.sql.shuffle.partitions": "2",
                                               "spark.ui.showConsoleProgress": "false"}) as session:
            session.sparkContext.setLogLevel("ERROR")
            yield session


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """6 photos in two folders and a broken JPEG."""
    root = tmp_path_factory.mktemp("spark-photos")
    make_folder(root / "a", 4)
    make_folder(root / "b", 2, prefix="other")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def builtin_shards(spark, photos, tmp_path_factory):
    from picseek.models import registry
    from picseek.scale.spark import index_on_spark

    # one model here first fills the built-in model's class-text cache, which the two workers then read instead of
    # both computing it
    emb = registry.load_embedder("builtin")
    emb.embed_pixels(np.zeros((1, emb.image_spec.size, emb.image_spec.size, 3), np.uint8))
    out = tmp_path_factory.mktemp("shards") / "builtin"
    report = index_on_spark(spark, photos, out, model="builtin", batch_size=4)
    return out, report


def read_shards(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(folder).to_pylist()


def vectors_of(rows: list[dict], space: str) -> dict[str, np.ndarray]:
    return {r["path"]: np.frombuffer(dict(r["vectors"])[space], dtype="<f4") for r in rows if r["error"] is None}


def stored(lib: Library, space: str) -> dict[str, np.ndarray]:
    ids, mat = lib.store.vectors(space)
    paths = {i: r["path"] for i, r in lib.store.get_images(ids).items()}
    return {paths[i]: v for i, v in zip(ids, mat)}


# ---------------------------------------------------------------------------------------------- Spark


def test_spark_rows_and_error_rows(builtin_shards, photos):
    out, report = builtin_shards
    assert (report.inputs, report.embedded, report.errors) == (7, 6, 1)
    rows = read_shards(out)
    assert len(rows) == 7 and len({r["path"] for r in rows}) == 7
    broken = [r for r in rows if r["error"] is not None]
    assert [r["path"] for r in broken] == [str(photos / "a" / "broken.jpg")]
    assert broken[0]["vectors"] is None and "JPEG" in broken[0]["error"]
    assert report.error_samples[0][0] == str(photos / "a" / "broken.jpg")
    good = [r for r in rows if r["error"] is None]
    assert {r["model"] for r in rows} == {"builtin"}
    for r in good:
        st = os.stat(r["path"])
        assert (r["size"], r["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        assert r["content_hash"] == contenthash.hash_bytes(Path(r["path"]).read_bytes())  # the current kind
        assert sorted(dict(r["vectors"])) == ["image", "main"]


def test_spark_and_single_machine_give_the_same_vectors(builtin_shards, photos, tmp_path):
    out, _ = builtin_shards
    rows = read_shards(out)
    local = Library(tmp_path / "local", model="builtin")
    local.index([photos], workers=0, batch_size=4)
    assert rows[0]["model_id"] == local.recorded_model["model_id"]
    for space in ("main", "image"):
        spark_vecs, local_vecs = vectors_of(rows, space), stored(local, space)
        assert sorted(spark_vecs) == sorted(local_vecs) and len(local_vecs) == 6
        for path, v in spark_vecs.items():
            w = local_vecs[path]
            cos = float(v @ w / (np.linalg.norm(v) * np.linalg.norm(w)))
            assert cos >= 0.9999, (space, path, cos)
    # merging into the library that indexed the same files adds nothing: same paths, same content
    report = local.merge([out])
    assert (report.added, report.updated, report.unchanged, report.errors, report.skipped_errors) == (0, 0, 6, 0, 1)


def test_merge_is_idempotent_and_records_errors(builtin_shards, photos, tmp_path):
    out, _ = builtin_shards
    lib = Library(tmp_path / "lib", create=True)
    first = lib.merge([out])
    assert (first.rows, first.added, first.errors) == (7, 6, 1)
    assert lib.recorded_model["name"] == "builtin" and lib.recorded_model["spaces"] == {"main": 384, "image": 1280}
    assert lib.store.count() == 6
    assert [e["path"] for e in lib.errors()] == [str(photos / "a" / "broken.jpg")]
    before = stored(lib, "main")
    again = lib.merge([out, out])
    assert (again.added, again.updated, again.unchanged, again.errors) == (0, 0, 12, 0)
    assert lib.store.count() == 6 and len(lib.errors()) == 1
    after = stored(lib, "main")
    assert all(np.array_equal(before[p], after[p]) for p in before)
    hits = lib.search("id:1", limit=3)
    assert hits and hits[0].path in before


def test_model_mismatch_is_refused(builtin_shards, tmp_path):
    out, _ = builtin_shards
    lib = Library(tmp_path / "colour", model=ColourEmbedder())
    lib.store.set_model({"name": "test-colour", "model_id": "test-colour@1", "dim": 8, "spaces": {"main": 8}})
    with pytest.raises(ModelMismatchError, match="builtin"):
        lib.merge([out])
    assert lib.store.count() == 0 and lib.errors() == []


class _FlakyColour(ColourEmbedder):
    """Fails the first attempt of partition 0 (after writing a marker), like a lost executor would."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def embed_pixels(self, pixels):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
            Path(self.marker).write_text("failed once")
            raise RuntimeError("injected task failure")
        return super().embed_pixels(pixels)


def test_retried_task_leaves_no_duplicates(spark, photos, tmp_path):
    from picseek.scale.spark import index_on_spark

    marker = tmp_path / "failed-once"
    paths = sorted(str(p) for p in photos.rglob("*.jpg"))
    report = index_on_spark(spark, paths, tmp_path / "shards", model=lambda: _FlakyColour(str(marker)),
                            partitions=2)
    assert marker.read_text() == "failed once"  # the first attempt really failed
    rows = read_shards(tmp_path / "shards")
    assert sorted(r["path"] for r in rows) == paths  # every input once, none twice
    assert (report.embedded, report.errors) == (6, 1)
    # writing the same job again replaces the shards: still one row per input
    marker.unlink()
    index_on_spark(spark, paths, tmp_path / "shards", model=lambda: _FlakyColour(str(marker)), partitions=2)
    assert sorted(r["path"] for r in read_shards(tmp_path / "shards")) == paths


class _BrokenModel(ColourEmbedder):
    def embed_pixels(self, pixels):
        raise RuntimeError("the model exploded")


def test_a_task_that_always_fails_is_one_clear_error(spark, photos, tmp_path):
    from picseek.scale.spark import SparkError, index_on_spark

    with pytest.raises(SparkError) as err:
        index_on_spark(spark, photos / "b", tmp_path / "shards", model=_BrokenModel)
    assert str(err.value).startswith("the Spark job failed: RuntimeError: the model exploded")
    assert "\n" not in str(err.value)


def test_dataframe_input(spark, photos, tmp_path):
    from picseek.scale.spark import index_on_spark

    files = sorted(photos.rglob("img_*.jpg"))
    frame = spark.createDataFrame([(f.as_uri(), i) for i, f in enumerate(files)] + [(None, 9)], "url string, n int")
    report = index_on_spark(spark, frame, tmp_path / "shards", model=ColourEmbedder)
    assert (report.inputs, report.embedded, report.errors) == (4, 4, 0)
    rows = read_shards(tmp_path / "shards")
    assert sorted(r["path"] for r in rows) == [str(f) for f in files]  # file:// URLs kept as local paths
    assert {r["model_id"] for r in rows} == {"test-colour@1"}


def test_cli_index_from_list_on_spark(spark, photos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from picseek.cli import main

    files = sorted(photos.rglob("img_*.jpg"))
    listing = tmp_path / "lists" / "paths.parquet"
    listing.parent.mkdir()
    names = [str(files[0]), files[1].as_uri(), os.path.relpath(files[2], listing.parent), str(files[0]),
             str(photos / "gone.jpg")]
    pq.write_table(pa.table({"id": list(range(len(names))), "path": names}), listing)
    lib = tmp_path / "lib"
    main(["--library", str(lib), "index", "--engine", "spark", "--master", "local[2]", "--from-list", str(listing),
          "--model", "builtin"])
    with Library(lib, create=False) as got:
        assert sorted(got.store.file_states([])) == sorted(str(f) for f in files[:3])
        assert [e["path"] for e in got.errors()] == [str(photos / "gone.jpg")]
        assert "no such file" in got.errors()[0]["reason"]
    assert not list(lib.glob("spark-shards-*"))  # the temporary shards are gone after the merge


def test_spark_job_entry_point_writes_and_merges(spark, photos, tmp_path, capsys):
    from picseek.scale import spark_job

    lib = tmp_path / "lib"
    Library(lib).store.set_model({"name": "test-colour", "model_id": "test-colour@1", "dim": 8,
                                  "spaces": {"main": 8}})  # a library whose model is not builtin
    assert spark_job.main([str(photos / "b"), "--shards", str(tmp_path / "s1"), "--library", str(lib),
                           "--model", "builtin", "--merge"]) == 2  # another model than the library's: a usage error
    assert "indexed with test-colour" in capsys.readouterr().err
    code = spark_job.main([str(photos / "b"), "--shards", str(tmp_path / "s2"), "--library", str(tmp_path / "new"),
                           "--model", "builtin", "--merge", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    assert '"added": 2' in out and '"embedded": 2' in out


# ---------------------------------------------------------------------------------------------- without Spark


def write_shard(path: Path, records, errors=(), model="test-colour", model_id="test-colour@1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shards.write_shard(path, shards.shard_rows(records, list(errors), model, model_id))
    return path


def record(path: str, seed: int, digest: str = "") -> ImageRecord:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return ImageRecord(path, 100 + seed, 10**18 + seed, digest or f"{seed:032x}", {"width": 32, "height": 32},
                       {"main": v / np.linalg.norm(v)})


def test_merge_updates_changed_content_and_skips_same(tmp_path):
    write_shard(tmp_path / "s1" / "part-0.parquet", [record("/x/a.jpg", 1), record("/x/b.jpg", 2)],
                [("/x/c.jpg", 7, 8, "truncated JPEG")])
    write_shard(tmp_path / "s2" / "part-0.parquet", [record("/x/a.jpg", 1), record("/x/b.jpg", 3)])
    lib = Library(tmp_path / "lib")
    assert lib.merge([tmp_path / "s1"]).added == 2
    second = lib.merge([tmp_path / "s2"])
    assert (second.added, second.updated, second.unchanged) == (0, 1, 1)
    assert lib.store.file_states([])["/x/b.jpg"].content_hash == f"{3:032x}"
    assert lib.recorded_model == {"name": "test-colour", "model_id": "test-colour@1", "dim": 8,
                                  "spaces": {"main": 8}}


def test_shards_and_merge_keep_any_file_name(tmp_path):
    odd = [os.fsdecode(b"/x/bad_\xff.jpg"), "/x/line\nbreak.jpg", os.fsdecode(b"/x/caf\xe9.jpg")]
    write_shard(tmp_path / "s" / "part-0.parquet", [record(odd[0], 1), record(odd[1], 2)], [(odd[2], 7, 8, "bad")])
    assert sorted(r.path for batch in shards.read_shard(tmp_path / "s" / "part-0.parquet") for r in batch) == \
        sorted(odd)
    lib = Library(tmp_path / "lib")
    assert lib.merge([tmp_path / "s"]).added == 2
    assert set(lib.store.file_states([])) == set(odd[:2]) and [e["path"] for e in lib.errors()] == [odd[2]]


def test_merge_refuses_mixed_models_and_non_shards(tmp_path):
    write_shard(tmp_path / "m" / "part-0.parquet", [record("/x/a.jpg", 1)])
    write_shard(tmp_path / "m" / "part-1.parquet", [record("/x/b.jpg", 2)], model="other", model_id="other@2")
    lib = Library(tmp_path / "lib")
    with pytest.raises(UsageError, match="several models"):
        lib.merge([tmp_path / "m"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["/x/a.jpg"]}), tmp_path / "not-a-shard.parquet")
    with pytest.raises(UsageError, match="not a picseek shard"):
        lib.merge([tmp_path / "not-a-shard.parquet"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no shards"):
        lib.merge([tmp_path / "empty"])
    assert lib.store.count() == 0


def test_cli_merge_and_option_checks(tmp_path):
    from picseek.cli import cli

    write_shard(tmp_path / "s" / "part-0.parquet", [record("/x/a.jpg", 1)], [("/x/c.jpg", 7, 8, "truncated JPEG")])
    runner = CliRunner()
    lib = str(tmp_path / "lib")
    res = runner.invoke(cli, ["--library", lib, "merge", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "1 added" in res.output and "1 errors" in res.output
    res = runner.invoke(cli, ["--library", lib, "merge", str(tmp_path / "s"), "--json"])
    assert '"added": 0' in res.output and '"unchanged": 1' in res.output
    for args, message in [(["--master", "local[2]"], "--master goes with --engine spark"),
                          (["--engine", "spark", "--workers", "2"], "--workers does not apply with --engine spark")]:
        res = runner.invoke(cli, ["--library", lib, "index", str(tmp_path), *args])
        assert res.exit_code == 2 and message in res.output


def test_shards_folder_with_other_files_is_refused(tmp_path):
    from picseek.scale.spark import index_on_spark

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        index_on_spark("local[1]", [str(tmp_path / "x.jpg")], tmp_path / "out", model="builtin")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.usefixtures("offline_hub")
def test_mining_reranks_on_spark_as_it_does_here(tmp_path, spark, monkeypatch):
    """issue 18: the (query, candidate) pairs scored by a tiny random BLIP in the Python workers: the same scores
    and order as re-ranking in this process; `picseek mine --engine spark` too."""
    from picseek.cli import cli
    from picseek.scale.spark import mine_on_spark

    import tiny_models

    make_folder(tmp_path / "photos", 8)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([tmp_path / "photos"], workers=0)
    blip = str(tiny_models.make_tiny_blip_itm(tmp_path / "blip"))
    queries = ["red", "a blue circle", "green square"]
    local, _ = lib.mine(queries, top=5, rerank=blip)
    remote, report = mine_on_spark(spark, lib, queries, top=5, rerank=blip, partitions=2,
                                   out=tmp_path / "hits.parquet")
    assert report.rows == 15 and report.unreadable == 0
    assert remote["path"] == local["path"] and remote["rank"] == local["rank"]
    assert all(abs(a - b) < 1e-4 for a, b in zip(remote["rerank_score"], local["rerank_score"]))
    # the CLI's --engine spark on the same (active) session
    monkeypatch.setattr("picseek.models.registry.load_embedder", lambda name, **kw: ColourEmbedder())
    (tmp_path / "q.txt").write_text("\n".join(queries))
    r = CliRunner().invoke(cli, ["--library", str(lib.path), "mine", str(tmp_path / "q.txt"), "--top", "5",
                                 "--rerank", blip, "--engine", "spark", "--out", str(tmp_path / "h.csv")])
    assert r.exit_code == 0, r.output
    assert "re-ranked by" in r.output

"""Vectors in and out (issue 18): `import-embeddings` from clip-retrieval's layout, an .npy with an id list and
Parquet with a vector column; `export` to clip-retrieval and Parquet; the round trip gives the same vectors and the
same search results; dimension and model checks; reruns; rows that name no local file."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from picseek import Library
from picseek.cli import cli
from picseek.errors import ModelError, ModelMismatchError, UsageError
from picseek.ingest.embeddings import detect_format
from picseek.models import registry
from picseek.models.base import Backend, ModelSpec

from conftest import ColourEmbedder, make_folder


@pytest.fixture
def indexed(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 8)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([photos], workers=0)
    ids = sorted(lib.store.get_images(list(range(1, 9))))
    lib.store.set_fields([(ids[0], {"caption": "a red square"}), (ids[1], {"caption": "a green circle"})])
    return lib, photos


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    ids, mat = lib.store.vectors("main")
    paths = lib.store.get_images([int(i) for i in ids])
    return {paths[int(i)]["path"]: mat[n] for n, i in enumerate(ids)}


def _results(lib: Library, text: str) -> list[str]:
    return [h.path for h in lib.search(text, limit=8, keywords=False)]


@pytest.mark.parametrize("fmt,dtype", [("clip-retrieval", "float32"), ("parquet", "float32"),
                                       ("parquet", "float16")])
def test_round_trip_gives_the_same_vectors_and_results(tmp_path, indexed, fmt, dtype):
    lib, photos = indexed
    out = tmp_path / ("export" if fmt == "clip-retrieval" else "export.parquet")
    report = lib.export_embeddings(out, format=fmt, dtype=dtype)
    assert report.rows == 8
    assert detect_format(out) == fmt
    again = Library(tmp_path / "again", model=ColourEmbedder())
    got = again.import_embeddings(out)
    assert (got.added, got.local, got.bad_vectors) == (8, 8, 0)
    before, after = _vectors(lib), _vectors(again)
    assert before.keys() == after.keys()
    for path, v in before.items():
        assert float(v @ after[path]) > 0.999
    for text in ("red", "green", "blue thing"):
        assert _results(again, text) == _results(lib, text)
    captions = {h.path: h.fields.get("description") for h in again.search("red", limit=8, keywords=False)}
    assert "a red square" in captions.values()  # `caption` is imported as `description`, as import-metadata does
    # the files were stat'ed: indexing their folder embeds nothing and keeps every image
    colour = again.embedder()
    calls = colour.calls
    rep = again.index([photos], workers=0)
    assert (rep.embedded, colour.calls, again.store.count()) == (0, calls, 8)


def test_clip_retrieval_layout_with_several_files_and_non_local_rows(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cr"
    (folder / "embeddings" / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for n, count in enumerate((5, 3)):
        np.save(folder / "embeddings" / "img_emb" / f"img_emb_{n}.npy", rng.normal(size=(count, 8)).astype("f2"))
        pq.write_table(pa.table({"image_path": [f"shard{n}/{i:04d}.jpg" for i in range(count)],
                                 "caption": [f"caption {n} {i}" for i in range(count)],
                                 "url": [f"https://example.com/{n}/{i}.jpg" if i else None for i in range(count)]}),
                       folder / "metadata" / f"metadata_{n}.parquet")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    report = lib.import_embeddings(folder)
    assert (report.format, report.rows, report.added, report.urls, report.ids) == ("clip-retrieval", 8, 8, 6, 2)
    paths = {r["path"] for r in lib.store.get_images(list(range(1, 20))).values()}
    assert "https://example.com/1/2.jpg" in paths and "image_path:shard0/0000.jpg" in paths
    hits = lib.search("red", limit=3, keywords=False)
    assert len(hits) == 3 and all(h.fields.get("description", "").startswith("caption") for h in hits)
    # a rerun skips what is in
    again = lib.import_embeddings(folder)
    assert (again.added, again.unchanged) == (0, 8)
    assert lib.store.count() == 8


def test_npy_with_an_id_list_bad_rows_and_dimension(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(6, 8)).astype(np.float32)
    vecs[2] = 0
    vecs[4, 3] = np.nan
    np.save(tmp_path / "features.npy", vecs)
    (tmp_path / "photo_ids.csv").write_text("photo_id,photographer\n" + "".join(f"p{i},ann\n" for i in range(6)))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    report = lib.import_embeddings(tmp_path / "features.npy")
    assert (report.format, report.column, report.added, report.bad_vectors) == ("npy", "photo_id", 4, 2)
    stored = _vectors(lib)
    assert set(stored) == {"photo_id:p0", "photo_id:p1", "photo_id:p3", "photo_id:p5"}
    want = vecs[5] / np.linalg.norm(vecs[5])
    assert float(stored["photo_id:p5"] @ want) > 0.999  # L2-normalised on the way in
    hit = lib.search("red", limit=1, keywords=False)[0]
    assert hit.fields == {"photographer": "ann"}  # the id is the path; other columns are fields
    # Unsplash's metadata joins the imported ids by photo_id, as it joins <photo_id>.jpg files
    (tmp_path / "photos.tsv").write_text("photo_id\tphoto_description\np3\ta dog\np5\ta cat\nzz\tnothing\n")
    meta = lib.import_metadata(tmp_path / "photos.tsv")
    assert (meta.key, meta.matched, meta.unmatched) == ("id", 2, 1)
    assert {h.fields.get("description") for h in lib.search("red", limit=4, keywords=False)} >= {"a dog", "a cat"}
    # a plain text list beside another file; the vectors are too wide for the library's model
    np.save(tmp_path / "wide.npy", rng.normal(size=(2, 16)).astype(np.float32))
    (tmp_path / "wide.txt").write_text("a\nb\n")
    with pytest.raises(ModelMismatchError, match="16 dimensions"):
        lib.import_embeddings(tmp_path / "wide.npy")
    np.save(tmp_path / "short.npy", rng.normal(size=(3, 8)).astype(np.float32))
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(UsageError, match="3 vectors but .* 2 rows"):
        lib.import_embeddings(tmp_path / "short.npy")
    assert lib.store.count() == 4


@pytest.fixture
def emb8(monkeypatch):
    """A backend `emb8:NAME` of 8-d models whose weights are not here (the spec knows the dimension)."""
    monkeypatch.setitem(registry._registered, "emb8", Backend(
        "emb8", lambda spec, **kw: ColourEmbedder(spec.name),
        spec=lambda source: ModelSpec(f"emb8:{source}", "emb8", source, dim=8), cached=lambda spec: False))


def test_parquet_with_binary_vectors_and_a_named_model_checked_without_weights(tmp_path, emb8):
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(4, 8)).astype(np.float16)
    pq.write_table(pa.table({"key": ["k0", "k1", "k2", "k3"], "emb": [v.tobytes() for v in vecs],
                             "tags": ["cat, dog", "", "cat", None]}), tmp_path / "v.parquet")
    lib = Library(tmp_path / "lib")
    with pytest.raises(UsageError, match="name the model"):
        lib.import_embeddings(tmp_path / "v.parquet")
    with pytest.raises(ModelMismatchError, match="16 bytes, neither float32 nor float16 vectors of 512"):
        Library(tmp_path / "other").import_embeddings(tmp_path / "v.parquet", model="clip-vit-b-32")
    report = lib.import_embeddings(tmp_path / "v.parquet", model="emb8:x")
    assert (report.added, report.tags_written) == (4, 3)
    rec = lib.recorded_model
    assert rec["name"] == "emb8:x" and registry.is_unverified(rec)
    assert lib.tag_counts() == {"cat": 2, "dog": 1}
    # another model is refused; loading the named one verifies the record
    with pytest.raises(ModelMismatchError):
        lib.import_embeddings(tmp_path / "v.parquet", model="emb8:y")
    lib.embedder()
    assert lib.recorded_model["model_id"] == "emb8:x@1"
    with pytest.raises(ModelError, match="not known without its weights"):
        registry.record_for("hf:org/unknown")


def test_export_refuses_an_existing_target_and_bad_options(tmp_path, indexed):
    lib, _ = indexed
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(UsageError, match="exists"):
        lib.export_embeddings(tmp_path / "taken", format="clip-retrieval")
    with pytest.raises(UsageError, match="dtype"):
        lib.export_embeddings(tmp_path / "e.parquet", dtype="int8")
    assert not (tmp_path / "e.parquet").exists()


def test_cli_import_and_export(tmp_path, indexed, emb8):
    lib, _ = indexed
    out = tmp_path / "cr"
    r = CliRunner().invoke(cli, ["--library", str(lib.path), "export", "--format", "clip-retrieval",
                                 "--dtype", "float16", str(out)])
    assert r.exit_code == 0, r.output
    assert np.load(out / "img_emb" / "img_emb_0.npy").dtype == np.float16
    r = CliRunner().invoke(cli, ["--library", str(tmp_path / "new"), "import-embeddings", str(out), "--model",
                                 "emb8:x", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["added"] == 8
    r = CliRunner().invoke(cli, ["--library", str(tmp_path / "bad"), "import-embeddings", str(tmp_path)])
    assert isinstance(r.exception, UsageError) and "name the model" in str(r.exception)


def test_an_interrupted_import_keeps_whole_batches_and_a_rerun_finishes(tmp_path, monkeypatch):
    from picseek.ingest import embeddings

    rng = np.random.default_rng(3)
    np.save(tmp_path / "v.npy", rng.normal(size=(10, 8)).astype(np.float32))
    (tmp_path / "v.txt").write_text("".join(f"https://example.com/{i}.jpg\n" for i in range(10)))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    real, calls = lib.store.write_images, []

    def write_then_stop(records, errors):
        calls.append(len(records))
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(records, errors)

    monkeypatch.setattr(lib.store, "write_images", write_then_stop)
    record = {"name": "test-colour", "model_id": "test-colour@1", "dim": 8, "spaces": {"main": 8}}
    with pytest.raises(KeyboardInterrupt):
        embeddings.import_embeddings(lib.store, tmp_path / "v.npy", record, batch_rows=4)
    assert lib.store.count() == 8 and lib.last_run()["status"] == "interrupted"
    monkeypatch.setattr(lib.store, "write_images", real)
    report = embeddings.import_embeddings(lib.store, tmp_path / "v.npy", record, batch_rows=4)
    assert (report.unchanged, report.added, lib.store.count()) == (8, 2, 10)


def test_files_imported_without_a_hash_keep_thumbnails_apart(tmp_path, indexed):
    from picseek.server import thumbs

    lib, _ = indexed
    out = tmp_path / "e.parquet"
    lib.export_embeddings(out)
    again = Library(tmp_path / "again", model=ColourEmbedder())
    again.import_embeddings(out, hash_files=False)
    rows = list(again.store.get_images(list(range(1, 9))).values())
    assert {r["content_hash"] for r in rows} == {""} and rows[0]["width"] == 320
    made = set()
    for row in rows[:2]:
        with open(row["path"], "rb") as f:
            made.add(thumbs.thumbnail(again.path, row, 160, 10**8, f))
    assert len(made) == 2


def test_chromadb_store_imports_exports_and_mines(tmp_path, indexed):
    pytest.importorskip("chromadb")
    lib, photos = indexed
    lib.export_embeddings(tmp_path / "e.parquet")
    chroma = Library(tmp_path / "c", model=ColourEmbedder(), store=f"chroma://{tmp_path}/chroma?collection=imported")
    assert chroma.import_embeddings(tmp_path / "e.parquet").added == 8
    assert _results(chroma, "red") == _results(lib, "red")
    cols, _ = chroma.mine(["red"], top=3)
    assert cols["path"] == _results(lib, "red")[:3]
    assert chroma.index([photos], workers=0).embedded == 0
    chroma.export_embeddings(tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").num_rows == 8


def test_shards_of_the_named_model_verify_an_imported_library(tmp_path, emb8):
    from picseek.scale import shards
    from picseek.store.base import ImageRecord

    np.save(tmp_path / "v.npy", np.eye(8, dtype=np.float32)[:2])
    (tmp_path / "v.txt").write_text("a\nb\n")
    lib = Library(tmp_path / "lib")
    lib.import_embeddings(tmp_path / "v.npy", model="emb8:x")
    assert registry.is_unverified(lib.recorded_model)
    rec = ImageRecord("/elsewhere/c.jpg", 1, 2, "ab" * 16, {}, {"main": np.eye(8, dtype=np.float32)[3]})
    (tmp_path / "shards").mkdir()
    shards.write_shard(tmp_path / "shards" / "part-0.parquet", shards.shard_rows([rec], [], "emb8:x", "emb8:x@7"))
    assert lib.merge([tmp_path / "shards"]).added == 1
    assert lib.recorded_model["model_id"] == "emb8:x@7" and lib.store.count() == 3
    shards.write_shard(tmp_path / "shards" / "part-0.parquet", shards.shard_rows([rec], [], "emb8:y", "emb8:y@1"))
    with pytest.raises(ModelMismatchError):
        lib.merge([tmp_path / "shards"])


def test_a_rerun_reads_no_file_it_holds_already(tmp_path, indexed, monkeypatch):
    from picseek.ingest import embeddings

    lib, photos = indexed
    lib.export_embeddings(tmp_path / "e.parquet")
    again = Library(tmp_path / "again", model=ColourEmbedder())
    reads = []
    real = embeddings.file_hash
    monkeypatch.setattr(embeddings, "file_hash", lambda p: reads.append(p) or real(p))
    again.import_embeddings(tmp_path / "e.parquet")
    assert len(reads) == 8
    (photos / "img_000.jpg").write_bytes((photos / "img_001.jpg").read_bytes())  # one file changed since
    report = again.import_embeddings(tmp_path / "e.parquet")
    assert (report.unchanged, report.updated, len(reads)) == (7, 1, 9)


def test_parquet_needs_its_extra_and_says_so(tmp_path, indexed, monkeypatch):
    from picseek import extras
    from picseek.errors import MissingExtraError

    lib, _ = indexed
    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name == "pyarrow" else real(name))
    with pytest.raises(MissingExtraError, match=r"picseek\[parquet\]"):
        lib.export_embeddings(tmp_path / "e.parquet")
    with pytest.raises(MissingExtraError, match=r"picseek\[parquet\]"):
        lib.mine(["red"], out=tmp_path / "h.parquet")
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "h.parquet").exists()

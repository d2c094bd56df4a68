"""One store contract, every backend: the built-in SQLite store, a ChromaDB server (a real `chroma run` on a free
loopback port, started once for this module) and an embedded ChromaDB folder. Each test gets a fresh library (and a
fresh ChromaDB collection). Indexing goes through Library/run_index with the ColourEmbedder test double."""
from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from picseek.errors import LibraryError, ModelMismatchError, UsageError
from picseek.library import Library
from picseek.store.base import ImageRecord
from picseek.store.select import open_store

from conftest import ColourEmbedder, draw_photo, make_folder
from needs import need_module, need_program

BACKENDS = ["sqlite", "chroma-server", "chroma-embedded"]
CHROMA = BACKENDS[1:]
_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_heartbeat(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"chroma run exited ({proc.returncode}):\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"chroma run did not answer its heartbeat in {timeout} s")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """The port of a ChromaDB server on loopback, with its data in a temporary folder; stopped at the end."""
    need_module("chromadb")
    exe = need_program("chroma", str(Path(sys.executable).with_name("chroma")))
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = data / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data / "db")],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for_heartbeat(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _url(backend: str, request, tmp_path: Path) -> str:
    if backend == "sqlite":
        return ""
    need_module("chromadb")
    name = f"c{next(_names)}-{os.getpid()}"  # a fresh collection for each test
    if backend == "chroma-server":
        return f"chroma://127.0.0.1:{request.getfixturevalue('chroma_server')}/{name}"
    return f"chroma://{tmp_path}/chroma-db?collection={name}"


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    return _url(request.param, request, tmp_path)


@pytest.fixture(params=CHROMA)
def chroma_url(request, tmp_path) -> str:
    return _url(request.param, request, tmp_path)


@pytest.fixture
def server_url(request, tmp_path) -> str:
    """A fresh collection on the ChromaDB server (for the checks one ChromaDB backend is enough for)."""
    return _url("chroma-server", request, tmp_path)


def rec(path, vec=(1.0, 0.0, 0.0), image=None, size=10, mtime=1, h="h", **info) -> ImageRecord:
    info = {"width": 4, "height": 3, "format": "JPEG", "taken_at": "2021-06-01T10:00:00", **info}
    vectors = {"main": np.asarray(vec, np.float32)}
    if image is not None:
        vectors["image"] = np.asarray(image, np.float32)
    return ImageRecord(path, size, mtime, h, info, vectors)


def _exif(make=None, model=None, taken=None, lens=None) -> bytes:
    exif = Image.Exif()
    if make:
        exif[ExifTags.Base.Make] = make
    if model:
        exif[ExifTags.Base.Model] = model
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if taken:
        sub[ExifTags.Base.DateTimeOriginal] = taken
    if lens:
        sub[ExifTags.Base.LensModel] = lens
    return exif.tobytes()


def varied_folder(root: Path) -> Path:
    """Photos with different sizes, cameras, dates and folders (what the filters compare)."""
    photos = root / "photos"
    make_folder(photos / "trips" / "rome", 4, prefix="rome")
    make_folder(photos / "home", 3, prefix="home")
    shots = [("canon_a.jpg", "red", (640, 480), ("Canon", "Canon EOS R5", "2021:06:01 14:03:22", "RF50mm F1.8")),
             ("canon_b.jpg", "blue", (200, 300), ("Canon", "EOS 5D", "2021:12:31 23:59:59", None)),
             ("nikon.jpg", "green", (320, 240), ("NIKON CORPORATION", "NIKON D750", "2019:03:05 08:00:00", None)),
             ("Mixed Case.JPG", "purple", (500, 500), (None, None, "2020:06:15 12:00:00", None))]
    for name, colour, size, exif in shots:
        draw_photo(colour, size=size, seed=len(name)).save(photos / "trips" / name, exif=_exif(*exif))
    return photos


# -- the store protocol -------------------------------------------------------------------------------------------
def test_write_then_read_images_vectors_and_spaces(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    assert s.count() == 0 and s.is_empty()
    s.write_images([rec("/p/a.jpg", [1, 0, 0], [0, 1]), rec("/p/b.jpg", [0, 0.6, 0.8], [1, 0], camera_make="Canon")])
    assert s.count() == 2 and not s.is_empty() and sorted(s.spaces()) == ["image", "main"]
    ids, mat = s.vectors("main")
    assert mat.dtype == np.float32 and mat.shape == (2, 3) and ids.dtype == np.int64
    rows = s.get_images(ids)
    by_path = {rows[i]["path"]: (i, mat[k]) for k, i in enumerate(ids.tolist())}
    b_id, b_vec = by_path["/p/b.jpg"]
    np.testing.assert_allclose(b_vec, [0, 0.6, 0.8], atol=1e-3)
    np.testing.assert_allclose(s.vector_of(b_id, "image"), [1, 0], atol=1e-3)
    row = rows[b_id]
    assert (row["id"], row["width"], row["camera_make"], row["taken_at"]) == (b_id, 4, "Canon", "2021-06-01T10:00:00")
    assert row["gps_lat"] is None and row["size"] == 10 and row["content_hash"] == "h"
    assert s.find_path("/p/b.jpg") == b_id and s.find_path("/p/none.jpg") is None
    missing = int(ids.max()) + 1000
    assert s.get_images([missing]) == {} and s.vector_of(missing, "main") is None
    image_ids, image_mat = s.vectors("image")
    assert sorted(image_ids.tolist()) == sorted(ids.tolist()) and image_mat.shape == (2, 2)


def test_vectors_of_reads_a_batch_of_images_in_one_space(url, tmp_path):
    """vectors_of: the vectors of many images in one space at once (what vector_of gives one by one), only those
    that have one; ids of no image, repeated ids and a space nobody has are no error."""
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec(f"/p/{n}.jpg", [n, 1, 0], [1, n] if n % 3 else None) for n in range(520)])  # (> one chunk)
    ids = {s.get_images([i])[i]["path"]: i for i in s.vectors("main")[0].tolist()}
    wanted = [ids[f"/p/{n}.jpg"] for n in range(520)]
    missing = max(wanted) + 1000
    got = s.vectors_of(wanted + [missing, wanted[1], -1, 10**30], "image")
    assert sorted(got) == sorted(ids[f"/p/{n}.jpg"] for n in range(520) if n % 3)
    for n in (1, 2, 518):
        i = ids[f"/p/{n}.jpg"]
        assert got[i].dtype == np.float32
        np.testing.assert_allclose(got[i], [1, n], rtol=1e-3)
        np.testing.assert_array_equal(got[i], s.vector_of(i, "image"))
    assert s.vector_of(ids["/p/3.jpg"], "image") is None and ids["/p/3.jpg"] not in got
    main = s.vectors_of(wanted[:3], "main")
    np.testing.assert_allclose([main[i] for i in wanted[:3]], [[0, 1, 0], [1, 1, 0], [2, 1, 0]], rtol=1e-3)
    assert s.vectors_of(wanted, "nowhere") == {} and s.vectors_of([], "main") == {}


def test_rewriting_a_path_keeps_its_id_and_replaces_its_facts(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg", [1, 0], camera_make="Canon", gps_lat=1.5)])
    first = s.find_path("/p/a.jpg")
    s.write_images([rec("/p/a.jpg", [0, 1], size=99, mtime=5, h="h2", width=8, taken_at=None)])
    assert s.count() == 1 and s.find_path("/p/a.jpg") == first
    state = s.file_states(["/p"])["/p/a.jpg"]
    assert (state.id, state.size, state.mtime_ns, state.content_hash) == (first, 99, 5, "h2")
    row = s.get_images([first])[first]
    assert row["width"] == 8 and (row["camera_make"], row["gps_lat"], row["taken_at"]) == (None, None, None), \
        "facts the new version of the file lacks are gone"
    np.testing.assert_allclose(s.vector_of(first, "main"), [0, 1], atol=1e-3)


def test_file_states_are_limited_to_the_roots(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg"), rec("/p/sub/b.jpg"), rec("/pp/c.jpg"), rec("/q/d.jpg")])
    assert set(s.file_states(["/p"])) == {"/p/a.jpg", "/p/sub/b.jpg"}  # not /pp, a sibling with the same prefix
    assert set(s.file_states(["/p/sub/", "/q"])) == {"/p/sub/b.jpg", "/q/d.jpg"}
    assert set(s.file_states(["/p/a.jpg"])) == {"/p/a.jpg"}  # a file as a root
    assert len(s.file_states([])) == 4 and len(s.file_states(["/"])) == 4


def test_errors_are_known_until_the_file_indexes_or_goes(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg")])
    s.write_images([], [("/p/a.jpg", 5, 6, "broken"), ("/p/x.jpg", 7, 8, "truncated"), ("/q/y.jpg", 1, 2, "bad")])
    assert s.count() == 0, "a file that is now broken leaves the index"
    assert s.known_errors(["/p"]) == {"/p/a.jpg": (5, 6), "/p/x.jpg": (7, 8)}
    assert s.error_count() == 3 and [e["path"] for e in s.errors()] == ["/p/a.jpg", "/p/x.jpg", "/q/y.jpg"]
    assert s.errors(limit=1)[0]["reason"] == "broken"
    s.write_images([rec("/p/x.jpg")])
    assert s.known_errors(["/p"]) == {"/p/a.jpg": (5, 6)}
    s.delete_paths(["/p/a.jpg"])
    assert s.known_errors(["/p", "/q"]) == {"/q/y.jpg": (1, 2)}


def test_move_keeps_the_id_the_vectors_and_the_image_facts(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg", [1, 0], [0, 1], h="abc", camera_model="EOS")])
    (i,) = s.vectors("main")[0].tolist()
    s.move([(i, "/q/moved.jpg", 11, 22)])
    assert s.find_path("/p/a.jpg") is None and s.find_path("/q/moved.jpg") == i
    assert s.file_states(["/p"]) == {}
    state = s.file_states(["/q"])["/q/moved.jpg"]
    assert (state.id, state.size, state.mtime_ns, state.content_hash) == (i, 11, 22, "abc")
    assert s.get_images([i])[i]["camera_model"] == "EOS"
    np.testing.assert_allclose(s.vector_of(i, "image"), [0, 1], atol=1e-3)
    assert s.count() == 1


def test_deletes_remove_every_space_and_count_what_left(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg", image=[1, 0]), rec("/p/b.jpg", image=[0, 1]), rec("/p/sub/c.jpg", image=[1, 1])])
    a = s.find_path("/p/a.jpg")
    assert s.delete_paths(["/p/a.jpg", "/p/not-there.jpg"]) == 1 and s.delete_paths([]) == 0
    assert a not in s.vectors("image")[0].tolist() and a not in s.vectors("main")[0].tolist()
    assert s.delete_under(["/p/sub"]) == 1
    assert s.count() == 1 and set(s.file_states(["/p"])) == {"/p/b.jpg"}
    assert len(s.vectors("image")[0]) == 1


def test_model_record_and_runs_survive_reopening(url, tmp_path):
    s = open_store(url, tmp_path / "lib")
    assert s.get_model() is None
    model = {"name": "test-colour", "model_id": "test-colour@1", "dim": 8, "spaces": {"main": 8}}
    s.set_model(model)
    run = s.start_run(["/p"])
    s.finish_run(run, "completed", {"added": 3})
    again = open_store(url, tmp_path / "lib", create=False)
    assert again.get_model() == model
    last = again.last_run()
    assert (last["status"], last["roots"], last["stats"]["added"]) == ("completed", ["/p"], 3)
    assert again.roots() == ["/p"]


# -- through the Library ------------------------------------------------------------------------------------------
def test_incremental_index_adds_changes_moves_and_removes(url, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 8)
    emb = ColourEmbedder()
    lib = Library(tmp_path / "lib", model=emb, store=url)
    assert lib.index([photos], workers=0).added == 8
    calls = emb.calls
    again = lib.index([photos], workers=0)
    assert (again.unchanged, again.embedded, emb.calls) == (8, 0, calls), "nothing changed: nothing embedded"
    draw_photo("blue", "circle", size=(300, 200), seed=99).save(photos / "img_000.jpg")
    (photos / "img_001.jpg").unlink()
    (photos / "img_002.jpg").rename(photos / "renamed.jpg")
    draw_photo("green", seed=5).save(photos / "new.jpg")
    r = lib.index([photos], workers=0)
    assert (r.updated, r.removed, r.moved, r.added, r.unchanged) == (1, 1, 1, 1, 5)
    reopened = Library(tmp_path / "lib", model=ColourEmbedder(), store=url, create=False)
    assert reopened.status()["images"] == 8 and reopened.status()["model"] == "test-colour"
    hits = reopened.search("green", limit=20)
    assert {Path(h.path).name for h in hits} == {p.name for p in photos.iterdir()}
    assert reopened.store.get_images([h.id for h in hits if h.path.endswith("img_000.jpg")])
    assert reopened.store.file_states([str(photos)])[str(photos / "img_000.jpg")].size == \
        (photos / "img_000.jpg").stat().st_size


def test_a_broken_file_is_recorded_and_skipped_until_it_changes(url, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    first = lib.index([photos], workers=0)
    assert (first.added, first.errors) == (3, 1) and lib.status()["errors"] == 1
    second = lib.index([photos], workers=0)
    assert (second.skipped_known_errors, second.embedded) == (1, 0)
    draw_photo("red").save(photos / "broken.jpg")
    third = lib.index([photos], workers=0)
    assert (third.added, lib.status()["errors"], lib.status()["images"]) == (1, 0, 4)


def test_another_model_is_refused_and_rebuild_replaces_it(url, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 4)
    Library(tmp_path / "lib", model=ColourEmbedder(), store=url).index([photos], workers=0)
    other = Library(tmp_path / "lib", model=ColourEmbedder("other-model"), store=url)
    with pytest.raises(ModelMismatchError, match="--rebuild"):
        other.index([photos], workers=0)
    assert other.index([photos], workers=0, rebuild=True).added == 4
    assert Library(tmp_path / "lib", store=url).status()["model"] == "other-model"


def test_duplicates_and_remove(url, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 4)
    shutil.copy(photos / "img_001.jpg", photos / "copy.jpg")
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    groups = lib.duplicates(0.999)
    assert [sorted(Path(h.path).name for h in g) for g in groups] == [["copy.jpg", "img_001.jpg"]]
    assert lib.remove([photos / "copy.jpg"]) == 1 and lib.duplicates(0.999) == []
    assert lib.status()["images"] == 4 and (photos / "copy.jpg").exists()


def test_search_with_filters(url, tmp_path):
    photos = varied_folder(tmp_path)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    best = lib.search("purple", limit=1, keywords=False)[0]
    assert best.path.endswith("Mixed Case.JPG") and 0.5 < best.score <= 1.0
    hits = lib.search("red", limit=20, where=["camera~canon", "taken>=2021-06"], keywords=False)
    assert [Path(h.path).name for h in hits] == ["canon_a.jpg", "canon_b.jpg"]
    assert [Path(h.path).name for h in lib.similar(str(photos / "trips" / "canon_a.jpg"), where=["folder=trips"],
                                                  limit=3)] != []
    nothing = lib.search("red", where=["width>5000"])
    assert nothing == [] and "width>5000" in nothing.note


# -- ChromaDB: the same answers as the built-in store -----------------------------------------
FILTERS = [(), ("width>=400",), ("width<300",), ("height=480",), ("size>26000",), ("taken>=2021-06",),
           ("taken=2021",), ("taken!=2021",), ("taken<=2020-12-31",), ("taken<2021-06-01T14:03:22",),
           ("taken~2021-12",), ("make=canon",), ("make!=canon",), ("camera~eos",), ("model~EOS",),
           ("lens~50mm",), ("name~rome_",), ("name=mixed case.jpg",), ("path~trips/rome",), ("folder=trips",),
           ("folder!=trips",), ("folder=trips/rome",), ("folder~ROM",), ("format=jpeg",), ("id<=3",),
           ("orientation!=1",), ("camera~canon", "width>=300"), ("folder=home", "make=canon")]


def test_chroma_filters_select_what_the_builtin_store_selects(chroma_url, tmp_path):
    photos = varied_folder(tmp_path)
    builtin = Library(tmp_path / "builtin", model=ColourEmbedder())
    chroma = Library(tmp_path / "chroma", model=ColourEmbedder(), store=chroma_url)
    for lib in (builtin, chroma):
        lib.index([photos], workers=0)

    def answer(lib, where):
        hits = lib.search("orange", limit=50, where=list(where), keywords=False)
        if hits.note:
            return "no match"
        return [(Path(h.path).name, round(h.score, 2)) for h in hits]

    for where in FILTERS:
        expected, got = answer(builtin, where), answer(chroma, where)
        assert sorted(got) == sorted(expected), where
        assert got[:1] == expected[:1], where
    assert answer(chroma, ("make=canon",)) != "no match" and answer(chroma, ("folder=home", "make=canon")) == "no match"


# -- tags, imported fields, keywords, adaptive, paging: every store does all of it --------------------------------
def _annotate(lib: Library, photos: Path, tmp: Path) -> None:
    """The same tags and imported fields on any library of varied_folder."""
    trips = photos / "trips"
    csv = tmp / f"meta-{id(lib)}.csv"
    csv.write_text("path,photographer,rating,shot,description\n"
                   f"{trips / 'canon_a.jpg'},Ann Lee,4,2021-06-02,a kite over the sea\n"
                   f"{trips / 'canon_b.jpg'},Bob,2,2022-01-15,kites and kites at the beach\n"
                   f"{trips / 'nikon.jpg'},ann lee,5,,mountains at dawn\n")
    assert lib.import_metadata(csv).matched == 3
    lib.tag_add(str(trips / "canon_a.jpg"), ["beach", "Summer Trip"])
    lib.tag_add(str(trips / "nikon.jpg"), ["beach"])
    lib.tag_add(str(photos / "home" / "home_000.jpg"), ["family"])


TAG_AND_FIELD_FILTERS = [("tag=beach",), ("tag!=beach",), ("tag~bea",), ("tag=summer trip",), ("tag=nothing",),
                         ("photographer=ann lee",), ("Photographer=ANN LEE",), ("photographer~ann",),
                         ("photographer!=ann lee",), ("rating>=4",), ("rating=4",), ("rating!=4",), ("rating<3",),
                         ("shot=2021-06",), ("shot!=2021-06",), ("shot>2021-12-31",), ("description~kite",),
                         ("tag=beach", "rating>=5"), ("folder=trips", "tag!=beach", "width>=300")]


def test_tags_and_fields_filter_alike_on_every_store(chroma_url, tmp_path):
    photos = varied_folder(tmp_path)
    builtin = Library(tmp_path / "builtin", model=ColourEmbedder())
    chroma = Library(tmp_path / "chroma", model=ColourEmbedder(), store=chroma_url)
    for lib in (builtin, chroma):
        lib.index([photos], workers=0)
        _annotate(lib, photos, tmp_path)

    def answer(lib, where, query="orange"):
        hits = lib.search(query, limit=50, where=list(where), keywords=False)
        if hits.note:
            return f"no match: {hits.note}"
        return sorted((Path(h.path).name, round(h.score, 2)) for h in hits)

    for where in TAG_AND_FIELD_FILTERS:
        assert answer(chroma, where) == answer(builtin, where), where
    for query in ("tag:beach orange", "-tag:beach orange", "tag:beach -tag:summer trip orange", "tag:family"):
        assert answer(chroma, (), query) == answer(builtin, (), query), query
    assert answer(chroma, ("tag=nothing",)) == "no match: no image has tag=nothing"
    assert "no image is tagged 'nope'" in answer(chroma, (), "tag:nope orange")
    with pytest.raises(UsageError, match="unknown key 'colour'.*imported field: description"):
        chroma.search("red", where=["colour=red"])


def test_tags_fields_keywords_and_adaptive_on_every_store(url, tmp_path):
    photos = varied_folder(tmp_path)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    _annotate(lib, photos, tmp_path)
    trips = photos / "trips"
    a = lib.store.find_path(str(trips / "canon_a.jpg"))
    hit = lib.search("red", limit=1, where=["tag=beach", "photographer=ann lee", "rating=4"])[0]
    assert hit.id == a and hit.fields["photographer"] == "Ann Lee" and hit.fields["rating"] == "4"
    assert [t["tag"] for t in hit.tags] == ["beach", "summer trip"] and hit.tags[0]["source"] == "user"
    assert lib.tag_counts() == {"beach": 2, "family": 1, "summer trip": 1}
    assert lib.tag_remove(a, ["summer trip", "absent"]) == 1 and lib.tag_counts()["beach"] == 2
    assert "summer trip" not in lib.tag_counts()
    # keywords: the words of descriptions, names and tags rank images the colour vectors would not
    by_words = lib.search("kites", limit=3, keywords=2.0)
    assert {Path(h.path).name for h in by_words[:2]} == {"canon_a.jpg", "canon_b.jpg"}, by_words
    assert Path(by_words[0].path).name == "canon_b.jpg"  # two kites and a beach beat one kite
    assert Path(lib.search("kite -2:\"sea red\"", limit=1, keywords=5.0)[0].path).name == "canon_b.jpg"
    assert Path(lib.search("mountains", limit=1, keywords=5.0)[0].path).name == "nikon.jpg"
    vector_only = [Path(h.path).name for h in lib.search("kites", limit=3, keywords=False)]
    assert vector_only[:2] != ["canon_b.jpg", "canon_a.jpg"]
    # adaptive cut-off, auto tags and classification tags
    assert 0 < len(lib.search("red", limit=20, adaptive=0.9)) < len(lib.search("red", limit=20))
    report = lib.auto_tag(["red", "blue"], threshold=0.74)
    assert report.per_label == {"red": 3, "blue": 3}
    assert {Path(h.path).name for h in lib.search("red", where=["tag=red"])} == {"home_000.jpg", "rome_000.jpg",
                                                                                 "canon_a.jpg"}
    again = lib.auto_tag(["red", "blue"], threshold=0.74)
    assert again.tags == report.tags and lib.tag_counts()["red"] == report.per_label["red"]
    lib.classify(["green", "purple"], store_tags=True, min_score=0.6)
    assert {"tag": "green", "source": "classify"}.items() <= lib.search("green", limit=1)[0].tags[0].items()
    # a file that changes keeps its tags and fields; a moved one too
    lib.search("tag:family", limit=1)
    (trips / "canon_b.jpg").rename(trips / "canon_b_moved.jpg")
    lib.index([photos], workers=0)
    moved = lib.search("red", where=["name=canon_b_moved.jpg"], limit=1)[0]
    assert moved.fields["photographer"] == "Bob" and lib.search("kites", limit=1, keywords=5.0)[0].id == moved.id
    draw_photo("yellow", seed=9).save(trips / "canon_a.jpg", exif=_exif("Canon", "Canon EOS R5"))
    assert lib.index([photos], workers=0).embedded == 1
    changed = lib.search("yellow", where=["name=canon_a.jpg"], limit=1)[0]
    assert changed.id == a and changed.fields["photographer"] == "Ann Lee" and [t["tag"] for t in changed.tags
                                                                                 if t["source"] == "user"] == ["beach"]


def test_browse_pages_newest_first_on_every_store(url, tmp_path):
    photos = varied_folder(tmp_path)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    _annotate(lib, photos, tmp_path)
    everything, after, pages = [], None, 0
    while True:
        hits, after = lib.browse(limit=4, after=after)
        everything += hits
        pages += 1
        if after is None:
            break
    assert pages == 3 and len(everything) == 11 and len({h.id for h in everything}) == 11
    dated = [h for h in everything if h.taken_at]
    assert [Path(h.path).name for h in dated[:2]] == ["canon_b.jpg", "canon_a.jpg"]  # 2021-12-31, then 2021-06
    keys = [lib_key(h) for h in everything]
    assert keys == sorted(keys, reverse=True)
    beach, after = lib.browse(where=["tag=beach"], limit=1)
    assert [Path(h.path).name for h in beach] == ["canon_a.jpg"] and after
    rest, after = lib.browse(where=["tag=beach"], limit=5, after=after)
    assert [Path(h.path).name for h in rest] == ["nikon.jpg"] and after is None
    with pytest.raises(UsageError, match="bad page cursor"):
        lib.browse(after="nonsense")


def lib_key(hit) -> tuple:
    """What browsing orders by: the taken date (local, as written), else the file time (UTC); then the id."""
    from datetime import UTC, datetime

    key = hit.taken_at[:19] if hit.taken_at else datetime.fromtimestamp(
        os.stat(hit.path).st_mtime_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return key, hit.id


def test_a_collection_from_an_older_picseek_gets_its_documents_rewritten(server_url, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=server_url)
    lib.index([photos], workers=0)
    main = lib.store._col("main")
    got = main.get(include=["metadatas", "embeddings", "documents"])
    old_docs = ["\n".join(line for line in d.splitlines() if not line.startswith("kw.")) for d in got["documents"]]
    main.update(ids=got["ids"], embeddings=got["embeddings"], documents=old_docs)
    main.modify(metadata=dict(main.metadata) | {"picseek": 1})
    assert lib.search("img_002", limit=1, keywords=5.0)[0].path != str(photos / "img_002.jpg")  # no keyword lines
    again = Library(tmp_path / "lib", model=ColourEmbedder(), store=server_url)
    assert again.store._col("main").metadata["picseek"] == 2
    assert again.search("img_002", limit=1, keywords=5.0)[0].path == str(photos / "img_002.jpg")


def test_killed_run_leftovers_in_a_further_space_are_dropped(chroma_url, tmp_path):
    s = open_store(chroma_url, tmp_path / "lib")
    s.write_images([rec("/p/a.jpg", image=[1, 0])])
    s._col("image").upsert(ids=["999"], embeddings=[[0.0, 1.0]], metadatas=[{"pid": 999, "path": "/p/x.jpg"}])
    assert 999 in s.vectors("image")[0].tolist()
    s.start_run(["/p"])
    assert s.vectors("image")[0].tolist() == [s.find_path("/p/a.jpg")]


def test_chroma_open_errors_are_clear(tmp_path, chroma_server):
    with pytest.raises(LibraryError, match="cannot reach a ChromaDB server .*chroma run"):
        open_store(f"chroma://127.0.0.1:{_free_port()}/pics", tmp_path / "lib")
    url = f"chroma://127.0.0.1:{chroma_server}/never-made-{os.getpid()}"
    with pytest.raises(LibraryError, match="index a folder first"):
        Library(tmp_path / "lib", store=url, create=False)
    import chromadb

    foreign = f"foreign-{os.getpid()}"
    chromadb.HttpClient(host="127.0.0.1", port=chroma_server).create_collection(
        foreign, embedding_function=None).add(ids=["x"], embeddings=[[1.0, 0.0]])
    with pytest.raises(LibraryError, match="not made by picseek"):
        open_store(f"chroma://127.0.0.1:{chroma_server}/{foreign}", tmp_path / "lib")
    with pytest.raises(LibraryError, match="no ChromaDB folder"):
        open_store(f"chroma://{tmp_path}/missing", tmp_path / "lib", create=False)


@pytest.mark.parametrize("bad", ["chroma://h:8000/", "chroma:relative/dir", "chroma://h/a..b", "lance://h/x",
                                 "chroma:///x?colection=y"])
def test_bad_store_urls_are_usage_errors(bad, tmp_path):
    with pytest.raises(UsageError, match="store"):
        Library(tmp_path / "lib", store=bad)


def test_cli_store_option_and_setting(server_url, tmp_path, monkeypatch, capsys):
    from picseek.cli import main

    photos = tmp_path / "photos"
    make_folder(photos, 3)
    Library(tmp_path / "lib", model=ColourEmbedder(), store=server_url).index([photos], workers=0)
    main(["--library", str(tmp_path / "lib"), "--store", server_url, "status"])
    out = capsys.readouterr().out
    assert f"store:    {server_url}" in out and "images:   3" in out
    monkeypatch.setenv("PICSEEK_STORE", server_url)
    assert Library(tmp_path / "lib").status()["images"] == 3
    with pytest.raises(SystemExit) as code:
        main(["--library", str(tmp_path / "lib"), "--store", "nosuch://x", "status"])
    assert code.value.code == 2 and "unknown store" in capsys.readouterr().err


def test_rest_api_on_a_chroma_store(server_url, tmp_path):
    need_module("fastapi")
    from fastapi.testclient import TestClient

    from picseek.server import ServerSettings, create_app

    photos = varied_folder(tmp_path)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=server_url)
    lib.index([photos], workers=0)
    settings = ServerSettings(folders=(str(photos),), index_on_start=False, index_workers=0)
    with TestClient(create_app(lib, settings), base_url="http://127.0.0.1:8000") as client:
        res = client.get("/api/search", params={"q": "red", "where": ["camera~canon", "folder=trips"]})
        assert res.status_code == 200, res.text
        hits = res.json()["hits"]
        assert [Path(h["path"]).name for h in hits] == ["canon_a.jpg", "canon_b.jpg"]
        image = client.get(f"/api/images/{hits[0]['id']}")
        assert image.status_code == 200 and image.content == (photos / "trips" / "canon_a.jpg").read_bytes()
        assert client.get(f"/api/images/{hits[0]['id']}/thumbnail").status_code == 200
        assert client.get("/api/status").json()["images"] == 11
        tagged = client.post(f"/api/images/{hits[0]['id']}/tags", json={"tags": ["x"]})
        assert tagged.status_code == 200 and [t["tag"] for t in tagged.json()["tags"]] == ["x"]
        res = client.get("/api/search", params={"q": "red", "tags": ["x"]})
        assert [h["id"] for h in res.json()["hits"]] == [hits[0]["id"]]


# -- hostile file names -------------------------------------------------------------------------------------------
ODD_NAMES = [b"bad_\xff.jpg", b"latin_caf\xe9.jpg", b"line\nbreak.jpg", b"esc_\x1b]0;pwned\x07.jpg",
             b"tab\there.jpg", "mark_\U0010fffd.jpg".encode(), "emoji_\U0001f600_\u202eevil.jpg".encode(),
             b"long_" + b"x" * 240 + b".jpg"]


def test_any_file_name_the_os_allows_is_indexed_kept_and_followed(url, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    raw = os.fsencode(photos)
    for k, name in enumerate(ODD_NAMES):
        draw_photo(("red", "green", "blue")[k % 3], size=(64, 48), seed=k).save(os.fsdecode(raw + b"/" + name),
                                                                               "JPEG")
    (Path(os.fsdecode(raw + b"/broken_\xfe.jpg"))).write_bytes(b"\xff\xd8\xff not a jpeg")
    expected = {os.fsdecode(raw + b"/" + n) for n in ODD_NAMES}
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    first = lib.index([photos], workers=0)
    assert (first.added, first.errors) == (len(ODD_NAMES), 1)
    hits = lib.search("red", limit=50)
    assert {h.path for h in hits} == expected, "every name round-trips exactly (surrogateescape bytes included)"
    assert all(os.path.isfile(h.path) for h in hits)
    assert [e["path"] for e in lib.errors()] == [os.fsdecode(raw + b"/broken_\xfe.jpg")]
    again = lib.index([photos], workers=0)
    assert (again.unchanged, again.embedded, again.removed, again.skipped_known_errors) == (len(ODD_NAMES), 0, 0, 1)
    gone = os.fsdecode(raw + b"/" + ODD_NAMES[0])
    moved_from, moved_to = os.fsdecode(raw + b"/" + ODD_NAMES[1]), os.fsdecode(raw + b"/moved_\xfa.jpg")
    os.unlink(gone)
    os.rename(moved_from, moved_to)
    os.unlink(os.fsdecode(raw + b"/broken_\xfe.jpg"))
    third = lib.index([photos], workers=0)
    assert (third.removed, third.moved, third.embedded) == (1, 1, 0)
    assert {h.path for h in lib.search("red", limit=50)} == expected - {gone, moved_from} | {moved_to}
    assert lib.errors() == [], "the error row of a file that is gone goes too"
    assert lib.similar(moved_to, limit=1), "an odd path names its image"


def test_the_empty_library_hint_names_the_store(chroma_url, tmp_path):
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=chroma_url)
    with pytest.raises(LibraryError, match="has no images yet: run picseek --library .* --store .*chroma.* index"):
        lib.search("red")


def test_every_store_implements_the_whole_protocol(url, tmp_path):
    """Each store has every member of the Store protocol, with the protocol's parameters (names and order)."""
    import inspect

    from picseek.store.base import Store

    store = open_store(url, tmp_path / "lib")
    members = {n for n in dir(Store) if not n.startswith("_")} | set(Store.__annotations__)
    assert len(members) >= 40
    for name in sorted(members):
        assert hasattr(store, name), name
        wanted = getattr(Store, name, None)
        if callable(wanted):
            params = list(inspect.signature(wanted).parameters)[1:]
            assert list(inspect.signature(getattr(store, name)).parameters) == params, name
    assert isinstance(store.label, str) and store.url in ("built-in", url)


def test_words_read_in_images_alike_on_every_store(url, tmp_path):
    """The OCR records (store.write_texts, get_texts, missing_texts), the `text` and `has_text` filters and the
    keyword column of the words read, on every store (written directly: no OCR models here)."""
    from picseek.store.base import TextRecord

    photos = tmp_path / "photos"
    make_folder(photos, 4)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    ids = {Path(p).name: s.id for p, s in lib.store.file_states([str(photos)]).items()}
    assert [Path(s.path).name for s in lib.store.missing_texts([str(photos)])] == sorted(ids)
    line = {"text": "QUARTERLY REVENUE", "box": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.2], [0.1, 0.2]], "score": 0.9}
    lib.store.write_texts([(ids["img_000.jpg"], TextRecord("QUARTERLY REVENUE\nTotaldue 42", [line])),
                           (ids["img_001.jpg"], TextRecord("grocerystore", [])),
                           (ids["img_002.jpg"], TextRecord("", [], "reading text failed: boom")),
                           (10**9, TextRecord("no such image", []))])
    texts = lib.store.get_texts(list(ids.values()) + [10**9])
    assert set(texts) == {ids["img_000.jpg"], ids["img_001.jpg"], ids["img_002.jpg"]}
    assert texts[ids["img_000.jpg"]] == TextRecord("QUARTERLY REVENUE\nTotaldue 42", [line], None)
    assert texts[ids["img_002.jpg"]].error == "reading text failed: boom"
    assert [Path(s.path).name for s in lib.store.missing_texts([str(photos)])] == ["img_003.jpg"]

    def found(query, **kw):
        return sorted(Path(h.path).name for h in lib.search(query, limit=10, **kw))

    assert found("red", where=["has_text=yes"]) == ["img_000.jpg", "img_001.jpg"]
    assert found("red", where=["has_text=no"]) == ["img_002.jpg", "img_003.jpg"]
    assert found('text:"quartely revenue"') == ["img_000.jpg"]  # a reading error forgiven
    assert found("red text:grocery") == ["img_001.jpg"]  # inside a run of words without spaces
    assert found("red text:due") == ["img_000.jpg"]
    assert found("red -text:grocery") == ["img_000.jpg", "img_002.jpg", "img_003.jpg"]
    assert not lib.search('text:"zebra"', limit=5) and "text" in lib.search('text:"zebra"', limit=5).note
    hit = lib.search("revenue", limit=1, keywords=5.0)[0]  # the words join keyword search
    assert Path(hit.path).name == "img_000.jpg" and "keyword" in hit.via and hit.matched_text == ["QUARTERLY REVENUE"]
    hit = lib.search("total", limit=1, keywords=5.0)[0]  # inside a run the reader did not space ("Totaldue")
    assert Path(hit.path).name == "img_000.jpg" and "keyword" in hit.via and hit.matched_text == []
    assert "keyword" not in lib.search("grocer", limit=4, keywords=5.0, where=["has_text=no"])[0].via
    # a moved file keeps its words; a changed one is read again (here: not read, so it has none)
    (photos / "img_000.jpg").rename(photos / "moved.jpg")
    lib.index([photos], workers=0)
    assert found('text:"quarterly revenue"') == ["moved.jpg"]
    draw_photo("yellow", seed=3).save(photos / "img_001.jpg")
    lib.index([photos], workers=0)
    assert found("red text:grocery") == []
    assert "img_001.jpg" in [Path(s.path).name for s in lib.store.missing_texts([str(photos)])]


def test_keyword_ids_every_word_on_every_store(url, tmp_path):
    """keyword_ids(every=True): only the images that hold every positive word, each in any searched column (a file
    name, a caption, the words read in the image, a reading error of the word included); negatives and filters as
    without it; a one-word query as without it."""
    from picseek.store.base import TextRecord
    from picseek.store.filters import parse_filter

    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["harbour_a.jpg", "harbour_b.jpg", "harbour_c.jpg", "beach_d.jpg", "misread_e.jpg", "harbour_f.jpg"]
    for n, name in enumerate(names):
        draw_photo("red", seed=n).save(photos / name)
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=url)
    lib.index([photos], workers=0)
    ids = {Path(p).name: s.id for p, s in lib.store.file_states([str(photos)]).items()}
    lib.store.set_fields([(ids["harbour_a.jpg"], {"description": "a sunset over the water"}),
                          (ids["beach_d.jpg"], {"description": "sunset"}),
                          (ids["harbour_f.jpg"], {"description": "sunset"})])
    lib.store.write_texts([(ids["harbour_b.jpg"], TextRecord("SUNSET SALE", [])),
                           (ids["misread_e.jpg"], TextRecord("HARBOUR SUNSCT", []))])  # "sunset" misread
    lib.tag_add(ids["harbour_f.jpg"], ["kept"])
    everything = lib.store.select([], [], [], "")

    def found(words, negative="", selection=everything, k=10, **kw):
        return {n for n, i in ids.items() if i in lib.store.keyword_ids(words, negative, selection, k, **kw)}

    both = {"harbour_a.jpg", "harbour_b.jpg", "misread_e.jpg", "harbour_f.jpg"}
    assert found("harbour sunset", every=True) == both
    assert found("harbour sunset") == both | {"harbour_c.jpg", "beach_d.jpg"}  # (any word, as before)
    assert found("the harbour at sunset", every=True) == both  # stop words are not asked for
    assert found("harbours sunsets", every=True) == both  # stems, as without `every`
    assert found("harbour sunset", "sale", every=True) == both - {"harbour_b.jpg"}
    assert found("harbour sunset water", every=True) == {"harbour_a.jpg"}
    assert found("harbour sunset zebra", every=True) == set()
    assert len(found("harbour sunset", k=2, every=True)) == 2 and found("harbour sunset", k=2, every=True) <= both
    tagged = lib.store.select([], ["kept"], [], "")
    assert found("harbour sunset", selection=tagged, every=True) == {"harbour_f.jpg"}
    not_a = lib.store.select([parse_filter("name!=harbour_a.jpg")], [], [], "")
    assert found("harbour sunset", selection=not_a, every=True) == both - {"harbour_a.jpg"}
    for word in ("sunset", "harbour", "the"):  # one word: the same images in the same order
        assert lib.store.keyword_ids(word, "", everything, 10, every=True) == lib.store.keyword_ids(
            word, "", everything, 10), word
    assert found("sunset", every=True) == {"harbour_a.jpg", "harbour_b.jpg", "beach_d.jpg", "misread_e.jpg",
                                           "harbour_f.jpg"}  # the misread word counts for its word


def test_the_words_read_are_listed_once_until_words_are_written(url, tmp_path, monkeypatch):
    """The vocabulary of words read in images (what keyword search and the `text` filter match reading errors
    against) is read once and kept: searches read it again only after words were written, dropped or removed with
    their image, through this store or another one on the same library (another process: a second store object).
    (The built-in store also reads its vocabulary table again after any other write; ChromaDB's scan does not.)"""
    from picseek.store.base import TextRecord
    from picseek.store.filters import parse_filter

    s = open_store(url, tmp_path / "lib")
    s.write_images([rec(f"/p/{n}.jpg", [1, 0, 0]) for n in range(5)])
    ids = [s.find_path(f"/p/{n}.jpg") for n in range(5)]
    s.write_texts([(ids[0], TextRecord("SUNSCT SALE", []))])  # ("sunset", misread)
    reads = []
    real = type(s)._read_vocabulary
    monkeypatch.setattr(type(s), "_read_vocabulary", lambda self: reads.append(1) or real(self))
    everything = s.select([], [], [], "")

    def sunset(read_again: int):
        before = len(reads)
        found = sorted(s.keyword_ids("sunset", "", everything, 10))
        assert sorted(s.keyword_ids("sunset", "", everything, 10, every=True)) == found  # (a query calls it twice)
        assert len(reads) == before + read_again
        return [ids.index(i) for i in found]

    assert sunset(1) == [0] and sunset(0) == [0]
    s.select([parse_filter("text=sunset")], [], [], "")
    assert len(reads) == 1, "a search read the vocabulary again though no words changed"
    s.write_texts([(ids[1], TextRecord("SUNSEF", []))])  # through this store
    assert sunset(1) == [0, 1]
    other = open_store(url, tmp_path / "lib", create=False)  # another process's store on the same library
    other.write_images([dataclasses.replace(rec("/p/2.jpg", [0, 1, 0]), text=TextRecord("SUNSEI", []))])
    assert sunset(1) == [0, 1, 2] and sunset(0) == [0, 1, 2]
    other.write_images([rec("/p/3.jpg", [0, 1, 0])])  # no words, none before
    assert sunset(1 if url == "" else 0) == [0, 1, 2]
    other.write_images([rec("/p/1.jpg", [0, 1, 0])])  # its words dropped (a changed file, not read again)
    assert sunset(1) == [0, 2]
    other.write_images([], [("/p/2.jpg", 1, 1, "broken now")])  # removed with its words
    assert sunset(1) == [0]
    other.delete_paths(["/p/0.jpg"])
    assert sunset(1) == [] and sunset(0) == []

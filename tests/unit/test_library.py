"""Indexing and search through the Python API, with a colour-based test model (fast, no weights)."""
import os
import shutil

import pytest

from picseek import Library
from picseek.errors import LibraryError, ModelMismatchError, UsageError

from broken_images import make_broken_images
from conftest import ColourEmbedder, draw_photo, make_folder


@pytest.fixture
def photos(tmp_path):
    make_folder(tmp_path / "photos", 8)
    return tmp_path / "photos"


def lib_at(tmp_path, name="lib", model=None):
    return Library(tmp_path / name, model=model or ColourEmbedder())


def paths_of(lib):
    return sorted(r["path"] for r in lib.store.get_images(lib.store.vectors("main")[0]).values())


@pytest.mark.parametrize("workers", [0, 1])
def test_index_then_search_by_text_and_by_image(tmp_path, photos, workers):
    lib = lib_at(tmp_path)
    report = lib.index([photos], workers=workers, batch_size=3)
    assert report.added == 8 and report.errors == 0 and report.scanned == 8
    hits = lib.search("something red", limit=3)
    assert os.path.basename(hits[0].path) == "img_000.jpg"  # colour 0 is red
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].width == 320 and hits[0].height == 240
    img_hits = lib.search(str(photos / "img_003.jpg"), limit=1)
    assert img_hits[0].path == str(photos / "img_003.jpg") and img_hits[0].score > 0.99
    assert lib.search(f"id:{img_hits[0].id}", limit=1)[0].id == img_hits[0].id


def test_search_accepts_pil_images_and_bytes(tmp_path, photos):
    lib = lib_at(tmp_path)
    lib.index([photos], workers=0)
    target = photos / "img_002.jpg"
    assert lib.search(draw_photo("blue", "square", seed=2), limit=1)[0].path == str(target)
    assert lib.search(target.read_bytes(), limit=1)[0].path == str(target)


def test_second_run_embeds_nothing(tmp_path, photos):
    lib = lib_at(tmp_path)
    lib.index([photos], workers=0)
    emb = lib.embedder()
    calls = emb.calls
    report = lib.index([photos], workers=0)
    assert report.unchanged == 8 and report.embedded == 0 and emb.calls == calls


def test_incremental_add_modify_move_delete(tmp_path, photos):
    lib = lib_at(tmp_path)
    lib.index([photos], workers=0)
    ids_before = {r["path"]: r["id"] for r in lib.store.get_images(lib.store.vectors("main")[0]).values()}
    draw_photo("yellow", seed=99).save(photos / "new.jpg")                       # add
    draw_photo("black", seed=5).save(photos / "img_001.jpg")                      # modify
    os.makedirs(photos / "sub")
    shutil.move(photos / "img_002.jpg", photos / "sub" / "renamed.jpg")           # move
    os.remove(photos / "img_003.jpg")                                             # delete
    report = lib.index([photos], workers=0)
    assert (report.added, report.updated, report.moved, report.removed) == (1, 1, 1, 1)
    after = {r["path"]: r["id"] for r in lib.store.get_images(lib.store.vectors("main")[0]).values()}
    assert after[str(photos / "sub" / "renamed.jpg")] == ids_before[str(photos / "img_002.jpg")]
    assert str(photos / "img_003.jpg") not in after and len(after) == 8
    from picseek.ingest.images import load_image
    fresh = lib.embedder().embed_images([load_image(str(photos / "img_001.jpg"))])[0]
    stored = lib.store.vector_of(after[str(photos / "img_001.jpg")], "main")
    assert float(fresh @ stored) > 0.999


def test_indexing_one_root_never_drops_another(tmp_path):
    make_folder(tmp_path / "a", 2, "a")
    make_folder(tmp_path / "b", 3, "b")
    lib = lib_at(tmp_path)
    lib.index([tmp_path / "a"], workers=0)
    lib.index([tmp_path / "b"], workers=0)
    assert lib.store.count() == 5


def test_broken_files_are_skipped_recorded_and_not_retried(tmp_path, photos):
    expected = make_broken_images(photos / "broken")
    lib = lib_at(tmp_path)
    report = lib.index([photos], workers=1)
    bad = {k for k, v in expected.items() if v == "bad"}
    errors = {os.path.basename(e["path"]): e["reason"] for e in lib.errors()}
    assert set(errors) == bad
    assert all(reason for reason in errors.values())
    assert report.errors == len(bad) and report.added == 8 + len(expected) - len(bad)
    again = lib.index([photos], workers=0)
    assert again.skipped_known_errors == len(bad) and again.errors == 0
    assert lib.index([photos], workers=0, retry_errors=True).errors == len(bad)


def test_model_is_recorded_and_mixing_is_refused(tmp_path, photos):
    lib = lib_at(tmp_path)
    lib.index([photos], workers=0)
    assert lib.status()["model"] == "test-colour"
    other = Library(tmp_path / "lib", model=ColourEmbedder("other-model"))
    with pytest.raises(ModelMismatchError, match="--rebuild"):
        other.search("red")
    with pytest.raises(ModelMismatchError):
        other.index([photos])
    rebuilt = other.index([photos], rebuild=True, workers=0)
    assert rebuilt.added == 8 and other.status()["model"] == "other-model"


def test_clear_errors_for_bad_queries_and_missing_library(tmp_path, photos):
    with pytest.raises(LibraryError, match="no picseek library"):
        Library(tmp_path / "nowhere", create=False)
    lib = lib_at(tmp_path)
    with pytest.raises(LibraryError, match="no images yet"):
        lib.search("red")
    lib.index([photos], workers=0)
    with pytest.raises(UsageError, match="empty query"):
        lib.search("   ")
    with pytest.raises(UsageError, match="not found"):
        lib.search("./missing/photo.jpg")
    with pytest.raises(UsageError, match="not an indexed image"):
        lib.search("id:999999")
    (tmp_path / "fake.jpg").write_text("not an image")
    from picseek.errors import ImageError
    with pytest.raises(ImageError):
        lib.search(str(tmp_path / "fake.jpg"))
    with pytest.raises(UsageError, match="folder not found"):
        lib.index([tmp_path / "does-not-exist"])


def test_threshold_and_limit(tmp_path, photos):
    lib = lib_at(tmp_path)
    lib.index([photos], workers=0)
    assert len(lib.search("red", limit=3)) == 3
    assert len(lib.search("red", limit=100)) == 8
    best = lib.search("red", limit=1)[0].score
    kept = lib.search("red", limit=100, threshold=best - 1e-6)
    assert len(kept) >= 1 and all(h.score >= best - 1e-6 for h in kept)


def test_only_one_index_run_at_a_time(tmp_path, photos):
    lib = lib_at(tmp_path)
    with lib._index_lock():
        with pytest.raises(LibraryError, match="another index run"):
            lib.index([photos], workers=0)


def test_remove_forgets_a_folder_even_when_it_is_gone(tmp_path):
    make_folder(tmp_path / "a", 2, "a")
    make_folder(tmp_path / "b", 3, "b")
    lib = lib_at(tmp_path)
    lib.index([tmp_path / "a", tmp_path / "b"], workers=0)
    shutil.rmtree(tmp_path / "b")
    assert lib.remove([tmp_path / "b"]) == 3
    assert lib.store.count() == 2 and len(lib.store.vectors("main")[0]) == 2
    assert lib.remove([tmp_path / "a" / "a_000.jpg"]) == 1
    assert all("a_001" in h.path for h in lib.search("red", limit=5))


def test_a_folder_that_cannot_be_walked_keeps_its_images_and_is_reported(tmp_path, monkeypatch):
    """An unplugged drive behind a link, or a folder that lost its read permission, is not "every photo deleted"."""
    photos, drive = tmp_path / "photos", tmp_path / "drive"
    make_folder(photos / "home", 2)
    make_folder(drive / "trip", 3)
    os.symlink(drive, photos / "usb")
    monkeypatch.setenv("PICSEEK_FOLLOW_LINKS", "true")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    assert lib.index([photos], workers=0).added == 5
    drive.rename(tmp_path / "unplugged")
    r = lib.index([photos], workers=0)
    assert (r.removed, r.errors, lib.status()["images"]) == (0, 1, 5)
    assert [(os.path.basename(e["path"]), e["reason"]) for e in lib.errors()] == [
        ("usb", "broken symbolic link (its target does not exist)")]
    (tmp_path / "unplugged").rename(drive)
    r = lib.index([photos], workers=0)
    assert (r.unchanged, r.embedded, r.removed, lib.errors()) == (5, 0, 0, [])

    real_scandir = os.scandir

    def denied(path):
        if os.fspath(path).endswith("home"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    r = lib.index([photos], workers=0)
    assert (r.removed, lib.status()["images"]) == (0, 5)
    assert [e["reason"] for e in lib.errors()] == ["cannot read folder: Permission denied"]


def test_an_emptied_root_keeps_its_images_until_removed(tmp_path):
    """A mount point whose disk is not mounted looks like a folder whose every photo was deleted."""
    photos = tmp_path / "mnt"
    make_folder(photos / "2024", 3)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([photos], workers=0)
    shutil.move(photos / "2024", tmp_path / "elsewhere")
    r = lib.index([photos], workers=0)
    assert (r.removed, lib.status()["images"]) == (0, 3)
    assert "not mounted" in lib.errors()[0]["reason"] and lib.errors()[0]["path"] == str(photos)
    shutil.move(tmp_path / "elsewhere", photos / "2024")
    r = lib.index([photos], workers=0)
    assert (r.unchanged, r.removed, lib.errors()) == (3, 0, [])
    assert lib.remove([photos]) == 3


def test_hints_repeat_the_library_and_store_the_user_gave(tmp_path, monkeypatch):
    from picseek import config

    monkeypatch.delenv("PICSEEK_STORE", raising=False)
    hint = config.command_for(tmp_path / "my lib", "index FOLDER", "chroma://127.0.0.1:8000/photos")
    assert hint == f"picseek --library '{tmp_path / 'my lib'}' --store chroma://127.0.0.1:8000/photos index FOLDER"
    assert "--store" not in config.command_for(tmp_path, "index FOLDER")
    monkeypatch.setenv("PICSEEK_STORE", "chroma://127.0.0.1:8000/photos")  # the store used without the option
    assert "--store" not in config.command_for(tmp_path, "index FOLDER", "chroma://127.0.0.1:8000/photos")

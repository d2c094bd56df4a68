"""ingest/paths.py: one copy of what names an image (extensions, URLs, the store's spelling of a path), used by the
scan, object storage, decoding, the query language and Spark alike."""
from __future__ import annotations

from pathlib import Path

import pytest

from picseek.ingest import images, paths, remote, scan
from picseek.ingest.paths import (
    AVIF_SUPPORTED,
    HEIF_SUPPORTED,
    IMAGE_EXTENSIONS,
    FileEntry,
    has_image_extension,
    is_remote,
    is_url,
    store_path,
    url_scheme,
)
from picseek.query.parse import IMAGE, TEXT, QueryError, parse


def test_urls():
    for url in ("s3://b/k.jpg", "gs://b", "https://h/a.png", "memory://x", "S3A://b/k", "file:///tmp/a"):
        assert is_url(url), url
    for not_url in ("/a://b", "photos/http://x.jpg", "://x", "1s3://b", "", "C:\\photos", "./a.jpg"):
        assert not is_url(not_url), not_url
    assert not is_url(Path("s3://b/k"))  # a PathLike is a local path
    assert is_remote("s3://b/k") and is_remote("https://h/") and not is_remote("FILE:///x")
    assert not is_remote("file:///x") and not is_remote("/x")
    assert url_scheme("S3://b/k") == "s3" and url_scheme("/x") == ""


def test_store_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_path("a/b.jpg") == str(tmp_path / "a" / "b.jpg")
    assert store_path("file:///tmp/a%20b") == "/tmp/a b"
    assert store_path("https://h/photos/") == "https://h/photos"


def test_one_definition_everywhere():
    """The modules that used to copy these rules now share them (library.py still calls remote.store_path)."""
    assert remote.is_url is is_url and remote.is_remote is is_remote and remote.store_path is store_path
    assert scan.FileEntry is FileEntry and remote.FileEntry is FileEntry
    assert images.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS
    assert FileEntry("/a.jpg", 1, 2) == ("/a.jpg", 1, 2)


def test_image_extensions_follow_the_plugins():
    assert {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert ({".heic", ".heif"} <= IMAGE_EXTENSIONS) == HEIF_SUPPORTED
    assert (".avif" in IMAGE_EXTENSIONS) == AVIF_SUPPORTED
    assert images._HAS_HEIF == HEIF_SUPPORTED and images._HAS_AVIF == AVIF_SUPPORTED
    assert has_image_extension("/a/B.JPG") and has_image_extension("s3://b/x.tiff")
    assert not has_image_extension("/a/b.txt") and not has_image_extension("/a/jpg")


@pytest.mark.parametrize("supported", [False, True])
def test_query_image_names_follow_the_same_extensions(supported, monkeypatch, tmp_path):
    """A word that ends in .heic is a query image only where HEIC can be decoded; elsewhere it is text."""
    monkeypatch.chdir(tmp_path)
    exts = IMAGE_EXTENSIONS | {".heic"} if supported else IMAGE_EXTENSIONS - {".heic"}
    monkeypatch.setattr(paths, "IMAGE_EXTENSIONS", exts)
    if supported:
        with pytest.raises(QueryError, match="query image not found: photo.heic"):
            parse("photo.heic")
        (tmp_path / "photo.heic").write_bytes(b"x")
        assert [t.kind for t in parse("photo.heic").terms] == [IMAGE]
    else:
        assert [(t.kind, t.value) for t in parse("photo.heic").terms] == [(TEXT, "photo.heic")]
    with pytest.raises(QueryError, match="query image not found: missing.jpg"):
        parse("missing.jpg")


def test_walk_lists_only_the_supported_extensions(tmp_path, monkeypatch):
    for name in ("a.jpg", "b.heic", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(paths, "IMAGE_EXTENSIONS", frozenset({".jpg"}))
    monkeypatch.setattr(scan, "IMAGE_EXTENSIONS", frozenset({".jpg"}))
    assert [Path(e.path).name for e in scan.walk([str(tmp_path)])] == ["a.jpg"]
    assert scan._entry(str(tmp_path / "b.heic")) is None

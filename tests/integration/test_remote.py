"""Image roots that are URLs (ingest/remote.py): a folder served by a local HTTP server (Python's http.server in a
thread, directory listings like nginx autoindex) read through fsspec's HTTP filesystem, also by spawned decode
workers; fsspec's in-memory filesystem (workers=0: it lives in one process); and file:// URLs. Nothing leaves the
machine: the server listens on 127.0.0.1."""
from __future__ import annotations

import functools
import http.server
import importlib
import os
import threading
import time
from pathlib import Path

import pytest

from picseek.errors import StorageError, UsageError
from picseek.library import Library

from conftest import ColourEmbedder, draw_photo, make_folder
from needs import need_module

need_module("fsspec")
need_module("aiohttp")  # fsspec's HTTP filesystem

import fsspec  # noqa: E402


class _Site(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records requests; can fail chosen paths or require a bearer token."""

    state: dict  # set per server: requests, fail (path prefix -> status), token

    def log_message(self, *args) -> None:
        pass

    def _refused(self) -> bool:
        token = self.state.get("token")
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self.send_error(401)
            return True
        for prefix, status in self.state["fail"].items():
            if self.path.startswith(prefix):
                self.send_error(status)
                return True
        return False

    def do_GET(self) -> None:
        self.state["requests"].append(("GET", self.path))
        if not self._refused():
            super().do_GET()

    def do_HEAD(self) -> None:
        self.state["requests"].append(("HEAD", self.path))
        if not self._refused():
            super().do_HEAD()


@pytest.fixture
def site(tmp_path):
    """(folder served, base URL, state) for a threaded HTTP server on a loopback port."""
    folder = tmp_path / "site"
    folder.mkdir()
    state = {"requests": [], "fail": {}, "token": None}
    handler = type("Handler", (_Site,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _touch_later(path: Path, seconds: int = 10) -> None:
    """Move a file's mtime on, so the HTTP Last-Modified (whole seconds) changes however fast the test runs."""
    t = time.time() + seconds
    os.utime(path, (t, t))


def _gets(state: dict, suffix: str = ".jpg") -> list[str]:
    return [p for m, p in state["requests"] if m == "GET" and p.endswith(suffix)]


def test_http_root_indexes_once_then_only_changes(site, tmp_path):
    folder, base, state = site
    photos = folder / "photos"
    make_folder(photos, 4)
    make_folder(photos / "more", 1, prefix="sub")
    (photos / ".hidden.jpg").write_bytes((photos / "img_000.jpg").read_bytes())
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.jpg").write_text("this is text, not a JPEG")
    root = f"{base}/photos/"
    lib = Library(tmp_path / "lib", model=ColourEmbedder())

    first = lib.index([root], workers=1)  # a spawned worker reads the objects over HTTP
    assert (first.added, first.errors, first.removed) == (5, 1, 0)
    paths = {h.path for h in lib.search("red", limit=50)}
    assert paths == {f"{base}/photos/img_{i:03d}.jpg" for i in range(4)} | {f"{base}/photos/more/sub_000.jpg"}
    [error] = lib.errors()
    assert error["path"] == f"{base}/photos/broken.jpg" and "text" in error["reason"]
    assert lib.store.roots() == [f"{base}/photos"]

    state["requests"].clear()
    again = lib.index([root], workers=1)
    assert (again.embedded, again.unchanged, again.skipped_known_errors, again.removed) == (0, 5, 1, 0)
    assert _gets(state) == [], "unchanged objects must not be read again"

    draw_photo("red", "square", seed=99).save(photos / "img_001.jpg")  # was green: now red
    _touch_later(photos / "img_001.jpg")
    (photos / "img_002.jpg").unlink()
    state["requests"].clear()
    third = lib.index([root], workers=0)
    assert (third.added, third.updated, third.removed, third.unchanged) == (0, 1, 1, 3)
    assert _gets(state) == ["/photos/img_001.jpg"]
    assert f"{base}/photos/img_002.jpg" not in {h.path for h in lib.search("red", limit=50)}
    top_two = {h.path for h in lib.search("red", limit=2)}
    assert f"{base}/photos/img_001.jpg" in top_two


def test_missing_denied_and_flaky_roots_are_errors_that_keep_the_index(site, tmp_path):
    folder, base, state = site
    make_folder(folder / "photos" / "a", 2)
    make_folder(folder / "photos" / "b", 2, prefix="b")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    assert lib.index([f"{base}/photos/"], workers=0).added == 4

    with pytest.raises(UsageError, match=r"not found: http://127\.0\.0\.1:\d+/nope"):
        lib.index([f"{base}/nope/"], workers=0)
    state["fail"]["/photos/b/"] = 500  # a sub-folder that cannot be listed must not read as "deleted"
    with pytest.raises(StorageError, match=r"cannot list .*500"):
        lib.index([f"{base}/photos/"], workers=0)
    state["fail"] = {"/photos": 403}
    with pytest.raises(StorageError, match="access denied"):
        lib.index([f"{base}/photos/"], workers=0)
    state["fail"] = {}
    for p in (folder / "photos").rglob("*.jpg"):
        p.unlink()
    with pytest.raises(UsageError, match="nothing found at"):
        lib.index([f"{base}/photos/"], workers=0)
    assert lib.status()["images"] == 4

    assert lib.remove([f"{base}/photos/a/"]) == 2
    assert lib.status()["images"] == 2


def test_objects_that_vanish_or_fail_become_error_rows(site, tmp_path):
    folder, base, state = site
    make_folder(folder / "photos", 3)
    state["fail"]["/photos/img_001.jpg"] = 404  # listed, but its metadata and bytes are gone
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    report = lib.index([f"{base}/photos/"], workers=1)
    assert (report.added, report.errors) == (2, 1)
    [error] = lib.errors()
    assert error["path"] == f"{base}/photos/img_001.jpg"
    assert error["reason"] == "cannot read file: not found"

    state["fail"] = {}
    retried = lib.index([f"{base}/photos/"], workers=0, retry_errors=True)
    assert (retried.added, retried.errors) == (1, 0) and lib.errors() == []


def test_storage_options_reach_the_listing_and_the_decode_workers(site, tmp_path):
    folder, base, state = site
    make_folder(folder / "photos", 2)
    state["token"] = "s3cret"
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    with pytest.raises(StorageError, match="access denied"):
        lib.index([f"{base}/photos/"], workers=0)
    options = {"headers": {"Authorization": "Bearer s3cret"}}
    report = lib.index([f"{base}/photos/"], workers=1, storage_options=options)
    assert (report.added, report.errors) == (2, 0)  # the worker process read both objects with the header
    assert "FSSPEC_HTTP" not in os.environ and "http" not in fsspec.config.conf  # only for the run
    with pytest.raises(UsageError, match="URL roots"):
        lib.index([folder], storage_options=options)


def test_folder_filter_and_tag_by_path_work_with_url_roots(site, tmp_path):
    folder, base, state = site
    make_folder(folder / "photos" / "trips", 2, prefix="trip")
    make_folder(folder / "photos" / "home", 2, prefix="home")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([f"{base}/photos"], workers=0)
    trips = {h.path for h in lib.search("red", where=["folder=trips"], limit=10)}
    assert trips == {f"{base}/photos/trips/trip_000.jpg", f"{base}/photos/trips/trip_001.jpg"}
    home = {h.path for h in lib.search("red", where=[f"folder={base}/photos/home/"], limit=10)}
    assert home == {f"{base}/photos/home/home_000.jpg", f"{base}/photos/home/home_001.jpg"}
    assert lib.tag_add(f"{base}/photos/home/home_001.jpg", ["sofa"]) == ["sofa"]


def test_memory_filesystem_root_with_in_process_decoding(tmp_path):
    fs = fsspec.filesystem("memory")
    root = f"memory://picseek-test-{tmp_path.name}"
    photos = make_folder(tmp_path / "src", 3)
    for p in photos:
        fs.pipe(f"{root}/album/{p.name}", p.read_bytes())
    fs.pipe(f"{root}/album/bad.png", b"\x89PNG\r\n\x1a\n truncated")
    try:
        lib = Library(tmp_path / "lib", model=ColourEmbedder())
        first = lib.index([root], workers=0)
        assert (first.added, first.errors) == (3, 1)
        assert all(h.path.startswith(f"memory:///picseek-test-{tmp_path.name}/album/") for h in lib.search("red"))

        time.sleep(0.01)  # the memory filesystem's change marker is its creation time
        fs.pipe(f"{root}/album/{photos[0].name}", photos[1].read_bytes())
        fs.rm(f"{root}/album/{photos[2].name}")
        second = lib.index([root], workers=0)
        assert (second.updated, second.removed, second.unchanged, second.skipped_known_errors) == (1, 1, 1, 1)
    finally:
        fs.rm(root, recursive=True)


def test_file_urls_are_local_paths(tmp_path):
    photos = tmp_path / "my photos"
    make_folder(photos, 2)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    assert lib.index([f"file://{str(photos).replace(' ', '%20')}"], workers=0).added == 2
    assert {h.path for h in lib.search("red")} == {str(p) for p in sorted(photos.glob("*.jpg"))}
    assert lib.index([photos], workers=0).unchanged == 2
    with pytest.raises(UsageError, match="folder not found"):
        lib.index([f"file://{tmp_path}/nope"], workers=0)


def test_missing_backend_and_unknown_protocol_say_what_to_install(tmp_path, monkeypatch):
    registry = importlib.import_module("fsspec.registry")  # the module (fsspec.registry is also a mapping)
    monkeypatch.delitem(registry._registry, "s3", raising=False)  # as if s3fs were not installed
    monkeypatch.setitem(registry.known_implementations, "s3",
                        {"class": "picseek_tests_no_such_module.S3FileSystem", "err": "Install s3fs to access S3"})
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    with pytest.raises(UsageError, match=r"s3:// needs the s3fs package: pip install 'picseek\[s3\]'"):
        lib.index(["s3://bucket/photos"], workers=0)
    with pytest.raises(UsageError, match="unknown storage protocol nosuchproto://"):
        lib.index(["nosuchproto://bucket/photos"], workers=0)
    assert lib.store.roots() == []  # refused before any run started


def test_server_serves_thumbnails_and_originals_of_url_images(site, tmp_path):
    need_module("fastapi")
    from fastapi.testclient import TestClient

    from picseek.server import ServerSettings, create_app

    folder, base, state = site
    make_folder(folder / "photos", 2)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([f"{base}/photos/"], workers=0)
    image_id = next(h.id for h in lib.search("red") if h.path.endswith("img_000.jpg"))
    settings = ServerSettings(folders=(), index_on_start=False, index_workers=0)
    with TestClient(create_app(lib, settings), base_url="http://127.0.0.1") as client:
        original = client.get(f"/api/images/{image_id}")
        assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
        assert original.content == (folder / "photos" / "img_000.jpg").read_bytes()
        assert "img_000.jpg" in original.headers["content-disposition"]
        thumb = client.get(f"/api/images/{image_id}/thumbnail?size=160")
        assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/")

        (folder / "photos" / "img_000.jpg").unlink()
        gone = client.get(f"/api/images/{image_id}")
        assert gone.status_code == 404 and gone.json()["code"] == "unreadable"
        assert "not found" in gone.json()["error"]
        assert client.get(f"/api/images/{image_id}/thumbnail?size=160").status_code == 200  # cached
        assert client.get(f"/api/images/{image_id}/thumbnail?size=640").status_code == 404


def test_cli_takes_urls_as_roots_and_checks_storage_options(tmp_path):
    from cli_helpers import cli_env, run

    env = cli_env(tmp_path)
    bad = run("index", "https://example.invalid/photos/", "--storage-option", "anon", env=env, check=False)
    assert bad.returncode == 2 and "bad storage option 'anon': use KEY=VALUE" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run("index", tmp_path / "nope", env=env, check=False)  # local folders are still checked up front
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_listing_http_roots_folders_single_images_and_empty_pages(site):
    from picseek.ingest.remote import list_entries

    folder, base, state = site
    make_folder(folder / "photos", 2)
    (folder / "empty" / "sub").mkdir(parents=True)
    (folder / "texts").mkdir()
    (folder / "texts" / "a.txt").write_text("words")
    for root in (f"{base}/photos", f"{base}/photos/"):
        entries = list_entries(root)
        assert [e.path for e in entries] == [f"{base}/photos/img_000.jpg", f"{base}/photos/img_001.jpg"]
        for e in entries:
            st = (folder / "photos" / e.path.rsplit("/", 1)[1]).stat()
            assert e.size == st.st_size and e.mtime_ns == st.st_mtime_ns // 10**9 * 10**9  # Last-Modified: seconds
    [single] = list_entries(f"{base}/photos/img_001.jpg")
    assert single.path == f"{base}/photos/img_001.jpg" and single.size == (folder / "photos/img_001.jpg").stat().st_size
    for root in (f"{base}/empty", f"{base}/empty/"):
        with pytest.raises(UsageError, match="nothing found at"):
            list_entries(root)
    assert list_entries(f"{base}/texts/") == []  # not empty: it just holds no images


def test_decode_file_reads_urls_with_the_same_byte_cap(site, monkeypatch):
    from picseek.ingest import images
    from picseek.models.base import ImageSpec

    folder, base, state = site
    [photo] = make_folder(folder / "photos", 1)
    url = f"{base}/photos/{photo.name}"
    spec = ImageSpec(size=32, resize="squash")
    ok = images.decode_file(url, spec)
    assert ok.error is None and ok.pixels.shape == (32, 32, 3)
    assert ok.content_hash == images.file_hash(photo) == images.file_hash(url)
    assert images.load_image(url).size == (320, 240)

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    state["requests"].clear()
    big = images.decode_file(url, spec)
    assert big.error.startswith("file too large") and big.content_hash == ""
    assert _gets(state) == [], "an object over the cap is not downloaded"
    gone = images.decode_file(f"{base}/photos/gone.jpg", spec)
    assert gone.error == "cannot read file: not found"

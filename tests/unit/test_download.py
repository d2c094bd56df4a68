"""URL lists: downloads against a real HTTP server on 127.0.0.1 (good, slow, failing, redirecting, non-image and
oversized responses), resumability, error records, and the index + metadata import that follows."""
from __future__ import annotations

import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from picseek import Library
from picseek.cli import main
from picseek.errors import UsageError
from picseek.ingest import download
from picseek.ingest.download import PERMANENT, TEMPORARY, DownloadOptions, cache_name, read_url_list

from conftest import ColourEmbedder, draw_photo

FAST = DownloadOptions(concurrency=4, timeout=0.5, retries=2, backoff=0.01, max_bytes=200_000, deadline=5)


def image_bytes(colour: str, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    draw_photo(colour, size=(64, 48)).save(buf, fmt)
    return buf.getvalue()


class Site:
    """What the test server answers: path -> handler(request, hit number) -> (status, headers, body)."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        jpg, png = image_bytes("red"), image_bytes("blue", "PNG")
        self.routes = {
            "/red.jpg": lambda n: (200, {"Content-Type": "image/jpeg"}, jpg),
            "/blue.png": lambda n: (200, {"Content-Type": "image/png; charset=binary"}, png),
            "/octet": lambda n: (200, {"Content-Type": "application/octet-stream"}, image_bytes("green")),
            "/nolength.png": lambda n: (200, {"Content-Type": "image/png", "_no_length": "1"},
                                        image_bytes("yellow", "PNG")),
            "/slow.jpg": lambda n: (time.sleep(2), (200, {"Content-Type": "image/jpeg"}, jpg))[1],
            "/flaky.jpg": lambda n: (500, {}, b"oops") if n == 1 else (200, {"Content-Type": "image/jpeg"},
                                                                       image_bytes("purple")),
            "/down.jpg": lambda n: (503, {}, b"maintenance"),
            "/missing.jpg": lambda n: (404, {}, b"not found"),
            "/r3": lambda n: (302, {"Location": "/r2"}, b""),
            "/r2": lambda n: (301, {"Location": "/r1"}, b""),
            "/r1": lambda n: (307, {"Location": "/orange.jpg"}, b""),
            "/orange.jpg": lambda n: (200, {"Content-Type": "image/jpeg"}, image_bytes("orange")),
            "/loop": lambda n: (302, {"Location": "/loop"}, b""),
            "/page.html": lambda n: (200, {"Content-Type": "text/html"}, b"<html><body>hello</body></html>"),
            "/garbage.jpg": lambda n: (200, {"Content-Type": "image/jpeg"}, os.urandom(5000)),
            "/huge.jpg": lambda n: (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8" + b"\0" * 300_000),
            "/huge-nolength.jpg": lambda n: (200, {"Content-Type": "image/jpeg", "_no_length": "1"},
                                             b"\xff\xd8" + b"\0" * 300_000),
        }

    def answer(self, path: str):
        with self.lock:
            self.hits[path] = n = self.hits.get(path, 0) + 1
        return self.routes.get(path, lambda n: (404, {}, b""))(n)


@pytest.fixture
def site():
    s = Site()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # a response without Content-Length ends when the connection closes

        def do_GET(self):  # noqa: N802 - the http.server API
            status, headers, body = s.answer(self.path)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    if not k.startswith("_"):
                        self.send_header(k, v)
                if "_no_length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeouts, size cap): fine
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield s
    server.shutdown()
    server.server_close()


class FakeStore:
    """The two store calls the downloader makes, in memory."""

    def __init__(self):
        self.errors: dict[str, tuple[int, int, str]] = {}

    def known_errors(self, roots):
        return {u: (s, m) for u, (s, m, _) in self.errors.items() if u.startswith(("http:", "https:"))}

    def write_images(self, records, errors):
        for path, size, mtime, reason in errors:
            self.errors[path] = (size, mtime, reason)

    def delete_paths(self, paths):
        for p in paths:
            self.errors.pop(p, None)


def fetch(site, names, tmp_path, opts=FAST, store=None, **kw):
    store = store or FakeStore()
    urls = [site.base + n if n else n for n in names]
    report, paths = download.download_urls(store, urls, tmp_path / "dl", opts, **kw)
    return report, {u[len(site.base):]: p for u, p in paths.items()}, store


def test_good_images_are_kept_with_their_real_format(site, tmp_path):
    names = ["/red.jpg", "/blue.png", "/octet", "/nolength.png", "/r3"]
    report, paths, store = fetch(site, names, tmp_path)
    assert (report.downloaded, report.errors, report.urls) == (5, 0, 5) and not store.errors
    assert {n: Path(p).suffix for n, p in paths.items()} == {
        "/red.jpg": ".jpg", "/blue.png": ".png", "/octet": ".jpg", "/nolength.png": ".png", "/r3": ".jpg"}
    assert Path(paths["/red.jpg"]).name == cache_name(site.base + "/red.jpg") + ".jpg"
    assert Path(paths["/red.jpg"]).read_bytes() == image_bytes("red")
    assert site.hits["/r1"] == 1 and site.hits["/orange.jpg"] == 1  # the redirect chain was followed
    assert sorted(os.listdir(tmp_path / "dl")) == sorted(Path(p).name for p in paths.values())  # no temp files


def test_failures_are_recorded_by_url_and_classified(site, tmp_path):
    names = ["/missing.jpg", "/down.jpg", "/flaky.jpg", "/slow.jpg", "/page.html", "/garbage.jpg", "/huge.jpg",
             "/huge-nolength.jpg", "/loop"]
    t0 = time.perf_counter()
    report, paths, store = fetch(site, names, tmp_path)
    assert time.perf_counter() - t0 < 10
    assert set(paths) == {"/flaky.jpg"} and report.downloaded == 1 and report.errors == 8
    assert site.hits["/flaky.jpg"] == 2  # 500, then a retry that worked
    assert site.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert site.hits["/down.jpg"] == 3 and site.hits["/slow.jpg"] == 3  # 1 + 2 retries each
    errors = {u[len(site.base):]: (m, reason) for u, (_, m, reason) in store.errors.items()}
    assert errors["/missing.jpg"] == (PERMANENT, "HTTP 404")
    assert errors["/down.jpg"] == (TEMPORARY, "HTTP 503 (tried 3 times)")
    assert errors["/slow.jpg"] == (TEMPORARY, "timed out (tried 3 times)")
    assert errors["/page.html"] == (PERMANENT, "not an image (content-type text/html)")
    assert errors["/garbage.jpg"][0] == PERMANENT and errors["/garbage.jpg"][1].startswith("not a usable image")
    assert errors["/huge.jpg"] == (PERMANENT, "300002 bytes is over the 200000-byte limit")
    assert errors["/huge-nolength.jpg"] == (PERMANENT, "larger than the 200000-byte limit")
    assert errors["/loop"] == (PERMANENT, "more than 5 redirects")
    assert len(os.listdir(tmp_path / "dl")) == 1  # garbage and partial bodies never reach the cache


def test_rerun_skips_cached_and_permanent_failures_and_retries_temporary_ones(site, tmp_path):
    names = ["/red.jpg", "/missing.jpg", "/down.jpg"]
    _, _, store = fetch(site, names, tmp_path)
    before = dict(site.hits)
    report, paths, _ = fetch(site, names, tmp_path, store=store)
    assert (report.cached, report.skipped_errors, report.errors, report.downloaded) == (1, 1, 1, 0)
    assert set(paths) == {"/red.jpg"}
    assert site.hits["/red.jpg"] == before["/red.jpg"] and site.hits["/missing.jpg"] == before["/missing.jpg"]
    assert site.hits["/down.jpg"] == before["/down.jpg"] + 3
    site.routes["/missing.jpg"] = site.routes["/red.jpg"]  # fixed on the server
    report, paths, _ = fetch(site, names, tmp_path, store=store, retry_errors=True)
    assert "/missing.jpg" in paths and site.base + "/missing.jpg" not in store.errors


def test_leftover_temporary_files_are_cleaned_and_duplicates_counted(site, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / ".abc.123.part").write_bytes(b"half a file")
    report, paths, _ = fetch(site, ["/red.jpg", "/red.jpg", ""], tmp_path)
    assert (report.urls, report.duplicates, report.no_url, report.downloaded) == (1, 1, 1, 1)
    assert os.listdir(tmp_path / "dl") == [Path(paths["/red.jpg"]).name]


def test_not_http_is_an_error_record(tmp_path):
    report, paths = download.download_urls(FakeStore(), ["ftp://x/y.jpg", "/etc/passwd"], tmp_path / "dl", FAST)
    assert report.errors == 2 and not paths
    assert report.error_samples[0] == ("ftp://x/y.jpg", "not an http(s) URL")


def test_url_column_choice(tmp_path):
    (tmp_path / "a.csv").write_text("photo_id,photo_url,photo_image_url\nx,https://p/x,https://i/x.jpg\n")
    assert read_url_list(tmp_path / "a.csv")[1] == "photo_image_url"  # not the photo page
    (tmp_path / "b.csv").write_text("name,link\nx,https://i/x.jpg\ny,\n")
    assert read_url_list(tmp_path / "b.csv")[1] == "link"
    assert read_url_list(tmp_path / "b.csv", "LINK")[1] == "link"
    with pytest.raises(UsageError, match="no column 'src'"):
        read_url_list(tmp_path / "b.csv", "src")
    (tmp_path / "c.csv").write_text("name,colour\nx,red\n")
    with pytest.raises(UsageError, match="no column of URLs found"):
        read_url_list(tmp_path / "c.csv")


def test_library_index_urls_downloads_indexes_and_imports_metadata(site, tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text("photo_id,photo_image_url,photo_description,photographer_first_name,photographer_last_name\n"
                   f"a,{site.base}/red.jpg,a red thing,Alec,Weir\n"
                   f"b,{site.base}/blue.png,a blue thing,Ann,Lee\n"
                   f"c,{site.base}/missing.jpg,gone,No,One\n")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    report = lib.index_urls(lst, workers=0, download_options=FAST)
    assert (report.downloads.downloaded, report.downloads.errors, report.index.added) == (2, 1, 2)
    assert (report.metadata.matched, report.metadata.unmatched, report.metadata.key) == (2, 1, "url")
    hit = lib.search("something red", limit=1)[0]
    assert Path(hit.path).parent == (tmp_path / "lib" / "downloads").resolve()
    assert hit.source == f"{site.base}/red.jpg" and hit.name == "red.jpg"  # shown as where it came from
    fields = lib.store.get_fields([hit.id])[hit.id]
    assert fields == {"photo_id": "a", "url": f"{site.base}/red.jpg", "description": "a red thing",
                      "photographer": "Alec Weir"}
    assert [e["path"] for e in lib.errors()] == [f"{site.base}/missing.jpg"]
    again = lib.index_urls(lst, workers=0, download_options=FAST)  # resumable: nothing fetched or embedded again
    assert (again.downloads.cached, again.downloads.skipped_errors, again.index.added) == (2, 1, 0)
    assert site.hits["/red.jpg"] == 1 and site.hits["/missing.jpg"] == 1


def test_cli_index_from_list_and_status_errors(site, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PICSEEK_URL_TIMEOUT", "0.5")
    lst = tmp_path / "urls.txt"
    lst.write_text(f"{site.base}/red.jpg\n{site.base}/page.html\n")
    lib = tmp_path / "lib"
    monkeypatch.setattr("picseek.models.registry.load_embedder", lambda name, **kw: ColourEmbedder())
    main(["--library", str(lib), "index", "--from-list", str(lst), "--workers", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["downloads"]["downloaded"] == 1 and out["index"]["added"] == 1
    assert out["downloads"]["error_samples"] == [[f"{site.base}/page.html", "not an image (content-type text/html)"]]
    main(["--library", str(lib), "status", "--errors"])
    assert f"{site.base}/page.html: not an image (content-type text/html)" in capsys.readouterr().out
    main(["--library", str(lib), "search", "red", "-n", "1"])
    table = capsys.readouterr().out.splitlines()
    assert table[1].endswith(f"  {site.base}/red.jpg"), table  # the URL, not the hash-named copy
    main(["--library", str(lib), "search", "red", "-n", "1", "--json"])
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["source"] == f"{site.base}/red.jpg" and "/downloads/" in hit["path"]
    with pytest.raises(SystemExit) as done:
        main(["--library", str(lib), "index", str(tmp_path), "--from-list", str(lst)])
    assert done.value.code == 2 and "not both" in capsys.readouterr().err

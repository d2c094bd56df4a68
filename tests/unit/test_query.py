import http.server
import io
import threading

import numpy as np
import pytest

from picseek import Library
from picseek.errors import ImageError, UsageError
from picseek.ingest.fetch import fetch_bytes
from picseek.query.parse import ID, IMAGE, TEXT, URL, parse, parse_term
from picseek.store.nearest import top_k

from conftest import ColourEmbedder, draw_photo, make_folder


def test_parse_terms(tmp_path):
    (img,) = make_folder(tmp_path, 1)
    assert parse_term("a dog on the beach").kind == TEXT
    assert parse_term(str(img)) == parse_term(f"  {img}  ")
    assert parse_term(str(img)).kind == IMAGE
    assert parse_term("https://example.com/x.jpg").kind == URL
    assert parse_term("id:42").kind == ID and parse_term("id:42").value == "42"
    assert parse_term("sunset.jpg in the style of").kind == TEXT  # words, not a path
    assert parse("cat").is_image_only is False and parse(str(img)).is_image_only is True


@pytest.mark.parametrize("bad, message", [("", "empty query"), ("   ", "empty query"),
                                          ("./nope/x.jpg", "not found"), ("missing.png", "not found")])
def test_parse_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        parse_term(bad)


def test_parse_folder_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="folder"):
        parse_term(str(tmp_path))


def test_top_k_orders_limits_and_thresholds():
    ids = np.arange(10, 15)
    mat = np.eye(5, dtype=np.float32)
    q = np.array([0.1, 0.9, 0.3, 0.0, 0.5], np.float32)
    assert [i for i, _ in top_k(ids, mat, q, 3, None)] == [11, 14, 12]
    assert [i for i, _ in top_k(ids, mat, q, 10, 0.25)] == [11, 14, 12]
    assert top_k(ids[:0], mat[:0], q, 3, None) == []


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, ctype, body = self.routes.get(self.path, (404, "text/plain", b"nope"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    buf = io.BytesIO()
    draw_photo("blue", "square", seed=2).save(buf, "JPEG")
    _Handler.routes = {"/photo.jpg": (200, "image/jpeg", buf.getvalue()),
                       "/big.jpg": (200, "image/jpeg", b"\xff" * 200_000),
                       "/page.html": (200, "text/html", b"<html>not an image</html>")}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_caps_size_and_reports_http_errors(server):
    assert fetch_bytes(server + "/photo.jpg", 1_000_000, 5)[:2] == b"\xff\xd8"
    with pytest.raises(ImageError, match="limit"):
        fetch_bytes(server + "/big.jpg", 100_000, 5)
    with pytest.raises(ImageError, match="404"):
        fetch_bytes(server + "/missing.jpg", 100_000, 5)
    with pytest.raises(ImageError, match="cannot fetch"):
        fetch_bytes("http://127.0.0.1:9/x.jpg", 100_000, 2)  # nothing listens on the discard port


def test_search_by_url(tmp_path, server):
    make_folder(tmp_path / "photos", 8)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([tmp_path / "photos"], workers=0)
    assert lib.search(server + "/photo.jpg", limit=1)[0].path.endswith("img_002.jpg")
    with pytest.raises(ImageError):
        lib.search(server + "/page.html")

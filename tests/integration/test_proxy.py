"""Debian's nginx with the shipped deploy/nginx.conf (only its listen port and upstream replaced) in front of a
running picseek server: searches, uploads and thumbnails pass through with the right headers, oversized bodies stop
at nginx, JSON is gzipped, and writes that come through the proxy need the token even on a loopback server."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import ColourEmbedder, draw_photo
from needs import need_program

pytest.importorskip("fastapi", reason="the server extra is not installed")
from picseek.library import Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.run import running  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx.conf"
TOKEN = "proxy-test-token-0123456789"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
MAIN_CONF = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/picseek.conf;
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_config(listen_port: int, upstream: str) -> str:
    """The shipped file with the listen port and upstream of this test: the only two changes."""
    text = SHIPPED.read_text()
    assert text.count("listen 80;") == 1 and text.count("server picseek:8000;") == 1
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};").replace(
        "server picseek:8000;", f"server {upstream};")


@contextmanager
def nginx_in_front(upstream: str, prefix: Path):
    """nginx (foreground, everything under `prefix`) proxying to `upstream`; yields its base URL."""
    nginx = need_program("nginx", "/usr/sbin/nginx")
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (prefix / "picseek.conf").write_text(site_config(port, upstream))
    mime = Path("/etc/nginx/mime.types")
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(
        prefix=prefix, mime=f"include {mime};" if mime.is_file() else "",
        user="user root root;\n" if os.geteuid() == 0 else ""))  # workers must reach the private tmp folder
    cmd = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    check = subprocess.run(cmd + ["-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stderr.close()


def jpeg(img, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Library:
    photos = tmp_path_factory.mktemp("proxy-photos")
    for i, colour in enumerate(COLOURS):
        draw_photo(colour, "circle" if i % 2 else "square", seed=i).save(photos / f"{colour}.jpg", quality=90)
    library = Library(tmp_path_factory.mktemp("proxy-lib") / "lib", model=ColourEmbedder())
    library.index([photos], workers=0)
    return library


@pytest.fixture(scope="module")
def proxied(lib, tmp_path_factory):
    """(proxy URL, app URL): a loopback server with a token, nginx in front."""
    settings = ServerSettings(token=TOKEN, index_on_start=False, index_workers=0)
    with running(create_app(lib, settings)) as app_url:
        with nginx_in_front(app_url.removeprefix("http://"), tmp_path_factory.mktemp("nginx")) as proxy_url:
            yield proxy_url, app_url


def first_id(lib: Library, colour: str) -> int:
    return lib.search(colour, limit=1)[0].id


def test_search_and_an_uploaded_query_image_pass_through(proxied, lib):
    proxy, _ = proxied
    res = httpx.get(f"{proxy}/api/search", params={"q": "blue", "limit": 3})
    assert res.status_code == 200, res.text
    assert Path(res.json()["hits"][0]["path"]).name == "blue.jpg"
    query = jpeg(draw_photo("green", "circle", seed=99).crop((5, 5, 300, 230)), quality=60)
    res = httpx.post(f"{proxy}/api/search", files={"image": ("q.jpg", query, "image/jpeg")})
    assert res.status_code == 200, res.text
    assert Path(res.json()["hits"][0]["path"]).name == "green.jpg"


def test_json_is_gzipped_for_clients_that_accept_it(proxied):
    proxy, _ = proxied
    res = httpx.get(f"{proxy}/api/search", params={"q": "red", "limit": 6}, headers={"Accept-Encoding": "gzip"})
    assert res.status_code == 200 and res.headers["content-encoding"] == "gzip"
    assert res.json()["count"] == 6  # httpx decodes it: the compressed body is the same JSON
    plain = httpx.get(f"{proxy}/api/search", params={"q": "red", "limit": 6}, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json()["hits"] == res.json()["hits"]
    assert res.headers["server"] == "nginx"  # server_tokens off: no version for scanners


def test_thumbnails_get_the_proxy_cache_headers(proxied, lib):
    proxy, app = proxied
    image_id = first_id(lib, "red")
    res = httpx.get(f"{proxy}/api/images/{image_id}/thumbnail", params={"size": 160})
    assert res.status_code == 200 and res.headers["content-type"].startswith("image/")
    assert res.headers.get_list("cache-control") == ["private, max-age=86400"]
    assert res.headers["etag"] and res.content[:4] in (b"RIFF", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    direct = httpx.get(f"{app}/api/images/{image_id}/thumbnail", params={"size": 160})
    assert direct.content == res.content and direct.headers["cache-control"] != res.headers["cache-control"]
    other = httpx.get(f"{proxy}/api/images/{image_id}/metadata")  # only thumbnails are cached for a day
    assert other.status_code == 200 and "max-age=86400" not in other.headers.get("cache-control", "")


def test_a_body_over_the_limit_stops_at_nginx_with_a_json_413(proxied):
    proxy, _ = proxied
    big = b"\0" * (21 * 1024 * 1024)  # over client_max_body_size 20m
    res = httpx.post(f"{proxy}/api/search", files={"image": ("big.jpg", big, "image/jpeg")}, timeout=60)
    assert res.status_code == 413
    assert res.json() == {"error": "request body too large (this proxy accepts at most 20 MB)", "code": "too_large"}


def test_writes_through_the_proxy_need_the_token(proxied, lib):
    proxy, app = proxied
    image_id = first_id(lib, "yellow")
    url = f"/api/images/{image_id}/tags"
    assert httpx.get(f"{proxy}/api/status").json()["writes_need_token"] is True
    assert httpx.get(f"{app}/api/status").json()["writes_need_token"] is False  # loopback, straight
    res = httpx.post(proxy + url, json={"tags": ["proxied"]})
    assert res.status_code == 401 and res.json()["code"] == "token_required"
    res = httpx.post(proxy + url, json={"tags": ["proxied"]}, headers={"Authorization": "Bearer wrong-token-1234"})
    assert res.status_code == 401 and res.json()["code"] == "bad_token"
    assert lib.store.get_tags([image_id]).get(image_id, []) == []
    res = httpx.post(proxy + url, json={"tags": ["proxied"]}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200 and [t["tag"] for t in res.json()["tags"]] == ["proxied"]
    res = httpx.delete(f"{proxy}{url}/proxied", headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200 and res.json()["tags"] == []


def test_a_loopback_server_without_a_token_refuses_writes_through_a_proxy(lib, tmp_path):
    image_id = first_id(lib, "purple")
    with running(create_app(lib, ServerSettings(index_on_start=False))) as app_url:
        with nginx_in_front(app_url.removeprefix("http://"), tmp_path / "nginx") as proxy:
            assert httpx.get(f"{proxy}/api/search", params={"q": "purple"}).status_code == 200
            res = httpx.post(f"{proxy}/api/images/{image_id}/tags", json={"tags": ["x"]})
            assert res.status_code == 401 and "PICSEEK_TOKEN" in res.json()["error"]
            assert lib.store.get_tags([image_id]).get(image_id, []) == []
            spoofed = httpx.post(f"{app_url}/api/images/{image_id}/tags", json={"tags": ["x"]},
                                 headers={"X-Forwarded-For": "127.0.0.1"})
            assert spoofed.status_code == 401  # a relayed request, whatever address it names
            res = httpx.post(f"{app_url}/api/images/{image_id}/tags", json={"tags": ["x"]})
            assert res.status_code == 200, res.text  # straight from this machine: no token needed, as before
    lib.tag_remove(image_id, ["x"])


def test_the_host_and_scheme_the_client_used_reach_the_app(proxied, lib):
    proxy, app = proxied
    res = httpx.get(f"{proxy}/api/status/")  # the app redirects to the path without the slash
    assert res.status_code == 307 and res.headers["location"] == f"{proxy}/api/status"
    # uvicorn believes X-Forwarded-Proto only from the proxies --forwarded-allow-ips names (default: this machine)
    res = httpx.get(f"{app}/api/status/", headers={"X-Forwarded-Proto": "https"})
    assert res.headers["location"] == app.replace("http://", "https://") + "/api/status"
    with running(create_app(lib, ServerSettings(index_on_start=False)), forwarded_allow_ips="192.0.2.1") as other:
        res = httpx.get(f"{other}/api/status/", headers={"X-Forwarded-Proto": "https"})
        assert res.headers["location"] == f"{other}/api/status"


def test_a_stopped_app_is_a_json_503_from_the_proxy(tmp_path):
    with nginx_in_front(f"127.0.0.1:{free_port()}", tmp_path / "nginx") as proxy:
        res = httpx.get(f"{proxy}/api/status")
        assert res.status_code == 503 and res.json()["code"] == "unavailable"

"""The REST API: searches go through Library.search, images are served by id only, every bad request is a JSON
4xx, writes need the token where the server says so, readers keep working while an index run writes. Mechanics run
on the ColourEmbedder test double (a text names a colour; an image's vector is its colour). Includes a schemathesis
fuzz run of the OpenAPI spec (no 5xx allowed) and `picseek serve` as a user runs it."""
from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from PIL import Image

from conftest import ColourEmbedder, draw_photo

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install -e '.[test,server]'")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.errors import UsageError  # noqa: E402
from picseek.library import Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.run import running  # noqa: E402

BASE = "http://127.0.0.1"
TOKEN = "test-token-0123456789"
# (file, colour, shape, EXIF date, camera make)
PHOTOS = [("trips/red_square.jpg", "red", "square", "2019:05:01 10:00:00", "Canon"),
          ("trips/blue_circle.jpg", "blue", "circle", "2021:07:02 11:00:00", "Nikon"),
          ("trips/green_square.jpg", "green", "square", "2020:01:03 12:00:00", "Canon"),
          ("home/red_circle.jpg", "red", "circle", "2023:03:04 13:00:00", "Nikon"),
          ("home/yellow_square.png", "yellow", "square", None, None),
          ("home/purple_circle.jpg", "purple", "circle", "2018:02:05 14:00:00", "Canon")]


def save_photo(path: Path, colour: str, shape: str, seed: int, taken: str | None = None,
               make: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if taken:
        exif[306] = taken  # DateTime
    if make:
        exif[271] = make
    draw_photo(colour, shape, seed=seed).save(path, exif=exif) if path.suffix == ".jpg" else \
        draw_photo(colour, shape, seed=seed).save(path)
    return path


def encoded(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("server-photos")
    for i, (name, colour, shape, taken, make) in enumerate(PHOTOS):
        save_photo(root / name, colour, shape, i, taken, make)
    return root


@pytest.fixture(scope="module")
def lib(tmp_path_factory, photos) -> Library:
    library = Library(tmp_path_factory.mktemp("server-lib") / "lib", model=ColourEmbedder())
    library.index([photos], workers=0)
    return library


@pytest.fixture(scope="module")
def client(lib, photos):
    settings = ServerSettings(folders=(str(photos),), index_on_start=False, index_workers=0,
                              max_upload_bytes=2_000_000, max_upload_pixels=4_000_000)
    with TestClient(create_app(lib, settings), base_url=BASE) as c:
        yield c


def ids_of(res) -> list[int]:
    assert res.status_code == 200, res.text
    return [h["id"] for h in res.json()["hits"]]


def id_of(lib: Library, name: str) -> int:
    return next(h.id for h in lib.search("red", limit=100) if h.path.endswith(name))


def assert_json_error(res, status: int, code: str | None = None) -> dict:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert isinstance(body["error"], str) and body["error"] and "Traceback" not in body["error"]
    if code:
        assert body["code"] == code, body
    return body


# -- search ---------------------------------------------------------------------------------------------------------
def test_text_search_ranks_the_named_colour_first_and_matches_library_search(client, lib):
    res = client.get("/api/search", params={"q": "red", "limit": 3})
    body = res.json()
    assert body["count"] == 3
    assert {Path(h["path"]).name for h in body["hits"][:2]} == {"red_square.jpg", "red_circle.jpg"}
    assert ids_of(res) == [h.id for h in lib.search("red", limit=3)]  # the same search function
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    hit = body["hits"][0]
    assert hit["image_url"] == f"/api/images/{hit['id']}" and hit["thumbnail_url"].endswith("/thumbnail")


def test_post_search_with_an_uploaded_near_duplicate_finds_it_first(client, photos):
    img = Image.open(photos / "trips/blue_circle.jpg").crop((6, 4, 314, 236))
    res = client.post("/api/search", files={"image": ("q.jpg", encoded(img, quality=60), "image/jpeg")})
    assert Path(res.json()["hits"][0]["path"]).name == "blue_circle.jpg"


def test_text_and_image_together_are_one_weighted_query(client):
    png = encoded(draw_photo("blue", seed=9), "PNG")
    form = {"text": "yellow", "keywords": "false"}  # vectors only: file names would match "yellow" too
    heavy_image = client.post("/api/search", data={**form, "image_weight": "6"},
                              files={"image": ("q.png", png, "image/png")}).json()
    light_image = client.post("/api/search", data={**form, "image_weight": "0.1"},
                              files={"image": ("q.png", png, "image/png")}).json()
    assert Path(heavy_image["hits"][0]["path"]).name == "blue_circle.jpg"
    assert Path(light_image["hits"][0]["path"]).name == "yellow_square.png"
    assert "yellow" in heavy_image["query"] and "uploaded image" in heavy_image["query"]


def test_threshold_and_limit(client):
    everything = client.get("/api/search", params={"q": "red", "limit": 100}).json()["hits"]
    cut = everything[2]["score"]
    kept = client.get("/api/search", params={"q": "red", "limit": 100, "threshold": cut}).json()["hits"]
    assert kept and all(h["score"] >= cut for h in kept) and len(kept) < len(everything)
    assert client.get("/api/search", params={"q": "red", "threshold": 0.9999}).json()["count"] == 0


def test_similar_leaves_the_image_out_and_finds_the_same_colour(client, lib):
    red = id_of(lib, "red_square.jpg")
    hits = client.get(f"/api/images/{red}/similar", params={"limit": 3}).json()["hits"]
    assert red not in [h["id"] for h in hits] and len(hits) == 3
    assert Path(hits[0]["path"]).name == "red_circle.jpg"
    assert_json_error(client.get("/api/images/999999/similar"), 404, "not_found")


def test_where_filters_and_sort_by_date_go_through_library_search(client, lib):
    trips = client.get("/api/search", params={"q": "red", "where": "folder=trips", "limit": 100}).json()["hits"]
    assert trips and all("/trips/" in h["path"] for h in trips)
    canon = client.get("/api/search", params={"q": "red", "where": ["camera~canon", "taken>=2019-01-01"]}).json()
    assert {Path(h["path"]).name for h in canon["hits"]} == {"red_square.jpg", "green_square.jpg"}
    for sort, newest_first in [("date", False), ("newest", True)]:
        hits = client.get("/api/search", params={"q": "red", "sort": sort, "limit": 100,
                                                 "where": "taken>=2000-01-01"}).json()["hits"]
        dates = [h["taken_at"] for h in hits]
        assert len(dates) == 5 and dates == sorted(dates, reverse=newest_first)
    nothing = client.get("/api/search", params={"q": "red", "where": "camera~leica"}).json()
    assert nothing["count"] == 0 and "camera~leica" in nothing["note"]
    similar = client.get(f"/api/images/{id_of(lib, 'red_square.jpg')}/similar", params={"where": "folder=home"})
    assert {Path(h["path"]).parent.name for h in similar.json()["hits"]} == {"home"}
    assert_json_error(client.get("/api/search", params={"q": "red", "where": "no operator"}), 400)


def test_hits_say_which_ranking_found_them(client, lib):
    hits = client.get("/api/search", params={"q": "red", "limit": 6}).json()["hits"]
    # "red" is in two file names: found by both rankings; the rest by the vectors alone
    assert {Path(h["path"]).name: h["via"] for h in hits} == {
        "red_square.jpg": "vector+keyword", "red_circle.jpg": "vector+keyword", "blue_circle.jpg": "vector",
        "green_square.jpg": "vector", "yellow_square.png": "vector", "purple_circle.jpg": "vector"}
    plain = client.get("/api/search", params={"q": "red", "keywords": "false"}).json()["hits"]
    assert {h["via"] for h in plain} == {"vector"}
    similar = client.get(f"/api/images/{id_of(lib, 'red_square.jpg')}/similar", params={"limit": 2}).json()
    assert [h["via"] for h in similar["hits"]] == ["vector", "vector"]
    nothing = client.get(f"/api/images/{id_of(lib, 'red_square.jpg')}/similar", params={"where": "camera~leica"})
    assert nothing.json()["count"] == 0 and nothing.json()["note"] == "no image has camera~leica"
    via = client.get("/openapi.json").json()["components"]["schemas"]["HitOut"]["properties"]["via"]
    assert "vector+keyword" in via["description"]


def test_tags_added_through_the_api_filter_searches(client, lib):
    blue = id_of(lib, "blue_circle.jpg")
    assert client.post(f"/api/images/{blue}/tags", json={"tags": ["Holiday"]}).status_code == 200
    try:
        hits = client.get("/api/search", params={"q": "red", "tags": "holiday"}).json()["hits"]
        assert [h["id"] for h in hits] == [blue]
    finally:
        client.delete(f"/api/images/{blue}/tags/holiday")


# -- images by id ---------------------------------------------------------------------------------------------------
def test_original_is_served_with_its_content_type(client, lib, photos):
    for name, ctype in [("red_square.jpg", "image/jpeg"), ("yellow_square.png", "image/png")]:
        res = client.get(f"/api/images/{id_of(lib, name)}")
        assert res.status_code == 200 and res.headers["content-type"] == ctype
        assert res.content == next(photos.rglob(name)).read_bytes()
        assert res.headers["x-content-type-options"] == "nosniff"


def test_metadata_as_json_with_exif_fields_and_tags(client, lib):
    red = id_of(lib, "red_square.jpg")
    meta = client.get(f"/api/images/{red}/metadata").json()
    assert meta["name"] == "red_square.jpg" and meta["width"] == 320 and meta["height"] == 240
    assert meta["taken_at"].startswith("2019-05-01T10:00") and meta["camera_make"] == "Canon"
    assert meta["format"] == "JPEG" and meta["tags"] == [] and "content_hash" not in meta
    negotiated = client.get(f"/api/images/{red}", headers={"Accept": "application/json"})
    assert negotiated.headers["content-type"].startswith("application/json") and negotiated.json() == meta


def test_thumbnail_is_small_cached_in_the_library_and_reused(client, lib):
    red = id_of(lib, "red_circle.jpg")
    res = client.get(f"/api/images/{red}/thumbnail", params={"size": 160})
    assert res.status_code == 200 and res.headers["content-type"] in ("image/webp", "image/jpeg")
    assert max(Image.open(io.BytesIO(res.content)).size) == 160
    cached = list((lib.path / "thumbs").rglob("*-160.*"))
    assert len(cached) == 1 and cached[0].read_bytes() == res.content
    mtime = cached[0].stat().st_mtime_ns
    assert client.get(f"/api/images/{red}/thumbnail", params={"size": 160}).content == res.content
    assert cached[0].stat().st_mtime_ns == mtime and not list((lib.path / "thumbs").rglob(".tmp-*"))
    assert_json_error(client.get(f"/api/images/{red}/thumbnail", params={"size": 5000}), 422)
    assert max(Image.open(io.BytesIO(client.get(f"/api/images/{red}/thumbnail?size=200").content)).size) == 320


def test_tags_add_and_remove(client, lib):
    green = id_of(lib, "green_square.jpg")
    res = client.post(f"/api/images/{green}/tags", json={"tags": [" Beach ", "sunset"]})
    assert [t["tag"] for t in res.json()["tags"]] == ["beach", "sunset"]
    assert [t["tag"] for t in client.get(f"/api/images/{green}/metadata").json()["tags"]] == ["beach", "sunset"]
    res = client.delete(f"/api/images/{green}/tags/beach")
    assert [t["tag"] for t in res.json()["tags"]] == ["sunset"]
    client.delete(f"/api/images/{green}/tags/sunset")
    assert_json_error(client.post(f"/api/images/{green}/tags", json={"tags": ['"quoted"']}), 422, "bad_tag")
    assert_json_error(client.post(f"/api/images/{green}/tags", json={"tags": ["tab\tand\x00nul"]}), 422, "bad_tag")
    assert_json_error(client.post("/api/images/999999/tags", json={"tags": ["x"]}), 404)


# -- bad requests: always a JSON 4xx ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "/api/images/..%2F..%2F..%2Fetc%2Fpasswd", "/api/images/%2e%2e/%2e%2e/etc/passwd", "/api/images/-1",
    "/api/images/1%00", "/api/images/0/thumbnail", "/static/..%2F..%2Fpyproject.toml", "/static/%2e%2e/app.py",
    "/api/images/99999999999999999999999", "/api/nothing-here"])
def test_path_traversal_and_unknown_ids_are_json_4xx(client, url):
    res = client.get(url)
    assert 400 <= res.status_code < 500 and res.json()["error"]
    assert b"root:" not in res.content and b"create_app" not in res.content and b"[project]" not in res.content


@pytest.mark.parametrize("query", ["/etc/passwd", "../../../etc/hosts.jpg", "./secret.png", "~/photo.jpg",
                                   "file:///etc/passwd", "http://169.254.169.254/x.jpg", "red + ./nope.jpg",
                                   "0.5:/tmp/x.png"])
def test_queries_naming_server_files_or_urls_are_refused_alike(client, query):
    body = assert_json_error(client.get("/api/search", params={"q": query}), 400, "path_in_query")
    assert "upload" in body["error"]


@pytest.mark.parametrize("params, code", [
    ({"q": "red", "limit": "abc"}, 422), ({"q": "red", "limit": 0}, 422), ({"q": "red", "limit": 10**9}, 422),
    ({"q": "red", "threshold": "nan"}, 422), ({"q": "red", "threshold": "inf"}, 422), ({"q": "red", "sort": "x"}, 422),
    ({"q": "x" * 5000}, 422), ({"q": ""}, 400), ({"q": '"unbalanced'}, 400), ({"q": "id:999999"}, 400),
    ({"q": "red", "tags": 'say "cheese"'}, 400), ({"q": "red", "where": "no operator"}, 400)])
def test_malformed_parameters_are_json_4xx(client, params, code):
    assert_json_error(client.get("/api/search", params=params), code)


def test_malformed_json_and_wrong_methods(client, lib):
    red = id_of(lib, "red_square.jpg")
    headers = {"Content-Type": "application/json"}
    assert_json_error(client.post(f"/api/images/{red}/tags", content=b"{not json", headers=headers), 422)
    assert_json_error(client.post(f"/api/images/{red}/tags", content=b'{"tags": "x"}', headers=headers), 422)
    assert_json_error(client.post(f"/api/images/{red}/tags", content=b'{"tags": []}', headers=headers), 422)
    assert_json_error(client.post(f"/api/images/{red}/tags", content=b"[]", headers=headers), 422)
    assert_json_error(client.put("/api/search"), 405)
    assert_json_error(client.post("/api/search", content=b"\xff\x00garbage",
                                  headers={"Content-Type": "multipart/form-data; boundary=zz"}), 400)


def test_uploads_must_be_images_within_the_byte_and_pixel_limits(client):
    assert_json_error(client.post("/api/search", files={"image": ("x.jpg", b"<html>hello</html>", "image/jpeg")}),
                      422, "bad_image")
    assert_json_error(client.post("/api/search", files={"image": ("x.jpg", b"", "image/jpeg")}, data={"text": "red"}),
                      422, "bad_image")
    truncated = encoded(draw_photo("red"))[:400]
    assert_json_error(client.post("/api/search", files={"image": ("x.jpg", truncated, "image/jpeg")}), 422)
    too_many_pixels = encoded(Image.new("L", (4000, 2000)), "PNG")  # 8 MP > 4 MP limit, yet a small file
    assert len(too_many_pixels) < 2_000_000
    assert_json_error(client.post("/api/search", files={"image": ("x.png", too_many_pixels, "image/png")}), 413,
                      "image_too_large")
    too_many_bytes = os.urandom(2_500_000)
    assert_json_error(client.post("/api/search", files={"image": ("x.jpg", too_many_bytes, "image/jpeg")}), 413)


def test_an_oversized_chunked_upload_is_cut_off_without_content_length(lib):
    settings = ServerSettings(index_on_start=False, max_upload_bytes=100_000)
    with running(create_app(lib, settings)) as url:
        def body():  # a well-formed multipart upload that never ends within the limit, sent without a length
            yield (b'--zz\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
                   b"Content-Type: image/jpeg\r\n\r\n")
            for _ in range(100):
                yield b"x" * 65536
        res = httpx.post(url + "/api/search", content=body(),
                         headers={"Content-Type": "multipart/form-data; boundary=zz"}, timeout=30)
        assert_json_error(res, 413)


# -- safety settings -------------------------------------------------------------------------------------------------
def test_writes_need_the_token_when_required_and_reads_do_not(lib, photos):
    settings = ServerSettings(folders=(str(photos),), token=TOKEN, require_token=True, index_on_start=False,
                              index_workers=0)
    with TestClient(create_app(lib, settings), base_url=BASE) as c:
        red = id_of(lib, "red_square.jpg")
        res = c.post(f"/api/images/{red}/tags", json={"tags": ["x"]})
        assert_json_error(res, 401, "token_required")
        assert res.headers["www-authenticate"] == "Bearer"
        assert_json_error(c.post("/api/index", headers={"Authorization": "Bearer wrong-token-xyz"}), 401, "bad_token")
        assert_json_error(c.delete(f"/api/images/{red}/tags/x", headers={"Authorization": "Basic abc"}), 401)
        assert c.get("/api/search", params={"q": "red"}).status_code == 200
        assert c.get("/api/status").json()["writes_need_token"] is True
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/api/index", headers=auth).status_code == 202
        c.app.state.indexer.join(60)
        assert c.get("/api/status").json()["indexing"]["phase"] == "done"


def test_binding_beyond_loopback_needs_a_token(lib):
    with pytest.raises(UsageError, match="PICSEEK_TOKEN"):
        create_app(lib, ServerSettings(host="0.0.0.0"))
    app = create_app(lib, ServerSettings(host="0.0.0.0", token=TOKEN, index_on_start=False))
    with TestClient(app, base_url="http://192.0.2.10") as c:
        assert_json_error(c.post("/api/index"), 401)
        assert c.get("/api/status").status_code == 200


def test_other_host_names_and_cross_site_writes_are_refused(client, lib):
    assert_json_error(client.get("/api/status", headers={"Host": "evil.example"}), 400, "bad_host")
    assert client.get("/api/status", headers={"Host": "localhost:8000"}).status_code == 200
    named = create_app(lib, ServerSettings(allowed_hosts=("photos.lan",), index_on_start=False))
    with TestClient(named, base_url="http://photos.lan:8000") as c:
        assert c.get("/api/status").status_code == 200
        assert_json_error(c.get("/api/status", headers={"Host": "evil.example"}), 400, "bad_host")
    red = id_of(lib, "red_square.jpg")
    res = client.post(f"/api/images/{red}/tags", json={"tags": ["x"]}, headers={"Origin": "http://evil.example"})
    assert_json_error(res, 403, "cross_origin")
    assert client.get(f"/api/images/{red}/metadata").json()["tags"] == []


def test_cors_is_off_unless_configured(client, lib):
    preflight = {"Origin": "https://photos.example.org", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in client.options("/api/search", headers=preflight).headers
    plain = client.get("/api/status", headers={"Origin": preflight["Origin"]})
    assert "access-control-allow-origin" not in plain.headers
    app = create_app(lib, ServerSettings(cors_origins=("https://photos.example.org",), index_on_start=False))
    with TestClient(app, base_url=BASE) as c:
        res = c.get("/api/status", headers={"Origin": "https://photos.example.org"})
        assert res.headers["access-control-allow-origin"] == "https://photos.example.org"


def test_an_empty_library_says_so(tmp_path):
    empty = Library(tmp_path / "empty", model=ColourEmbedder())
    with TestClient(create_app(empty, ServerSettings()), base_url=BASE) as c:
        assert c.get("/api/status").json()["images"] == 0
        assert_json_error(c.get("/api/search", params={"q": "red"}), 409, "empty_library")
        assert_json_error(c.post("/api/index"), 400, "no_folders")
        assert c.get("/").headers["content-security-policy"].startswith("default-src 'self'")


# -- background indexing ---------------------------------------------------------------------------------------------
class SlowColourEmbedder(ColourEmbedder):
    def embed_pixels(self, pixels):
        time.sleep(0.25)
        return super().embed_pixels(pixels)


def test_searches_keep_working_while_the_background_index_run_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_BATCH_SIZE", "2")
    folder = tmp_path / "photos"
    for i in range(16):
        save_photo(folder / f"p{i:02d}.jpg", ["red", "green", "blue", "yellow"][i % 4], "circle", i)
    library = Library(tmp_path / "lib", model=SlowColourEmbedder())
    app = create_app(library, ServerSettings(folders=(str(folder),), index_workers=0))
    with TestClient(app, base_url=BASE) as c:  # the lifespan starts the run
        seen, answered = [], 0
        while True:
            ix = c.get("/api/status").json()["indexing"]
            seen.append((ix["phase"], ix["done"], ix["total"]))
            if not ix["running"]:
                break
            res = c.get("/api/search", params={"q": "red"})
            answered += res.status_code == 200
            assert res.status_code in (200, 409), res.text  # 409: no image committed yet
            time.sleep(0.05)
        assert ix["phase"] == "done" and ix["report"]["added"] == 16 and ix["error"] is None
        assert any(phase == "embed" and 0 < done < total for phase, done, total in seen)
        assert answered > 0
        for i in range(16, 20):  # new files: the next run has (slow) work to do
            save_photo(folder / f"p{i:02d}.jpg", "purple", "square", i)
        assert c.post("/api/index").status_code == 202
        assert_json_error(c.post("/api/index"), 409, "indexing")
        app.state.indexer.join(60)
        report = c.get("/api/status").json()["indexing"]["report"]
        assert report["unchanged"] == 16 and report["added"] == 4


# -- fuzzing the OpenAPI spec ----------------------------------------------------------------------------------------
FUZZ_SETTINGS = ServerSettings(token=TOKEN, require_token=True, index_on_start=False, index_workers=0,
                               allowed_hosts=("testserver",), max_upload_bytes=1_000_000)
FUZZ_SCHEMA = schemathesis.openapi.from_dict(create_app(None, FUZZ_SETTINGS).openapi())  # the spec only


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """Its own small library: the fuzzer adds tags and starts index runs (it sends the token)."""
    folder = tmp_path_factory.mktemp("fuzz-photos")
    for i, (name, colour, shape, taken, make) in enumerate(PHOTOS[:3]):
        save_photo(folder / name, colour, shape, i, taken, make)
    library = Library(tmp_path_factory.mktemp("fuzz-lib") / "lib", model=ColourEmbedder())
    library.index([folder], workers=0)
    return create_app(library, dataclasses.replace(FUZZ_SETTINGS, folders=(str(folder),)))


@FUZZ_SCHEMA.parametrize()
@pytest.mark.slow
def test_fuzz_openapi_spec_no_server_errors(case, fuzz_app):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    case.call_and_validate(app=fuzz_app, headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=[not_a_server_error, response_schema_conformance, content_type_conformance])


# -- picseek serve, as a user runs it ---------------------------------------------------------------------------------
def test_picseek_serve_cli_starts_refuses_unsafe_binds_and_stops_on_ctrl_c(tmp_path, lib):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PICSEEK_TOKEN", None)
    cmd = [sys.executable, "-m", "picseek.cli", "-L", str(lib.path), "serve"]
    unsafe = subprocess.run(cmd + ["--host", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=60)
    assert unsafe.returncode == 2 and "PICSEEK_TOKEN" in unsafe.stderr and "Traceback" not in unsafe.stderr
    proc = subprocess.Popen(cmd + ["--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = httpx.get(url + "/api/status", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not answer"
                time.sleep(0.2)
        assert status["images"] == len(PHOTOS) and status["model"] == "test-colour"
        assert "<title>picseek</title>" in httpx.get(url + "/").text
        port = int(url.rsplit(":", 1)[1])
        busy = subprocess.run(cmd + ["--port", str(port)], capture_output=True, text=True, env=env, timeout=60)
        assert busy.returncode == 2 and "cannot listen" in busy.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()


def test_background_thread_is_not_left_running(lib):
    assert not [t for t in threading.enumerate() if t.name == "picseek-index" and t.is_alive()]

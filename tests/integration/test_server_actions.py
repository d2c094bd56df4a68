"""Acting on several images through the REST API: bulk tags (POST /api/tags, a write), a zip of the originals
(POST /api/download: streamed, bounded, ids only), zero-shot classification (POST /api/classify, and
/api/classify/tags, a write), the index errors (GET /api/errors, paged) and search paging (`next` / `after`).
On the ColourEmbedder test double."""
from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import ColourEmbedder, draw_photo

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install -e '.[test,server]'")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.library import Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.routes.actions import _zip_time  # noqa: E402

BASE = "http://127.0.0.1"
TOKEN = "test-token-0123456789"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("actions-photos")
    for i, colour in enumerate(COLOURS * 2):
        sub = root / ("a" if i < len(COLOURS) else "b")
        sub.mkdir(exist_ok=True)
        draw_photo(colour, "circle" if i % 2 else "square", seed=i).save(sub / f"{colour}.jpg", quality=90)
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def lib(tmp_path_factory, photos) -> Library:
    library = Library(tmp_path_factory.mktemp("actions-lib") / "lib", model=ColourEmbedder())
    library.index([photos], workers=0)
    return library


SETTINGS = ServerSettings(index_on_start=False, index_workers=0)


@pytest.fixture(scope="module")
def client(lib, photos):
    with TestClient(create_app(lib, dataclasses.replace(SETTINGS, folders=(str(photos),))), base_url=BASE) as c:
        yield c


def ids_named(lib: Library, colour: str) -> list[int]:
    return sorted(h.id for h in lib.search(colour, limit=100) if Path(h.path).stem == colour)


def err(res, status: int, code: str) -> dict:
    assert res.status_code == status, res.text
    body = res.json()
    assert body["code"] == code and body["error"], body
    return body


# -- bulk tags -------------------------------------------------------------------------------------------------------
def test_bulk_tags_add_and_remove_on_many_images(client, lib):
    reds, blues = ids_named(lib, "red"), ids_named(lib, "blue")
    res = client.post("/api/tags", json={"ids": reds + blues, "add": ["Warm Set", "picked"]})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["images"] == 4 and body["added"] == 8 and body["removed"] == 0
    assert {t["tag"] for t in body["tags"][str(reds[0])]} == {"warm set", "picked"}
    assert sorted(h.id for h in lib.search("tag:picked", limit=100)) == sorted(reds + blues)
    res = client.post("/api/tags", json={"ids": blues, "remove": ["warm set"], "add": ["cool"]})
    assert res.json()["removed"] == 2 and res.json()["added"] == 2
    tags = lib.store.get_tags(blues + reds)
    assert all({t["tag"] for t in tags[i]} == {"picked", "cool"} for i in blues)
    assert all({t["tag"] for t in tags[i]} == {"picked", "warm set"} for i in reds)
    client.post("/api/tags", json={"ids": reds + blues, "remove": ["picked", "warm set", "cool"]})
    assert not any(lib.store.get_tags(reds + blues).values())


def test_bulk_tags_refuse_unknown_ids_and_bad_tags_changing_nothing(client, lib):
    reds = ids_named(lib, "red")
    body = err(client.post("/api/tags", json={"ids": [reds[0], 999999, 888888], "add": ["x"]}), 404, "not_found")
    assert "999999" in body["error"] and "888888" in body["error"] and "nothing was changed" in body["error"]
    assert not lib.store.get_tags([reds[0]]).get(reds[0])
    err(client.post("/api/tags", json={"ids": reds, "add": ['a "quoted" tag']}), 422, "bad_tag")
    err(client.post("/api/tags", json={"ids": reds}), 400, "bad_tag")
    err(client.post("/api/tags", json={"ids": [], "add": ["x"]}), 422, "invalid_parameters")
    err(client.post("/api/tags", json={"ids": reds, "add": ["x"], "path": "/etc"}), 422, "invalid_parameters")


def test_bulk_tags_need_the_token_when_required_and_same_origin(lib, photos):
    settings = dataclasses.replace(SETTINGS, folders=(str(photos),), token=TOKEN, require_token=True)
    reds = ids_named(lib, "red")
    with TestClient(create_app(lib, settings), base_url=BASE) as c:
        err(c.post("/api/tags", json={"ids": reds, "add": ["t"]}), 401, "token_required")
        err(c.post("/api/tags", json={"ids": reds, "add": ["t"]}, headers={"Authorization": "Bearer nope-nope"}),
            401, "bad_token")
        err(c.post("/api/classify/tags", json={"ids": reds, "labels": "red,blue"}), 401, "token_required")
        ok = c.post("/api/tags", json={"ids": reds, "remove": ["t"]}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        # reads need no token: a zip and a classification
        assert c.post("/api/download", json={"ids": reds}).status_code == 200
        assert c.post("/api/classify", data={"ids": str(reds[0]), "labels": "red,blue"}).status_code == 200
    with TestClient(create_app(lib, dataclasses.replace(SETTINGS, folders=(str(photos),))), base_url=BASE) as c:
        err(c.post("/api/tags", json={"ids": reds, "add": ["t"]}, headers={"Origin": "https://evil.example"}),
            403, "cross_origin")


# -- zip download ----------------------------------------------------------------------------------------------------
def test_download_streams_a_zip_of_the_originals(client, lib, photos):
    reds, greens = ids_named(lib, "red"), ids_named(lib, "green")
    res = client.post("/api/download", json={"ids": reds + greens[:1]})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/zip"
    assert res.headers["content-disposition"] == 'attachment; filename="picseek-3-images.zip"'
    zf = zipfile.ZipFile(io.BytesIO(res.content))
    names = zf.namelist()
    assert len(names) == 3 and len(set(names)) == 3 and names[0] == "red.jpg"  # the same name twice: made unique
    assert all("/" not in n and ".." not in n for n in names)
    assert zf.read("red.jpg") == (photos / "a" / "red.jpg").read_bytes()
    assert zf.testzip() is None


def test_download_limits_unknown_ids_and_changed_files(lib, photos, tmp_path):
    reds, blues = ids_named(lib, "red"), ids_named(lib, "blue")
    small = dataclasses.replace(SETTINGS, folders=(str(photos),), max_download_images=3, max_download_bytes=10**9)
    with TestClient(create_app(lib, small), base_url=BASE) as c:
        body = err(c.post("/api/download", json={"ids": reds + blues}), 413, "download_too_large")
        assert "at most 3" in body["error"]
        err(c.post("/api/download", json={"ids": [reds[0], 424242]}), 404, "not_found")
        err(c.post("/api/download", json={"ids": ["/etc/passwd"]}), 422, "invalid_parameters")
        err(c.post("/api/download", json={"ids": [2**70]}), 422, "invalid_parameters")
        err(c.post("/api/tags", json={"ids": [0], "add": ["x"]}), 422, "invalid_parameters")
    size = (photos / "a" / "red.jpg").stat().st_size
    tight = dataclasses.replace(SETTINGS, folders=(str(photos),), max_download_bytes=size + 10)
    with TestClient(create_app(lib, tight), base_url=BASE) as c:
        assert c.post("/api/download", json={"ids": reds[:1]}).status_code == 200
        assert "MB" in err(c.post("/api/download", json={"ids": reds}), 413, "download_too_large")["error"]
    assert _zip_time(0)[0] >= 1980 and _zip_time(10**9 * 100) == (1980, 1, 1, 0, 0, 0)
    # A file changed since it was indexed: left out, and named in SKIPPED.txt.
    target = next(p for p in photos.rglob("yellow.jpg"))
    yellow = lib.store.find_path(str(target))
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        with TestClient(create_app(lib, dataclasses.replace(SETTINGS)), base_url=BASE) as c:
            res = c.post("/api/download", json={"ids": [reds[0], yellow]})
            zf = zipfile.ZipFile(io.BytesIO(res.content))
            assert zf.namelist() == ["red.jpg", "SKIPPED.txt"]
            assert f"{yellow}\t" in zf.read("SKIPPED.txt").decode() and "changed" in zf.read("SKIPPED.txt").decode()
    finally:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- classification --------------------------------------------------------------------------------------------------
def _jpeg(colour: str) -> bytes:
    buf = io.BytesIO()
    draw_photo(colour, seed=3).save(buf, "JPEG")
    return buf.getvalue()


def test_classify_an_upload_gives_probabilities_over_the_labels(client):
    res = client.post("/api/classify", data={"labels": "red, green ,blue,"},
                      files={"image": ("x.jpg", _jpeg("green"), "image/jpeg")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["labels"] == ["red", "green", "blue"]
    (pred,) = body["predictions"]
    assert pred["id"] is None and [x["label"] for x in pred["labels"]][0] == "green" and len(pred["labels"]) == 3
    assert abs(sum(x["probability"] for x in pred["labels"]) - 1) < 1e-3


def test_classify_indexed_images_by_id(client, lib):
    reds, blues = ids_named(lib, "red"), ids_named(lib, "blue")
    res = client.post("/api/classify", data={"ids": f"{reds[0]},{blues[0]}", "labels": "red,blue,green", "top": 1})
    preds = res.json()["predictions"]
    assert [(p["id"], p["labels"][0]["label"], len(p["labels"])) for p in preds] == [(reds[0], "red", 1),
                                                                                      (blues[0], "blue", 1)]
    assert preds[0]["path"].endswith("red.jpg")
    res = client.post("/api/classify", data={"ids": f"id:{reds[0]}", "labels": "red,blue"})
    assert res.json()["predictions"][0]["labels"][0]["label"] == "red"


def test_classify_refuses_what_it_cannot_answer(client, lib):
    reds = ids_named(lib, "red")
    err(client.post("/api/classify", data={"ids": str(reds[0]), "labels": "red"}), 400, "bad_labels")
    err(client.post("/api/classify", data={"labels": "red,blue"}), 400, "bad_request")
    err(client.post("/api/classify", data={"ids": "1,x", "labels": "red,blue"}), 400, "bad_request")
    err(client.post("/api/classify", data={"ids": "987654", "labels": "red,blue"}), 404, "not_found")
    err(client.post("/api/classify", data={"labels": "red,blue"},
                    files={"image": ("x.jpg", b"not an image", "image/jpeg")}), 422, "bad_image")
    err(client.post("/api/classify", data={"ids": "1"}), 400, "bad_labels")  # neither labels nor a label set
    err(client.post("/api/classify", data={"ids": "1", "labels": "a,b", "labelset": "x"}), 400, "bad_labels")


def test_label_sets_are_saved_in_the_library_and_classify_into(client, lib, photos):
    assert client.get("/api/labelsets").json() == {"sets": {}}
    err(client.post("/api/classify", data={"ids": "1", "labelset": "colours"}), 404, "not_found")
    saved = client.put("/api/labelsets/colours", json={"labels": "red, blue,green,red"})
    assert saved.status_code == 200 and saved.json() == {"sets": {"colours": ["red", "blue", "green"]}}
    assert client.put("/api/labelsets/two", json={"labels": ["cat", "dog"]}).json()["sets"]["two"] == ["cat", "dog"]
    err(client.put("/api/labelsets/bad", json={"labels": "only-one"}), 400, "bad_labels")
    reds = ids_named(lib, "red")
    res = client.post("/api/classify", data={"ids": str(reds[0]), "labelset": "colours", "top": 1})
    assert res.json()["labels"] == ["red", "blue", "green"] and res.json()["predictions"][0]["labels"][0]["label"] \
        == "red"
    tagged = client.post("/api/classify/tags", json={"ids": reds[:1], "labelset": "colours", "min_score": 0.5})
    assert tagged.status_code == 200, tagged.text
    assert Library(lib.path).label_sets() == {"colours": ["red", "blue", "green"], "two": ["cat", "dog"]}  # on disk
    assert client.delete("/api/labelsets/two").json() == {"sets": {"colours": ["red", "blue", "green"]}}
    err(client.delete("/api/labelsets/two"), 404, "not_found")
    client.delete("/api/labelsets/colours")


def test_saving_a_label_set_needs_the_token_when_required(lib, photos):
    settings = dataclasses.replace(SETTINGS, folders=(str(photos),), token=TOKEN, require_token=True)
    with TestClient(create_app(lib, settings), base_url=BASE) as c:
        err(c.put("/api/labelsets/x", json={"labels": "a,b"}), 401, "token_required")
        err(c.delete("/api/labelsets/x"), 401, "token_required")
        assert c.get("/api/labelsets").status_code == 200


def test_classify_the_selection_into_tags(client, lib):
    reds, greens = ids_named(lib, "red"), ids_named(lib, "green")
    res = client.post("/api/classify/tags", json={"ids": reds + greens, "labels": "red, green, blue",
                                                  "min_score": 0.5})
    assert res.status_code == 200, res.text
    body = res.json()
    assert {p["id"]: p["labels"][0]["label"] for p in body["predictions"]} == {
        **dict.fromkeys(reds, "red"), **dict.fromkeys(greens, "green")}
    for i in reds:
        (tag,) = body["tags"][str(i)]
        assert tag["tag"] == "red" and tag["source"] == "classify" and tag["score"] >= 0.5
    assert sorted(h.id for h in lib.search("tag:green", limit=50)) == greens
    lib.store.remove_tags(reds + greens, ["red", "green", "blue"])
    err(client.post("/api/classify/tags", json={"ids": [reds[0], 5555555], "labels": "red,blue"}), 404, "not_found")
    err(client.post("/api/classify/tags", json={"labels": "red,blue"}), 400, "bad_request")
    res = client.post("/api/classify/tags", json={"all": True, "labels": "red,green,blue,yellow,purple,orange",
                                                  "min_score": 0.5})
    assert res.status_code == 200, res.text
    report = res.json()["report"]
    assert report["images"] == 12 and report["tags"] == 12 and set(report["per_label"].values()) == {2}
    assert sorted(h.id for h in lib.search("tag:red", limit=50)) == reds
    lib.store.remove_tags([h.id for h in lib.search("red", limit=50)], COLOURS)


# -- index errors ----------------------------------------------------------------------------------------------------
def test_errors_are_listed_a_page_at_a_time(client):
    res = client.get("/api/errors")
    assert res.status_code == 200
    body = res.json()
    assert body["total"] == 1 and body["next"] is None and body["offset"] == 0
    (row,) = body["errors"]
    assert row["path"].endswith("broken.jpg") and row["reason"]
    assert client.get("/api/errors?offset=5").json()["errors"] == []
    err(client.get("/api/errors?limit=0"), 422, "invalid_parameters")
    err(client.get("/api/errors?limit=501"), 422, "invalid_parameters")


# -- search paging ---------------------------------------------------------------------------------------------------
def test_search_pages_with_a_next_token(client, lib):
    whole = [h["id"] for h in client.get("/api/search", params={"q": "red", "limit": 12}).json()["hits"]]
    assert len(whole) == 12
    seen, after = [], None
    for _ in range(5):
        params = {"q": "red", "limit": 5} | ({"after": after} if after else {})
        body = client.get("/api/search", params=params).json()
        seen += [h["id"] for h in body["hits"]]
        after = body["next"]
        if not after:
            break
    assert seen == whole  # the pages, one after another, are the search
    similar = client.get(f"/api/images/{whole[0]}/similar", params={"limit": 4}).json()
    more = client.get(f"/api/images/{whole[0]}/similar", params={"limit": 4, "after": similar["next"]}).json()
    assert not {h["id"] for h in similar["hits"]} & {h["id"] for h in more["hits"]} and len(more["hits"]) == 4
    post = client.post("/api/search", data={"text": "blue", "limit": 3}).json()
    post2 = client.post("/api/search", data={"text": "blue", "limit": 3, "after": post["next"]}).json()
    assert len(post2["hits"]) == 3 and not {h["id"] for h in post["hits"]} & {h["id"] for h in post2["hits"]}


def test_a_page_token_works_only_for_its_own_search(client):
    first = client.get("/api/search", params={"q": "red", "limit": 3}).json()
    assert first["next"]
    err(client.get("/api/search", params={"q": "blue", "limit": 3, "after": first["next"]}), 400, "bad_cursor")
    err(client.get("/api/search", params={"q": "red", "limit": 3, "after": "garbage"}), 400, "bad_cursor")
    err(client.get("/api/search", params={"q": "red", "where": "folder=a", "after": first["next"]}), 400, "bad_cursor")
    assert client.get("/api/search", params={"q": "red", "limit": 3, "sort": "newest"}).json()["next"] is None
    assert client.get("/api/search", params={"q": "red", "limit": 50}).json()["next"] is None  # all 12 shown


def test_classify_upload_is_bounded(lib):
    small = dataclasses.replace(SETTINGS, max_upload_bytes=5_000, max_upload_pixels=10_000)
    big = io.BytesIO()
    Image.new("RGB", (400, 400), "red").save(big, "PNG")
    with TestClient(create_app(lib, small), base_url=BASE) as c:
        err(c.post("/api/classify", data={"labels": "red,blue"},
                   files={"image": ("x.png", big.getvalue(), "image/png")}), 413, "image_too_large")

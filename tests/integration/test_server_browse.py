"""GET /api/browse: the library newest first (date taken, else file time), a page at a time with keyset cursors;
filters and tags as for search; a cursor the server did not hand out is a 400 bad_cursor."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from conftest import ColourEmbedder, draw_photo

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install -e '.[test,server]'")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.library import Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402

# (file, colour, EXIF date or None: the file time counts)
PHOTOS = [("trips/a.jpg", "red", "2019:05:01 10:00:00"), ("trips/b.jpg", "blue", "2021:07:02 11:00:00"),
          ("trips/c.jpg", "green", "2020:01:03 12:00:00"), ("home/d.jpg", "red", "2023:03:04 13:00:00"),
          ("home/e.png", "yellow", None), ("home/f.jpg", "purple", "2018:02:05 14:00:00"),
          ("home/g.jpg", "orange", "2021:07:02 11:00:00")]  # the same date as b.jpg: ids break the tie


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse-photos")
    for i, (name, colour, taken) in enumerate(PHOTOS):
        path = root / name
        path.parent.mkdir(exist_ok=True)
        exif = Image.Exif()
        if taken:
            exif[306] = taken
        img = draw_photo(colour, seed=i)
        img.save(path, exif=exif) if path.suffix == ".jpg" else img.save(path)
    os.utime(root / "home/e.png", (1_600_000_000, 1_600_000_000))  # 2020-09-13 UTC
    library = Library(tmp_path_factory.mktemp("browse-lib") / "lib", model=ColourEmbedder())
    library.index([root], workers=0)
    library.tag_add(library.store.find_path(str(root / "trips/b.jpg")), ["beach"])
    settings = ServerSettings(folders=(str(root),), index_on_start=False, index_workers=0)
    with TestClient(create_app(library, settings), base_url="http://127.0.0.1") as c:
        yield c, library


def names(hits: list[dict]) -> list[str]:
    return [h["path"].rsplit("/", 1)[-1] for h in hits]


def test_paging_through_everything_newest_first(setup):
    client, _ = setup
    seen, dates, after, pages = [], [], None, 0
    while True:
        res = client.get("/api/browse", params={"limit": 2, **({"after": after} if after else {})})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["count"] == len(body["hits"]) <= 2
        for hit in body["hits"]:
            assert hit["score"] is None and hit["via"] is None and hit["thumbnail_url"].endswith("/thumbnail")
        seen += names(body["hits"])
        dates += [h["date"] for h in body["hits"]]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert pages == 4 and len(seen) == len(set(seen)) == len(PHOTOS)
    assert seen[0] == "d.jpg" and seen[-1] == "f.jpg" and set(seen[1:3]) == {"b.jpg", "g.jpg"}
    assert dates == sorted(dates, reverse=True)
    assert dates[seen.index("e.png")] == "2020-09-13T12:26:40"  # no EXIF date: the file time (UTC)
    one = client.get("/api/browse", params={"limit": 500}).json()
    assert names(one["hits"]) == seen and one["next"] is None


def test_filters_and_tags(setup):
    client, _ = setup
    res = client.get("/api/browse", params={"where": "folder=home"})
    assert names(res.json()["hits"]) == ["d.jpg", "g.jpg", "e.png", "f.jpg"]
    res = client.get("/api/browse", params={"where": ["taken>=2020", "taken<2022"], "limit": 1})
    first = res.json()
    assert first["count"] == 1 and first["next"]
    rest = client.get("/api/browse", params={"where": ["taken>=2020", "taken<2022"], "after": first["next"]}).json()
    assert sorted(names(first["hits"] + rest["hits"])) == ["b.jpg", "c.jpg", "g.jpg"]
    assert names(client.get("/api/browse", params={"tags": "Beach"}).json()["hits"]) == ["b.jpg"]


@pytest.mark.parametrize("params, status, code", [
    ({"after": "not a cursor"}, 400, "bad_cursor"), ({"after": "2020|x"}, 400, "bad_cursor"),
    ({"after": "x" * 201}, 422, "invalid_parameters"), ({"limit": 0}, 422, "invalid_parameters"),
    ({"limit": 501}, 422, "invalid_parameters"), ({"where": "no operator"}, 400, "bad_filter"),
    ({"where": "nosuchkey=1"}, 400, "bad_filter"), ({"tags": "a\x00b"}, 400, "bad_tag")])
def test_bad_requests_are_json_errors(setup, params, status, code):
    client, _ = setup
    res = client.get("/api/browse", params=params)
    assert res.status_code == status and res.json()["code"] == code, res.text


def test_a_cursor_continues_right_after_its_page(setup):
    """Keyset cursors name a position (date, id), not an offset: the next page starts right after it."""
    client, _ = setup
    first = client.get("/api/browse", params={"limit": 3}).json()
    rest = client.get("/api/browse", params={"limit": 10, "after": first["next"]}).json()
    assert names(rest["hits"]) == names(client.get("/api/browse", params={"limit": 10}).json()["hits"])[3:]

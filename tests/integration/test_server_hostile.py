"""The REST API on a hostile file system and against hostile clients: an indexed photo replaced by a link to a secret,
by another file or by a FIFO is never served; files swapped between the check and the open are refused; names that
are not UTF-8 or hold line breaks are served and shown; two Host headers are refused; huge or negative numbers in
any parameter are a 4xx."""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import ColourEmbedder, draw_photo

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install -e '.[test,server]'")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.library import Hit, Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.routes import common  # noqa: E402
from picseek.server.routes.common import hit_json  # noqa: E402
from picseek.server.routes.images import content_disposition  # noqa: E402
from picseek.server.run import running  # noqa: E402

BASE = "http://127.0.0.1"
SECRET = b"root:$6$TOP-SECRET-HASH$:19000:0:99999:7:::\n"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links, FIFOs and byte file names")


def jpeg(path: Path, colour: str, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_photo(colour, seed=seed).save(path, "JPEG", quality=90)
    return path


def error_code(res, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    return res.json()["code"]


@pytest.fixture
def world(tmp_path):
    """A root with three JPEGs (indexed), a secret file and a copy of a photo outside it, and a client."""
    root = tmp_path / "photos"
    a, b = jpeg(root / "a.jpg", "red", 1), jpeg(root / "b.jpg", "blue", 2)
    jpeg(root / "sub" / "c.jpg", "green", 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_bytes(SECRET)
    shutil.copy2(a, outside / "a_copy.jpg")  # same bytes, same mtime_ns, another inode outside the roots
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    library.index([root], workers=0)
    ids = {Path(h.path).name: h.id for h in library.search("red", limit=10)}
    app = create_app(library, ServerSettings(index_on_start=False, index_workers=0))
    with TestClient(app, base_url=BASE) as client:
        yield {"root": root, "a": a, "b": b, "outside": outside, "ids": ids, "client": client, "lib": library}


def swap_for_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


# -- 1. every file is checked again before it is served ---------------------------------------------------------------
@posix_only
def test_a_photo_swapped_for_a_link_to_a_secret_is_not_served(world, caplog):
    c, a, ida = world["client"], world["a"], world["ids"]["a.jpg"]
    original = a.read_bytes()
    assert c.get(f"/api/images/{ida}").content == original
    assert c.get(f"/api/images/{ida}/thumbnail", params={"size": 160}).status_code == 200  # now cached
    swap_for_link(a, world["outside"] / "shadow")
    with caplog.at_level(logging.WARNING, logger="picseek.server.routes.common"):
        for url in (f"/api/images/{ida}", f"/api/images/{ida}/thumbnail?size=160",
                    f"/api/images/{ida}/thumbnail?size=640"):
            res = c.get(url)
            assert error_code(res, 404) == "file_missing"
            assert b"SECRET" not in res.content and b"shadow" not in res.content and b"outside" not in res.content
    assert any("outside the indexed folders" in r.getMessage() for r in caplog.records)
    # a link to a directory, a FIFO, a dangling link: not regular files
    for make in (lambda: a.symlink_to(world["outside"]), lambda: os.mkfifo(a),
                 lambda: a.symlink_to(world["outside"] / "nothing-here")):
        a.unlink()
        make()
        assert error_code(c.get(f"/api/images/{ida}"), 404) == "file_missing"
        assert error_code(c.get(f"/api/images/{ida}/thumbnail"), 404) == "file_missing"


@posix_only
def test_links_leading_outside_are_served_only_with_follow_links(world, monkeypatch):
    c, a, ida = world["client"], world["a"], world["ids"]["a.jpg"]
    original = a.read_bytes()
    swap_for_link(a, world["outside"] / "a_copy.jpg")  # the same photo, same size and mtime, outside the root
    assert error_code(c.get(f"/api/images/{ida}"), 404) == "file_missing"
    monkeypatch.setenv("PICSEEK_FOLLOW_LINKS", "on")
    res = c.get(f"/api/images/{ida}")
    assert res.status_code == 200 and res.content == original
    assert c.get(f"/api/images/{ida}/thumbnail").status_code == 200
    swap_for_link(a, world["outside"] / "shadow")  # followed, but not the indexed file: its size and mtime differ
    res = c.get(f"/api/images/{ida}")
    assert error_code(res, 409) == "file_changed" and b"SECRET" not in res.content


def test_a_file_changed_since_it_was_indexed_is_a_409(world):
    c, a, ida = world["client"], world["a"], world["ids"]["a.jpg"]
    assert c.get(f"/api/images/{ida}/thumbnail", params={"size": 160}).status_code == 200
    jpeg(a, "yellow", 9)  # rewritten in place: another size and mtime
    for url in (f"/api/images/{ida}", f"/api/images/{ida}/thumbnail?size=160", f"/api/images/{ida}/thumbnail"):
        res = c.get(url)
        assert error_code(res, 409) == "file_changed"
        assert "index again" in res.json()["error"]


def test_a_changed_file_starts_an_index_run_of_the_servers_folders(tmp_path):
    """'Mark it for re-indexing': a 409 starts a run (at most one a minute), after which the new file is served."""
    root = tmp_path / "photos"
    a = jpeg(root / "a.jpg", "red", 1)
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    library.index([root], workers=0)
    (hit,) = library.search("red", limit=1)
    app = create_app(library, ServerSettings(folders=(str(root),), index_on_start=False, index_workers=0))
    with TestClient(app, base_url=BASE) as c:
        jpeg(a, "yellow", 9)
        assert error_code(c.get(f"/api/images/{hit.id}"), 409) == "file_changed"
        app.state.indexer.join(60)
        assert app.state.indexer.state()["report"]["updated"] == 1
        res = c.get(f"/api/images/{hit.id}")
        assert res.status_code == 200 and res.content == a.read_bytes()
        os.utime(a, ns=(1, 1))
        assert c.get(f"/api/images/{hit.id}").status_code == 409
        assert not app.state.indexer.running, "not another run within the minute"


def test_no_thumbnail_is_made_from_other_bytes_behind_the_same_size_and_mtime(world):
    c, a, ida, lib = world["client"], world["a"], world["ids"]["a.jpg"], world["lib"]
    st = a.stat()
    data = bytearray(a.read_bytes())
    data[len(data) // 2] ^= 0xFF  # another content, same size ...
    a.write_bytes(bytes(data))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same mtime: the stat check cannot tell
    assert error_code(c.get(f"/api/images/{ida}/thumbnail", params={"size": 320}), 409) == "file_changed"
    assert not list((lib.path / "thumbs").rglob("*-320.*"))  # nothing cached under the indexed hash


@posix_only
def test_links_inside_the_root_are_served_only_when_they_lead_to_the_indexed_file(world):
    c, root, a, ida = world["client"], world["root"], world["a"], world["ids"]["a.jpg"]
    original = a.read_bytes()
    os.rename(a, root / "sub" / "a_moved.jpg")  # the same inode: same size and mtime
    a.symlink_to(Path("sub") / "a_moved.jpg")
    res = c.get(f"/api/images/{ida}")
    assert res.status_code == 200 and res.content == original
    assert c.get(f"/api/images/{ida}/thumbnail").status_code == 200
    swap_for_link(a, world["b"])  # another photo in the root: not what was indexed under this id
    res = c.get(f"/api/images/{ida}")
    assert error_code(res, 409) == "file_changed" and res.content != world["b"].read_bytes()


@posix_only
def test_a_folder_swapped_for_a_link_between_the_check_and_the_open_is_refused(world, monkeypatch):
    """The race open_indexed closes: the path is checked, then a folder on it becomes a link to a look-alike file
    (same size and mtime) before the open. The open file's inode is not the checked one: refused."""
    c, root, ida = world["client"], world["root"], world["ids"]["c.jpg"]
    sub = root / "sub"
    decoy = world["outside"] / "decoy"
    decoy.mkdir()
    st = (sub / "c.jpg").stat()
    (decoy / "c.jpg").write_bytes(SECRET.ljust(st.st_size, b"#"))
    os.utime(decoy / "c.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    checked, real_open = os.path.realpath(sub / "c.jpg"), os.open

    def racing_open(path, flags, *args, **kw):
        if os.fspath(path) == checked and not sub.is_symlink():
            os.rename(sub, root / "sub_old")
            sub.symlink_to(decoy)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(common.os, "open", racing_open)
    res = c.get(f"/api/images/{ida}")
    assert error_code(res, 409) == "file_changed" and b"SECRET" not in res.content


# -- 2. names that are not UTF-8, or hold line breaks and control characters ----------------------------------------
ODD_NAMES = [b"bad_\xff\xfe.jpg", b"new\nline.jpg", b"tab\tesc\x1b[31m.jpg", "caf\u00e9 \u202eevil.jpg".encode(),
             b'quote"semi;.jpg']


def test_content_disposition_is_a_valid_header_for_any_name():
    for raw in ODD_NAMES:
        header = content_disposition(os.fsdecode(raw))
        header.encode("latin-1")  # what an HTTP header must be
        assert header.isprintable() and header.isascii() and header.startswith("inline; filename")
        assert "\n" not in header and "\r" not in header and '"semi' not in header
    assert content_disposition("IMG_0042.jpg") == 'inline; filename="IMG_0042.jpg"'
    assert content_disposition("bad_\udcff.jpg") == "inline; filename*=utf-8''bad_%5Cxff.jpg"


def test_hits_with_undecodable_names_are_json():
    hit = Hit(id=7, path="/p/bad_\udcff\n.jpg", score=0.5)
    d = hit_json(hit)
    assert d["path"] == "/p/bad_\\xff\\n.jpg" and json.dumps(d, ensure_ascii=False).encode("utf-8")


@posix_only
def test_odd_file_names_are_searched_shown_and_served(tmp_path):
    root = tmp_path / "odd"
    root.mkdir()
    made = {}
    for i, raw in enumerate(ODD_NAMES):
        path = os.path.join(os.fsencode(root), raw)
        draw_photo(["red", "blue", "green", "yellow", "purple"][i], seed=i).save(path, "JPEG")
        made[os.fsdecode(raw)] = Path(os.fsdecode(path)).read_bytes()
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    library.index([root], workers=0)
    with TestClient(create_app(library, ServerSettings(index_on_start=False)), base_url=BASE) as c:
        res = c.get("/api/search", params={"q": "red", "limit": 10})
        assert res.status_code == 200, res.text
        hits = res.json()["hits"]
        shown_names = {h["path"].rsplit("/", 1)[1] for h in hits}
        assert "bad_\\xff\\xfe.jpg" in shown_names and "new\\nline.jpg" in shown_names
        assert "tab\\tesc\\x1b[31m.jpg" in shown_names and "caf\u00e9 \\u202eevil.jpg" in shown_names
        by_name = {os.path.basename(h.path): h.id for h in library.search("red", limit=10)}
        assert set(by_name) == set(made)
        for name, data in made.items():
            image_id = by_name[name]
            meta = c.get(f"/api/images/{image_id}/metadata")
            assert meta.status_code == 200, meta.text
            assert meta.json()["name"].isprintable() and "\n" not in meta.json()["path"]
            res = c.get(f"/api/images/{image_id}")
            assert res.status_code == 200 and res.content == data
            assert "\n" not in res.headers["content-disposition"]
            negotiated = c.get(f"/api/images/{image_id}", headers={"Accept": "application/json"})
            assert negotiated.status_code == 200 and negotiated.json() == meta.json()
            assert c.get(f"/api/images/{image_id}/thumbnail").status_code == 200
            assert c.get(f"/api/images/{image_id}/similar").status_code == 200


# -- 3. one Host header only ----------------------------------------------------------------------------------------
def raw_request(url: str, head: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_two_host_headers_are_refused(tmp_path):
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    with running(create_app(library, ServerSettings(index_on_start=False))) as url:
        one = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert raw_request(url, one)[0] == 200
        for first, second in [(b"evil.example", b"127.0.0.1"), (b"127.0.0.1", b"evil.example"),
                              (b"127.0.0.1", b"127.0.0.1")]:
            head = (b"GET /api/status HTTP/1.1\r\nHost: " + first + b"\r\nHost: " + second
                    + b"\r\nConnection: close\r\n\r\n")
            status, body = raw_request(url, head)
            assert status == 400 and json.loads(body)["code"] == "bad_host", body


# -- 4. numbers: a 4xx, never a 500 -----------------------------------------------------------------------------------
HUGE = "99999999999999999999999"


@pytest.mark.parametrize("url", [
    f"/api/images/{HUGE}", f"/api/images/{HUGE}/thumbnail", f"/api/images/{HUGE}/metadata",
    f"/api/images/{HUGE}/similar", f"/api/images/-{HUGE}", f"/api/images/-{HUGE}/similar", f"/api/images/{2**63}",
    f"/api/images/{2**62 + 1}/similar", f"/api/images/{2**62}", f"/api/images/{2**62}/similar",
    f"/api/images/{2**62}/thumbnail", "/api/images/1/thumbnail?size=" + HUGE, "/api/images/1/thumbnail?size=-1",
    "/api/images/1/similar?limit=" + HUGE, "/api/images/1/similar?limit=-5", "/api/search?q=red&limit=" + HUGE,
    f"/api/search?q=red&limit={10**30}", "/api/search?q=red&limit=-1", "/api/search?q=red&threshold=1e400",
    "/api/search?q=red&threshold=-" + HUGE, "/api/search?q=id:99999999999999999999", f"/api/search?q=id:{2**63}",
    f"/api/search?q=id:{2**63 - 1}", "/api/search?q=id:-1", "/api/search?q=1e400:red"])
def test_huge_and_negative_numbers_are_a_4xx(world, url):
    res = world["client"].get(url)
    assert 400 <= res.status_code < 500, (res.status_code, res.text)
    assert res.json()["error"]


@pytest.mark.parametrize("method, url, kw", [
    ("post", "/api/search", {"data": {"text": "red", "limit": HUGE}}),
    ("post", "/api/search", {"data": {"text": "red", "image_weight": "1e400"}}),
    ("post", "/api/search", {"data": {"text": "red", "threshold": "-" + HUGE}}),
    ("post", f"/api/images/{HUGE}/tags", {"json": {"tags": ["x"]}}),
    ("delete", f"/api/images/{HUGE}/tags/x", {}), ("delete", f"/api/images/{2**62}/tags/x", {})])
def test_huge_numbers_in_forms_and_writes_are_a_4xx(world, method, url, kw):
    res = getattr(world["client"], method)(url, **kw)
    assert 400 <= res.status_code < 500, (res.status_code, res.text)


def test_thumbnails_of_checked_files_still_decode(world):
    res = world["client"].get(f"/api/images/{world['ids']['b.jpg']}/thumbnail", params={"size": 160})
    assert res.status_code == 200 and max(Image.open(io.BytesIO(res.content)).size) == 160

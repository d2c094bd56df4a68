"""Words in images (OCR, issue 19) with the real OCR models on rendered images: read and stored with the vectors,
fused with vector search, the `text:` filter (forgiving reading errors), `has_text`, a killed run that resumes
without reading again, `--ocr` on a library indexed without it (nothing embedded again), EXIF orientation, and
non-Latin text. The pipeline's bookkeeping (failures, resumable fill-in) runs with a stand-in reader."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picseek.ingest import images
from picseek.ingest.images import decode_file
from picseek.library import Library
from picseek.models.base import ImageSpec

from cli_helpers import PICSEEK, cli_env, kill_when, run
from conftest import ColourEmbedder, make_folder
from needs import need_module
from ocr_images import cjk_font, save_text_image, text_image

DOCS = {"report.png": ["Quarterly revenue report", "Second quarter 2024"],
        "receipt.png": ["GROCERY STORE", "Total due 42.50"],
        "sign.png": ["NO PARKING", "tow away zone"]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    need_module("rapidocr_onnxruntime")
    root = tmp_path_factory.mktemp("ocr") / "images"
    make_folder(root, 3)  # photos without words
    for name, lines in DOCS.items():
        save_text_image(root / name, lines)
    return root


@pytest.fixture(scope="module")
def lib(folder, tmp_path_factory) -> Library:
    library = Library(tmp_path_factory.mktemp("ocr-lib") / "lib", model="builtin")
    report = library.index([folder], ocr=True, workers=0)
    assert report.added == 6 and report.texts_read == 6 and report.with_text == 3 and report.errors == 0
    return library


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """One CLI environment for the module (the built-in model's caches are made once)."""
    return cli_env(tmp_path_factory.mktemp("ocr-cli"))


def names(hits) -> list[str]:
    return [h.name for h in hits]


def test_words_are_read_stored_and_shown_with_their_boxes(lib):
    ids = {h.name: h.id for h in lib.browse(limit=10)[0]}
    texts = lib.store.get_texts(list(ids.values()))
    assert len(texts) == 6  # every image has a record, with words or without
    assert "quarterly" in texts[ids["report.png"]].text.lower()
    assert texts[ids["img_000.jpg"]].text == ""
    hit = lib.search('text:"tow away"', limit=1)[0]
    assert hit.name == "sign.png" and hit.ocr["text"].lower().count("tow") == 1
    for line in hit.ocr["lines"]:
        assert set(line) == {"text", "box", "score", "matched"} and len(line["box"]) == 4
        assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y in line["box"]) and 0 < line["score"] <= 1
    assert [line["matched"] for line in hit.ocr["lines"]] == ["tow" in line["text"].lower()
                                                              for line in hit.ocr["lines"]]
    assert any("tow" in t.lower() for t in hit.matched_text)
    assert lib.ocr  # recorded: later runs keep reading


def test_a_phrase_from_a_document_puts_it_first_by_default(lib):
    hits = lib.search('"quarterly revenue"', limit=3)
    assert hits[0].name == "report.png" and "keyword" in hits[0].via
    assert lib.search('"quarterly revenue"', limit=3, keywords=False)  # (still answers with vectors alone)


@pytest.mark.parametrize("query, expected", [
    ('text:"quarterly revenue"', ["report.png"]),
    ('text:"quartely revenu"', ["report.png"]),  # two reading errors: a dropped letter, a cut word
    ('text:grocery', ["receipt.png"]),
    ('text:GR0CERY', ["receipt.png"]),  # O read as 0
    ('text:parking', ["sign.png"]),
])
def test_text_filter_keeps_only_images_that_show_the_words(lib, query, expected):
    assert names(lib.search(query, limit=10)) == expected


def test_text_filter_that_matches_nothing_says_so_and_negation_excludes(lib):
    hits = lib.search('text:"zebra crossing"', limit=10)
    assert not hits and "text" in hits.note
    assert "sign.png" not in names(lib.search("a photo -text:parking", limit=10))
    assert names(lib.search("a photo", where=["text~parking"], limit=10)) == ["sign.png"]


def test_has_text(lib):
    assert sorted(names(lib.search("a photo", where=["has_text=yes"], limit=10))) == sorted(DOCS)
    assert sorted(names(lib.search("a photo", where=["has_text=no"], limit=10))) == [
        "img_000.jpg", "img_001.jpg", "img_002.jpg"]


def test_cli_search_json_gives_the_matched_text(lib, env):
    out = run("-L", lib.path, "search", 'text:"total due"', "--json", env=env).stdout
    (hit,) = json.loads(out)
    assert hit["path"].endswith("receipt.png") and hit["matched_text"] and hit["ocr"]["lines"]
    bad = run("-L", lib.path, "search", "a", "--where", "has_text=maybe", env=env, check=False)
    assert bad.returncode != 0 and "has_text takes =yes or =no" in bad.stderr and "Traceback" not in bad.stderr


def test_rest_hits_and_image_metadata_carry_the_words(lib):
    from fastapi.testclient import TestClient

    from picseek.server import ServerSettings, create_app

    with TestClient(create_app(lib, ServerSettings(index_on_start=False)), base_url="http://127.0.0.1") as client:
        hits = client.get("/api/search", params={"q": 'text:"no parking"'}).json()["hits"]
        assert [h["path"].rsplit("/", 1)[1] for h in hits] == ["sign.png"]
        ocr = hits[0]["ocr"]
        assert set(ocr) == {"text", "lines"} and any(line["matched"] for line in ocr["lines"])
        assert all(len(line["box"]) == 4 and len(line["box"][0]) == 2 for line in ocr["lines"])
        photo = client.get("/api/search", params={"q": "a photo", "where": "has_text=no"}).json()["hits"][0]
        assert photo["ocr"] is None
        meta = client.get(f"/api/images/{hits[0]['id']}/metadata").json()
        assert "PARKING" in meta["ocr"]["text"].upper() and not any(x["matched"] for x in meta["ocr"]["lines"])


def test_text_in_a_rotated_jpeg_is_read_upright(tmp_path):
    need_module("rapidocr_onnxruntime")
    upright = text_image(["Invoice number 7731", "Pay within thirty days"], size=(600, 200))
    stored = upright.rotate(90, expand=True)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    d = decode_file(str(path), ImageSpec(), ocr=True)
    assert d.error is None and d.text.error is None
    assert "invoice" in d.text.text.lower() and "7731" in d.text.text
    (x0, y0), _, (x1, y1), _ = d.text.lines[0]["box"]
    assert x1 - x0 > 3 * (y1 - y0)  # a line across the upright image, not down the stored one


def test_non_latin_text_is_read_and_searched(tmp_path):
    need_module("rapidocr_onnxruntime")
    font = cjk_font()
    folder = tmp_path / "cjk"
    if font:
        save_text_image(folder / "zh.png", ["季度收入报告", "Привет мир"], font=font)
    else:
        save_text_image(folder / "zh.png", ["Привет мир"], font="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    save_text_image(folder / "en.png", ["Plain english words"])
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    report = library.index([folder], ocr=True, workers=0)
    assert report.errors == 0 and report.texts_read == 2
    hits = library.search('text:"收入报告"', limit=5)  # (found or not, an answer)
    assert hits.note or all(h.ocr for h in hits)
    if font:
        assert "收入" in "".join(t.text for t in library.store.get_texts(range(1, 3)).values())
    assert library.search("Привет", limit=2)


def test_a_killed_ocr_run_resumes_without_reading_again(tmp_path, env):
    need_module("rapidocr_onnxruntime")
    folder = tmp_path / "docs"
    for i in range(5):
        save_text_image(folder / f"doc{i}.png", [f"Document number {i}", "Signed and sealed"], size=(420, 160))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(PICSEEK + ["-L", str(killed), "index", str(folder), "--ocr", "--workers", "0",
                                       "--batch-size", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_when(proc, killed / "picseek.db", "SELECT count(*) FROM texts", 1)
    conn = sqlite3.connect(killed / "picseek.db")
    done = conn.execute("SELECT count(*) FROM texts").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == done  # words and vectors: one commit
    report = json.loads(run("-L", killed, "index", folder, "--json", env=env).stdout)  # OCR stays on
    assert report["texts_read"] == 5 - done and report["added"] == 5 - done
    rows = sqlite3.connect(killed / "picseek.db").execute("SELECT text FROM texts").fetchall()
    assert len(rows) == 5 and all("document" in r[0].lower() for r in rows)


# -- the pipeline's bookkeeping, with a stand-in reader (no OCR models) -------------------------------------------
class FakeReader:
    """Reads "WORDS OF <width>" from any image; fails on images `fail_width` wide."""

    def __init__(self, fail_width: int | None = None):
        self.fail_width, self.calls = fail_width, 0

    def likely(self, image) -> bool:
        return True

    def read(self, image):
        from picseek.ingest.ocr import PageText, TextLine

        self.calls += 1
        if image.width == self.fail_width:
            raise RuntimeError("the model fell over")
        return PageText((TextLine(f"words of {image.width}", ((0, 0), (1, 0), (1, 1), (0, 1)), 0.9),))


@pytest.fixture
def fake_reader(monkeypatch):
    reader = FakeReader()
    monkeypatch.setattr(images, "_OCR_READER", reader)
    monkeypatch.setattr("picseek.extras.require", lambda *a, **k: None)
    return reader


def test_ocr_on_an_existing_library_reads_without_embedding_again(tmp_path, fake_reader, monkeypatch):
    photos = tmp_path / "photos"
    make_folder(photos, 5)
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    library.index([photos], workers=0)
    assert not library.ocr and library.store.missing_texts([str(photos)]) and fake_reader.calls == 0
    ids, before = library.store.vectors("main")
    rows = {i: r["indexed_at"] for i, r in library.store.get_images(ids.tolist()).items()}
    writes = []
    real = library.store.write_texts

    def stop_after_two(batch):
        writes.append(len(batch))
        if len(writes) == 3:
            raise KeyboardInterrupt  # killed after two committed batches
        real(batch)

    monkeypatch.setattr(library.store, "write_texts", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        library.index([photos], ocr=True, workers=0, batch_size=2)
    assert len(library.store.get_texts(ids.tolist())) == 4
    monkeypatch.setattr(library.store, "write_texts", real)
    calls = fake_reader.calls
    report = library.index([photos], workers=0)  # the library now reads text: the rest is filled in
    assert report.added == report.updated == 0 and report.texts_read == 1 and fake_reader.calls == calls + 1
    after_ids, after = library.store.vectors("main")
    assert np.array_equal(ids, after_ids) and np.array_equal(before, after)  # nothing embedded again
    assert {i: r["indexed_at"] for i, r in library.store.get_images(ids.tolist()).items()} == rows
    assert not library.store.missing_texts([str(photos)]) and library.ocr
    assert library.index([photos], workers=0).texts_read == 0
    library.index([photos], ocr=False, workers=0)
    assert not library.ocr


def test_an_ocr_failure_is_recorded_and_never_stops_the_run(tmp_path, monkeypatch):
    reader = FakeReader(fail_width=300)
    monkeypatch.setattr(images, "_OCR_READER", reader)
    monkeypatch.setattr("picseek.extras.require", lambda *a, **k: None)
    folder = tmp_path / "f"
    make_folder(folder, 2)
    Image.new("RGB", (300, 200), "white").save(folder / "odd.png")
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    report = library.index([folder], ocr=True, workers=0)
    assert report.added == 3 and report.errors == 0 and report.texts_read == 3 and report.with_text == 2
    texts = library.store.get_texts([library.store.find_path(str(folder / "odd.png"))])
    (text,) = texts.values()
    assert text.text == "" and "the model fell over" in text.error
    assert library.index([folder], workers=0).texts_read == 0  # recorded: not tried again


def test_serve_ocr_turns_it_on_for_the_servers_runs(tmp_path, fake_reader):
    from fastapi.testclient import TestClient

    from picseek.server import ServerSettings, create_app

    folder = tmp_path / "f"
    make_folder(folder, 2)
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    settings = ServerSettings(folders=(str(folder),), ocr=True, index_workers=0)  # (the stand-in reader: in-process)
    with TestClient(create_app(library, settings), base_url="http://127.0.0.1") as client:
        client.app.state.indexer.join(120)
        status = client.get("/api/status").json()
        assert status["ocr"] is True and status["images"] == 2
        hits = client.get("/api/search", params={"q": 'text:"words of 320"'}).json()["hits"]
        assert len(hits) == 2 and hits[0]["matched_text"] == ["words of 320"]
    assert library.ocr and not library.store.missing_texts([str(folder)])


def test_a_watcher_keeps_reading_in_a_library_with_ocr_on(tmp_path, fake_reader):
    import threading

    folder = tmp_path / "f"
    make_folder(folder, 1)
    library = Library(tmp_path / "lib", model=ColourEmbedder())
    library.index([folder], ocr=True, workers=0)
    stop = threading.Event()
    watcher = threading.Thread(target=library.watch, args=([folder],),
                               kwargs={"stop": stop, "debounce": 0.2, "rescan": 0, "workers": 0, "initial": False},
                               daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)  # (the watcher is listening)
        Image.new("RGB", (200, 100), "white").save(folder / "new.png")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not library.store.find_path(str(folder / "new.png")):
            time.sleep(0.05)
        new = library.store.find_path(str(folder / "new.png"))
        assert new and library.store.get_texts([new])[new].text == "words of 200"  # written with its vectors
    finally:
        stop.set()
        watcher.join(10)

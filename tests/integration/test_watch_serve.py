"""`serve --watch`: the server follows its folders (BackgroundIndexer.watch), its runs show in /api/status, and of
several web workers (SharedIndexer) only one watches."""
from __future__ import annotations

import time

import pytest

from picseek import Library

from conftest import ColourEmbedder, draw_photo, make_folder

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.workers import SharedIndexer  # noqa: E402


def wait_until(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return got


def test_serve_watch_indexes_new_and_deleted_photos_by_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_WATCH_DEBOUNCE", "0.2")
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    app = create_app(lib, ServerSettings(folders=(str(photos),), watch=True, index_workers=0))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        wait_until(lambda: client.get("/api/status").json()["images"] == 3, "the first run")
        draw_photo("blue", seed=11).save(photos / "new.jpg")
        wait_until(lambda: client.get("/api/status").json()["images"] == 4, "the new photo")
        hits = client.get("/api/search", params={"q": "blue", "limit": 10}).json()
        assert any(h["path"].endswith("new.jpg") for h in hits["hits"])
        (photos / "img_000.jpg").unlink()
        status = wait_until(lambda: (s := client.get("/api/status").json())["images"] == 3 and s, "the deletion")
        assert status["indexing"]["report"]["removed"] == 1 and not status["indexing"]["running"]
        watcher = app.state.indexer._watcher
    watcher.join(5)
    assert not watcher.is_alive()  # stopped with the app
    lib.close()


def test_only_one_of_several_workers_watches(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_WATCH_DEBOUNCE", "0.2")
    monkeypatch.setattr("picseek.server.workers.WATCH_CLAIM_EVERY", 0.1)
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    Library(tmp_path / "lib", model=ColourEmbedder()).close()
    libs = [Library(tmp_path / "lib", model=ColourEmbedder()) for _ in range(2)]
    workers = [SharedIndexer(lib, (str(photos),), 0, boot_id="boot") for lib in libs]
    calls = []
    for w in workers:
        real = w.library.watch
        w.library.watch = lambda *a, _real=real, _w=w, **k: (calls.append(_w), _real(*a, **k))
    for w in workers:
        w.watch()
    try:
        wait_until(lambda: libs[0].store.count() == 2, "the first run")
        time.sleep(0.5)
        assert len(calls) == 1  # the other waits for the claim
        first = calls[0]
        first.stop_watching()
        wait_until(lambda: len(calls) == 2, "the other worker takes over")
        assert calls[1] is not first
        draw_photo("blue", seed=11).save(photos / "new.jpg")
        wait_until(lambda: libs[0].store.count() == 3, "the new photo, through the second worker")
    finally:
        for w in workers:
            w.stop_watching()
        for lib in libs:
            lib.close()

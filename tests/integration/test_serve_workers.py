"""`picseek serve --workers N`: one indexer, many readers. Index runs are exclusive across the worker processes,
the start-up run happens once, every worker reports the same run, and every worker's searches see the vectors
another worker's run wrote."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import ColourEmbedder, draw_photo
from tiny_models import make_tiny_clip

pytest.importorskip("fastapi", reason="the server extra is not installed")
from picseek.library import Library  # noqa: E402
from picseek.server.workers import SharedIndexer  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def photos(folder: Path, start: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        draw_photo(COLOURS[i % len(COLOURS)], "circle" if i % 2 else "square", seed=i).save(folder / f"p{i:03d}.jpg")


class SlowColourEmbedder(ColourEmbedder):
    def embed_pixels(self, pixels):
        time.sleep(0.2)
        return super().embed_pixels(pixels)


def wait_done(indexer: SharedIndexer, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (state := indexer.state())["running"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def test_runs_are_exclusive_across_workers_and_their_state_is_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_BATCH_SIZE", "2")
    folder = tmp_path / "photos"
    photos(folder, 0, 8)
    # two workers of one serve: each its own Library and indexer, as in two processes (flock locks are per open file)
    a, b = (SharedIndexer(Library(tmp_path / "lib", model=SlowColourEmbedder()), (str(folder),), 0, boot_id="boot1")
            for _ in range(2))
    assert b.state()["phase"] == "idle"
    assert a.start_at_boot() is True
    assert b.start_at_boot() is False and b.start() is False  # a run is going on in the other worker
    seen = set()
    while (state := b.state())["running"]:
        seen.add((state["phase"], state["done"]))
        time.sleep(0.05)
    assert any(phase == "embed" and done > 0 for phase, done in seen)  # b follows a's progress
    a.join(30)
    assert state["phase"] == "done" and state["report"]["added"] == 8 and state == a.state()
    assert b.start_at_boot() is False  # this serve's start-up run happened (in a)
    photos(folder, 8, 2)
    assert b.start() is True and a.start() is False  # a later run may happen in any worker, one at a time
    b.join(30)
    assert wait_done(a)["report"]["added"] == 2
    later = SharedIndexer(Library(tmp_path / "lib", model=ColourEmbedder()), (str(folder),), 0, boot_id="boot2")
    assert later.state()["phase"] == "idle"  # another serve: not the state of an old one
    assert later.start_at_boot() is True
    assert wait_done(later)["report"]["unchanged"] == 10


def test_a_run_whose_worker_died_is_reported_as_stopped(tmp_path):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    ix = SharedIndexer(lib, (), 0, boot_id="b")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state = {"running": True, "phase": "embed", "done": 1, "total": 9}
    (lib.path / "serve-indexer.json").write_text(json.dumps({"boot_id": "b", "pid": int(dead.stdout), "state": state}))
    got = ix.state()
    assert got["running"] is False and got["phase"] == "failed" and "exited" in got["error"]
    assert ix.running is False


def search_from_every_worker(url: str, want: int, workers: int, timeout: float = 300) -> dict[str, int]:
    """Searches on fresh connections until each of `workers` processes answered with `want` hits (the kernel hands
    each new connection to one of the processes that share the listening socket)."""
    answered: dict[str, int] = {}

    def one(_):
        res = httpx.get(url + "/api/search", params={"q": "red", "limit": 100}, headers={"Connection": "close"},
                        timeout=60)
        assert res.status_code in (200, 409), res.text  # 409: the start-up run has not committed an image yet
        return res.headers["x-picseek-worker"], res.json()["count"] if res.status_code == 200 else -1

    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(4) as pool:
        while not (len(answered) == workers and all(n == want for n in answered.values())):
            assert time.monotonic() < deadline, f"workers and their hit counts: {answered} (want {want})"
            answered.update(pool.map(one, range(8)))
            time.sleep(0.2)  # the workers load the model meanwhile (importing transformers takes seconds)
    return answered


@pytest.mark.slow
def test_picseek_serve_workers_share_one_library(tmp_path):
    model = make_tiny_clip(tmp_path / "tiny-clip")
    folder, library = tmp_path / "photos", tmp_path / "lib"
    photos(folder, 0, 6)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PICSEEK_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "picseek.cli", "-L", str(library), "serve", "--port", "0",
                             "--workers", "2", "--index-workers", "0", "--model", str(model), str(folder)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/ \(2 workers", line).group(1)
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        first = search_from_every_worker(url, 6, workers=2)  # the start-up run, seen by both
        res = httpx.post(url + "/api/index", timeout=30)
        assert res.status_code == 202, res.text
        deadline = time.monotonic() + 60
        while (ix := httpx.get(url + "/api/status", timeout=30).json()["indexing"])["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ix["phase"] == "done" and ix["report"]["unchanged"] == 6
        photos(folder, 6, 3)
        assert httpx.post(url + "/api/index", timeout=30).status_code == 202
        after = search_from_every_worker(url, 9, workers=2)  # new vectors, whichever worker wrote them
        assert set(after) == set(first)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    runs = Library(library).store.read("SELECT count(*) FROM runs")[0][0]
    assert runs == 3  # the start-up run once (not once per worker), then the two POST /api/index runs

"""The ChromaDB store next to the built-in one: write rate and warm search latency on synthetic vectors.

For each store (built-in SQLite, embedded ChromaDB folder, ChromaDB server started here with `chroma run` on a free
loopback port) N unit vectors (dim 512, one space) with image facts are written through `store.write_images` in
batches of 64 (what an index run does), then `Library.search` runs Q text queries (the text vector is precomputed,
so only the store is timed) without and with a filter (`width>=1024`, about half the images), with a tag filter
(`tag=beach`, 10 %), an imported-field filter (`rating>=4`, 20 %), and keyword matches fused (words of a
`description` field from a 2000-word vocabulary). Also the rate of writing fields and tags (ChromaDB rewrites each
record). Prints images/s and p50/p95 ms. Asserts nothing; CI does not run it.

    python benchmarks/chroma_store.py                # 20k vectors, 50 queries
    python benchmarks/chroma_store.py -n 100000 --queries 100
    python benchmarks/chroma_store.py --quick        # 2k vectors, 10 queries
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from picseek.library import Library
from picseek.models.base import MAIN, EmbedderBase, ImageSpec, l2_normalize
from picseek.store.base import ImageRecord
from picseek.store.select import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

DIM, BATCH = 512, 64


class FixedText(EmbedderBase):
    """Text vectors are fixed random unit vectors: the search cost is the store's alone."""

    def __init__(self):
        super().__init__(name="bench", model_id="bench@1", dim=DIM, image_spec=ImageSpec(size=32), spaces={MAIN: DIM},
                         image_query_space=MAIN)
        self.rng = np.random.default_rng(1)

    def embed_texts(self, texts):
        return l2_normalize(self.rng.normal(size=(len(texts), DIM)).astype(np.float32))


def _records(n: int, rng) -> list[ImageRecord]:
    vecs = l2_normalize(rng.normal(size=(n, DIM)).astype(np.float32))
    return [ImageRecord(f"/bench/{i // 1000:04d}/img_{i:07d}.jpg", 100_000 + i, i, f"h{i}",
                        {"width": 640 if i % 2 else 2048, "height": 480, "format": "JPEG"}, {MAIN: vecs[i]})
            for i in range(n)]


def _server(folder: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).with_name("chroma"))
    proc = subprocess.Popen([exe, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("chroma run did not start")


CASES = [("vectors", "x", (), False), ("filter 50 %", "x", ("width>=1024",), False),
         ("tag 10 %", "x", ("tag=beach",), False), ("field 20 %", "x", ("rating>=4",), False),
         ("keywords fused", "w17 w4 w1999", (), True)]


def _measure(name: str, url: str, folder: Path, records: list[ImageRecord], queries: int) -> None:
    store = open_store(url, folder)
    t0 = time.perf_counter()
    for start in range(0, len(records), BATCH):
        store.write_images(records[start:start + BATCH])
    write_s = time.perf_counter() - t0
    store.set_model({"name": "bench", "model_id": "bench@1", "dim": DIM, "spaces": {MAIN: DIM}})
    ids = sorted(store.find_path(r.path) for r in records)
    rng = np.random.default_rng(2)
    words = rng.integers(0, 2000, size=(len(ids), 3))
    t0 = time.perf_counter()
    for start in range(0, len(ids), 500):
        store.set_fields([(i, {"description": " ".join(f"w{w}" for w in words[k]), "rating": k % 5})
                          for k, i in enumerate(ids[start:start + 500], start)])
    fields_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.add_tags([(i, "beach", "user", None) for i in ids[::10]])
    tags_s = time.perf_counter() - t0
    lib = Library(folder, model=FixedText(), store=url)
    print(f"{name:<16} write {len(records) / write_s:6.0f} images/s, fields {len(ids) / fields_s:6.0f} images/s, "
          f"tags {len(ids[::10]) / tags_s:6.0f} images/s")
    line = " " * 17 + "search p50 / p95 ms:"
    for label, query, where, keywords in CASES:
        lib.search(query, limit=20, where=where, keywords=keywords)  # warm
        times = []
        for _ in range(queries):
            t = time.perf_counter()
            lib.search(query, limit=20, where=where, keywords=keywords)
            times.append((time.perf_counter() - t) * 1000)
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]
        line += f"  {label} {statistics.median(times):.1f} / {p95:.1f}"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="vectors per store")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="2k vectors, 10 queries")
    args = ap.parse_args()
    n, queries = (2000, 10) if args.quick else (args.n, args.queries)
    records = _records(n, np.random.default_rng(0))
    cpu_name, flags = cpu()
    print(f"# chroma store; {time.strftime('%Y-%m-%d %H:%M')}; {cpu_name}; CPU flags: {flags}")
    print(f"{n} vectors of dim {DIM}, batches of {BATCH}, {queries} queries (top 20)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _measure("built-in", "", tmp / "sqlite", records, queries)
        _measure("chroma embedded", f"chroma://{tmp}/chroma-folder?collection=bench", tmp / "lib-e", records, queries)
        proc, port = _server(tmp / "chroma-server")
        try:
            _measure("chroma server", f"chroma://127.0.0.1:{port}/bench", tmp / "lib-s", records, queries)
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()

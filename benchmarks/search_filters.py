"""Filtered and hybrid search latency at 100k images. It prints figures; it asserts nothing (this is not a test).

    python benchmarks/search_filters.py              # 100k images x 512-d (building the store takes minutes)
    python benchmarks/search_filters.py --n 20000    # smaller

A store is filled through the store API with synthetic unit vectors and fields: `bucket` (0-99: `bucket=7`
keeps 1 %, `bucket<50` 50 %), a `description` of three words from a 2000-word vocabulary (keyword search),
image widths (half >= 1024) and 100 folders of n/100 images. Every search runs through `Library.search` (parse,
filters, exact scores, fusion, hits with fields and tags) with a stand-in model whose text vectors cost nothing,
so the figures are picseek's own work. Target: a filtered search at most 2x the unfiltered one.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from picseek import Library
from picseek.models.base import MAIN, EmbedderBase, ImageSpec, l2_normalize
from picseek.store import allowed
from picseek.store.base import ImageRecord
from picseek.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

VOCAB = 2000
BATCH = 5000


class StandIn(EmbedderBase):
    """Text vectors from a hash: deterministic, instant (the model's cost is not what is measured here)."""

    def __init__(self, dim: int):
        super().__init__(name="stand-in", model_id="stand-in@1", dim=dim, image_spec=ImageSpec(),
                         spaces={MAIN: dim}, image_query_space=MAIN)

    def embed_texts(self, texts):
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            out.append(np.random.default_rng(seed).normal(size=self.dim))
        return l2_normalize(np.stack(out))


def build(folder: Path, n: int, dim: int) -> None:
    store = SQLiteStore(folder)
    store.set_model({"name": "stand-in", "model_id": "stand-in@1", "dim": dim, "spaces": {MAIN: dim}})
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        vecs = l2_normalize(rng.normal(size=(count, dim)).astype(np.float32))
        store.write_images([ImageRecord(f"/photos/{(start + i) * 100 // n:03d}/img_{start + i:06d}.jpg", 1, 1, "h",
                                        {"width": 512 if (start + i) % 2 else 2048, "height": 768},
                                        {MAIN: vecs[i]}) for i in range(count)])
    t1 = time.perf_counter()
    words = rng.integers(0, VOCAB, size=(n, 3))
    store.set_fields([(i + 1, {"bucket": i % 100, "description": " ".join(f"w{w}" for w in words[i])})
                      for i in range(n)])
    t2 = time.perf_counter()
    print(f"built {n} images x {dim}-d: images+vectors {t1 - t0:.1f} s, fields+keyword index {t2 - t1:.1f} s")
    store.close()


def timed(fn, repeats: int, cold: bool = False) -> tuple[float, float, int]:
    """p50, p95 in ms and the hit count; `cold`: the cache of filter id sets is emptied before every run."""
    fn()  # warm: the vector matrix is loaded once per process
    times = []
    for _ in range(repeats):
        if cold:
            allowed._cache.clear()
        t = time.perf_counter()
        hits = fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], len(hits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    name, flags = cpu()
    print(f"# search filters; {time.strftime('%Y-%m-%d %H:%M')}; {name}; CPU flags: {flags}; nproc {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.n, args.dim)
        lib = Library(tmp, model=StandIn(args.dim))
        cases = {
            "unfiltered (vectors only)": dict(keywords=False),
            "filter 1 % (bucket=7)": dict(keywords=False, where=["bucket=7"]),
            "filter 50 % (bucket<50)": dict(keywords=False, where=["bucket<50"]),
            "filter 50 % (width>=1024)": dict(keywords=False, where=["width>=1024"]),
            "filter 1 % (folder=/photos/042)": dict(keywords=False, where=["folder=/photos/042"]),
            "hybrid (keywords fused)": dict(),
            "hybrid + filter 50 %": dict(where=["bucket<50"]),
        }
        print(f"\nLibrary.search(..., limit=10), {args.repeats} runs each after one warm-up; milliseconds.")
        print("cold: the filter's ids are read from SQLite every time; again: the same filter on an unchanged")
        print("library (its ids come from the cache)")
        print(f"{'case':<32} {'cold p50':>8} {'p95':>7} {'again p50':>9} {'p95':>7} {'hits':>4} "
              f"{'cold / unfiltered':>17}")
        base = None
        for name, kwargs in cases.items():
            query = "w17 w4 w1999 at night" if "hybrid" in name else "a red car at night"

            def run(kw=kwargs, q=query):
                return lib.search(q, limit=10, **kw)

            p50, p95, hits = timed(run, args.repeats, cold=True)
            a50, a95, _ = timed(run, args.repeats)
            base = base or p50
            print(f"{name:<32} {p50:8.1f} {p95:7.1f} {a50:9.1f} {a95:7.1f} {hits:4d} {p50 / base:16.2f}x")
        lib.close()


if __name__ == "__main__":
    main()

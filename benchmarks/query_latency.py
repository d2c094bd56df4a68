"""Query latency at 100k, 1M and 10M images: warm text search through the Python API and the CLI's code path, exact
vs approximate (FAISS IVF) with recall@10, first-search time, memory, bytes per image, the two index kinds side by
side (float16 codes against PQ codes re-scored exactly), where the approximate index starts to pay (the
ann_threshold default), and cold CLI start-up. It prints figures; it asserts nothing.

    python benchmarks/query_latency.py                       # 100k and 1M x 512-d (first run builds ~10 min)
    python benchmarks/query_latency.py --sizes 1e5,1e6,1e7 --only warm
    python benchmarks/query_latency.py --sizes 1e6 --only kinds   # SQfp16 against PQ on one table
    python benchmarks/query_latency.py --only cli            # or --only warm / crossover

Libraries are filled through SQLiteStore.write_images with synthetic unit vectors that look like CLIP image
embeddings (a common direction, 2000 clusters of uneven size in a 64-d subspace, noise: mean image-image cosine
0.39, a query's best hit 0.45 against a mean of 0.10) and cached under --out. Widths 100-199 make filters that
keep 50 % (width>=150), 5 % and 1 % (width>=199). Uniformly random vectors are no test for any approximate index (they
have no neighbourhoods); real embeddings are clustered, as these are.
The text side is real: every query runs the built-in model's text tower (MiniLM, on one torch thread as the CLI
sets it), then searches with a synthetic 512-d query vector, so `search` is end to end. The cold CLI part uses a
100k x 384-d library recorded as the built-in model, so `picseek search` runs exactly as a user's would.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `picseek search` sets it (cli/core.py)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH = 5000
EXACT_TIMED_MAX = 2_000_000  # above this the exact mode is left out of the timed modes (seconds a query)
QUERY_TEXTS = ["a dog on the beach", "a red car at night", "mountains in winter", "people at a party",
               "a plate of food", "a cat on a sofa", "city street in the rain", "a bird in a tree"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Synth:
    """CLIP-like synthetic vectors (see the module docstring); the same seed gives the same space."""

    def __init__(self, dim: int, latent: int = 64, clusters: int = 2000, seed: int = 7):
        r = np.random.default_rng(seed)
        self.dim, self.latent = dim, latent
        self.basis = np.linalg.qr(r.normal(size=(dim, latent)))[0].astype(np.float32)
        self.centres = r.normal(size=(clusters, latent)).astype(np.float32)
        p = 1.0 / np.arange(1, clusters + 1) ** 0.7
        self.p = p / p.sum()
        self.mean = _unit(r.normal(size=dim)).astype(np.float32)
        self.text = _unit(r.normal(size=dim)).astype(np.float32)

    def images(self, n: int, seed: int, spread=0.7, noise=0.35, mean_w=1.0) -> np.ndarray:
        r = np.random.default_rng(seed)
        k = r.choice(len(self.centres), size=n, p=self.p)
        z = self.centres[k] + spread * r.normal(size=(n, self.latent)).astype(np.float32)
        x = (z / np.sqrt(self.latent)) @ self.basis.T + mean_w * self.mean
        x += noise * r.normal(size=(n, self.dim)).astype(np.float32) / np.sqrt(self.dim)
        return _unit(x).astype(np.float32)

    def query(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return _unit(self.images(1, seed, spread=0.9, noise=0.8, mean_w=0.3)[0] + 0.9 * self.text)


def make_standin(synth: Synth, text_model):
    """An embedder that pays for the built-in text tower on every query, then answers with a synthetic vector."""
    from picseek.models.base import MAIN, EmbedderBase, ImageSpec

    class TimedStandIn(EmbedderBase):
        def __init__(self):
            super().__init__(name="stand-in", model_id="stand-in@1", dim=synth.dim, image_spec=ImageSpec(),
                             spaces={MAIN: synth.dim}, image_query_space=MAIN)

        def embed_texts(self, texts):
            text_model.embed_texts(list(texts))
            return np.stack([synth.query(t) for t in texts])

    return TimedStandIn()


def build_library(folder: Path, n: int, synth: Synth, model: dict) -> Path:
    """A library of n synthetic images (made once; `.complete` marks a finished one)."""
    from picseek.store.sqlite import SQLiteStore

    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    store = SQLiteStore(folder)
    store.set_model(model)
    t0 = time.perf_counter()
    starts = list(range(0, n, BATCH))
    with ProcessPoolExecutor(1) as pool:  # the next batches' vectors are made while this one is written
        ahead = [pool.submit(synth.images, min(BATCH, n - s), s + 1) for s in starts[:2]]
        for k, start in enumerate(starts):
            count = min(BATCH, n - start)
            vecs = ahead.pop(0).result()
            if k + 2 < len(starts):
                ahead.append(pool.submit(synth.images, min(BATCH, n - starts[k + 2]), starts[k + 2] + 1))
            if k % 200 == 199:
                print(f"  {start + count:,} rows, {(start + count) / (time.perf_counter() - t0):,.0f} rows/s",
                      flush=True)
            _write_batch(store, start, count, vecs)
    store.start_run(["/photos"])
    store.close()
    (folder / ".complete").touch()
    took = time.perf_counter() - t0
    print(f"built {folder.name}: {n} x {synth.dim}-d in {took:.0f} s ({n / took:,.0f} rows/s)", flush=True)
    return folder


def _write_batch(store, start: int, count: int, vecs: np.ndarray) -> None:
    from picseek.store.base import ImageRecord

    store.write_images([ImageRecord(f"/photos/{(start + i) // 1000:04d}/img_{start + i:07d}.jpg", 1000, 1,
                                        f"h{start + i}", {"width": 100 + (start + i) % 100, "height": 100},
                                        {"main": vecs[i]}) for i in range(count)])


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def top_ids(hits) -> list[int]:
    return [h.id for h in hits]


# -- warm search ------------------------------------------------------------------------------------------------------
def bench_warm(folder: Path, n: int, synth: Synth, text_model, queries: int, exact_queries: int) -> dict:
    from picseek import Library, config
    from picseek.cli.core import echo_hits
    from picseek.store import ann, vectorcache

    out: dict = {"n": n}
    text_model.embed_texts(["warm up the text tower"])
    lib = Library(folder, model=make_standin(synth, text_model))
    conn = lib.store._conn()
    t0 = time.perf_counter()
    rows = sum(len(b[0]) for b in vectorcache.read_rows(conn, "main", 0))
    out["sqlite_read_s"] = time.perf_counter() - t0  # what a new process paid before the file cache
    assert rows == n
    shutil.rmtree(folder / "cache", ignore_errors=True)
    ann.forget()
    t0 = time.perf_counter()
    lib.store.vector_table("main")
    out["cache_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # what the end of an index run does (a search never builds a large index now), on
    faiss = ann.faiss_module()  # every core as there (this process keeps one OpenMP thread for its searches)
    if faiss:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    lib.store.prepare_search(["main"], config.get("ann_threshold"))
    if faiss:
        faiss.omp_set_num_threads(1)
    out["ann_build_s"] = time.perf_counter() - t0 if n >= config.get("ann_threshold") > 0 else None
    out["ann_kind"] = ann._indexes[(str(folder), "main")].kind if out["ann_build_s"] is not None else "-"
    lib.close()
    # a new process: files in the page cache, nothing in memory
    ann.forget()
    lib = Library(folder, model=make_standin(synth, text_model))
    t0 = time.perf_counter()
    lib.search(QUERY_TEXTS[1], limit=20)
    out["first_search_s"] = time.perf_counter() - t0
    texts = [f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} {i}" for i in range(queries)]

    def cli_json(text):
        buf = io.StringIO()
        with redirect_stdout(buf):
            echo_hits(lib.search(text, limit=20), "json")
        return buf.getvalue()

    modes = {
        "search (default: keywords fused)": lambda t: lib.search(t, limit=20),
        "CLI --json path (search + JSON)": cli_json,
        "vectors only": lambda t: lib.search(t, limit=20, keywords=False),
        **({"exact (vectors only)": lambda t: lib.search(t, limit=20, keywords=False, exact=True)}
           if n <= EXACT_TIMED_MAX else {}),
        "filter 50 % (width>=150)": lambda t: lib.search(t, limit=20, where=["width>=150"]),
        "filter 5 % (width>=195)": lambda t: lib.search(t, limit=20, where=["width>=195"]),
        "filter 1 % (width>=199)": lambda t: lib.search(t, limit=20, where=["width>=199"]),
        "text embedding alone": lambda t: text_model.embed_texts([t]),
    }
    for m, fn in modes.items():
        if not m.startswith("exact"):
            fn("warm up query")
    out["rss_mb"] = rss_mb()  # before the exact path makes its float32 copy of the matrix
    for m, fn in modes.items():
        if m.startswith("exact"):
            fn("warm up query")
    out["rss_exact_mb"] = rss_mb()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for t in texts:  # interleaved: each query through every mode
        for m, fn in modes.items():
            t0 = time.perf_counter()
            fn(t)
            times[m].append((time.perf_counter() - t0) * 1000)
    out["times"] = {m: (pct(v, 50), pct(v, 95)) for m, v in times.items()}
    recall: dict[str, list[float]] = {"none": [], "width>=150": [], "width>=195": []}
    for t in texts[:exact_queries]:  # (the exact side costs seconds a query at 10M: a sample of the queries)
        for where, got in recall.items():
            filters = [] if where == "none" else [where]
            approx = top_ids(lib.search(t, limit=10, keywords=False, where=filters))
            exact = top_ids(lib.search(t, limit=10, keywords=False, where=filters, exact=True))
            got.append(len(set(approx) & set(exact)) / max(len(exact), 1))
    out["recall"] = [float(np.mean(v)) for v in recall.values()]
    out["memory"] = bench_memory(folder, synth.dim, (False, True) if n <= EXACT_TIMED_MAX else (False,))
    out["db_bytes"] = folder_bytes(folder, "picseek.db*")
    out["vec_bytes"] = folder_bytes(folder / "cache", "vectors-*")
    out["ann_bytes"] = folder_bytes(folder / "cache", "ann-*")
    lib.close()
    ann.forget()
    return out


MEMORY_PROBE = """
import sys, numpy as np
sys.path.insert(0, {here!r})
from query_latency import Synth
from picseek import Library
from picseek.models.base import MAIN, EmbedderBase, ImageSpec
synth = Synth({dim})
class Q(EmbedderBase):
    def __init__(self):
        super().__init__(name="stand-in", model_id="stand-in@1", dim={dim}, image_spec=ImageSpec(),
                         spaces={{MAIN: {dim}}}, image_query_space=MAIN)
    def embed_texts(self, texts):
        return np.stack([synth.query(t) for t in texts])
lib = Library({folder!r}, model=Q())
for i in range(20):
    lib.search(f"query {{i}}", limit=20, exact={exact})
status = open("/proc/self/status").read().split(chr(10))
print(" ".join(l.split()[1] for l in status if l.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile"))))
"""


def bench_memory(folder: Path, dim: int, modes=(False, True)) -> dict:
    """Peak RSS of a new process that runs 20 searches (no text model), approximate and exact."""
    out = {}
    for exact in modes:
        code = MEMORY_PROBE.format(here=str(HERE), dim=dim, folder=str(folder), exact=exact)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(res.stderr[-2000:])
        hwm, rss, anon, file = (int(x) / 1024 for x in res.stdout.split()[-4:])
        out["exact" if exact else "approximate"] = (hwm, anon, file)
    return out


def print_warm(rows: list[dict], queries: int) -> None:
    print(f"\n### Warm text search, limit 20 ({queries} queries, interleaved; ms)\n")
    modes = list(rows[0]["times"])
    print("| images | " + " | ".join(f"{m} p50 / p95" for m in modes) + " |")
    print("|---:|" + "---:|" * len(modes))
    for r in rows:
        print(f"| {r['n']:,} | " + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in r["times"].values()) + " |")
    print("\n| images | index kind | recall@10 approximate vs exact (no filter / filter 50 % / 5 %) | "
          "first search in a new process s | vector cache built from SQLite s | "
          "approximate index built (an index run's end: prepare_search) s | all vectors read from SQLite s | "
          "RSS approximate / + exact MB | database / vector cache / index bytes per image | bytes per image |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    mem = []
    for r in rows:
        n = r["n"]
        recall = " / ".join(f"{x:.3f}" for x in r["recall"])
        print(f"| {n:,} | {r['ann_kind']} | {recall} | {r['first_search_s']:.2f} | "
              f"{r['cache_build_s']:.1f} | {_s(r['ann_build_s'])} | {r['sqlite_read_s']:.1f} | "
              f"{r['rss_mb']:.0f} / {r['rss_exact_mb']:.0f} | {r['db_bytes'] / n:.0f} / {r['vec_bytes'] / n:.0f} / "
              f"{r['ann_bytes'] / n:.0f} | {(r['db_bytes'] + r['vec_bytes'] + r['ann_bytes']) / n:.0f} |")
        mem.append(f"{n:,}: " + "; ".join(f"{k} peak {h:.0f} MB (anonymous {a:.0f}, file-backed {f:.0f})"
                                          for k, (h, a, f) in r["memory"].items()))
    print("\nA new process running 20 searches without a text model (VmHWM; RssAnon / RssFile at the end): "
          + " | ".join(mem))


# -- the two index kinds side by side ---------------------------------------------------------------------------------
def bench_kinds(folder: Path, n: int, synth: Synth, queries: int, exact_queries: int) -> None:
    """SQfp16 (the kind below ann_pq_threshold) against PQ (above it) on the same vector table: build s, bytes per
    image, the vector part of a query (top 100) interleaved, recall@10 against exact, peak RSS of a new process."""
    from picseek.store import ann
    from picseek.store.nearest import top_indices
    from picseek.store.sqlite import SQLiteStore

    store = SQLiteStore(folder)
    table = store.vector_table("main")
    files = ann._Files(folder, "main", table.lineage)
    qs = [synth.query(f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} {i}") for i in range(queries)]
    t0 = time.perf_counter()
    exact = [top_indices(table.dot(q), 10) for q in qs[:exact_queries]]
    exact_ms = (time.perf_counter() - t0) * 1000 / max(len(exact), 1)
    rows = {}
    indexes = {}
    for kind in ("sq", "pq"):
        ann.forget()
        t0 = time.perf_counter()
        indexes[kind] = ann._build(table, kind)
        build = time.perf_counter() - t0
        files.save(indexes[kind])
        rows[kind] = {"build": build, "bytes": files.path.stat().st_size, "spec": indexes[kind].index.__class__,
                      "memory": bench_memory(folder, synth.dim, (False,))["approximate"]}
    times: dict[str, list[float]] = {k: [] for k in indexes}
    for q in qs:
        for kind, index in indexes.items():
            t0 = time.perf_counter()
            index.search(table, q, 100)
            times[kind].append((time.perf_counter() - t0) * 1000)
    print(f"\n### The two index kinds on one {n:,} x {table.dim}-d table (vector part, top 100, {queries} queries "
          f"interleaved; recall@10 on {len(exact)} against exact, which took {exact_ms:.0f} ms a query)\n")
    print("| kind | cells / probes | build s | index bytes per image | p50 / p95 ms | recall@10 | "
          "new search process: peak RSS (anonymous, file-backed) MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, index in indexes.items():
        rec = [len(set(e.tolist()) & set(index.search(table, q, 10)[0].tolist())) / 10 for e, q in zip(exact, qs)]
        hwm, anon, file = rows[kind]["memory"]
        label = ("IVF,SQfp16 (exact scores)" if kind == "sq"
                 else f"IVF,PQ{ann.pq_shape(table.dim, 10**9)[0]} re-scored exactly")
        print(f"| {label} | {index.nlist} / {ann.probes_for(index.nlist, len(index.seqs), kind)} | "
              f"{rows[kind]['build']:.1f} | {rows[kind]['bytes'] / n:.0f} | {pct(times[kind], 50):.1f} / "
              f"{pct(times[kind], 95):.1f} | {np.mean(rec):.3f} | {hwm:.0f} ({anon:.0f}, {file:.0f}) |", flush=True)
    ann.forget()
    files.path.unlink(missing_ok=True)
    store.close()


# -- where the approximate index starts to pay ------------------------------------------------------------------------
def bench_crossover(synth: Synth, sizes: list[int], queries: int, tmp: Path) -> None:
    from picseek.store import ann
    from picseek.store.nearest import top_indices
    from picseek.store.vectorcache import VectorTable

    data = np.concatenate([synth.images(min(BATCH * 10, max(sizes) - s), s + 1)
                           for s in range(0, max(sizes), BATCH * 10)]).astype(np.float16)
    qs = [synth.query(f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} {i}") for i in range(queries)]
    print(f"\n### Exact vs approximate, the vector part alone (top 100, {queries} queries interleaved; ms)\n")
    print("| vectors | exact p50 | approximate p50 | speed-up | recall@10 | cells / probes | index build s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        table = VectorTable(0, np.arange(1, n + 1, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64), data[:n])
        f32 = table.float32()
        folder = tmp / f"x{n}"
        ann.forget()
        t0 = time.perf_counter()
        index = ann.index_for(folder, "main", table, build=True)
        build = time.perf_counter() - t0
        ex, ap, rec = [], [], []
        for q in qs:
            t0 = time.perf_counter()
            best = top_indices(f32 @ q, 100)
            ex.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            rows, _ = index.search(table, q, 100)
            ap.append((time.perf_counter() - t0) * 1000)
            rec.append(len(set(best[:10].tolist()) & set(rows[:10].tolist())) / 10)
        e50, a50 = statistics.median(ex), statistics.median(ap)
        print(f"| {n:,} | {e50:.2f} | {a50:.2f} | {e50 / a50:.1f}x | {np.mean(rec):.3f} | {index.nlist} / "
              f"{ann.probes_for(index.nlist, n)} | {build:.1f} |", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    ann.forget()


# -- cold CLI ---------------------------------------------------------------------------------------------------------
def bench_cli(folder: Path, repeats: int, env: dict) -> None:
    exe = [sys.executable, "-m", "picseek.cli", "--library", str(folder)]
    cmds = {"`picseek --version`": [sys.executable, "-m", "picseek.cli", "--version"],
            "`picseek status --json`": exe + ["status", "--json"],
            '`picseek search "a dog on the beach" --json`': exe + ["search", "a dog on the beach", "--json"],
            '`picseek search ... --json --exact`': exe + ["search", "a dog on the beach", "--json", "--exact"]}
    times: dict[str, list[float]] = {c: [] for c in cmds}
    for _ in range(repeats + 1):
        for c, cmd in cmds.items():
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            times[c].append(time.perf_counter() - t0)
            if res.returncode != 0:
                raise SystemExit(f"{cmd} failed: {res.stderr[-2000:]}")
    print(f"\n### Cold CLI: a new process each run, 100k images (builtin model recorded; median of {repeats} after "
          "one untimed round; s)\n")
    print("| command | median | min | max |\n|---|---:|---:|---:|")
    for c, v in times.items():
        v = v[1:]
        print(f"| {c} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
    res = subprocess.run([sys.executable, "-X", "importtime", *exe[1:], "search", "a dog", "--json"], env=env,
                         capture_output=True, text=True)
    top = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and parts[2][:1] == " " and parts[2][1:2] != " ":
            top.append((int(parts[1]), parts[2].strip()))  # a top-level import (nested ones are indented)
    top.sort(reverse=True)
    print("\nslowest top-level imports of a cold `search` (python -X importtime, cumulative ms): "
          + ", ".join(f"{name} {us / 1000:.0f}" for us, name in top[:8]))


def sizes(text: str) -> list[int]:
    """"1e5,1e6,1e7" or "100000,1000000" -> [100000, 1000000, ...]."""
    return [int(float(part)) for part in text.split(",") if part.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6", help="library sizes, comma-separated (100000 or 1e5)")
    ap.add_argument("--exact-queries", type=int, default=100,
                    help="queries whose recall@10 is measured against exact (a sample at 10M)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--cross-sizes", default="10000,25000,50000,100000,200000,400000")
    ap.add_argument("--cli-repeats", type=int, default=5)
    ap.add_argument("--only", choices=("warm", "kinds", "crossover", "cli"))
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench-out" / "query")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PICSEEK_CACHE_DIR=str(args.out / "model-cache"))
    os.environ["PICSEEK_CACHE_DIR"] = env["PICSEEK_CACHE_DIR"]
    from picseek import config
    from picseek.models import registry

    print(f"# query latency; {time.strftime('%Y-%m-%d %H:%M')}; nproc {os.cpu_count()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; ann_threshold {config.get('ann_threshold')}")
    print("command: python benchmarks/query_latency.py " + " ".join(sys.argv[1:]))
    if args.only in (None, "warm"):
        text_model = registry.load_embedder("builtin")
        synth = Synth(args.dim)
        model = {"name": "stand-in", "model_id": "stand-in@1", "dim": args.dim, "spaces": {"main": args.dim}}
        rows = []
        for n in sizes(args.sizes):
            folder = build_library(args.out / f"lib-{n}-{args.dim}", n, synth, model)
            rows.append(bench_warm(folder, n, synth, text_model, args.queries, args.exact_queries))
            print_warm(rows[-1:], args.queries)
        if len(rows) > 1:
            print_warm(rows, args.queries)
    if args.only in (None, "kinds"):
        synth = Synth(args.dim)
        model = {"name": "stand-in", "model_id": "stand-in@1", "dim": args.dim, "spaces": {"main": args.dim}}
        for n in [n for n in sizes(args.sizes) if n >= 1_000_000 or args.only == "kinds"]:
            folder = build_library(args.out / f"lib-{n}-{args.dim}", n, synth, model)
            bench_kinds(folder, n, synth, args.queries, args.exact_queries)
    if args.only in (None, "crossover"):
        bench_crossover(Synth(args.dim), [int(s) for s in args.cross_sizes.split(",")], args.queries, args.out)
    if args.only in (None, "cli"):
        from picseek.models import registry as reg

        emb = reg.load_embedder("builtin")
        model = {"name": "builtin", "model_id": emb.model_id, "dim": emb.dim, "spaces": dict(emb.spaces)}
        spaces = set(emb.spaces)
        if spaces != {"main"}:  # the built-in model has an image space too: the CLI search needs only main
            model["spaces"] = {"main": emb.dim}
        folder = build_library(args.out / f"cli-100000-{emb.dim}", 100_000, Synth(emb.dim), model)
        bench_cli(folder, args.cli_repeats, env)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""picseek serve under load: concurrent clients on 127.0.0.1 send mixed text and image queries while an index run
writes. It prints requests/s, p50/p95/p99 latency and the error count (which must be 0); it asserts nothing else.
Then browse paging at 100k images: GET /api/browse page after page, following the `next` cursors.

    python benchmarks/serve_load.py                    # 16 clients, 60 s, the built-in model; then browse at 100k
    python benchmarks/serve_load.py --seconds 10       # a short run
    python benchmarks/serve_load.py --clients 4 --image-share 0.5
    python benchmarks/serve_load.py --only browse --browse 100000 --workdir /tmp/sl   # only the paging figures

The server is a real `picseek serve` process (uvicorn) on a free loopback port. Its library starts with --images
generated photos; during the run a writer keeps adding batches of new photos to a second served folder and starts
index runs (POST /api/index), so searches are answered while the index writes. Clients are threads with their own
HTTP connection; a request counts as an error unless it answers 200 with JSON hits. The library and photos live in a
temp folder (or --workdir, reused when it holds a library); HF_HUB_OFFLINE=1.

Browse paging: a library of --browse synthetic images (no files: rows written through the store API, recorded as the
built-in model, 80 % with a date taken spread over ten years, the rest dated by their file time) served by another
`picseek serve` process; one client walks --pages pages of 50 (the web page's page) from the first, following each
answer's `next` cursor, --rounds times. It prints p50/p95 of the first page, the 50th page and every page (client
side, a kept-alive connection). Keyset paging: the 50th page should cost what the first does.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

WORDS = ["a dog", "a cat on a sofa", "a red car", "the beach at sunset", "a bicycle", "mountains with snow",
         "a cup of coffee", "a bird", "a city street at night", "flowers", "a boat on a lake", "a pizza"]


def make_photo(seed: int, size=(480, 360)) -> Image.Image:
    """A photo-like picture: a gradient sky, a ground band and a few coloured shapes (deterministic)."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    arr = (top * (1 - t) + bottom * t).repeat(w, axis=1) + rng.normal(0, 8, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        box = (x, y, x + int(rng.integers(30, w // 2)), y + int(rng.integers(30, h // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    return img


def write_photos(folder: Path, start: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        make_photo(i).save(folder / f"photo_{i:06d}.jpg", quality=88)


def picseek(*args: str, env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "picseek.cli", *args], env=env, check=True, capture_output=True,
                          text=True, **kw)


def start_server(library: Path, args: list, env: dict) -> tuple[subprocess.Popen, str]:
    """`picseek serve --port 0 ARGS...` over `library` in a subprocess: (the process, its URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "picseek.cli", "-L", str(library), "serve", "--port", "0",
                             *map(str, args)], env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep the pipe drained
    return proc, m.group(1)


def wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.get(url + "/api/status", timeout=10).json()
            if not status["indexing"]["running"] and httpx.get(url + "/api/search", params={"q": "a dog"},
                                                              timeout=300).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"text": [], "image": []}
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            if error:
                self.errors.append(error)
            else:
                self.latency[kind].append(seconds)


def client(url: str, stop: float, image_share: float, images: list[bytes], stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.monotonic() < stop:
            kind = "image" if rng.random() < image_share else "text"
            t0 = time.perf_counter()
            try:
                if kind == "text":
                    res = http.get("/api/search", params={"q": rng.choice(WORDS), "limit": 20})
                else:
                    res = http.post("/api/search", data={"limit": "20"},
                                    files={"image": ("q.jpg", rng.choice(images), "image/jpeg")})
                ok = res.status_code == 200 and isinstance(res.json().get("hits"), list)
                stats.add(kind, time.perf_counter() - t0, None if ok else f"{res.status_code}: {res.text[:120]}")
            except (httpx.HTTPError, ValueError) as exc:
                stats.add(kind, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")


def writer(url: str, folder: Path, stop: float, batch: int, start: int, log: dict) -> None:
    """Keep an index run going: add a batch of new photos, start a run, wait for it, repeat."""
    n = start
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.monotonic() < stop:
            write_photos(folder, n, batch)
            n += batch
            res = http.post("/api/index")
            if res.status_code != 202:
                log["refused"] += 1
            while time.monotonic() < stop + 120:
                ix = http.get("/api/status").json()["indexing"]
                if not ix["running"]:
                    break
                time.sleep(0.2)
            if ix.get("report"):
                log["runs"] += 1
                log["added"] += ix["report"]["added"]
                log["seconds"] += ix["report"]["seconds"]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000 if values else float("nan")


def report(stats: Stats, seconds: float, log: dict, args, images: int) -> int:
    every = stats.latency["text"] + stats.latency["image"]
    total = len(every) + len(stats.errors)
    print(f"\nserve_load: {args.clients} clients, {seconds:.1f} s, {images} images in the library at start, "
          f"model {args.model}, image share {args.image_share:.0%}")
    print(f"  requests: {total}  ({total / seconds:.1f} requests/s)   errors: {len(stats.errors)}")
    print(f"  {'kind':<6} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for kind, vals in [("all", every), ("text", stats.latency["text"]), ("image", stats.latency["image"])]:
        mean = statistics.fmean(vals) * 1000 if vals else float("nan")
        print(f"  {kind:<6} {len(vals):>6} {pct(vals, 50):>9.1f} {pct(vals, 95):>9.1f} {pct(vals, 99):>9.1f} "
              f"{mean:>9.1f}")
    print(f"  while indexing: {log['runs']} index runs finished, {log['added']} images added "
          f"({log['added'] / log['seconds']:.1f} images/s in the runs)" if log["seconds"] else
          "  while indexing: no index run finished during the load")
    for e in stats.errors[:5]:
        print(f"  error: {e}")
    return 1 if stats.errors else 0


def build_browse_library(folder: Path, n: int) -> Path:
    """n images written through the store API (made once; `.complete` marks a finished one)."""
    import shutil

    from picseek.models import registry
    from picseek.models.base import MAIN, l2_normalize
    from picseek.store.base import ImageRecord
    from picseek.store.sqlite import SQLiteStore

    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    emb = registry.load_embedder("builtin")
    store = SQLiteStore(folder)
    store.set_model({"name": "builtin", "model_id": emb.model_id, "dim": emb.dim, "spaces": {MAIN: emb.dim}})
    rng = np.random.default_rng(0)
    start_ts, span = 1_420_070_400, 10 * 365 * 86_400  # 2015-01-01, ten years
    t0 = time.perf_counter()
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        vecs = l2_normalize(rng.normal(size=(count, emb.dim)).astype(np.float32))
        when = start_ts + rng.integers(0, span, count)
        dated = rng.random(count) < 0.8
        store.write_images([ImageRecord(
            f"/photos/{(start + i) // 1000:04d}/img_{start + i:07d}.jpg", 100_000, int(when[i]) * 10**9,
            f"h{start + i}",
            {"width": 4000, "height": 3000,
             "taken_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(when[i]))) if dated[i] else None},
            {MAIN: vecs[i]}) for i in range(count)], [])
    store.close()
    (folder / ".complete").touch()
    print(f"built a browse library of {n} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def browse_paging(work: Path, n: int, pages: int, rounds: int, env: dict) -> int:
    library = build_browse_library(work / f"browse-{n}", n)
    proc, url = start_server(library, ["--model", "builtin"], env)
    try:
        wait_ready(url)
        times: dict[int, list[float]] = {}
        server_ms: list[float] = []
        errors: list[str] = []
        with httpx.Client(base_url=url, timeout=120) as http:
            http.get("/api/browse", params={"limit": 50})  # warm
            for _ in range(rounds):
                after = None
                for number in range(1, pages + 1):
                    params = {"limit": 50} if after is None else {"limit": 50, "after": after}
                    t0 = time.perf_counter()
                    res = http.get("/api/browse", params=params)
                    seconds = time.perf_counter() - t0
                    body = res.json() if res.status_code == 200 else None
                    if body is None or body["count"] != 50 or not body["next"]:
                        errors.append(f"page {number}: {res.status_code} {res.text[:120]}")
                        break
                    times.setdefault(number, []).append(seconds)
                    server_ms.append(body["took_ms"])
                    after = body["next"]
        every = [t for ts in times.values() for t in ts]
        print(f"\nbrowse paging: {n} images, GET /api/browse?limit=50 following `next`, {pages} pages x "
              f"{rounds} rounds, one client; milliseconds")
        print(f"  {'page':<10} {'n':>6} {'p50 ms':>9} {'p95 ms':>9}")
        for label, vals in [("first", times.get(1, [])), (f"{pages}th", times.get(pages, [])), ("every", every)]:
            print(f"  {label:<10} {len(vals):>6} {pct(vals, 50):>9.1f} {pct(vals, 95):>9.1f}")
        if server_ms:
            print(f"  server's took_ms: p50 {np.percentile(server_ms, 50):.1f}  p95 {np.percentile(server_ms, 95):.1f}")
        print(f"  errors: {len(errors)}")
        for e in errors[:5]:
            print(f"  error: {e}")
        return 1 if errors else 0
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="how long the load runs (default 60)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--images", type=int, default=300, help="photos in the library at start (default 300)")
    ap.add_argument("--batch", type=int, default=24, help="new photos per index run during the load (default 24)")
    ap.add_argument("--image-share", type=float, default=0.25, help="share of image queries (default 0.25)")
    ap.add_argument("--model", default="builtin", help="model of the library (default builtin, offline)")
    ap.add_argument("--workdir", help="keep the library and photos here (default: a temp folder)")
    ap.add_argument("--browse", type=int, default=100_000, help="images of the browse-paging library (default 100k)")
    ap.add_argument("--pages", type=int, default=50, help="browse pages walked per round (default 50)")
    ap.add_argument("--rounds", type=int, default=20, help="browse rounds (default 20)")
    ap.add_argument("--only", choices=["load", "browse"], help="run only the load or only the browse paging")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="picseek-serve-load-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PICSEEK_TOKEN", None)
    name, flags = cpu()
    print(f"# serve load; {time.strftime('%Y-%m-%d %H:%M')}; {name}; CPU flags: {flags}; nproc {os.cpu_count()}")
    status = 0 if args.only == "browse" else load(args, work, env)
    if args.only != "load" and args.browse:
        status |= browse_paging(work, args.browse, args.pages, args.rounds, env)
    return status


def load(args, work: Path, env: dict) -> int:
    base, incoming, library = work / "photos", work / "incoming", work / "library"
    if not (library / "picseek.db").exists():
        print(f"making {args.images} photos and indexing them in {work} ...", file=sys.stderr)
        write_photos(base, 0, args.images)
        incoming.mkdir(parents=True, exist_ok=True)
        picseek("-q", "-L", str(library), "index", str(base), "--model", args.model, env=env, timeout=3600)
    first_new = 10**6 + len(list(incoming.glob("*.jpg")))
    proc, url = start_server(library, ["--model", args.model, base, incoming], env)
    try:
        wait_ready(url)
        images_at_start = httpx.get(url + "/api/status", timeout=30).json()["images"]
        queries = [make_photo(10**7 + i) for i in range(8)]
        images: list[bytes] = []
        for img in queries:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            images.append(buf.getvalue())
        stats, log = Stats(), {"runs": 0, "added": 0, "seconds": 0.0, "refused": 0}
        t0 = time.monotonic()
        stop = t0 + args.seconds
        threads = [threading.Thread(target=writer, args=(url, incoming, stop, args.batch, first_new, log), daemon=True)]
        threads += [threading.Thread(target=client, args=(url, stop, args.image_share, images, stats, i), daemon=True)
                    for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
        elapsed = time.monotonic() - t0
        threads[0].join(timeout=120)
        return report(stats, elapsed, log, args, images_at_start)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())

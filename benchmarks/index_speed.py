"""picseek speed benchmark: indexing throughput, warm query latency, cold CLI search time. It prints figures; it
asserts nothing (this is not a test).

    python benchmarks/index_speed.py                 # full run (~8-15 min on 2 cores)
    python benchmarks/index_speed.py --quick         # smoke run (tiny sizes, ~2 min)
    python benchmarks/index_speed.py --only index    # or --only query

1. Indexing: images/s for a folder of 12 MP JPEGs and one of 1 MP JPEGs (generated once by make_photos.py and
   cached under --data), with the built-in model and a full-size ViT-B/32 CLIP with random weights (same compute
   as the real one, built once under --out/models). Every run is a fresh `python -m picseek.cli --library TMP
   index FOLDER --model M --json` subprocess; configurations are interleaved, repeated --repeats times.
2. Query latency: p50/p95 of `Library.search(text)` in a warm process on libraries filled with synthetic unit
   vectors (10k and 100k rows), split into text embedding and the store part (vectors() + matrix product).
3. Cold CLI: wall time of `picseek --library L search "a dog" --json` (a new process), builtin model, 10k rows.

Everything picseek caches goes under --out (PICSEEK_CACHE_DIR=--out/cache); HF_HUB_OFFLINE=1 is set.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_MAKE_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make_photos.py"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
QUERY = "a dog on the beach"
KINDS = {"12mp": "big_", "1mp": "small_"}

# Runs picseek.cli exactly as `python -m picseek.cli ARGS` does, and at exit writes to $BENCH_RUSAGE_OUT the peak
# RSS of this process (the model side) and the largest peak RSS among its children (the decode workers). Peaks are
# VmHWM from /proc, not getrusage().ru_maxrss: on Linux ru_maxrss survives fork+exec, so a child started by a big
# parent (picseek's spawned decode workers, or these runs started by a benchmark that has torch loaded) reports
# at least the parent's RSS at the time. Children are sampled every 50 ms (VmHWM only grows), once exec'd.
RUSAGE_WRAPPER = """\
import atexit, json, os, runpy, threading, time
def _hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
_kids = {}
with open("/proc/self/cmdline", "rb") as f:
    _me = f.read()
def _poll():
    while True:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    pids = f.read().split()
            except OSError:
                continue
            for pid in pids:
                try:  # a child between fork and exec still shares this process's pages: not a sample
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read() == _me:
                            continue
                except OSError:
                    continue
                _kids[pid] = max(_kids.get(pid, 0), _hwm(pid))
        time.sleep(0.05)
threading.Thread(target=_poll, daemon=True).start()
def _dump():
    with open(os.environ["BENCH_RUSAGE_OUT"], "w") as f:
        json.dump({"self_kb": _hwm("self"), "children_kb": max(_kids.values(), default=0)}, f)
atexit.register(_dump)
runpy.run_module("picseek.cli", run_name="__main__", alter_sys=True)
"""


# -- helpers -----------------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    import picseek

    return {"date": dt.datetime.now().isoformat(sep=" ", timespec="seconds"), "nproc": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)), "cpu": cpu, "mem_gb": round(mem_gb, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "picseek": picseek.__version__}


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def vm_hwm_mb() -> float:
    """Peak RSS of this process (VmHWM; see RUSAGE_WRAPPER for why not ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_busy_s() -> float:
    """CPU-seconds all processes on this machine have used since boot (/proc/stat: everything but idle/iowait)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """How busy the rest of the machine was while a block ran: CPU-seconds used by processes that are not this
    benchmark or its (waited-for) children, divided by wall time (1.0 = one core busy all along)."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), machine_busy_s(), own_cpu_s()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        other = (machine_busy_s() - self.busy0) - (own_cpu_s() - self.own0)
        self.cores = max(0.0, other) / wall if wall > 0 else 0.0


def src_fingerprint() -> str:
    """A short hash of the installed picseek's .py files, to notice an edit of the source during a run."""
    import hashlib

    import picseek

    h = hashlib.sha256()
    root = Path(picseek.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def mb(kb: int) -> float:
    return kb / 1024  # ru_maxrss is in KiB on Linux


def bench_env(out: Path) -> dict:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("PICSEEK_CACHE_DIR", str(out / "cache"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def picseek_cmd() -> list[str]:
    script = Path(sys.executable).parent / "picseek"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "picseek.cli"]


# -- inputs: photos and the random CLIP ---------------------------------------------------------------------------
def one_image_folders(folders: dict[str, Path]) -> dict[str, Path]:
    """KIND-1/: the first image of each folder alone (hard link), to measure the fixed cost of a run."""
    out = {}
    for kind, folder in folders.items():
        one = folder.parent / f"{kind}-1"
        if not one.is_dir():
            one.mkdir()
            first = sorted(folder.glob("*.jpg"))[0]
            try:
                os.link(first, one / first.name)
            except OSError:
                shutil.copy2(first, one / first.name)
        out[kind] = one
    return out


def ensure_photos(data: Path, n: int, make_photos: Path) -> dict[str, Path]:
    """data/nN/{12mp,1mp}: N generated JPEGs each, made once by make_photos.py (a `.complete` marker says done)."""
    base = data / f"n{n}"
    folders = {kind: base / kind for kind in KINDS}
    if (base / ".complete").is_file():
        return folders
    if not make_photos.is_file():
        sys.exit(f"make_photos.py not found at {make_photos}: pass --make-photos PATH")
    if base.exists():
        shutil.rmtree(base)
    gen = base / "_gen"
    gen.mkdir(parents=True)
    log(f"generating {n} 12 MP + {n} 1 MP JPEGs into {base} (once) ...")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(make_photos), str(gen), str(n)], check=True)
    for kind, prefix in KINDS.items():
        folders[kind].mkdir()
        for p in sorted(gen.glob(prefix + "*.jpg")):
            p.rename(folders[kind] / p.name)
    gen.rmdir()
    (base / ".complete").write_text(str(n))
    log(f"photos ready in {time.perf_counter() - t0:.0f} s")
    return folders


def find_bpe(out: Path, given: str | None) -> Path:
    """open_clip's BPE file without importing open_clip (which needs torchvision): --bpe, a cached copy, or pulled
    out of the open_clip_torch wheel that `pip download --no-deps` fetches."""
    if given:
        return Path(given)
    cached = out / "models" / BPE_NAME
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log("fetching open_clip_torch wheel (no deps) for its BPE vocabulary ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "open_clip_torch", "--no-deps", "--quiet",
                        "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("open_clip_torch-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            cached.write_bytes(z.read(f"open_clip/{BPE_NAME}"))
    return cached


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_random_clip(out: Path, bpe: Path, size: int = 224) -> None:
    """A ViT-B/32 CLIP with random weights (seed 0) in Hugging Face format: model, image processor, tokenizer.
    The logic is that of ../shared/bench/make_random_clip.py, with the BPE file passed in instead of found
    through `import open_clip`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(vision_config={"image_size": size})).save_pretrained(out)
    CLIPImageProcessor(crop_size=size, size={"shortest_edge": size}).save_pretrained(out)
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt")).save_pretrained(out)


def ensure_random_clip(out: Path, bpe_arg: str | None, size: int = 224) -> Path:
    """The random-weight ViT-B/32 at `size` px input (224: OpenAI/LAION's; 256: the ViT-B-32-256 rclip runs)."""
    folder = out / "models" / ("random-clip-vit-b-32" if size == 224 else f"random-clip-vit-b-32-{size}")
    if (folder / ".complete").is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    bpe = find_bpe(out, bpe_arg)
    log(f"building random-weight ViT-B/32 CLIP ({size} px) in {folder} (once) ...")
    build_random_clip(folder, bpe, size)
    (folder / ".complete").write_text("ok")
    return folder


# -- 1. indexing ---------------------------------------------------------------------------------------------------
def index_once(model: str, folder: Path, env: dict, workers: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="picseek-bench-") as tmp:
        lib, rus = Path(tmp) / "lib", Path(tmp) / "rusage.json"
        cmd = [sys.executable, "-c", RUSAGE_WRAPPER, "--library", str(lib), "index", str(folder),
               "--model", model, "--json"]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        t0 = time.perf_counter()
        with OtherLoad() as other:
            proc = subprocess.run(cmd, env={**env, "BENCH_RUSAGE_OUT": str(rus)}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"index run failed ({proc.returncode}): {' '.join(cmd[3:])}\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout)
        usage = json.loads(rus.read_text())
    if report["errors"]:
        log(f"  {report['errors']} errors in {folder}, e.g. {report['error_samples'][:1]} (run left out of the "
            "figures)")
    return {"images": report["embedded"], "errors": report["errors"], "seconds": report["seconds"],
            "images_per_s": report["images_per_s"], "wall": wall, "rss_main_mb": mb(usage["self_kb"]),
            "rss_workers_mb": mb(usage["children_kb"]), "other": other.cores}


def bench_index(models: dict[str, str], folders: dict[str, Path], repeats: int, env: dict,
                workers: int | None) -> list[dict]:
    ones = one_image_folders(folders)
    # warm-up, untimed: page cache for model files and photos, .pyc files, the builtin model's class-embedding cache
    for label, model in models.items():
        t0 = time.perf_counter()
        index_once(model, ones["1mp"], env, workers)
        log(f"warm-up {label}: {time.perf_counter() - t0:.1f} s")
    runs: dict[tuple[str, str], list[dict]] = {}
    fixed: dict[tuple[str, str], list[dict]] = {}
    for r in range(repeats):
        for label, model in models.items():
            for kind, folder in folders.items():
                res = index_once(model, folder, env, workers)
                runs.setdefault((label, kind), []).append(res)
                log(f"repeat {r + 1}/{repeats} {label} {kind}: {res['images']} images in {res['seconds']:.2f} s "
                    f"= {res['images_per_s']:.2f} images/s (process wall {res['wall']:.1f} s; other load "
                    f"{res['other']:.2f} cores)")
                one = index_once(model, ones[kind], env, workers)
                fixed.setdefault((label, kind), []).append(one)
                log(f"repeat {r + 1}/{repeats} {label} {kind}, 1 image: {one['seconds']:.2f} s")
    rows = []
    for (label, kind), all_rs in runs.items():
        rs = [x for x in all_rs if not x["errors"]] or all_rs  # runs with errors (e.g. src edited mid-run) left out
        ones = [x for x in fixed[(label, kind)] if not x["errors"]] or fixed[(label, kind)]
        ips = [x["images_per_s"] for x in rs]
        secs = statistics.median(x["seconds"] for x in rs)
        one_s = statistics.median(x["seconds"] for x in ones)
        n = rs[0]["images"]
        rows.append({"model": label, "kind": kind, "images": n, "used": f"{len(rs)}/{len(all_rs)}",
                     "errors": max(x["errors"] for x in rs), "seconds": secs, "one_s": one_s,
                     "marginal": (n - 1) / (secs - one_s) if n > 1 and secs > one_s else float("nan"),
                     "ips_med": statistics.median(ips), "ips_min": min(ips), "ips_max": max(ips),
                     "wall": statistics.median(x["wall"] for x in rs),
                     "rss_main": max(x["rss_main_mb"] for x in rs),
                     "rss_workers": max(x["rss_workers_mb"] for x in rs),
                     "other": max(x["other"] for x in rs + ones)})
    return rows


def print_index(rows: list[dict], repeats: int) -> None:
    print(f"\n## Indexing (fresh library per run; median of {repeats}, min-max)\n")
    print("| model | folder | images | runs used | index s | images/s (min-max) | 1-image run s | marginal images/s "
          "| process wall s | peak RSS main MB | peak RSS decode worker MB | other load, cores (max) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['kind']} | {r['images']}{' (' + str(r['errors']) + ' err)' if r['errors'] else ''}"
              f" | {r['used']} | {r['seconds']:.2f} | {r['ips_med']:.2f} ({r['ips_min']:.2f}-{r['ips_max']:.2f})"
              f" | {r['one_s']:.2f}"
              f" | {r['marginal']:.2f} | {r['wall']:.1f}"
              f" | {r['rss_main']:.0f} | {r['rss_workers']:.0f} | {r['other']:.2f} |")
    print("\nindex s / images/s: IndexReport.seconds and images_per_s of `picseek index --json` (scan + decode + embed "
          "+ write; for builtin also its model load (an ONNX Runtime session), for hf models not). 1-image run s: the "
          "same for a folder of the first image alone (the fixed cost). marginal images/s: (images - 1) / (index s - "
          "1-image run s), the steady-state rate once the fixed cost is paid. process wall s: the whole `picseek "
          "index` process. runs used: runs without errors / all runs. other load: CPU used by processes outside this "
          "benchmark during the run, in cores (a noisy neighbour slows every figure).")


# -- 2. warm query latency ---------------------------------------------------------------------------------------
def fill_store(store, n: int, dim: int, batch: int = 5000, seed: int = 0) -> float:
    from picseek.store.base import ImageRecord

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        vecs = rng.standard_normal((m, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        records = [ImageRecord(f"/bench/fake/{start + i:07d}.jpg", 3_000_000, 1_700_000_000_000_000_000 + start + i,
                               f"{start + i:032x}", {"width": 4000, "height": 3000, "format": "JPEG"},
                               {"main": vecs[i]}) for i in range(m)]
        store.write_images(records)
    return time.perf_counter() - t0


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    res = fn(*a, **kw)
    return res, (time.perf_counter() - t0) * 1000


def bench_query_one(label: str, emb, n: int, queries: int, keep: Path | None) -> dict:
    from picseek import Library
    from picseek.store.nearest import top_k
    from picseek.store.sqlite import SQLiteStore

    tmp = Path(tempfile.mkdtemp(prefix="picseek-bench-q-"))
    lib_dir = keep if keep is not None else tmp / "lib"
    store = SQLiteStore(lib_dir)
    store.set_model({"name": emb.name, "model_id": emb.model_id, "dim": emb.dim, "spaces": dict(emb.spaces)})
    fill_s = fill_store(store, n, emb.spaces["main"])
    store.close()
    disk_mb = sum(p.stat().st_size for p in lib_dir.glob("picseek.db*")) / 1e6

    emb.embed_texts([QUERY])  # the model is loaded (the builtin loads its text model lazily)
    lib = Library(lib_dir, model=emb, create=False)
    _, cold_vec_ms = timed(lib.store.vectors, "main")  # first use after open: every vector read from SQLite
    for _ in range(3):
        lib.search(QUERY, limit=20)
    total = [timed(lib.search, QUERY, limit=20)[1] for _ in range(queries)]
    t_embed, t_vec, t_rank, t_rows = [], [], [], []
    for _ in range(queries):
        q, ms = timed(emb.embed_texts, [QUERY])
        t_embed.append(ms)
        (ids, mat), ms = timed(lib.store.vectors, "main")
        t_vec.append(ms)
        ranked, ms = timed(top_k, ids, mat, q[0], 20, None)
        t_rank.append(ms)
        t_rows.append(timed(lib.store.get_images, [i for i, _ in ranked])[1])
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same text embedding on one intra-op thread, for comparison
    try:
        t_embed1 = [timed(emb.embed_texts, [QUERY])[1] for _ in range(queries)]
    finally:
        torch.set_num_threads(threads)
    lib.close()
    shutil.rmtree(tmp, ignore_errors=True)  # a `keep` library lives elsewhere (the cold CLI check uses it)
    return {"model": label, "n": n, "dim": emb.spaces["main"], "fill_s": fill_s, "disk_mb": disk_mb,
            "cold_vec_ms": cold_vec_ms, "total": total, "embed": t_embed, "embed1": t_embed1, "vectors": t_vec,
            "rank": t_rank, "rows": t_rows, "rss_mb": vm_hwm_mb()}


def bench_query(models: dict[str, str], sizes: list[int], queries: int, cli_lib: Path) -> list[dict]:
    from picseek.models import registry

    rows = []
    for label, model in models.items():
        emb, load_ms = timed(registry.load_embedder, model)
        log(f"loaded {label} ({emb.model_id}) in {load_ms / 1000:.1f} s")
        for n in sizes:
            keep = cli_lib if (label == "builtin" and n == sizes[0]) else None
            with OtherLoad() as other:
                res = bench_query_one(label, emb, n, queries, keep)
            res["other"] = other.cores
            log(f"{label} {n} vectors: search p50 {pct(res['total'], 50):.2f} ms (fill {res['fill_s']:.1f} s)")
            rows.append(res)
    return rows


def print_query(rows: list[dict], queries: int) -> None:
    print(f"\n## Warm text-query latency, `lib.search({QUERY!r}, limit=20)` ({queries} timed calls after 3 warm-up; "
          "ms)\n")
    print("| model | vectors | dim | search p50 | search p95 | text embed p50 / p95 | text embed, 1 torch thread "
          "p50 / p95 | store.vectors() p50 / p95 | matmul+top-k p50 / p95 | get_images p50 | cold vectors() "
          "| fill s | db MB | peak RSS MB | other load, cores |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def pp(r, key):
        return f"{pct(r[key], 50):.2f} / {pct(r[key], 95):.2f}"

    for r in rows:
        print(f"| {r['model']} | {r['n']:,} | {r['dim']} | {pct(r['total'], 50):.2f} | {pct(r['total'], 95):.2f} | "
              f"{pp(r, 'embed')} | {pp(r, 'embed1')} | {pp(r, 'vectors')} | {pp(r, 'rank')} | "
              f"{pct(r['rows'], 50):.2f} | {r['cold_vec_ms']:.0f} | {r['fill_s']:.1f} | {r['disk_mb']:.0f} | "
              f"{r['rss_mb']:.0f} | {r['other']:.2f} |")
    print("\ncold vectors(): the first store.vectors('main') of a freshly opened Library (reads every row from SQLite "
          "into the float32 matrix). fill s: SQLiteStore.write_images in batches of 5000. peak RSS: this process so "
          "far (VmHWM, monotonic; both models are loaded by the end).")


# -- 3. cold CLI --------------------------------------------------------------------------------------------------
def bench_cli(lib: Path, n: int, env: dict, repeats: int = 3) -> dict:
    cmd = picseek_cmd() + ["--library", str(lib), "search", "a dog", "--json"]
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # untimed: page cache, .pyc
    times, others = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with OtherLoad() as other:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        others.append(other.cores)
        if proc.returncode != 0:
            sys.exit(f"cli search failed: {proc.stderr[-2000:]}")
        hits = json.loads(proc.stdout)
    t0 = time.perf_counter()
    subprocess.run(picseek_cmd() + ["--version"], env=env, capture_output=True, check=True)
    version_s = time.perf_counter() - t0
    return {"n": n, "times": times, "hits": len(hits), "version_s": version_s, "cmd": " ".join(cmd),
            "other": max(others)}


def print_cli(res: dict) -> None:
    t = res["times"]
    print(f"\n## Cold CLI search (new process, builtin model, {res['n']:,} vectors; median of {len(t)}, "
          "after one untimed run)\n")
    print("| command | median s | min s | max s | other load, cores (max) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| `picseek --library L search \"a dog\" --json` ({res['hits']} hits) | {statistics.median(t):.2f} | "
          f"{min(t):.2f} | {max(t):.2f} | {res['other']:.2f} |")
    print(f"| `picseek --version` (startup floor) | {res['version_s']:.2f} | | | |")


# -- main ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out", help="cache folder for models, photos, picseek caches")
    ap.add_argument("--data", default=None, help="photo cache folder (default OUT/photos)")
    ap.add_argument("-n", "--photos", type=int, default=24, help="photos per folder kind (default 24)")
    ap.add_argument("--repeats", type=int, default=3, help="index runs per configuration (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="picseek --workers (default: picseek's default)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="set OMP_NUM_THREADS (torch intra-op threads) for every run (default: torch's own choice)")
    ap.add_argument("--sizes", default="10000,100000", help="vector counts for the query benchmark")
    ap.add_argument("--queries", type=int, default=60, help="timed searches per configuration (default 60)")
    ap.add_argument("--models", default="builtin,clip", help="comma list of: builtin, clip")
    ap.add_argument("--only", choices=("index", "query"), help="run one part (query includes the cold CLI)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 photos, 1 repeat, 1k/5k vectors, 10 queries")
    ap.add_argument("--bpe", help=f"path of open_clip's {BPE_NAME} (default: fetched from the open_clip wheel)")
    ap.add_argument("--make-photos", default=str(DEFAULT_MAKE_PHOTOS), help="path of make_photos.py")
    args = ap.parse_args(argv)
    if args.quick:
        args.photos, args.repeats, args.sizes, args.queries = 2, 1, "1000,5000", 10

    out = Path(args.out).resolve()
    data = Path(args.data).resolve() if args.data else out / "photos"
    env = bench_env(out)
    if args.torch_threads:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "PICSEEK_CACHE_DIR", "TOKENIZERS_PARALLELISM",
                                           "OMP_NUM_THREADS") if k in env})
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    models = {}
    for m in wanted:
        if m == "builtin":
            models["builtin"] = "builtin"
        elif m == "clip":
            models["clip-b32-random"] = str(ensure_random_clip(out, args.bpe))
        else:
            sys.exit(f"unknown model {m!r}: use builtin, clip")

    info = machine_info()
    print("# picseek speed benchmark\n")
    print(f"date {info['date']}; {info['cpu']}; nproc {info['nproc']} (affinity {info['affinity']}); "
          f"{info['mem_gb']} GiB RAM; Python {info['python']}; torch {info['torch']} "
          f"({info['torch_threads']} intra-op threads); picseek {info['picseek']}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    fp0 = src_fingerprint()
    print(f"picseek source fingerprint: {fp0}")

    if args.only in (None, "index"):
        folders = ensure_photos(data, args.photos, Path(args.make_photos))
        load0 = loadavg()
        rows = bench_index(models, folders, args.repeats, env, args.workers)
        print_index(rows, args.repeats)
        print(f"load average before / after: {load0} / {loadavg()}")
        sys.stdout.flush()
    if args.only in (None, "query"):
        sizes = [int(s) for s in args.sizes.split(",")]
        with tempfile.TemporaryDirectory(prefix="picseek-bench-cli-") as tmp:
            cli_lib = Path(tmp) / "lib"
            load0 = loadavg()
            rows = bench_query(models, sizes, args.queries, cli_lib)
            print_query(rows, args.queries)
            if "builtin" in models:
                print_cli(bench_cli(cli_lib, sizes[0], env))
            print(f"load average before / after: {load0} / {loadavg()}")
    fp1 = src_fingerprint()
    if fp1 != fp0:
        print(f"\nWARNING: the picseek source changed during the run ({fp0} -> {fp1}): figures may mix versions")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""End to end at real size: a tree of N mixed photos (default 10,000) indexed from scratch with the real CLI, re-scanned
unchanged, then indexed again after 1 % of the photos changed, then searched once. For every run: wall time, images/s,
peak RSS of every process (the indexing process and each decode worker), CPU seconds, load average; and the library's
size on disk. It prints figures; it asserts nothing (this is not a test), except picseek's own report of each run:
the fresh run must embed every photo, the re-scan must find every file unchanged, and the changed run must count
exactly what was changed; a mismatch aborts the benchmark (exit 1) after printing the figures so far.

    python benchmarks/end_to_end.py                             # 10,000 photos, built-in model (the first run
                                                                # also makes the photos: ~8.5 GB, ~10 min on 2 cores)
    python benchmarks/end_to_end.py -n 200                      # smoke run
    python benchmarks/end_to_end.py --model ~/models/clip-onnx --precision int8 --json-out e2e.json
    python benchmarks/end_to_end.py --big-share 0.5 --workers 2

Photos: N photo-like JPEGs (quality 90) made once under --out/photos-nN-... (a `.complete` marker says done) with the
`make` function of ../shared/bench/make_photos.py (a skimage sample photo, random crop, flip and colour jitter,
upscaled, plus texture and sensor noise): --big-share of them (default 0.2) 12 MP (4000x3000), the rest 1 MP class
(1024x768), spread evenly; every 6th photo is portrait, every 25th carries an EXIF orientation (6 or 8, as a camera held
sideways writes it); all carry a camera make/model and a taken-at date. make_photos.py draws from one generator with a
fixed seed at import, so it is imported (with its output folder pointed at the photo folder: it reads sys.argv and
makes that folder at import) and its generator replaced by one seeded with (--seed, chunk number) for every chunk of
20 photos, and the set does not depend on the number of processes. A 12 MP photo takes ~3 s of a core to make, so
only --distinct photos (default 1,000) are generated; the others are byte-variants of them (photo i repeats photo
i mod --distinct with a JPEG comment segment naming it inserted after the APP segments): other bytes, so another
content hash (picseek matches files by it: exact copies would be followed as moves, not embedded), and the same
pixels, so the same decode and model cost as a distinct photo. Real libraries hold such near-copies too (exports,
edits); at 10k they do not touch search speed (exact below ann_threshold). Generation runs in os.cpu_count()
processes at nice 10, in folders of --per-folder photos named like a photo tree (2020/01, 2020/02, ...).

Runs: each a new `python -m picseek.cli --library LIB ... --json` process (through index_speed.py's RUSAGE_WRAPPER,
which records the process's own VmHWM at exit) on a working tree of hard links to the photos (rebuilt at every start,
so the changes of run c never touch the generated set). A thread here walks the process tree under it every 50 ms via
/proc and keeps each process's VmHWM (a child between fork and exec is skipped: it still shares its parent's pages).
CPU s: user + system of the whole tree (getrusage of the waited-for children). Before run a, one untimed run on one
photo with a throw-away library fills picseek's one-time caches (model files, ONNX export or quantization, the built-in
model's class embeddings); it is reported as `warm-up`, not counted.
  a. fresh: the library is deleted, then `index WORK --model M [--precision P] [--workers W]`;
  b. re-scan: the same command, nothing changed: every file must come back unchanged, nothing embedded or removed;
  c. changed: --change % of the photos (default 1 %) re-encoded with a small edit (1 % cropped off each edge, 8 %
     brighter, EXIF kept: a new content hash, size and mtime), --delete % deleted (default 0.5 %) and --add % new
     photos added (default 0.5 %, same mix), all spread evenly over the folders; the report must say updated = changed,
     removed = deleted, added = added, unchanged = the rest, nothing moved, no errors;
  d. search: `search "a dog" --json`, a new process after the index runs (cold process, warm page cache).
The page cache is left as it is: the photos were just generated or read by the previous run (nothing is dropped).
Library size: the library folder after runs a and c, split into database (picseek.db*), vector cache
(cache/vectors-*), approximate index (cache/ann-*) and the rest.

Everything picseek caches goes under --out (PICSEEK_CACHE_DIR=--out/cache); HF_HUB_OFFLINE=1 is set.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from index_speed import (  # noqa: E402  (the RSS wrapper, load, environment, helpers)
    DEFAULT_MAKE_PHOTOS,
    RUSAGE_WRAPPER,
    OtherLoad,
    bench_env,
    loadavg,
    log,
    src_fingerprint,
)

from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

QUERY = "a dog"
CHUNK = 20  # photos per generation task (and per seed)
ADDED_CHUNKS = 1_000_000  # chunk numbers of the photos added in run c start here: their own seeds


# -- photos ------------------------------------------------------------------------------------------------------
def folder_of(f: int) -> str:
    """Folder number f as a photo tree names it: 2020/01, 2020/02, ... 2020/12, 2021/01, ..."""
    return f"{2020 + f // 12}/{f % 12 + 1:02d}"


def is_big(i: int, share: float) -> bool:
    """Photo i is 12 MP when the running count of big photos steps up at i: the share, spread evenly."""
    return math.floor((i + 1) * share) > math.floor(i * share)


def plan(n: int, share: float, per_folder: int, prefix: str = "IMG_") -> list[tuple[str, bool, int]]:
    """(relative path, 12 MP?, number) of every photo."""
    return [(f"{folder_of(i // per_folder)}/{prefix}{i:05d}.jpg", is_big(i, share), i) for i in range(n)]


def load_make_photos(path: Path, out: Path):
    """make_photos.py as a module. It reads its output folder from sys.argv and makes it at import, so sys.argv names
    `out` (a folder made anyway) while it is imported."""
    saved = sys.argv
    sys.argv = [str(path), str(out)]
    try:
        spec = importlib.util.spec_from_file_location("make_photos", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.argv = saved
    return mod


_MP = None  # make_photos, in each generation process


def _init_worker(make_photos: str, out: str, niceness: int) -> None:
    global _MP
    os.nice(niceness)
    _MP = load_make_photos(Path(make_photos), Path(out))


def _exif(i: int, folder: str, big: bool) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Benchcam"  # Make
    exif[0x0110] = "E2E 12" if big else "E2E 1"  # Model
    if i % 25 == 12:
        exif[0x0112] = 6 if (i // 25) % 2 else 8  # Orientation: held sideways
    year, month = folder.split("/")[-2:] if folder.count("/") else ("2020", "01")
    exif.get_ifd(0x8769)[0x9003] = f"{year}:{month}:{i % 28 + 1:02d} {8 + i % 12:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"
    return exif.tobytes()


def _save(im, path: Path, **kw) -> int:
    tmp = path.with_name(path.name + ".part")
    im.save(tmp, "JPEG", quality=90, **kw)
    os.replace(tmp, path)
    return path.stat().st_size


def _make_chunk(root: str, seed: int, chunk: int, items: list[tuple[str, bool, int]]) -> tuple[int, int]:
    """One chunk of photos from make_photos.make, its generator seeded with (seed, chunk): (photos, bytes)."""
    _MP.rng = np.random.default_rng([seed, chunk])
    total = 0
    for rel, big, i in items:
        w, h = (4000, 3000) if big else (1024, 768)
        if i % 6 == 5:
            w, h = h, w
        im = _MP.make(i, w, h, *((5.0, 8.0) if big else (4.0, 6.0)))
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        total += _save(im, path, exif=_exif(i, str(Path(rel).parent), big))
    return len(items), total


def _edit(path: str) -> tuple[int, int]:
    """Re-encode one photo with a small edit (1 % cropped off each edge, 8 % brighter), EXIF kept; the file is
    replaced, not written in place (the generated photo behind the hard link stays as it was)."""
    from PIL import Image, ImageEnhance

    p = Path(path)
    with Image.open(p) as im:
        exif = im.info.get("exif")
        w, h = im.size
        dx, dy = max(1, w // 100), max(1, h // 100)
        edited = ImageEnhance.Brightness(im.convert("RGB").crop((dx, dy, w - dx, h - dy))).enhance(1.08)
    return 1, _save(edited, p, **({"exif": exif} if exif else {}))


def parallel(tasks: list[tuple], make_photos: Path, out: Path, what: str) -> tuple[int, int, float]:
    """Run (function, *args) tasks in os.cpu_count() processes at nice 10: (photos, bytes, seconds)."""
    t0 = time.perf_counter()
    photos = total = 0
    step = max(1, len(tasks) // 10)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, initializer=_init_worker,
                             initargs=(str(make_photos), str(out), 10)) as pool:
        futures = [pool.submit(*t) for t in tasks]
        for k, fut in enumerate(as_completed(futures), 1):
            n, b = fut.result()
            photos, total = photos + n, total + b
            if k % step == 0 or k == len(futures):
                log(f"  {what}: {photos} photos, {total / 1e9:.2f} GB, {time.perf_counter() - t0:.0f} s")
    return photos, total, time.perf_counter() - t0


def chunk_tasks(root: Path, seed: int, items: list[tuple[str, bool, int]], first_chunk: int = 0) -> list[tuple]:
    return [(_make_chunk, str(root), seed, first_chunk + c // CHUNK, items[c:c + CHUNK])
            for c in range(0, len(items), CHUNK)]


def ensure_photos(out: Path, n: int, share: float, per_folder: int, seed: int, make_photos: Path,
                  distinct: int) -> tuple[Path, dict]:
    """The generated tree, made once (a `.complete` marker holds what the generation took)."""
    distinct = min(distinct, n) if distinct > 0 else n
    root = out / f"photos-n{n}-d{distinct}-big{share:g}-f{per_folder}-seed{seed}"
    done = root / ".complete"
    if done.is_file():
        meta = json.loads(done.read_text())
        log(f"photos: {root} (made before, in {meta['seconds']:.0f} s)")
        return root, {**meta, "made_now": False}
    if not make_photos.is_file():
        sys.exit(f"make_photos.py not found at {make_photos}: pass --make-photos PATH")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    items = plan(n, share, per_folder)
    bases = items[:distinct]
    items = bases + [(rel, bases[i % distinct][1], i) for rel, _, i in items[distinct:]]
    big = sum(1 for _, b, _ in items if b)
    need = big * 3.6e6 + (n - big) * 0.25e6
    free = shutil.disk_usage(root).free
    if free < 1.2 * need:
        log(f"WARNING: about {need / 1e9:.1f} GB of photos to write, {free / 1e9:.1f} GB free under {root}")
    log(f"generating {n} photos ({big} 12 MP, {n - big} 1 MP; {distinct} distinct, the rest byte-variants of them) "
        f"into {root} in {os.cpu_count()} processes (once) ...")
    t0 = time.perf_counter()
    photos, total, seconds = parallel(chunk_tasks(root, seed, bases), make_photos, root, "generated")
    for rel, _, i in items[distinct:]:
        total += _variant(root / bases[i % distinct][0], root / rel, i)
        photos += 1
    seconds = time.perf_counter() - t0
    meta = {"n": photos, "distinct": distinct, "big": big, "small": n - big, "bytes": total, "seconds": seconds,
            "seed": seed,
            "per_folder": per_folder, "folders": math.ceil(n / per_folder), "processes": os.cpu_count()}
    done.write_text(json.dumps(meta))
    return root, {**meta, "made_now": True}


def _variant(src: Path, dst: Path, i: int) -> int:
    """dst: src's JPEG with a comment segment naming photo i inserted after its APP segments (new bytes, same
    pixels)."""
    data = src.read_bytes()
    at = 2
    while data[at] == 0xFF and 0xE0 <= data[at + 1] <= 0xEF:
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    text = f"picseek benchmark variant {i}".encode()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[:at] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[at:])
    return len(data) + len(text) + 4


def link_tree(src: Path, dst: Path) -> int:
    """dst: a tree of hard links to src's photos (copies where links fail)."""
    if dst.exists():
        shutil.rmtree(dst)
    count = 0
    for p in sorted(src.rglob("*.jpg")):
        q = dst / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, q)
        except OSError:
            shutil.copy2(p, q)
        count += 1
    return count


def pick(n: int, k: int, rng: np.random.Generator, taken: set[int]) -> list[int]:
    """k indices of range(n) not in `taken` (which they join): one at random in each of k equal strata, so spread
    over every folder of an ordered tree and drawn from the 12 MP / 1 MP mix as it is."""
    out = []
    for j in range(k):
        free = [i for i in range(j * n // k, max(j * n // k + 1, (j + 1) * n // k)) if i not in taken]
        i = int(rng.choice(free or [i for i in range(n) if i not in taken]))
        taken.add(i)
        out.append(i)
    return out


def change_tree(work: Path, args, share: float, per_folder: int, make_photos: Path) -> dict:
    """Run c's changes in the working tree: what was changed, deleted and added (counts and seconds)."""
    files = sorted(work.rglob("*.jpg"))
    n = len(files)
    n_change = max(1, round(n * args.change / 100))
    n_delete = round(n * args.delete / 100)
    n_add = round(n * args.add / 100)
    rng, taken = np.random.default_rng([args.seed, 2]), set()
    changed = pick(n, n_change, rng, taken)
    deleted = pick(n, n_delete, rng, taken)
    changed_big = sum(1 for i in changed if files[i].stat().st_size > 1_500_000)  # 12 MP: 3-4 MB, 1 MP: < 0.4 MB
    folders = math.ceil(n / per_folder)
    added = [(f"{folder_of(k % folders)}/NEW_{k:05d}.jpg", is_big(k, share), k) for k in range(n_add)]
    t0 = time.perf_counter()
    tasks = [(_edit, str(files[i])) for i in changed] + chunk_tasks(work, args.seed, added, ADDED_CHUNKS)
    _, total, _ = parallel(tasks, make_photos, work, "changed + added")
    for i in deleted:
        files[i].unlink()
    return {"files_before": n, "changed": n_change, "deleted": n_delete, "added": n_add,
            "changed_big": changed_big,
            "bytes_written": total, "seconds": time.perf_counter() - t0}


# -- runs --------------------------------------------------------------------------------------------------------
def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _hwm_kb(pid: int) -> int:
    text = _read(f"/proc/{pid}/status")
    for line in (text or b"").decode(errors="replace").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def label(cmd: bytes) -> str:
    text = " ".join(a.decode(errors="replace") for a in cmd.split(b"\0") if a)
    if "spawn_main" in text or "--multiprocessing-fork" in text:
        return "decode worker"
    if "resource_tracker" in text:
        return "resource tracker"
    if "onnx_export" in text:
        return "onnx export child"
    return text[:60]


class TreePeaks:
    """VmHWM of every process under `root` (itself included), sampled every 50 ms from /proc."""

    def __init__(self, root: int):
        self.root, self.procs, self._stop = root, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self) -> None:
        todo: list[tuple[int, bytes | None]] = [(self.root, None)]
        while todo:
            pid, parent_cmd = todo.pop()
            cmd = _read(f"/proc/{pid}/cmdline")
            if not cmd or cmd == parent_cmd:  # gone, a zombie, or forked and not exec'd yet (its parent's pages)
                continue
            kb = _hwm_kb(pid)
            rec = self.procs.setdefault(pid, {"label": "main" if pid == self.root else label(cmd), "kb": 0})
            rec["kb"] = max(rec["kb"], kb)
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                kids = _read(f"/proc/{pid}/task/{tid}/children") or b""
                todo += [(int(k), cmd) for k in kids.split()]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cli(name: str, lib: Path, args: list[str], env: dict, tmp: Path) -> dict:
    """One `python -m picseek.cli --library LIB ARGS` process: wall, CPU, peak RSS of every process, its stdout."""
    rus = tmp / f"rusage-{name}.json"
    rus.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", RUSAGE_WRAPPER, "--library", str(lib), *args]
    load0, cpu0 = loadavg(), children_cpu_s()
    t0 = time.perf_counter()
    with OtherLoad() as other:
        proc = subprocess.Popen(cmd, env={**env, "BENCH_RUSAGE_OUT": str(rus)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        peaks = TreePeaks(proc.pid)
        stdout, stderr = proc.communicate()
        peaks.stop()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{name}: picseek failed ({proc.returncode}): picseek --library {lib} {' '.join(args)}\n"
                 f"{stderr[-3000:]}")
    own = json.loads(rus.read_text()) if rus.is_file() else {"self_kb": 0, "children_kb": 0}
    procs = sorted(peaks.procs.values(), key=lambda r: r["label"] != "main")
    main_kb = max([own["self_kb"]] + [r["kb"] for r in procs if r["label"] == "main"])
    workers = [r["kb"] for r in procs if r["label"] == "decode worker"]
    others = [r for r in procs if r["label"] not in ("main", "decode worker")]
    return {"run": name, "wall_s": wall, "cpu_s": children_cpu_s() - cpu0, "load_start": load0, "load_end": loadavg(),
            "other_load_cores": other.cores, "rss_main_mb": main_kb / 1024, "decode_workers": len(workers),
            "rss_worker_max_mb": max(workers, default=0) / 1024,
            "rss_workers_mb": [round(kb / 1024, 1) for kb in workers],
            "rss_other_mb": {f"{r['label']} #{k}": round(r["kb"] / 1024, 1) for k, r in enumerate(others)},
            "stdout": stdout}


def index_run(name: str, lib: Path, folder: Path, args, env: dict, tmp: Path) -> dict:
    cli = ["index", str(folder), "--model", args.model, "--json"]
    if args.precision:
        cli += ["--precision", args.precision]
    if args.workers is not None:
        cli += ["--workers", str(args.workers)]
    res = run_cli(name, lib, cli, env, tmp)
    report = json.loads(res.pop("stdout"))
    res.update(report=report, images=report["scanned"], embedded=report["embedded"], index_s=report["seconds"],
               ips_report=report["images_per_s"], ips_wall=report["scanned"] / res["wall_s"])
    log(f"{name}: {report['scanned']} scanned, {report['embedded']} embedded in {res['wall_s']:.1f} s wall "
        f"(report {report['seconds']:.1f} s); main {res['rss_main_mb']:.0f} MB, {res['decode_workers']} decode "
        f"workers <= {res['rss_worker_max_mb']:.0f} MB; CPU {res['cpu_s']:.1f} s")
    return res


def check(name: str, report: dict, want: dict) -> list[str]:
    return [f"{name}: {k} = {report.get(k)}, expected {v}" for k, v in want.items() if report.get(k) != v]


def library_size(lib: Path, after: str, images: int) -> dict:
    parts = {"database": 0, "vector cache": 0, "approximate index": 0, "other": 0}
    for p in lib.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(lib).as_posix()
        key = ("database" if rel.startswith("picseek.db") else "vector cache" if rel.startswith("cache/vectors-")
               else "approximate index" if rel.startswith("cache/ann-") else "other")
        parts[key] += p.stat().st_size
    return {"after": after, "images": images, **parts, "total": sum(parts.values())}


# -- output ------------------------------------------------------------------------------------------------------
def machine() -> dict:
    import picseek

    name, flags = cpu()
    src = Path(picseek.__file__).resolve().parents[2]
    commit = "?"
    if (src / ".git").exists():
        git = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
        commit = git.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "") if git.returncode == 0 \
            else "?"

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {"date": dt.datetime.now().isoformat(sep=" ", timespec="seconds"), "cpu": name, "flags": flags,
            "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "picseek": picseek.__version__, "commit": commit,
            "source": src_fingerprint(), "pillow": version("pillow"), "onnxruntime": version("onnxruntime"),
            "numpy": np.__version__}


def print_runs(runs: list[dict]) -> None:
    print("\n| run | images | embedded | wall s | index s (report) | images/s (report) | images/s (wall) "
          "| peak RSS main MB | decode workers | peak RSS per decode worker MB (max) | other processes, peak MB "
          "| CPU s | load avg (1 min) start / end | other load, cores |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|")
    for r in runs:
        others = ", ".join(f"{k}: {v:.0f}" for k, v in r["rss_other_mb"].items()) or "-"
        ips = (f"{r['index_s']:.2f} | {r['ips_report']:.1f} | {r['ips_wall']:.1f}" if "index_s" in r
               else "- | - | -")
        print(f"| {r['run']} | {r.get('images', '-')} | {r.get('embedded', '-')} | {r['wall_s']:.1f} | {ips} "
              f"| {r['rss_main_mb']:.0f} | {r['decode_workers']} | {r['rss_worker_max_mb']:.0f} | {others} "
              f"| {r['cpu_s']:.1f} | {r['load_start'].split()[0]} / {r['load_end'].split()[0]} "
              f"| {r['other_load_cores']:.2f} |")
    print("\nimages: files scanned (search: hits). index s, images/s (report): `seconds` and `images_per_s` of the "
          "JSON report (embedded / index s; scan, decode, embed and write, model load included). images/s (wall): "
          "images / wall s of the whole process (start-up included). peak RSS: VmHWM of each process (main: the "
          "`picseek` process, model included). CPU s: user + system of the whole process tree. load avg: the "
          "1-minute figure (all three in --json-out). other load: CPU used by processes outside this benchmark "
          "during the run, in cores.")


def print_sizes(sizes: list[dict]) -> None:
    print("\n| library after | images | database MB | vector cache MB | approximate index MB | other MB | total MB "
          "| bytes per image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        print(f"| {s['after']} | {s['images']} | {s['database'] / 1e6:.1f} | {s['vector cache'] / 1e6:.1f} "
              f"| {s['approximate index'] / 1e6:.1f} | {s['other'] / 1e6:.2f} | {s['total'] / 1e6:.1f} "
              f"| {s['total'] / max(1, s['images']):,.0f} |")


def finish(info: dict, photos: dict, changes: dict | None, runs: list[dict], sizes: list[dict], args,
           problems: list[str]) -> None:
    print(f"\n## End to end, {args.n:,} photos, model {args.model}")
    print_runs(runs)
    if sizes:
        print_sizes(sizes)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": info, "command": sys.argv, "photos": photos,
                                                   "changes": changes, "runs": runs, "library": sizes,
                                                   "problems": problems}, indent=1))
        log(f"figures written to {args.json_out}")
    sys.stdout.flush()
    if problems:
        print("\nABORTED: picseek's report does not match what was done:")
        for p in problems:
            print(f"    {p}")
        sys.exit(1)


# -- main --------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="photos (default 10000)")
    ap.add_argument("--big-share", type=float, default=0.2, help="share of 12 MP photos, the rest 1 MP (default 0.2)")
    ap.add_argument("--per-folder", type=int, default=500, help="photos per folder (default 500)")
    ap.add_argument("--distinct", type=int, default=1000,
                    help="photos generated; the rest are byte-variants of them (default 1000; 0: all distinct)")
    ap.add_argument("--seed", type=int, default=12345, help="photo generation seed (default 12345)")
    ap.add_argument("--change", type=float, default=1.0, help="run c: %% of photos re-encoded (default 1)")
    ap.add_argument("--delete", type=float, default=0.5, help="run c: %% of photos deleted (default 0.5)")
    ap.add_argument("--add", type=float, default=0.5, help="run c: %% new photos added (default 0.5)")
    ap.add_argument("--model", default="builtin", help="picseek --model: builtin (default), a name or a folder")
    ap.add_argument("--precision", help="picseek --precision (default: picseek's own)")
    ap.add_argument("--workers", type=int, help="picseek --workers (default: picseek's own)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench-out" / "e2e",
                    help="photos, working tree, library, picseek caches (default bench-out/e2e)")
    ap.add_argument("--make-photos", type=Path, default=DEFAULT_MAKE_PHOTOS, help="path of make_photos.py")
    ap.add_argument("--json-out", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not 0 <= args.big_share <= 1 or args.n < 1:
        ap.error("-n must be >= 1 and --big-share within 0..1")

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = bench_env(out)
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "PICSEEK_CACHE_DIR", "TOKENIZERS_PARALLELISM")})
    info = machine()
    print(f"# picseek end to end: {args.n:,} mixed photos\n")
    print(f"date {info['date']}; {info['cpu']} ({info['flags']}); nproc {info['nproc']} (affinity "
          f"{info['affinity']}); {info['mem_gb']} GiB RAM; Python {info['python']}; picseek {info['picseek']} "
          f"(commit {info['commit']}, source {info['source']}); Pillow {info['pillow']}; onnxruntime "
          f"{info['onnxruntime']}; numpy {info['numpy']}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"model {args.model}; precision {args.precision or 'default'}; workers "
          f"{args.workers if args.workers is not None else 'default'}")
    sys.stdout.flush()

    photos_root, photos = ensure_photos(out, args.n, args.big_share, args.per_folder, args.seed, args.make_photos,
                                       args.distinct)
    print(f"\nphotos: {photos['n']:,} ({photos['big']:,} 12 MP, {photos['small']:,} 1 MP) in {photos['folders']} "
          f"folders, {photos['bytes'] / 1e9:.2f} GB ({photos['bytes'] / photos['n'] / 1e6:.2f} MB per photo); "
          f"generated in {photos['seconds']:.0f} s by {photos['processes']} processes"
          f"{'' if photos['made_now'] else ' (before this run)'}")
    sys.stdout.flush()

    work, lib, tmp = out / "work", out / "library", out / "tmp"
    tmp.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    n = link_tree(photos_root, work)
    log(f"working tree of {n} hard links in {time.perf_counter() - t0:.1f} s")

    runs: list[dict] = []
    sizes: list[dict] = []
    problems: list[str] = []
    changes = None

    # warm-up, untimed: picseek's one-time caches (model files, ONNX export / quantization, class embeddings)
    one = tmp / "one"
    if one.exists():
        shutil.rmtree(one)
    one.mkdir()
    first = sorted(work.rglob("*.jpg"))[0]
    os.link(first, one / first.name)
    shutil.rmtree(tmp / "warmup-lib", ignore_errors=True)
    warm = index_run("warm-up (1 photo, untimed)", tmp / "warmup-lib", one, args, env, tmp)
    runs.append(warm)

    # a. fresh
    shutil.rmtree(lib, ignore_errors=True)
    fresh = index_run("a. fresh index", lib, work, args, env, tmp)
    runs.append(fresh)
    problems += check("fresh", fresh["report"], {"scanned": n, "added": n, "embedded": n, "errors": 0, "moved": 0})
    sizes.append(library_size(lib, "a. fresh index", n))
    if problems:
        finish(info, photos, changes, runs, sizes, args, problems)

    # b. re-scan, nothing changed
    rescan = index_run("b. re-scan, unchanged", lib, work, args, env, tmp)
    runs.append(rescan)
    problems += check("re-scan", rescan["report"], {"scanned": n, "unchanged": n, "added": 0, "updated": 0,
                                                    "embedded": 0, "moved": 0, "removed": 0, "errors": 0})
    if problems:
        finish(info, photos, changes, runs, sizes, args, problems)

    # c. changed
    log(f"changing the working tree: {args.change} % re-encoded, {args.delete} % deleted, {args.add} % added ...")
    changes = change_tree(work, args, args.big_share, args.per_folder, args.make_photos)
    c, d, a = changes["changed"], changes["deleted"], changes["added"]
    print(f"\nrun c changes: {c} photos re-encoded ({changes['changed_big']} of them 12 MP), {d} deleted, {a} added "
          f"(spread over the folders; made in {changes['seconds']:.1f} s, untimed)")
    changed = index_run(f"c. {args.change:g} % changed", lib, work, args, env, tmp)
    runs.append(changed)
    n_after = n - d + a
    problems += check("changed", changed["report"], {"scanned": n_after, "updated": c, "removed": d, "added": a,
                                                     "unchanged": n - c - d, "embedded": c + a, "moved": 0,
                                                     "errors": 0})
    sizes.append(library_size(lib, f"c. {args.change:g} % changed", n_after))
    if problems:
        finish(info, photos, changes, runs, sizes, args, problems)

    # d. a text search in a new process
    search = run_cli("d. search (new process)", lib, ["search", QUERY, "--json"], env, tmp)
    hits = json.loads(search.pop("stdout"))
    search["images"] = len(hits)
    runs.append(search)
    log(f"search: {len(hits)} hits in {search['wall_s']:.2f} s")

    finish(info, photos, changes, runs, sizes, args, problems)
    print(f"\nsearch: `picseek --library LIB search {QUERY!r} --json`, {len(hits)} hits. Photos under {photos_root}, "
          f"library {lib}.")


if __name__ == "__main__":
    main()

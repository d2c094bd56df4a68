"""Re-scan speed: `picseek index FOLDER` on an unchanged, already indexed folder of many tiny files. It prints
figures; it asserts nothing (this is not a test). Target: 100k files in at most 10 s, end to end.

    python benchmarks/rescan.py                   # 100k files, 5 runs
    python benchmarks/rescan.py -n 20000 --repeats 3
    python benchmarks/rescan.py --profile         # plus one in-process run under pyinstrument

The folder (N files of 16 bytes named *.jpg in folders of 1000, under --out) is made once. A re-scan reads no
file contents, so the files need not be images: the library is filled straight through the store API with one
row per file (its real size and mtime, a fake content hash, a random 384-d vector) and the built-in model recorded
as the library's model, so a run that loads the model pays for it like a real library would. Every timed run is a
new `python -m picseek.cli --library L index FOLDER --json` process (wall time, median), after one untimed run that
warms the page cache; each run must report every file unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PER_FOLDER = 1000
DIM = 384


def make_folder(root: Path, n: int, per_folder: int = PER_FOLDER, name: str = "files") -> Path:
    """n tiny fake .jpg files in folders of `per_folder` (made once: kept under `root`)."""
    folder = root / f"{name}-{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    payload = b"\xff\xd8\xff\xe0 not a photo"
    for start in range(0, n, per_folder):
        sub = folder / f"d{start // per_folder:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(n, start + per_folder)):
            (sub / f"img_{i:07d}.jpg").write_bytes(payload)
    done.touch()
    return folder


def make_library(root: Path, folder: Path, n: int) -> Path:
    from picseek.ingest.scan import walk
    from picseek.models.base import l2_normalize
    from picseek.store.base import ImageRecord
    from picseek.store.sqlite import SQLiteStore

    lib = root / f"library-{n}"
    done = lib / ".complete"
    if done.exists():
        return lib
    store = SQLiteStore(lib)
    store.set_model({"name": "builtin", "model_id": _builtin_model_id(), "dim": DIM, "spaces": {"main": DIM}})
    rng = np.random.default_rng(0)
    entries = list(walk([str(folder.resolve())]))
    for start in range(0, len(entries), 5000):
        chunk = entries[start:start + 5000]
        vecs = l2_normalize(rng.normal(size=(len(chunk), DIM)).astype(np.float32))
        store.write_images([ImageRecord(e.path, e.size, e.mtime_ns, f"fake{start + i}", {}, {"main": vecs[i]})
                            for i, e in enumerate(chunk)])
    store.start_run([str(folder.resolve())])
    store.close()
    done.touch()
    return lib


def _builtin_model_id() -> str:
    """The builtin model's id as a library records it (read from a tiny real library made once)."""
    import tempfile

    from PIL import Image

    from picseek import Library

    with tempfile.TemporaryDirectory() as tmp:
        Image.new("RGB", (64, 64), (200, 30, 30)).save(Path(tmp) / "red.png")
        with Library(Path(tmp) / "lib", model="builtin") as lib:
            lib.index([tmp])
            return lib.recorded_model["model_id"]


def run_once(lib: Path, folder: Path, env: dict) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "picseek.cli", "--library", str(lib), "index", str(folder), "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"picseek index failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, json.loads(out.stdout)


def profile_once(lib: Path, folder: Path) -> None:
    from pyinstrument import Profiler

    from picseek.cli import main

    prof = Profiler(interval=0.002)
    prof.start()
    try:
        main(["--library", str(lib), "-q", "index", str(folder), "--json"])
    except SystemExit:
        pass
    prof.stop()
    print(prof.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="files (default 100000)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench-out" / "rescan")
    ap.add_argument("--profile", action="store_true", help="also profile one run in this process (pyinstrument)")
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(args.out / "cache"))
    os.environ.update(HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(args.out / "cache"))
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    folder = make_folder(args.out, args.n)
    lib = make_library(args.out, folder, args.n)
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s: {folder} ({args.n} files), library {lib}")
    run_once(lib, folder, env)  # untimed: page cache
    walls, seconds = [], []
    for _ in range(args.repeats):
        wall, report = run_once(lib, folder, env)
        if report["unchanged"] != args.n or report["embedded"] or report["removed"] or report["moved"]:
            raise SystemExit(f"the re-scan changed something: {report}")
        walls.append(wall)
        seconds.append(report["seconds"])
    db_mb = sum(p.stat().st_size for p in lib.glob("picseek.db*")) / 1e6
    print(f"\nre-scan of {args.n} unchanged files, {args.repeats} runs (load average {os.getloadavg()[0]:.2f})")
    print("| figure | median s | min s | max s |\n|---|---:|---:|---:|")
    print(f"| `picseek index` process wall | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} |")
    print(f"| IndexReport.seconds (in-process run_index) | {statistics.median(seconds):.2f} | {min(seconds):.2f} | "
          f"{max(seconds):.2f} |")
    print(f"library database {db_mb:.1f} MB ({db_mb * 1e6 / args.n:.0f} bytes per image)")
    if args.profile:
        profile_once(lib, folder)


if __name__ == "__main__":
    main()

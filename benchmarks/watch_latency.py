"""A live library (`picseek watch`): how soon a new photo can be found, and what a watcher costs while nothing
happens. It prints figures; it asserts nothing (this is not a test). Targets (issue 17): p50 <= 3 s, idle CPU <= 1 %
of a core.

    python benchmarks/watch_latency.py                       # 100 photos; a 100k-file tree idle for 60 s
    python benchmarks/watch_latency.py -n 20000 --idle 30 --photos 50

1. Latency: `picseek watch FOLDER` (a real CLI process, the built-in model, the default settings: 1 s debounce)
   on an empty folder; photos (640x480 JPEGs) are written one after another as cameras and sync tools write them
   (a hidden temporary name, then a rename), and each is timed from its rename to the moment its row and vector
   are in the library (what a search reads), polled every 20 ms from this process. Between photos a random pause
   of 0.2-1 s.
2. Idle CPU: `picseek watch TREE` on N files (16-byte *.jpg in folders of 100, made once under --out; the library
   is filled through the store API as benchmarks/rescan.py does, so the watcher's first run finds everything
   unchanged), left alone for --idle seconds once it has settled: user + system CPU of the watcher process from
   /proc/PID/stat, as a share of one core.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rescan import make_folder, make_library  # noqa: E402  (a tree of tiny files, a library of fake rows)

from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

PER_FOLDER = 100


class Watching:
    """`picseek watch` in a subprocess; `ready` once it said it is watching (its first run done)."""

    def __init__(self, lib: Path, folder: Path, env: dict, *extra: str):
        cmd = [sys.executable, "-m", "picseek.cli", "--library", str(lib), "watch", str(folder), *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.lines: list[str] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip())
            if "watching" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> None:
        if not self.ready.wait(timeout):
            self.stop()
            raise SystemExit("the watcher did not start:\n" + "\n".join(self.lines[-20:]))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)  # smooth-ish content, a real JPEG's size
    return Image.fromarray(small).resize((640, 480), Image.BILINEAR)


def latency(out: Path, env: dict, n: int) -> list[float]:
    from picseek import Library

    folder, lib_path = out / "latency-photos", out / "latency-lib"
    for p in (folder, lib_path):
        if p.exists():
            import shutil

            shutil.rmtree(p)
    folder.mkdir(parents=True)
    photo(0).save(folder / "first.jpg", quality=90)  # so the library records its model before timing
    w = Watching(lib_path, folder, env, "--model", "builtin")
    try:
        w.wait_ready(300)
        time.sleep(3)  # (the model loads after the first run)
        lib = Library(lib_path, create=False)
        times = []
        rnd = random.Random(1)
        for i in range(n):
            target = folder / f"IMG_{i:04d}.jpg"
            tmp = folder / f".{target.name}.tmp"
            photo(i + 1).save(tmp, format="JPEG", quality=90)
            t0 = time.perf_counter()
            os.replace(tmp, target)
            while str(target) not in lib.store.file_states([str(target)]):
                if time.perf_counter() - t0 > 60:
                    raise SystemExit(f"{target.name} not indexed within 60 s:\n" + "\n".join(w.lines[-20:]))
                time.sleep(0.02)
            times.append(time.perf_counter() - t0)
            time.sleep(rnd.uniform(0.2, 1.0))
        lib.close()
        return times
    finally:
        w.stop()


def idle_cpu(out: Path, env: dict, n: int, seconds: float) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    tree = make_folder(out, n, PER_FOLDER, name="tree")
    lib = make_library(out, tree, n)
    made = time.perf_counter() - t0
    t1 = time.perf_counter()
    w = Watching(lib, tree, env)
    try:
        w.wait_ready(900)
        start_s = time.perf_counter() - t1
        time.sleep(10)  # settle: the model loads after the first run
        c0, s0 = w.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        used, wall = w.cpu_seconds() - c0, time.perf_counter() - s0
    finally:
        w.stop()
    print(f"tree of {n} files in {n // PER_FOLDER} folders ready in {made:.1f} s (made once, kept under {out}); "
          f"the watcher's first run (all unchanged) and start: {start_s:.1f} s")
    return used, wall, 100 * used / wall


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100, help="photos timed (default 100)")
    ap.add_argument("-n", type=int, default=100_000, help="files in the idle tree (default 100000)")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds the idle watcher is measured (default 60)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench-out" / "watch")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cache"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(cache),
               PICSEEK_CONFIG=str(Path(tempfile.gettempdir()) / "picseek-bench-no-config.toml"))
    env.pop("PICSEEK_LIBRARY", None)
    os.environ.update(HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(cache))
    name, flags = cpu()
    print(f"# watch latency; {time.strftime('%Y-%m-%d %H:%M')}; {name}; CPU flags: {flags}; nproc {os.cpu_count()}")

    times = latency(args.out, env, args.photos)
    print(f"\nwritten -> searchable, {len(times)} photos (640x480 JPEG, atomic rename), built-in model, debounce 1 s:")
    print("| p50 s | p95 s | min s | max s | mean s |\n|---:|---:|---:|---:|---:|")
    print(f"| {pct(times, 50):.2f} | {pct(times, 95):.2f} | {min(times):.2f} | {max(times):.2f} | "
          f"{statistics.mean(times):.2f} |")

    used, wall, share = idle_cpu(args.out, env, args.n, args.idle)
    print(f"\nidle watcher on {args.n} files: {used:.2f} CPU s in {wall:.1f} s = {share:.2f} % of one core "
          f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()

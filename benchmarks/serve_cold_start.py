"""Cold start of `picseek serve`: seconds from starting the process to the first answer of /api/status (what a
health check or a serverless platform waits for), and to the first search (the model loaded). Prints the figures of
each start and their median; it asserts nothing.

    python benchmarks/serve_cold_start.py                          # 3 starts, the built-in model, 1 worker
    python benchmarks/serve_cold_start.py --workers 2 --starts 5
    python benchmarks/serve_cold_start.py --python /opt/picseek/bin/python   # another installation

The library (--images generated photos, indexed once with --model) lives in a temp folder or --workdir; the server
runs with --no-index, so the figures are start-up only. HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import write_photos  # noqa: E402


def first_ok(url: str, deadline: float, **params) -> float:
    while time.monotonic() < deadline:
        try:
            res = httpx.get(url, params=params, timeout=300)
            if res.status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"no answer from {url}")


def one_start(python: str, library: Path, workers: int, env: dict) -> tuple[float, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([python, "-m", "picseek.cli", "-L", str(library), "serve", "--port", "0", "--no-index",
                             "--workers", str(workers)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if not m:
            raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
        deadline = t0 + 600
        status = first_ok(m.group(1) + "/api/status", deadline) - t0
        search = first_ok(m.group(1) + "/api/search", deadline, q="a dog") - t0
        return status, search
    finally:
        proc.terminate()
        proc.wait(60)
        proc.stderr.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=3, help="how many cold starts (default 3)")
    ap.add_argument("--workers", type=int, default=1, help="picseek serve --workers (default 1)")
    ap.add_argument("--images", type=int, default=50, help="photos in the library (default 50)")
    ap.add_argument("--model", default="builtin", help="model of the library (default builtin, offline)")
    ap.add_argument("--python", default=sys.executable, help="the Python of the installation to start")
    ap.add_argument("--workdir", help="keep the library and photos here (default: a temp folder)")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="picseek-cold-start-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PICSEEK_TOKEN", None)
    library = work / "library"
    if not (library / "picseek.db").exists():
        write_photos(work / "photos", 0, args.images)
        subprocess.run([args.python, "-m", "picseek.cli", "-q", "-L", str(library), "index", str(work / "photos"),
                        "--model", args.model], env=env, check=True, timeout=3600)
    print(f"serve_cold_start: {args.python} -m picseek.cli serve --workers {args.workers}, model {args.model}, "
          f"{args.images} images")
    print(f"  {'start':>5} {'/api/status s':>14} {'first search s':>15}")
    runs = []
    for i in range(args.starts):
        runs.append(one_start(args.python, library, args.workers, env))
        print(f"  {i + 1:>5} {runs[-1][0]:>14.2f} {runs[-1][1]:>15.2f}")
    print(f"  {'median':>5} {statistics.median(r[0] for r in runs):>14.2f} "
          f"{statistics.median(r[1] for r in runs):>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

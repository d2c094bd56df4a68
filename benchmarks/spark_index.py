"""picseek Spark indexing benchmark: images/s of Spark in local mode next to the single-machine pipeline, on the
same files and model. It prints figures; it asserts nothing (this is not a test).

    python benchmarks/spark_index.py                  # 24 x 1 MP and 24 x 12 MP photos, builtin model, local[2]
    python benchmarks/spark_index.py -n 48 --master 'local[4]' --kinds 1mp

For each folder (photos made once by make_photos.py and cached under --data, as benchmarks/index_speed.py does):
1. cold: a fresh process for the whole job, as a user runs it: `picseek --library TMP index FOLDER --model M --json`
   against `python -m picseek.scale.spark_job FOLDER --shards TMP --master local[N] --model M --json` (JVM start-up,
   Python workers, a model per worker, writing the shards; the merge is timed separately).
2. warm: the model already loaded / the Spark session and its Python workers already up (a second job in the same
   session): `Library.index` in this process with a loaded model, and `index_on_spark` on a live session. This is
   the rate a long job settles at, without the fixed costs.
Everything picseek caches goes under --out; HF_HUB_OFFLINE=1 is set.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import index_speed as common  # noqa: E402  (photo cache, machine info, load measurement)


class Load(common.OtherLoad):
    """common.OtherLoad plus the whole machine's busy cores. Spark's JVM and Python workers are not children this
    process waits for, so for Spark runs only the machine figure means something (it includes Spark itself)."""

    def __enter__(self):
        self.busy_t0 = (common.machine_busy_s(), time.perf_counter())
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        busy0, t0 = self.busy_t0
        self.machine = (common.machine_busy_s() - busy0) / max(1e-9, time.perf_counter() - t0)


def run_json(cmd: list[str], env: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), wall


def cold(folder: Path, model: str, master: str, env: dict, tmp: Path) -> list[dict]:
    rows = []
    with Load() as other:
        rep, wall = run_json(common.picseek_cmd() + ["--library", str(tmp / "cold-local"), "index", str(folder),
                                                     "--model", model, "--json"], env)
    rows.append({"engine": "single machine (picseek index)", "images": rep["embedded"], "errors": rep["errors"],
                 "job_s": rep["seconds"], "ips": rep["images_per_s"], "wall": wall, "merge_s": None,
                 "other": other.cores, "machine": other.machine})
    common.log(f"cold single machine: {rep['images_per_s']} images/s, wall {wall:.1f} s")
    with Load() as other:
        out, wall = run_json([sys.executable, "-m", "picseek.scale.spark_job", str(folder), "--shards",
                              str(tmp / "cold-shards"), "--master", master, "--model", model, "--json",
                              "--library", str(tmp / "cold-spark"), "--merge"], env)
    s, m = out["spark"], out["merge"]
    rows.append({"engine": f"Spark {master} (spark_job + merge)", "images": s["embedded"], "errors": s["errors"],
                 "job_s": s["seconds"], "ips": s["images_per_s"], "wall": wall, "merge_s": m["seconds"],
                 "other": None, "machine": other.machine})
    common.log(f"cold Spark: {s['images_per_s']} images/s, wall {wall:.1f} s")
    return rows


def warm(folder: Path, model: str, master: str, tmp: Path, repeats: int) -> list[dict]:
    from picseek import Library
    from picseek.models import registry
    from picseek.scale.spark import index_on_spark, spark_session

    emb = registry.load_embedder(model)
    rows = []
    for i in range(repeats + 1):  # the first run warms the decode pool start-up path and the page cache
        with Load() as other:
            rep = Library(tmp / f"warm-local-{i}", model=emb).index([folder])
        if i:
            rows.append({"engine": "single machine (Library.index, model loaded)", "images": rep.embedded,
                         "errors": rep.errors, "job_s": rep.seconds, "ips": rep.images_per_s, "wall": None,
                         "merge_s": None, "other": other.cores, "machine": other.machine})
    common.log(f"warm single machine: {rows[-1]['ips']:.2f} images/s")
    t0 = time.perf_counter()
    with spark_session(master, conf={"spark.ui.showConsoleProgress": "false"}) as spark:
        spark.sparkContext.setLogLevel("ERROR")
        common.log(f"Spark session up in {time.perf_counter() - t0:.1f} s (JVM + SparkContext)")
        first_job = time.perf_counter()
        for i in range(repeats + 1):  # the first job starts the Python workers and builds their models
            with Load() as other:
                rep = index_on_spark(spark, folder, tmp / f"warm-shards-{i}", model=model)
            if not i:
                common.log(f"first job (Python workers start, a model each) {time.perf_counter() - first_job:.1f} s")
            if i:
                t0 = time.perf_counter()
                merged = Library(tmp / f"warm-spark-{i}").merge([tmp / f"warm-shards-{i}"])
                rows.append({"engine": f"Spark {master} (index_on_spark, session and workers up)",
                             "images": rep.embedded, "errors": rep.errors, "job_s": rep.seconds,
                             "ips": rep.images_per_s, "wall": None, "merge_s": time.perf_counter() - t0,
                             "other": None, "machine": other.machine})
                assert merged.added == rep.embedded
    common.log(f"warm Spark: {rows[-1]['ips']:.2f} images/s")
    return rows


def print_rows(kind: str, rows: list[dict]) -> None:
    print(f"\n## {kind}\n")
    print("| run | engine | images | job s | images/s | process wall s | merge s | machine busy, cores | "
          "other load, cores |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wall = f"{r['wall']:.1f}" if r["wall"] is not None else ""
        merge = f"{r['merge_s']:.2f}" if r["merge_s"] is not None else ""
        other = f"{r['other']:.2f}" if r["other"] is not None else "n/a"
        err = f" ({r['errors']} err)" if r["errors"] else ""
        print(f"| {r['run']} | {r['engine']} | {r['images']}{err} | {r['job_s']:.1f} | {r['ips']:.2f} | {wall} | "
              f"{merge} | {r['machine']:.2f} | {other} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-out", help="cache folder for photos and picseek caches")
    ap.add_argument("--data", default=None, help="photo cache folder (default OUT/photos)")
    ap.add_argument("-n", "--photos", type=int, default=24, help="photos per folder kind (default 24)")
    ap.add_argument("--kinds", default="1mp,12mp", help="comma list of 1mp, 12mp")
    ap.add_argument("--model", default="builtin", help="model name (default builtin: no download)")
    ap.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    ap.add_argument("--repeats", type=int, default=2, help="warm runs per engine after one warm-up (default 2)")
    ap.add_argument("--make-photos", default=str(common.DEFAULT_MAKE_PHOTOS), help="path of make_photos.py")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    env = common.bench_env(out)
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "PICSEEK_CACHE_DIR", "TOKENIZERS_PARALLELISM")})
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    folders = common.ensure_photos(Path(args.data).resolve() if args.data else out / "photos", args.photos,
                                   Path(args.make_photos))
    info = common.machine_info()
    import pyspark

    print("# picseek Spark indexing benchmark\n")
    print(f"date {info['date']}; {info['cpu']}; nproc {info['nproc']}; {info['mem_gb']} GiB RAM; Python "
          f"{info['python']}; torch {info['torch']}; pyspark {pyspark.__version__}; picseek {info['picseek']}; "
          f"model {args.model}; master {args.master}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    load0 = common.loadavg()
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        tmp = Path(tempfile.mkdtemp(prefix="picseek-bench-spark-"))
        try:
            rows = [dict(r, run="cold") for r in cold(folders[kind], args.model, args.master, env, tmp)]
            rows += [dict(r, run="warm") for r in warm(folders[kind], args.model, args.master, tmp, args.repeats)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print_rows(f"{args.photos} x {kind} JPEGs", rows)
        sys.stdout.flush()
    print("\njob s / images/s: IndexReport.seconds / images_per_s for the single machine; SparkReport.seconds / "
          "images_per_s for Spark (session start where it starts one, reading the inputs, the job, writing and "
          "counting the shards). process wall s: the whole process. merge s: loading the shards into a new library. "
          "machine busy: CPU used by every process on the machine during the run, in cores (Spark's included). "
          "other load: CPU used by processes outside this benchmark and its children, in cores; n/a for Spark, "
          "whose JVM and Python workers are not children this process waits for.")
    print(f"load average before / after: {load0} / {common.loadavg()}")


if __name__ == "__main__":
    main()

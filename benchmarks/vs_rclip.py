"""picseek against rclip: indexing images/s on the same photos, side by side in one run; the model-only ceiling; how
close the fast path stays to the fp32 reference. It prints figures; it asserts nothing (this is not a test).

    python benchmarks/vs_rclip.py --rclip /path/to/venv/bin/rclip --rclip-models DIR [--rclip-models-int8 DIR]
    python benchmarks/vs_rclip.py --quick ...        # smoke run

rclip (PyPI `rclip` 4.0.8, Python >= 3.12, its own virtual environment) downloads its model on first use. Offline,
make its model files with random weights of the same architecture (open_clip ViT-B-32-256, exported to ONNX the way
rclip ships it) with `rclip_offline_models.py DIR fp32` (and `DIR int8` for the quantized variant) from the project
brief's bench folder; each rclip run gets a fresh RCLIP_DATADIR (so a fresh database) that links to those files,
and HF_HUB_OFFLINE=1. picseek runs a full-size ViT-B/32 CLIP with random weights in Hugging Face format (built by
index_speed.py), at every --precision listed, with the same 256 x 256 input as rclip's ViT-B-32-256 (`--size`; until
issue 20 picseek's side ran the 224-px ViT-B/32, 1.3x fewer patches than rclip's, which flattered picseek).

Every run is a whole new process on a fresh library / database: `picseek index FOLDER` and `rclip -f -t 1 QUERY`
in FOLDER (rclip indexes the folder, then answers the query). Configurations are interleaved and repeated; each is
also run on a folder holding only the first image, and marginal images/s = (N - 1) / (wall N - wall 1) compares
the steady rates without start-up, model load and the query. The model-only ceiling is embed_pixels on ready
pixels in this process (no decode, no I/O).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import index_speed as base  # noqa: E402  (the photo/model builders and the RSS wrapper)

RCLIP_LINKS = ("ViT-B-32-256-datacomp_s34b_b86k", "tokenizer", "LICENSE", "OPENAI-CLIP-MIT.txt", "README.md",
               "THIRD_PARTY_NOTICES.md")


def rclip_once(rclip: str, models: Path, folder: Path, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="rclip-bench-") as tmp:
        for name in RCLIP_LINKS:
            os.symlink(models / name, Path(tmp) / name)
        run_env = {**env, "RCLIP_DATADIR": tmp, "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        with base.OtherLoad() as other:
            proc = subprocess.run([rclip, "-f", "-t", "1", "dog"], cwd=folder, env=run_env, capture_output=True,
                                  text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"rclip failed ({proc.returncode}) in {folder}:\n{proc.stderr[-3000:]}")
    return {"wall": wall, "other": other.cores}


def picseek_once(model: str, precision: str, folder: Path, env: dict) -> dict:
    res = base.index_once(model, folder, {**env, "PICSEEK_PRECISION": precision}, None)
    return res


def marginal(n: int, wall_n: float, wall_1: float) -> float:
    return (n - 1) / (wall_n - wall_1) if wall_n > wall_1 else float("nan")


def bench(configs: dict, folders: dict, ones: dict, repeats: int) -> list[dict]:
    for label, run in configs.items():  # warm-up: page cache, ONNX exports, .pyc files
        t0 = time.perf_counter()
        run(ones["1mp"])
        base.log(f"warm-up {label}: {time.perf_counter() - t0:.1f} s")
    walls: dict[tuple[str, str], list[dict]] = {}
    fixed: dict[tuple[str, str], list[dict]] = {}
    for r in range(repeats):
        for kind, folder in folders.items():
            for label, run in configs.items():
                res = run(folder)
                walls.setdefault((label, kind), []).append(res)
                one = run(ones[kind])
                fixed.setdefault((label, kind), []).append(one)
                base.log(f"repeat {r + 1}/{repeats} {kind} {label}: wall {res['wall']:.2f} s, 1 image "
                         f"{one['wall']:.2f} s (other load {res['other']:.2f})")
    rows = []
    n = len(list(next(iter(folders.values())).glob("*.jpg")))
    for (label, kind), rs in walls.items():
        w = statistics.median(x["wall"] for x in rs)
        w1 = statistics.median(x["wall"] for x in fixed[(label, kind)])
        rows.append({"label": label, "kind": kind, "images": n, "wall": w, "wall1": w1,
                     "marginal": marginal(n, w, w1), "whole": n / w,
                     "report_ips": statistics.median(x.get("images_per_s", float("nan")) for x in rs),
                     "rss": max(x.get("rss_main_mb", float("nan")) for x in rs),
                     "other": max(x["other"] for x in rs + fixed[(label, kind)])})
    return rows


def ceiling(model_dir: Path, precisions: list[str], batch: int, repeats: int,
            rclip_models: dict[str, Path]) -> dict[str, float]:
    """Model-only images/s on ready pixels, interleaved (median): picseek's embed_pixels at each precision (batch
    `batch`, the model's input size), and rclip's visual.onnx run the way rclip runs it (ONNX Runtime, one intra-op
    thread per core, its default batch of 8 at 256 x 256)."""
    from picseek.models.registry import load_embedder

    runs: dict[str, tuple[int, object]] = {}
    for p in precisions:
        e = load_embedder(str(model_dir), precision=p)
        s = e.image_spec.size
        px = np.random.default_rng(0).integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
        runs[f"picseek {p}"] = (batch, lambda e=e, px=px: e.embed_pixels(px))
    for label, models in rclip_models.items():
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = len(os.sched_getaffinity(0))
        sess = ort.InferenceSession(str(models / RCLIP_LINKS[0] / "visual.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((8, 3, 256, 256)).astype(np.float32)
        runs[label] = (8, lambda sess=sess, x=x: sess.run(None, {"input": x}))
    for _, run in runs.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, (_, run) in runs.items():
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    return {k: runs[k][0] / statistics.median(t) for k, t in times.items()}


def decode_seconds(folder: Path, size: int = 224) -> float:
    """Median seconds to read, hash and decode one photo of `folder` on one core (decode_file, default draft)."""
    from picseek.ingest.images import decode_file
    from picseek.models.base import ImageSpec

    spec, times = ImageSpec(size=size), []
    for f in sorted(folder.glob("*.jpg")):
        t0 = time.perf_counter()
        decode_file(str(f), spec)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def closeness(model_dir: Path, folder: Path, precisions: list[str]) -> list[dict]:
    """Each fast precision against fp32 on the same photos: cosine per image, and top-10 overlap of text queries."""
    from picseek.ingest.images import decode_file
    from picseek.models.registry import load_embedder

    ref = load_embedder(str(model_dir), precision="fp32")
    files = sorted(folder.glob("*.jpg"))
    pixels = np.stack([decode_file(str(f), ref.image_spec).pixels for f in files])
    want = np.concatenate([ref.embed_pixels(pixels[i:i + 16])["main"] for i in range(0, len(pixels), 16)])
    queries = ["a dog", "a red car at night", "mountains", "a beach", "people in a city"]
    rows = []
    for p in precisions:
        if p == "fp32":
            continue
        emb = load_embedder(str(model_dir), precision=p)
        got = np.concatenate([emb.embed_pixels(pixels[i:i + 16])["main"] for i in range(0, len(pixels), 16)])
        cos = np.sum(want * got, axis=1)
        overlap = []
        for q in queries:
            t = ref.embed_texts([q])[0]
            k = min(10, len(files))
            a, b = set(np.argsort(-(want @ t))[:k]), set(np.argsort(-(got @ t))[:k])
            overlap.append(len(a & b) / k)
        rows.append({"precision": p, "min": float(cos.min()), "median": float(np.median(cos)),
                     "overlap": float(np.mean(overlap)), "images": len(files)})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rclip", default="rclip", help="the rclip executable (in its own Python >= 3.12 venv)")
    ap.add_argument("--rclip-models", type=Path, required=True, help="rclip model files, fp32 (see above)")
    ap.add_argument("--rclip-models-int8", type=Path, help="rclip model files with the int8 visual tower")
    ap.add_argument("--precisions", default="fp32,int8", help="picseek precisions to run (comma-separated)")
    ap.add_argument("-n", type=int, default=48, help="photos per folder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--make-photos", type=Path, default=base.DEFAULT_MAKE_PHOTOS)
    ap.add_argument("--bpe", help="open_clip's bpe_simple_vocab_16e6.txt.gz (default: from the open_clip_torch wheel)")
    ap.add_argument("--size", type=int, default=256,
                    help="input size of picseek's random ViT-B/32 (256: as rclip's ViT-B-32-256; 224: before issue 20)")
    ap.add_argument("--quick", action="store_true", help="4 photos, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 4, 1
    out = args.out.resolve()
    env = base.bench_env(out)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    folders = base.ensure_photos(out / "photos", args.n, args.make_photos)
    ones = base.one_image_folders(folders)
    model_dir = base.ensure_random_clip(out, args.bpe, args.size)
    info = base.machine_info()
    print(f"date {info['date']}; {info['cpu']}; nproc {info['nproc']}; {info['mem_gb']} GiB RAM; "
          f"Python {info['python']}; torch {info['torch']}; load average {base.loadavg()}")
    print(f"command: {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}")
    print(f"picseek model: {model_dir.name} (random weights, {args.size} x {args.size} input); rclip: ViT-B-32-256\n")

    configs = {f"picseek {p}": (lambda f, p=p: picseek_once(str(model_dir), p, f, env)) for p in precisions}
    configs["rclip fp32"] = lambda f: rclip_once(args.rclip, args.rclip_models.resolve(), f, env)
    if args.rclip_models_int8:
        configs["rclip int8"] = lambda f: rclip_once(args.rclip, args.rclip_models_int8.resolve(), f, env)
    rows = bench(configs, folders, ones, args.repeats)
    print(f"## Indexing, {args.n} photos per folder (whole processes, median of {args.repeats}; fresh library each)\n")
    print("| folder | tool | wall s | 1-image wall s | marginal images/s | whole-run images/s | vs rclip fp32 "
          "(marginal) | peak RSS MB | other load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in folders:
        ref = next(r for r in rows if r["kind"] == kind and r["label"] == "rclip fp32")
        for r in (x for x in rows if x["kind"] == kind):
            print(f"| {kind} | {r['label']} | {r['wall']:.2f} | {r['wall1']:.2f} | {r['marginal']:.2f} | "
                  f"{r['whole']:.2f} | {r['marginal'] / ref['marginal']:.2f}x | {r['rss']:.0f} | {r['other']:.2f} |")
    print("\npeak RSS: the picseek index process (VmHWM); not measured for rclip.\n")

    rclip_models = {"rclip fp32": args.rclip_models.resolve()}
    if args.rclip_models_int8:
        rclip_models["rclip int8"] = args.rclip_models_int8.resolve()
    ceil = ceiling(model_dir, precisions, 16, max(3, args.repeats * 2), rclip_models)
    cores = len(os.sched_getaffinity(0))
    decode = {kind: decode_seconds(folder, args.size) for kind, folder in folders.items()}
    print("## Model-only ceilings (ready pixels, no decode, no I/O; this process)\n")
    print(f"picseek: embed_pixels, batch 16, {args.size} x {args.size}. rclip: its visual.onnx in ONNX Runtime with "
          "one intra-op thread per core, batch 8 (its default), 256 x 256.\n")
    print("| model | images/s | pipeline marginal 12mp / ceiling | 1mp / ceiling |")
    print("|---|---:|---:|---:|")
    for label, ips in ceil.items():
        m = {r["kind"]: r["marginal"] for r in rows if r["label"] == label}
        print(f"| {label} | {ips:.2f} | {m.get('12mp', float('nan')) / ips:.0%} | "
              f"{m.get('1mp', float('nan')) / ips:.0%} |")
    print(f"\n## What {cores} cores allow\n")
    print("Decoding takes core time that the model then lacks: with a model-only ceiling C (all cores) and a decode "
          "cost of D core-seconds per photo, a pipeline on P cores reaches at most about 1 / (1/C + D/P) (more only "
          "where the model leaves cores idle). The last column is the most picseek could reach over rclip fp32's "
          "measured rate if decoding were free (running at its ceiling).\n")
    print("| folder | decode ms per photo, 1 core | picseek precision | estimate images/s | measured / estimate | "
          "ceiling / rclip fp32 measured |")
    print("|---|---:|---|---:|---:|---:|")
    for kind in folders:
        ref = next(r for r in rows if r["kind"] == kind and r["label"] == "rclip fp32")["marginal"]
        for p in precisions:
            c = ceil[f"picseek {p}"]
            bound = 1 / (1 / c + decode[kind] / cores)
            m = next(r for r in rows if r["kind"] == kind and r["label"] == f"picseek {p}")["marginal"]
            print(f"| {kind} | {decode[kind] * 1000:.1f} | {p} | {bound:.2f} | {m / bound:.0%} | {c / ref:.2f}x |")
    print("\n## Fast path against the fp32 reference (same photos, random-weight ViT-B/32)\n")
    print("| precision | images | cosine min | cosine median | top-10 overlap, 5 text queries |")
    print("|---|---:|---:|---:|---:|")
    for r in closeness(model_dir, folders["1mp"], precisions):
        print(f"| {r['precision']} | {r['images']} | {r['min']:.5f} | {r['median']:.5f} | {r['overlap']:.2f} |")
    print(f"\nload average at the end: {base.loadavg()}")


if __name__ == "__main__":
    main()

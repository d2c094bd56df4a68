"""Indexing on a GPU (`picseek index --device cuda`): images/s, GPU utilisation, and what bounds the run. It prints
figures; it asserts nothing (this is not a test).

    python benchmarks/gpu_index.py                       # 2000 generated 1 MP JPEGs, --device cuda
    python benchmarks/gpu_index.py --device cpu --n 64   # the same figures on the CPU (a dry run of the plumbing)
    python benchmarks/gpu_index.py --model FOLDER        # a ready-ONNX model folder (immich's layout) or any name

Three figures, each measured alone, then the whole run:
1. decode rate: `decode_file` (read, hash, draft decode, resize: the indexer's worker function) over the photos in a
   process pool of every core the process may use = the most images/s this host can feed any model;
2. model rate: the image tower alone on the device, batches of --batch-size random pixels (after a warm-up);
3. index rate: `picseek index FOLDER --device D --json` as a new process (model load included, as a user runs it),
   with GPU utilisation and memory sampled every 200 ms by nvidia-smi while it runs.
The run is decode-bound when the index rate is near the decode rate and the model rate is well above it.

The default model is a full-size ViT-B/32 CLIP with random weights (same compute as the real one) in immich's
ready-ONNX layout, exported once under --out with torch (benchmarks/index_speed.py builds the Hugging Face model);
on a machine without torch pass --model with a ready folder. A GPU run needs onnxruntime-gpu in place of
onnxruntime (docs/deployment.md, "GPU").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_speed import DEFAULT_MAKE_PHOTOS, bench_env, ensure_photos, ensure_random_clip, log, picseek_cmd  # noqa: E402

from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)


def cpu_flags() -> str:
    name, flags = cpu()
    return f"{name}; {len(os.sched_getaffinity(0))} cores; {flags}"


def gpu_info() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "no nvidia-smi"
    return out.stdout.strip() or out.stderr.strip()


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB) every 200 ms while the `with` block runs."""

    def __init__(self):
        self.util: list[float] = []
        self.mem: list[float] = []
        self._proc = None

    def __enter__(self):
        try:
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                           "--format=csv,noheader,nounits", "-lms", "200"],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0].replace(".", "").isdigit():
                self.util.append(float(parts[0]))
                self.mem.append(float(parts[1]))

    def __exit__(self, *exc):
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def summary(self) -> str:
        if not self.util:
            return "no samples (no NVIDIA GPU or no nvidia-smi)"
        return (f"utilisation median {statistics.median(self.util):.0f} %, p90 "
                f"{np.percentile(self.util, 90):.0f} %, max memory {max(self.mem):.0f} MiB ({len(self.util)} samples)")


def immich_layout(hf_folder: Path, out: Path) -> Path:
    """A Hugging Face CLIP folder -> immich's ready-ONNX layout (config.json, visual/ + textual/ model.onnx,
    preprocess_cfg.json, tokenizer files), as tests/unit/test_onnx_repo.py writes it; needs torch, once."""
    if (out / ".complete").is_file():
        return out
    import torch
    from transformers import AutoModel, AutoTokenizer

    from picseek.models import onnx, onnx_repo
    from picseek.models.hf import _text_module, _vision_module

    log(f"exporting {hf_folder.name} to immich's ONNX layout in {out} (once) ...")
    model = AutoModel.from_pretrained(hf_folder, dtype=torch.float32).eval()
    size = model.config.vision_config.image_size
    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(exist_ok=True)
    ids = torch.ones((1, 77), dtype=torch.int32)
    with torch.inference_mode(), onnx.quiet_export():
        torch.onnx.export(_vision_module(model), (torch.zeros(1, 3, size, size),), str(out / onnx_repo.VISUAL),
                          input_names=["image"], output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch_size"}})
        torch.onnx.export(_text_module(model, False), (ids,), str(out / onnx_repo.TEXTUAL), input_names=["text"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"text": {0: "batch_size"}})
    (out / onnx_repo.PREPROCESS).write_text(json.dumps({
        "size": [size, size], "mode": "RGB", "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest",
        "fill_color": 0}))
    tok = AutoTokenizer.from_pretrained(hf_folder)
    tok.save_pretrained(out / "textual")
    (out / onnx_repo.SPECIAL_TOKENS).write_text(json.dumps(
        {"eos_token": tok.eos_token, "unk_token": tok.unk_token, "pad_token": tok.pad_token}))
    (out / onnx_repo.CONFIG).write_text(json.dumps({
        "embed_dim": model.config.projection_dim, "vision_cfg": {"image_size": size},
        "text_cfg": {"context_length": 77, "vocab_size": len(tok)}}))
    (out / ".complete").write_text("ok")
    return out


def _decode(args):
    from picseek.ingest.images import decode_file

    path, spec = args
    d = decode_file(path, spec)
    return d.error is None


def decode_rate(paths: list[Path], spec) -> float:
    """Images/s of the indexer's worker function over every core this process may use (one process per core)."""
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_decode, [(str(p), spec) for p in paths[:cores * 2]]))  # warm the workers
        t0 = time.perf_counter()
        ok = sum(pool.map(_decode, [(str(p), spec) for p in paths], chunksize=8))
        seconds = time.perf_counter() - t0
    if ok != len(paths):
        log(f"  {len(paths) - ok} photos did not decode")
    return len(paths) / seconds


def model_rate(model: str, device: str, batch: int, batches: int) -> tuple[float, str]:
    from picseek.models.registry import load_embedder

    emb = load_embedder(model, device=device)
    s = emb.image_spec.size
    pixels = np.random.default_rng(0).integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    emb.embed_pixels(pixels)  # warm-up: sessions, the fp16 copy, CUDA kernels
    t0 = time.perf_counter()
    for _ in range(batches):
        emb.embed_pixels(pixels)
    return batch * batches / (time.perf_counter() - t0), getattr(emb, "precision", "?")


def index_rate(model: str, folder: Path, device: str, batch: int, env: dict) -> tuple[dict, GpuSampler]:
    with tempfile.TemporaryDirectory(prefix="picseek-gpu-") as tmp:
        cmd = [*picseek_cmd(), "--library", str(Path(tmp) / "lib"), "index", str(folder), "--model", model,
               "--device", device, "--batch-size", str(batch), "--json"]
        with GpuSampler() as gpu:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"index failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    return {"images": report["embedded"], "errors": report["errors"], "wall": wall,
            "images_per_s": report["embedded"] / wall}, gpu


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="1 MP JPEGs to index (generated once)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", help="a model name or folder (default: random ViT-B/32 in immich's ONNX layout)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "picseek-bench"))
    ap.add_argument("--data", help="where the generated photos live (default: OUT/photos)")
    ap.add_argument("--make-photos", default=str(DEFAULT_MAKE_PHOTOS))
    ap.add_argument("--bpe", help="open_clip's bpe_simple_vocab_16e6.txt.gz (else fetched once)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    env = bench_env(out)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("PICSEEK_", "HF_"))})
    import onnxruntime as ort

    print(f"CPU: {cpu_flags()}")
    print(f"GPU: {gpu_info()}")
    print(f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
    folder = ensure_photos(Path(args.data or out / "photos"), args.n, Path(args.make_photos))["1mp"]
    paths = sorted(folder.glob("*.jpg"))
    model = args.model or str(immich_layout(ensure_random_clip(out, args.bpe), out / "models" / "random-vit-b-32-onnx"))
    from picseek.models.registry import load_embedder

    spec = load_embedder(model).image_spec
    log(f"decode rate over {len(paths)} photos ...")
    decode = decode_rate(paths, spec)
    log(f"model rate on {args.device} ...")
    mrate, precision = model_rate(model, args.device, args.batch_size, max(4, 2048 // args.batch_size))
    log(f"index run on {args.device} ...")
    run, gpu = index_rate(model, folder, args.device, args.batch_size, env)
    print(f"\n{len(paths)} x 1 MP JPEGs, model {Path(model).name}, {precision}, batch {args.batch_size}, "
          f"device {args.device}")
    print(f"  decode rate (all {len(os.sched_getaffinity(0))} cores): {decode:8.1f} images/s")
    print(f"  model rate (image tower alone):   {mrate:8.1f} images/s")
    print(f"  index rate (whole process):       {run['images_per_s']:8.1f} images/s "
          f"({run['images']} images, {run['errors']} errors, {run['wall']:.1f} s)")
    print(f"  GPU while indexing: {gpu.summary()}")
    bound = "decode" if decode < mrate else "model"
    print(f"  bound: {bound} (the index rate is {run['images_per_s'] / min(decode, mrate):.0%} of the lower of "
          "the two rates)")


if __name__ == "__main__":
    main()

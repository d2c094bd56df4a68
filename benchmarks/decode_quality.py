"""JPEG draft-mode decoding: how much time it saves and how close its embeddings stay to a full decode. Prints
figures; asserts nothing.

    HF_HUB_OFFLINE=1 python benchmarks/decode_quality.py [--photos DIR ...] [--clip MODEL_DIR]

The indexer asks libjpeg for a reduced decode (1/2, 1/4 or 1/8 scale in the DCT) no smaller than `draft` x the
model's input on either side; `draft=None` decodes at full size, the reference. For each photo, each draft factor
is compared with the reference: cosine of the embeddings (same model, fp32) and the median decode time on one core
(read + hash + decode + resize, `decode_file`).

Photos: the real photos that ship with scikit-image, each saved as a JPEG at its own size and upscaled to 12 MP
(4000 x 3000 class; so a 12 MP decode runs at 1/8 scale on real content), plus any folders given with --photos
(e.g. the generated 12 MP / 1 MP photos of vs_rclip.py). Models: the built-in model (real weights) and, with
--clip, a CLIP-family model (e.g. the random-weight ViT-B/32 the other benchmarks build).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry",
           "camera", "retina", "colorwheel")
DRAFTS = (None, 2, 1)  # None: full decode (the reference); 2: the default before; 1: the default now


def sample_photos(out: Path) -> dict[str, list[Path]]:
    """scikit-image's photos as JPEGs: at their own size ("real") and upscaled to ~12 MP ("real, 12 MP")."""
    import skimage.data
    from PIL import Image

    small, big = [], []
    for name in SAMPLES:
        a = getattr(skimage.data, name)()
        a = a[0] if isinstance(a, tuple) else a
        a = a.astype(np.uint8) * 255 if a.dtype == bool else a
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        img = Image.fromarray(a.astype(np.uint8))
        p = out / f"{name}.jpg"
        img.save(p, quality=92)
        small.append(p)
        scale = (12e6 / (img.width * img.height)) ** 0.5
        p12 = out / f"{name}-12mp.jpg"
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(p12, quality=90)
        big.append(p12)
    return {"real photos, own size": small, "real photos, upscaled to 12 MP": big}


def embed(emb, paths: list[Path], draft: int | None) -> tuple[np.ndarray, float, list[tuple[int, int]]]:
    from PIL import Image

    from picseek.ingest.images import decode_file

    pixels, times, sizes = [], [], []
    for p in paths:
        t0 = time.perf_counter()
        d = decode_file(str(p), emb.image_spec, draft=draft)
        times.append(time.perf_counter() - t0)
        if d.error:
            sys.exit(f"{p}: {d.error}")
        pixels.append(d.pixels)
        with Image.open(p) as im:  # the scale libjpeg picks for this draft request (header only)
            if draft:
                im.draft("RGB", (draft * emb.image_spec.size, draft * emb.image_spec.size))
            sizes.append(im.size)
    pix = np.stack(pixels)
    vec = np.concatenate([emb.embed_pixels(pix[i:i + 16])["main"] for i in range(0, len(pix), 16)])
    return vec, statistics.median(times), sizes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, action="append", default=[], help="a folder of JPEGs (repeatable)")
    ap.add_argument("--clip", help="a CLIP-family model folder or name, run at fp32 beside the built-in model")
    ap.add_argument("--limit", type=int, default=24, help="photos per --photos folder")
    args = ap.parse_args(argv)

    from picseek.models.registry import load_embedder

    models = {"builtin (real weights)": load_embedder("builtin")}
    if args.clip:
        models[f"{Path(args.clip).name} (fp32)"] = load_embedder(args.clip, precision="fp32")
    with tempfile.TemporaryDirectory(prefix="picseek-draft-") as tmp:
        sets = sample_photos(Path(tmp))
        for folder in args.photos:
            sets[f"{folder}"] = sorted(folder.glob("*.jpg"))[:args.limit]
        print("| photos | model | draft | decoded at (first photo) | decode ms (median, 1 core) | cosine min | "
              "cosine median |")
        print("|---|---|---|---|---:|---:|---:|")
        for label, paths in sets.items():
            for mname, emb in models.items():
                ref, ref_ms, ref_sizes = embed(emb, paths, None)
                print(f"| {label} ({len(paths)}) | {mname} | full decode | {ref_sizes[0][0]} x {ref_sizes[0][1]} | "
                      f"{ref_ms * 1000:.1f} | 1 | 1 |")
                for draft in DRAFTS[1:]:
                    vec, ms, sizes = embed(emb, paths, draft)
                    cos = np.sum(ref * vec, axis=1)
                    print(f"| {label} ({len(paths)}) | {mname} | {draft} x input | {sizes[0][0]} x {sizes[0][1]} | "
                          f"{ms * 1000:.1f} | {cos.min():.5f} | {np.median(cos):.5f} |", flush=True)


if __name__ == "__main__":
    main()

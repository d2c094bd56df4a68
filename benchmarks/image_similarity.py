"""Near-duplicate and same-scene retrieval: does a changed copy of a photo find its original?

Originals: scikit-image's sample photos (astronaut, coffee, chelsea, rocket, camera, ...; they ship in its wheel,
nothing is downloaded), in a gallery with 200 distractors (its small LFW crops). Each original gets changed copies:
crops, rotations, a mirror, colour changes, grey, JPEG re-encoding, downscaling, and a mix; one more query is the
right view of scikit-image's stereo motorcycle pair, whose left view is an original (the same scene from another
viewpoint). Every copy is a query against the gallery; printed per
kind of change and overall: recall@1, recall@5 and the mean rank of the original, for each way of embedding images:

  builtin-image   the built-in model's image-only space (pooled EfficientNet-Lite0 features): real weights, offline
  builtin-main    the built-in model's shared space (ConSE vectors): real weights, offline
  clip            CLIP image vectors (--clip, default clip-vit-b-32): only where its weights are in the local cache
  dinov2          DINOv2 (--dinov2, default dinov2-small) with its own preprocessing (shortest side 256, crop 224)
  builtin+dinov2  the DINOv2 space of a built-in library (`--image-model`): its input taken from the pixels the
                  built-in model's decode made (models/spaces.py), as indexing and queries make it

DINOv2's weights come from the local Hugging Face cache when they are there; otherwise the benchmark says so and runs
a DINOv2 of the same architecture with random weights: its speed is real, its recall figures mean nothing about
quality. Also prints images/s of each embedding (model only, from prepared pixels) and the CPU.

    python benchmarks/image_similarity.py [--dinov2 dinov2-small] [--clip clip-vit-b-32] [--precision auto]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from picseek.models import hub, registry
from picseek.models.base import ImageSpec, l2_normalize, prepare_image
from picseek.models.dinov2 import own_pixels
from picseek.models.spaces import WithImageSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
           "retina", "page", "text", "coins", "moon", "horse", "clock", "grass", "gravel", "brick", "colorwheel",
           "logo", "cell")


def originals() -> tuple[dict[str, Image.Image], Image.Image]:
    """scikit-image's sample photos as RGB, and the right view of the stereo pair (its left view is an original)."""
    from skimage import data

    out = {}
    for name in SAMPLES:
        a = np.asarray(getattr(data, name)())
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        out[name] = Image.fromarray(a[..., :3].astype(np.uint8)).convert("RGB")
    left, right, _ = data.stereo_motorcycle()
    out["motorcycle"] = Image.fromarray(left).convert("RGB")
    return out, Image.fromarray(right).convert("RGB")


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(img: Image.Image, frac: float, at: str) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * frac), int(h * frac)
    left, top = ((w - cw) // 2, (h - ch) // 2) if at == "centre" else (0, 0)
    return img.crop((left, top, left + cw, top + ch))


def _hue(img: Image.Image, shift: int) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    h = h.point(lambda x: (x + shift) % 256)
    s = s.point(lambda x: min(255, int(x * 1.4)))
    return Image.merge("HSV", (h, s, v)).convert("RGB")


CHANGES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop centre 60%": lambda im: _crop(im, 0.6, "centre"),
    "crop corner 75%": lambda im: _crop(im, 0.75, "corner"),
    "crop centre 35%": lambda im: _crop(im, 0.35, "centre"),
    "crop corner 50%": lambda im: _crop(im, 0.5, "corner"),
    "rotate 10 deg": lambda im: im.rotate(10, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)),
    "rotate 30 deg": lambda im: im.rotate(30, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)),
    "rotate 90 deg": lambda im: im.rotate(90, expand=True),
    "mirror": ImageOps.mirror,
    "hue +40, saturation x1.4": lambda im: _hue(im, 40),
    "brighter, less contrast": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(0.6),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "JPEG quality 10": lambda im: _jpeg(im, 10),
    "1/4 size, JPEG 50": lambda im: _jpeg(im.resize((max(1, im.width // 4), max(1, im.height // 4))), 50),
    "crop 60% + hue + JPEG 30": lambda im: _jpeg(_hue(_crop(im, 0.6, "corner"), 30), 30),
}


def distractors() -> list[Image.Image]:
    """More images for the gallery, none a copy of an original: scikit-image's 200 small LFW crops (faces and
    non-faces, 25 x 25 grey, scaled to 100 x 100)."""
    from skimage import data

    return [Image.fromarray((a * 255 if a.max() <= 1 else a).astype(np.uint8)).convert("RGB").resize((100, 100))
            for a in data.lfw_subset()]


def recall(gallery: np.ndarray, queries: np.ndarray, truth: list[int]) -> tuple[float, float, float]:
    """(recall@1, recall@5, mean rank of the original; rank 1 = first)."""
    ranks = []
    for q, t in zip(queries, truth, strict=True):
        scores = gallery @ q
        ranks.append(1 + int((scores > scores[t]).sum()))
    ranks = np.asarray(ranks)
    return float((ranks <= 1).mean()), float((ranks <= 5).mean()), float(ranks.mean())


def _random_dinov2(folder: Path) -> Path:
    """DINOv2 ViT-S/14's architecture and processor config (facebook/dinov2-small's) with random weights."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                             patch_size=14, image_size=518)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def embedders(args, tmp: Path) -> dict[str, tuple[Callable[[list[Image.Image]], np.ndarray], str]]:
    """name -> (images -> unit vectors, what its weights are)."""
    builtin = registry.load_embedder("builtin")
    out = {"builtin-image": (lambda ims: builtin.embed_images(ims, "image"), "real"),
           "builtin-main": (lambda ims: builtin.embed_images(ims, "main"), "real")}
    clip_spec = registry.resolve(args.clip)
    if registry.is_cached(clip_spec):
        clip = registry.load_embedder(clip_spec, precision=args.precision)
        out["clip"] = (lambda ims: clip.embed_images(ims, "main"), f"real ({clip.model_id}, {args.precision})")
    else:
        print(f"# clip: {args.clip} ({clip_spec.source}) is not in the local cache: skipped (no random stand-in: "
              "its recall would mean nothing)")
    spec = registry.resolve_image_model(args.dinov2)
    if hub.cached_file(spec.source, "config.json") is not None or Path(spec.source).is_dir():
        weights = "real"
    else:
        print(f"# dinov2: {spec.source} is not in the local Hugging Face cache: RANDOM WEIGHTS of the same "
              "architecture (DINOv2 ViT-S/14): its speed is real, its recall figures mean nothing about quality")
        spec = registry.resolve_image_model(str(_random_dinov2(tmp / "dinov2-random")))
        weights = "RANDOM"
    dino = registry.load_image_model(spec, precision=args.precision)

    edge = ImageSpec(round(dino.image_spec.size / dino.crop), "shortest_crop", dino.image_spec.resample)

    def own(ims):  # the processor's way: shortest side to 256, the centre 224 x 224
        return dino.embed_pixels(own_pixels(np.stack([prepare_image(im, edge) for im in ims]), dino.image_spec,
                                            dino.crop))

    combined = WithImageSpace(builtin, dino, "dinov2")
    out["dinov2"] = (own, f"{weights} ({dino.model_id}, {dino.precision})")
    out["builtin+dinov2"] = (lambda ims: combined.embed_images(ims, "dinov2"), f"{weights} (built-in's pixels)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dinov2", default="dinov2-small")
    ap.add_argument("--clip", default="clip-vit-b-32")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    name, flags = cpu()
    print(f"# image similarity; {time.strftime('%Y-%m-%d %H:%M')}; {name}; CPU flags: {flags}; nproc {os.cpu_count()}")
    photos, right_view = originals()
    names = list(photos)
    gallery_images = [photos[n] for n in names] + distractors()
    queries: dict[str, list[Image.Image]] = {c: [f(photos[n]) for n in names] for c, f in CHANGES.items()}
    print(f"# {len(names)} originals (scikit-image samples) + {len(gallery_images) - len(names)} distractors in the "
          f"gallery; {len(CHANGES)} changes of each original, + 1 other-viewpoint query (stereo motorcycle right -> "
          "left)")
    with tempfile.TemporaryDirectory() as tmp:
        models = embedders(args, Path(tmp))
        rows = {}
        for model, (embed, weights) in models.items():
            embed(gallery_images[:2])  # load sessions before timing
            t = time.perf_counter()
            gallery = l2_normalize(embed(gallery_images))
            per_image = (time.perf_counter() - t) / len(gallery_images)
            row = {}
            all_ranks_q, all_truth = [], []
            for change, ims in queries.items():
                q = l2_normalize(embed(ims))
                row[change] = recall(gallery, q, list(range(len(names))))
                all_ranks_q.append(q)
                all_truth += list(range(len(names)))
            row["all changes"] = recall(gallery, np.concatenate(all_ranks_q), all_truth)
            row["other viewpoint"] = recall(gallery, l2_normalize(embed([right_view])), [names.index("motorcycle")])
            rows[model] = row
            print(f"# {model}: weights {weights}; {1 / per_image:.1f} images/s (model only, incl. preprocessing)")
    cols = list(models)
    print()
    print("| change | " + " | ".join(f"{c} R@1 / R@5 / rank" for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for change in [*CHANGES, "all changes", "other viewpoint"]:
        cells = [f"{rows[c][change][0]:.2f} / {rows[c][change][1]:.2f} / {rows[c][change][2]:.1f}" for c in cols]
        print(f"| {change} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

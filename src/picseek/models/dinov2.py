"""DINOv2 (facebook/dinov2-small, -base, or any `hf:` / folder Dinov2 checkpoint) as an image-only space beside a
library's search model (models/spaces.py `WithImageSpace`, `picseek index --image-model dinov2-small`).

DINOv2 is trained on images alone (self-distillation): its vectors say "same object, same scene" far better than a
text-image model's, and nothing about words. An image's vector is the CLS token after the final layer norm (the
model's `pooler_output`), L2-normalised: 384-d for -small, 768-d for -base.

Weights load as the search models' do (`hf.load_source`: a folder, or a repo id from the local Hugging Face cache
first, then the hub where it answers). The vision tower is exported to ONNX once, through torch, in the export child
process (`python -m picseek.models.onnx_export --image SOURCE PRECISION`, models/onnx.py `export_in_child`), with
what a process needs to run it (`dinov2.json`: dim, input size, mean/std, crop) beside it in the ONNX cache; every
later process runs it in ONNX Runtime without torch (`LazyTower`). int8: the MatMul weights quantized as the CLIP
image towers' are (`precision auto`, where onnxruntime is installed).

Preprocessing comes from the checkpoint's image processor config: the shortest side to 256, a centre crop of 224,
ImageNet mean/std. A library decodes each image once, for its search model; this space takes its input from those
pixels (`embed_from`): the centre 224/256 of them (the crop DINOv2's processor makes), resized to 224. With a CLIP
model (shortest side to 224, centre crop) that is DINOv2's own crop, resampled once more; with the built-in model
(whole image squashed to a square) it is the centre of the squashed image.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..extras import require
from . import hf, onnx
from .base import ImageSpec, ModelSpec, l2_normalize, normalize

log = logging.getLogger(__name__)

SPACE = "dinov2"  # the space its vectors are stored in
FACTS_JSON = "dinov2.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 32


@dataclass(eq=False)
class Dinov2Embedder:
    """A DINOv2 image tower in ONNX Runtime. `embed_pixels(pixels)`: uint8 N x size x size x 3 at its own input
    size -> N x dim unit rows; `embed_from(pixels, spec)`: the same from another model's input pixels."""

    name: str
    model_id: str
    dim: int
    image_spec: ImageSpec  # its own input: size x size, ImageNet mean/std
    crop: float  # the centre fraction its processor keeps (crop / shortest edge: 224 / 256)
    tower: onnx.LazyTower
    precision: str = "int8"
    space: str = SPACE

    def warm_up(self) -> None:
        self.tower.load()

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        s = self.image_spec.size
        if pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
            raise ValueError(f"expected uint8 N x {s} x {s} x 3 pixels, got shape {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([l2_normalize(self.tower(pixel_values=normalize(pixels[i:i + BATCH], self.image_spec)))
                               for i in range(0, len(pixels), BATCH)])

    def embed_from(self, pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
        """Vectors from the pixels another model's decode made (`spec`: that model's input): the centre crop this
        model's processor keeps, resized to its input size (models/base.py `prepare_image` resampling)."""
        return self.embed_pixels(own_pixels(pixels, self.image_spec, self.crop))


def own_pixels(pixels: np.ndarray, spec: ImageSpec, crop: float) -> np.ndarray:
    """uint8 N x H x W x 3 -> N x size x size x 3: the centre `crop` fraction of each, resized with `spec`'s
    resampling (nothing done where the input is already that)."""
    pixels = np.asarray(pixels)
    s = spec.size
    if len(pixels) == 0:
        return np.zeros((0, s, s, 3), np.uint8)
    h, w = pixels.shape[1:3]
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    top, left = (h - ch) // 2, (w - cw) // 2
    if (ch, cw) == (s, s):
        return np.ascontiguousarray(pixels[:, top:top + s, left:left + s])
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}[spec.resample]
    return np.stack([np.asarray(Image.fromarray(p[top:top + ch, left:left + cw]).resize((s, s), resample))
                     for p in pixels])


def spec_from_processor(cfg: dict) -> tuple[ImageSpec, float]:
    """DINOv2's saved image processor config (BitImageProcessor: shortest edge 256, centre crop 224, ImageNet
    mean/std, bicubic) -> (its input ImageSpec, the centre fraction its crop keeps)."""
    size = cfg.get("size", {"shortest_edge": 256})
    edge = int(size if isinstance(size, int) else size.get("shortest_edge") or size.get("height") or 256)
    crop_cfg = cfg.get("crop_size", 224) if cfg.get("do_center_crop", True) else edge
    crop = int(crop_cfg if isinstance(crop_cfg, int) else crop_cfg.get("height", 224))
    base, _ = hf.image_spec_from_processor({**cfg, "size": {"shortest_edge": crop}, "crop_size": crop})
    return base, min(1.0, crop / edge)


# -- loading and the export (in the child process) --------------------------------------------------------------


def _load_dinov2_parts(source: str, local_files_only: bool) -> hf._Parts:
    from transformers import AutoConfig, Dinov2Model

    config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    if getattr(config, "model_type", None) != "dinov2":
        raise ModelError(f"{source} is a {getattr(config, 'model_type', '?')!r} model, not DINOv2: --image-model "
                         "takes a DINOv2 model (dinov2-small, dinov2-base, hf:ORG/NAME or a folder)")
    parts = hf.load_parts_of(Dinov2Model, source, local_files_only, tokenizer=False)
    hf.warn_missing(source, parts.missing)
    return parts


def torch_module(model):
    """The exported computation: pixels -> the final layer norm's CLS token, L2-normalised (hf's vision wrapper
    around the model's `pooler_output`)."""
    model.get_image_features = lambda pixel_values: model(pixel_values=pixel_values).pooler_output
    return hf._vision_module(model)


def export(source: str, precision: str) -> int:
    """What the export child runs: load the checkpoint, export its tower for `precision` (fp32 or int8) into the
    ONNX cache with its facts beside it. 0 when done."""
    import torch

    parts, label, revision = hf.load_source(source, source, _load_dinov2_parts)
    model_id = f"hf:{label}@{revision}"
    spec, crop = spec_from_processor(parts.processor)
    folder = onnx.cache_folder(model_id)
    target = folder / f"vision-{precision}.onnx"
    dim = int(parts.config.hidden_size)
    if not target.is_file():
        s = spec.size
        hf._export(torch_module(parts.model), (torch.zeros(1, 3, s, s),), ["pixel_values"],
                   {"pixel_values": {0: "batch"}}, target, precision == "int8")
    facts = {"model_id": model_id, "dim": dim, "crop": crop,
             "image_spec": {"size": spec.size, "resize": spec.resize, "resample": spec.resample,
                            "mean": list(spec.mean), "std": list(spec.std)}}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".facts-") as tmp:
        (Path(tmp) / FACTS_JSON).write_text(json.dumps(facts, indent=1))
        os.replace(Path(tmp) / FACTS_JSON, folder / FACTS_JSON)
    return 0


def _exported(model_id: str | None, precision: str) -> bool:
    if not model_id:
        return False
    folder = onnx.cache_folder(model_id)
    return (folder / f"vision-{precision}.onnx").is_file() and (folder / FACTS_JSON).is_file()


def load(spec: ModelSpec, precision: str | None = None) -> Dinov2Embedder:
    """A DINOv2 spec (source: repo id or folder) -> its ONNX tower, exported first where it is not cached (torch
    needed for that once). `precision`: auto/int8 -> int8 (fp32 where onnxruntime's quantizer is missing), fp32 and
    bf16 -> fp32."""
    if not onnx.onnxruntime_available():
        raise ModelError(f"image model {spec.name} runs in ONNX Runtime: pip install onnxruntime onnx")
    asked = onnx.check_precision(precision)
    chosen = "int8" if asked in ("auto", "int8") else "fp32"
    source = spec.source or spec.name
    model_id = hf._known_model_id(source)
    if not _exported(model_id, chosen):
        require(f"converting {spec.name} to ONNX (once)")
        log.warning("first use of %s: exporting it to ONNX (once; cached)", spec.name)
        onnx.export_in_child(source, chosen, image_only=True)
        model_id = hf._known_model_id(source)  # a repo just downloaded now has its revision
        if not _exported(model_id, chosen):
            raise ModelError(f"the ONNX export of {spec.name} left nothing in the cache ({model_id})")
    folder = onnx.cache_folder(model_id)
    facts = json.loads((folder / FACTS_JSON).read_text())
    sp = facts["image_spec"]
    image_spec = ImageSpec(sp["size"], sp["resize"], sp["resample"], tuple(sp["mean"]), tuple(sp["std"]))
    return Dinov2Embedder(name=spec.name, model_id=model_id, dim=int(facts["dim"]), image_spec=image_spec,
                          crop=float(facts["crop"]), tower=onnx.LazyTower(folder / f"vision-{chosen}.onnx"),
                          precision=chosen)

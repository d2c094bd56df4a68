"""The one interface every model backend implements, and the image preprocessing each spec carries.

A model turns images and texts into L2-normalised float32 vectors in one shared space ("main"). A model may also
offer extra image-only spaces (the built-in model's pooled CNN features, "image") that serve image→image queries
better than the shared space does.

Preprocessing is split in two so that the expensive half runs in worker processes without torch:
`prepare_image` (decode side: orientation, colour mode, resize/crop to the model's input size -> uint8 HxWx3) and
`Embedder.embed_pixels` (model side: normalise with the spec's mean/std and run the network).

A backend is one kind of model (built-in, Hugging Face through torch, ready ONNX towers, a plugin's): it declares itself
as a `Backend` (how to load a `ModelSpec`, how to name one, whether its weights are here, which extra it needs), and
models/registry.py keeps the one table of them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

MAIN = "main"

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class ImageSpec:
    """How a model wants its input image: the only preprocessing description a caller needs.

    resize: "shortest_crop" = shortest edge to `size` then centre crop (CLIP); "squash" = the whole image to
    size x size without a crop (SigLIP, EfficientNet-Lite). mean/std are on the 0..1 scale.
    """

    size: int = 224
    resize: str = "shortest_crop"
    resample: str = "bicubic"
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    def __post_init__(self) -> None:
        if self.resize not in ("shortest_crop", "squash"):
            raise ValueError(f"unknown resize mode {self.resize!r}")
        if self.resample not in _RESAMPLE:
            raise ValueError(f"unknown resample {self.resample!r}")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency composited onto white, 16-bit and float scaled, CMYK converted."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        hi = float(a.max()) if a.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255.0 else 255.0 if 0.0 < hi <= 1.0 else 1.0
        a = np.clip(a * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def prepare_image(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize/crop an oriented, loaded image to the model's input: uint8 array of shape (size, size, 3).

    Resizes before the colour conversion where it can (a full-size convert of a 12 MP photo copies 36 MB).
    """
    s = spec.size
    resample = _RESAMPLE[spec.resample]
    if img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        pass  # resize first, convert the small result
    else:
        img = to_rgb(img)
    w, h = img.size
    if spec.resize == "squash":
        img = img.resize((s, s), resample, reducing_gap=3.0 if max(w, h) > 4 * s else None)
    else:
        short = min(w, h)
        nw, nh = max(s, s * w // short), max(s, s * h // short)  # truncate, as the HF/OpenAI transforms do
        img = img.resize((nw, nh), resample, reducing_gap=3.0 if min(w, h) > 4 * s else None)
        left, top = (nw - s) // 2, (nh - s) // 2
        img = img.crop((left, top, left + s, top + s))
    img = to_rgb(img)
    return np.asarray(img, dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W, scaled to 0..1 and normalised with the spec's mean/std."""
    x = pixels.astype(np.float32) * (1.0 / 255.0)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def l2_normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


@runtime_checkable
class Embedder(Protocol):
    """What every backend offers. All vectors are L2-normalised float32 rows."""

    name: str  # the name it was built from ("builtin", "clip-vit-b-32", a folder)
    model_id: str  # stable identity of the weights (backend, repo/folder, revision or hash); recorded in libraries
    dim: int  # dimension of the shared text-image space
    image_spec: ImageSpec
    spaces: Mapping[str, int]  # every space this model writes for an image: {"main": dim, ...}
    image_query_space: str  # the space an example-image query is best answered in

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 N x size x size x 3 (from `prepare_image`) -> {space: N x d} for every space in `spaces`."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """N texts -> N x dim in the main space."""


@dataclass
class EmbedderBase:
    """Shared conveniences; backends subclass it and implement embed_pixels / embed_texts."""

    name: str
    model_id: str
    dim: int
    image_spec: ImageSpec
    spaces: dict[str, int] = field(default_factory=dict)
    image_query_space: str = MAIN

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_images(self, images: Sequence[Image.Image], space: str = MAIN) -> np.ndarray:
        """Loaded PIL images -> N x d vectors in `space` (preprocessing done here, per the spec)."""
        if not images:
            return np.zeros((0, self.spaces.get(space, self.dim)), dtype=np.float32)
        pixels = np.stack([prepare_image(im, self.image_spec) for im in images])
        return self.embed_pixels(pixels)[space]


@dataclass(frozen=True)
class ModelSpec:
    """A model by name: which backend builds it and from what (models/registry.py names them)."""

    name: str
    backend: str  # a Backend's name (the registry's table)
    source: str = ""  # repo id or local folder (hf, onnx); empty for builtin
    description: str = ""
    dim: int | None = None  # known up front for named specs; read from the weights otherwise
    auto_rank: int | None = None  # preference when `auto` looks for a cached model (lower first)
    size_mb: int | None = None  # what a download fetches, where known (`picseek models`)


@dataclass(frozen=True)
class Backend:
    """One kind of model, as the registry sees it (models/registry.py: its table, `register_backend`, and the
    `picseek.backends` entry-point group).

    name    ModelSpec.backend of its specs, and the prefix of the names it answers to: `NAME:SOURCE` (`hf:ORG/NAME`,
            `onnx:ORG/NAME`). The model ids its embedders record should start with `NAME:` too, so that a library's
            recorded model is reopened by this backend (registry.spec_for_record).
    load    (spec, device="cpu", precision=None) -> Embedder; `precision` (auto, fp32, bf16, int8, fp16) is passed where
            one is asked for, which a library always does.
    spec    SOURCE (the text after `NAME:`) -> the ModelSpec it names, whose `name` should be `NAME:SOURCE` so that
            the name an embedder records resolves back to it; ModelError where SOURCE names nothing. None: the
            backend has no `NAME:` names (its models are named elsewhere, e.g. `builtin`).
    cached  spec -> True where the weights are on this machine (no download needed). None: always.
    extra   the extra of picseek it needs (`pip install 'picseek[EXTRA]'`), None for the default install.
    """

    name: str
    load: Callable[..., Embedder]
    spec: Callable[[str], ModelSpec] | None = None
    cached: Callable[[ModelSpec], bool] | None = None
    extra: str | None = None

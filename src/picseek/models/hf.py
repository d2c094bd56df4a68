"""Hugging Face dual encoders (CLIP, SigLIP, SigLIP 2) from the local cache, a download, or a local folder.

The model class comes from the checkpoint's config through AutoModel; anything with `get_image_features`
and `get_text_features` whose image processor describes a square input is served. At run time the HF image
processor is not used: its saved config becomes an `ImageSpec`, and `prepare_image` + `normalize`
(numpy/Pillow, run in worker processes) reproduce it; the unit tests check the two agree to cosine >= 0.999.

Loading order for a repo id: the local cache first (no network at all, so a cached model never changes under
a library that recorded its revision), then a download where the hub is reachable, else a `ModelError` that
says how to get the model (models/hub.py).

Fast paths (precision, models/onnx.py): int8 runs the towers exported to ONNX through torch once per model (in a
child process, models/onnx_export.py) and cached with what a process needs to run them without torch or transformers
(`light_embedder`); bf16 runs the torch weights in bfloat16. The exported graphs include the final L2 normalisation.
benchmarks/index_speed.py prints the cosine between the fast and the reference vectors; the unit tests check it on
tiny models.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, one_line
from ..extras import TORCH, require
from . import hub, onnx
from .base import MAIN, Backend, EmbedderBase, ImageSpec, ModelSpec, l2_normalize, normalize

log = logging.getLogger(__name__)

# model_type -> how its text tower was trained to see padding. SigLIP-family text towers pool the last
# position and were trained on max-length padded text; CLIP pools the eos token and pads to the longest text.
TEXT_PADDING: dict[str, str] = {"siglip": "max_length", "siglip2": "max_length"}
DEFAULT_PADDING = "longest"
# image-only model types -> what to do with one (they have no text tower: models/dinov2.py)
IMAGE_ONLY: dict[str, str] = {"dinov2": "DINOv2 is an image-only model: index with --image-model"}
TEXT_BATCH = 256

# PIL's resampling codes as saved in preprocessor_config.json -> ImageSpec.resample names
_RESAMPLE_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SMALL_CONFIGS = ("config.json", "preprocessor_config.json", "processor_config.json")
Runner = Callable[..., np.ndarray]


@dataclass(eq=False)
class HFEmbedder(EmbedderBase):
    """A loaded dual encoder. `model` and `tokenizer` are the transformers objects; `patch_size` is set for
    SigLIP 2 NaFlex checkpoints, whose vision tower takes a sequence of patches instead of an image tensor."""

    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)
    device: str = "cpu"
    padding: str = DEFAULT_PADDING
    max_length: int = 77
    patch_size: int | None = None
    text_inputs: tuple[str, ...] = field(default=("input_ids", "attention_mask"))
    precision: str = "fp32"  # what runs the towers (models/onnx.py): fp32, bf16 or int8
    compute_dtype: str = "float32"  # torch weights' dtype (bfloat16 for precision bf16)
    precision_auto: bool = False  # chosen by `auto`: a failed export falls back to fp32 instead of failing
    model_type: str = ""  # the checkpoint's config model_type ("clip", "siglip", "blip", ...)
    source: str = ""  # the repo id or folder the weights come from (a BLIP library's re-ranker reuses it)
    _towers: tuple | None = field(default=None, repr=False)  # (image, text) ONNX Runtime runners, built lazily
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def _ort(self) -> tuple:
        """(image, text) runners; each loads its session on first use (models/onnx.py LazyTower)."""
        with self._lock:
            if self._towers is None:
                try:
                    self._towers = ort_towers(self, self.precision)
                except ModelError as exc:
                    if not self.precision_auto or self.model is None:
                        raise
                    log.warning("%s; running the model in fp32", exc)
                    self.precision = "fp32"
                    self._towers = (None, None)
            return self._towers

    def _text_tower(self):
        """The ONNX text runner, loaded; None where the text tower runs on torch (fp32, bf16, or a text
        session that will not load while the torch model is here)."""
        if self.precision != "int8" or (tower := self._ort()[1]) is None:
            return None
        try:
            tower.load()
        except Exception as exc:  # noqa: BLE001 - a broken cached file: torch answers if it is here
            if self.model is None:
                raise ModelError(f"cannot load the ONNX text tower of {self.name} ({exc}); clear the cache "
                                 "folder or index again with --precision fp32") from exc
            log.info("text tower of %s stays on torch: %s", self.name, exc)
            with self._lock:
                self._towers = (self._towers[0], None)
            return None
        return tower

    def warm_up(self) -> None:
        """Load what embed_pixels needs now (the indexer calls it on a thread while the first photos decode)."""
        if self.precision == "int8" and (tower := self._ort()[0]) is not None:
            tower.load()

    def prepare(self) -> None:
        """Export the fast towers now (once per model) rather than on a first search; sessions load on use."""
        if self.precision == "int8":
            self._ort()

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_spec.size, self.image_spec.size, 3):
            s = self.image_spec.size
            raise ValueError(f"expected uint8 N x {s} x {s} x 3 pixels, got shape {pixels.shape}")
        if len(pixels) == 0:
            return {MAIN: np.zeros((0, self.dim), dtype=np.float32)}
        x = normalize(pixels, self.image_spec)
        if self.precision == "int8" and self._ort()[0] is not None:
            return {MAIN: l2_normalize(self._ort()[0](pixel_values=x))}
        import torch

        x = torch.from_numpy(x).to(self.device, dtype=getattr(torch, self.compute_dtype))
        inputs = {"pixel_values": x} if self.patch_size is None else _naflex_inputs(x, self.patch_size)
        with torch.inference_mode():
            out = self.model.get_image_features(**inputs)
        return {MAIN: _to_numpy(out)}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        text_tower = self._text_tower()
        rows = []
        for i in range(0, len(texts), TEXT_BATCH):
            if text_tower is not None:
                enc = self.tokenizer(texts[i:i + TEXT_BATCH], padding=self.padding, truncation=True,
                                     max_length=self.max_length, return_tensors="np")
                rows.append(l2_normalize(text_tower(**{k: np.asarray(v, dtype=np.int64) for k, v in enc.items()
                                                       if k in self.text_inputs})))
            else:
                rows.append(self._torch_texts(texts[i:i + TEXT_BATCH]))
        return np.concatenate(rows)

    def _torch_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if self.model is None:
            raise ModelError(f"the ONNX text tower of {self.name} could not be loaded; index again with "
                             "--precision fp32, or clear the cache folder")
        enc = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.text_inputs}
        with torch.inference_mode():
            return _to_numpy(self.model.get_text_features(**inputs))


def _to_numpy(out) -> np.ndarray:
    """get_*_features output -> L2-normalised float32 rows. transformers 4.x returns the projected tensor; 5.x
    returns a BaseModelOutputWithPooling whose pooler_output is the projected embedding."""
    import torch

    if not isinstance(out, torch.Tensor):
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise ModelError(f"unexpected output from the model: {type(out).__name__} without pooler_output")
        out = pooled
    return l2_normalize(out.detach().float().cpu().numpy())


def _naflex_inputs(x, patch: int) -> dict:
    """N x 3 x H x W -> SigLIP 2 NaFlex inputs: patches in the HF processor's order (row-major over the grid,
    each patch flattened as patch_row, patch_col, channel), a full attention mask, and the grid shape."""
    import torch

    b, c, h, w = x.shape
    nh, nw = h // patch, w // patch
    patches = x.reshape(b, c, nh, patch, nw, patch).permute(0, 2, 4, 3, 5, 1)
    patches = patches.reshape(b, nh * nw, patch * patch * c)
    return {"pixel_values": patches,
            "pixel_attention_mask": torch.ones((b, nh * nw), dtype=torch.long, device=x.device),
            "spatial_shapes": torch.tensor([[nh, nw]] * b, dtype=torch.long, device=x.device)}


def image_spec_from_processor(cfg: dict) -> tuple[ImageSpec, int | None]:
    """A saved image processor config (preprocessor_config.json) -> (ImageSpec, NaFlex patch size or None).

    CLIP: shortest edge to `size.shortest_edge`, centre crop `crop_size` -> "shortest_crop". SigLIP: `size`
    height x width with no crop -> "squash". SigLIP 2 NaFlex: aspect-preserving resize to at most
    `max_num_patches` patches; for a square image that is the largest square grid, which is what we feed
    ("squash" to that side).
    """
    resample_raw = cfg.get("resample", 3)
    if isinstance(resample_raw, str):
        resample = resample_raw.lower()
    else:
        resample = _RESAMPLE_CODES.get(int(resample_raw))
    if resample not in _RESAMPLE_CODES.values():
        log.warning("image processor resample %r is not supported here; using bicubic", resample_raw)
        resample = "bicubic"
    if cfg.get("do_normalize", True):
        mean = tuple(float(v) for v in _triple(cfg.get("image_mean", ImageSpec.mean)))
        std = tuple(float(v) for v in _triple(cfg.get("image_std", ImageSpec.std)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if not math.isclose(rescale, 1 / 255, rel_tol=1e-4):
        # normalize() scales by 1/255 first: fold another rescale into mean/std (x*r - m)/s = (x/255 - m')/s'
        k = rescale * 255.0
        mean, std = tuple(m / k for m in mean), tuple(s / k for s in std)

    if cfg.get("max_num_patches"):
        patch = int(cfg.get("patch_size", 16))
        side = math.isqrt(int(cfg["max_num_patches"])) * patch
        return ImageSpec(side, "squash", resample, mean, std), patch

    size = cfg.get("size", 224)
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = cfg.get("crop_size")
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if "shortest_edge" in size:
        side = int(size["shortest_edge"])
        if cfg.get("do_center_crop", True) and crop:
            if crop["height"] != crop["width"]:
                raise ModelError(f"image processor crops to a non-square {crop['height']}x{crop['width']}")
            if int(crop["height"]) != side:
                log.warning("image processor resizes to %d then crops %d; picseek resizes to the crop size",
                            side, crop["height"])
            side = int(crop["height"])
        return ImageSpec(side, "shortest_crop", resample, mean, std), None
    if "height" in size and "width" in size:
        if size["height"] != size["width"]:
            raise ModelError(f"image processor resizes to a non-square {size['height']}x{size['width']}")
        return ImageSpec(int(size["height"]), "squash", resample, mean, std), None
    raise ModelError(f"unsupported image processor size {size!r}")


def _triple(v) -> tuple:
    return (v, v, v) if isinstance(v, (int, float)) else tuple(v)


def folder_revision(folder: Path) -> str:
    """A short, stable hash of a model folder: the small config files' bytes, and each weight file's name,
    size and a few sampled 4 KiB chunks (a retrained or fine-tuned model changes them; reading them costs
    ~32 KiB a file, not the hundreds of MB of the whole file)."""
    h = hashlib.sha256()
    for name in _SMALL_CONFIGS:
        p = folder / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    weights = sorted(p for p in folder.iterdir() if p.is_file() and (p.name.endswith(_WEIGHT_SUFFIXES)
                                                                      or p.name.endswith(".index.json")))
    for p in weights:
        hub.hash_sampled(h, p)
    return h.hexdigest()[:12]


def _cache_revision(repo: str) -> str | None:
    """The snapshot commit hash a cached repo's config.json lies under (…/snapshots/<commit>/config.json)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, "config.json")
    return Path(hit).parent.name if isinstance(hit, str) else None


@dataclass
class _Parts:
    config: Any
    model: Any
    tokenizer: Any
    processor: dict
    missing: list[str] = field(default_factory=list)  # weights the checkpoint lacked (left random)


def processor_dict(source: str, local_files_only: bool) -> dict:
    """A model's saved image processor config (preprocessor_config.json, or processor_config.json's nested one)."""
    from transformers.image_processing_base import ImageProcessingMixin

    processor, _ = ImageProcessingMixin.get_image_processor_dict(source, local_files_only=local_files_only)
    if "image_processor" in processor and isinstance(processor["image_processor"], dict):
        processor = processor["image_processor"]  # processor_config.json nests it
    return processor


def load_parts_of(model_class, source: str, local_files_only: bool, tokenizer: bool = True) -> _Parts:
    """Config, image processor config, tokenizer (where asked) and float32 weights of `source` through
    `model_class` (AutoModel, BlipForImageTextRetrieval, Dinov2Model, ...), with the names of the weights the
    checkpoint lacked (`missing`: left random; `warn_missing` logs them)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    kw = {"local_files_only": local_files_only}
    config = AutoConfig.from_pretrained(source, **kw)
    # the image processor config first: it is small, and a folder without one is not an image model
    processor = processor_dict(source, local_files_only)
    tok = AutoTokenizer.from_pretrained(source, **kw) if tokenizer else None
    with _no_weight_progress_bar(local_files_only):
        model, info = model_class.from_pretrained(source, config=config, dtype=torch.float32,
                                                  output_loading_info=True, **kw)
    missing = sorted(info.get("missing_keys") or [])
    return _Parts(config, model, tok, processor, missing)


def warn_missing(source: str, missing: list[str]) -> None:
    if missing:  # a checkpoint that does not fit its class: those weights are random, the embeddings garbage
        log.warning("model %s: %d weights missing from the checkpoint and left random (%s...)", source,
                    len(missing), ", ".join(missing[:3]))


def load_blip_parts(source: str, local_files_only: bool) -> _Parts:
    """A BLIP retrieval checkpoint as `BlipForImageTextRetrieval` (its ITC projections and ITM head); ModelError
    for any other kind of model."""
    from transformers import AutoConfig, BlipForImageTextRetrieval

    config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    if getattr(config, "model_type", None) != "blip":
        raise ModelError(f"{source} is a {getattr(config, 'model_type', '?')!r} model, not BLIP: use a BLIP image-"
                         "text retrieval checkpoint (e.g. Salesforce/blip-itm-base-coco)")
    return load_parts_of(BlipForImageTextRetrieval, source, local_files_only)


def _load_parts(source: str, local_files_only: bool) -> _Parts:
    from transformers import AutoConfig, AutoModel

    model_type = getattr(AutoConfig.from_pretrained(source, local_files_only=local_files_only), "model_type", "")
    if model_type in IMAGE_ONLY:
        raise ModelError(f"{source} is a {model_type!r} model, not a text-image embedding model (CLIP, SigLIP, "
                         f"SigLIP 2, BLIP); {IMAGE_ONLY[model_type]}")
    if model_type == "blip":
        parts = load_blip_parts(source, local_files_only)
        parts.model = blip_towers(parts.model)
    else:
        parts = load_parts_of(AutoModel, source, local_files_only)
    warn_missing(source, [k for k in parts.missing if not k.startswith("itm_head")])
    return parts


def blip_towers(model):
    """A `BlipForImageTextRetrieval` seen as a dual encoder (`get_image_features`, `get_text_features`): as its
    forward with use_itm_head=False computes them, the ViT's CLS token through `vision_proj` and the text encoder's
    CLS token (text only, no cross-attention) through `text_proj`, both L2-normalised (256-d for the Salesforce
    checkpoints). `blip` is the wrapped model (the re-ranker's ITM head reuses it)."""
    import torch

    class BlipTowers(torch.nn.Module):
        def __init__(self, blip):
            super().__init__()
            self.blip = blip
            self.embedding_dim = int(blip.config.image_text_hidden_size)

        def get_image_features(self, pixel_values):
            cls = self.blip.vision_model(pixel_values=pixel_values).last_hidden_state[:, 0, :]
            return torch.nn.functional.normalize(self.blip.vision_proj(cls), dim=-1)

        def get_text_features(self, input_ids, attention_mask=None):
            out = self.blip.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(self.blip.text_proj(out[:, 0, :]), dim=-1)

    return BlipTowers(model).eval()


@contextmanager
def _no_weight_progress_bar(quiet: bool):
    """transformers 5 draws a "Loading weights" bar on every load: hide it for cache/folder loads, keep it (and
    the download bars) when downloading."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if quiet and was_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_on:
            hf_logging.enable_progress_bar()


def load_source(name: str, source: str, load_parts: Callable[[str, bool], Any] = _load_parts) -> tuple[Any, str, str]:
    """A local folder or a repo id (cache first, then the hub where reachable) -> (parts, label, revision), with
    every loading failure turned into a one-line ModelError. `load_parts(source, local_files_only)` does the
    loading (other model classes, e.g. BLIP's image-text matching model, pass their own)."""
    folder = Path(source).expanduser()
    try:
        if folder.is_dir():
            return load_parts(str(folder), local_files_only=True), folder.resolve().name, folder_revision(folder)
        return hub.load_repo(source, load_parts), source, _cache_revision(source) or "unknown"
    except ModelError:
        raise
    except ImportError as e:
        raise ModelError(f"model {name} needs a package that is not installed: {one_line(e)}") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"cannot load model {name}: {one_line(e)}") from e


def load(spec, device: str = "cpu", precision: str | None = None) -> HFEmbedder:
    """A ModelSpec with backend "hf" (source = repo id or local folder) -> a ready HFEmbedder on `device`.
    `precision` (models/onnx.py): auto (default), fp32, bf16, int8, or on a GPU fp16."""
    source = spec.source or spec.name
    asked = onnx.check_precision(precision)
    device = onnx.check_device(device)
    if device == "cpu" and asked in ("auto", "int8") and onnx.onnxruntime_available():
        known = _known_model_id(source)
        if known and not exported(known, "int8"):
            require(f"converting {spec.name} to ONNX (once)")
            log.warning("first use of %s at int8: exporting it to ONNX (once, about a minute; cached)", spec.name)
            try:
                onnx.export_in_child(source, "int8")  # False: does not export (the checks below then say so)
            except ModelError as exc:
                if asked == "int8":
                    raise
                log.warning("%s; running the model in fp32", exc)
                asked = "fp32"
        if known and asked != "fp32" and exported(known, "int8"):  # no torch, no transformers, no weights
            return light_embedder(spec.name, known, "int8", auto=asked == "auto", source=source)
    require(f"model {spec.name} (a Hugging Face model run through transformers)")
    parts, label, revision = load_source(spec.name, source)
    model, config = parts.model, parts.config
    model_type = getattr(config, "model_type", "?")
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ModelError(f"model {spec.name} is a {model_type!r} model, not a text-image embedding model "
                         "(CLIP, SigLIP, SigLIP 2, BLIP)")
    model.to(device).eval()
    image_spec, patch = image_spec_from_processor(parts.processor)
    model_id = f"hf:{label}@{revision}"
    exportable = patch is None and device == "cpu"  # SigLIP 2 NaFlex takes patch sequences: not exported
    chosen = onnx.resolve_precision(precision, can_export=exportable, device=device)
    text_cfg = getattr(config, "text_config", config)
    dim = int(getattr(model, "embedding_dim", None) or getattr(config, "projection_dim", None)
              or getattr(text_cfg, "projection_size", None) or text_cfg.hidden_size)
    max_length = int(getattr(text_cfg, "max_position_embeddings", 77))
    tok_max = getattr(parts.tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < max_length:
        max_length = tok_max
    emb = HFEmbedder(name=spec.name, model_id=model_id, dim=dim, image_spec=image_spec,
                     spaces={MAIN: dim}, image_query_space=MAIN, model=model, tokenizer=parts.tokenizer,
                     device=device, padding=TEXT_PADDING.get(model_type, DEFAULT_PADDING),
                     max_length=max_length, patch_size=patch, model_type=model_type, source=source)
    emb.precision, emb.precision_auto = chosen, asked == "auto"
    if chosen in HALF:
        to_half(emb, HALF[chosen])
    log.debug("loaded %s (%s, dim %d, %s, %s)", emb.model_id, model_type, dim, image_spec, emb.precision)
    return emb


def _known_model_id(source: str) -> str | None:
    """The model id `load` would record, worked out without loading anything (None where it cannot tell)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        return f"hf:{folder.resolve().name}@{folder_revision(folder)}"
    try:
        revision = _cache_revision(source)
    except Exception:  # noqa: BLE001 - not a repo id the cache knows
        return None
    return f"hf:{source}@{revision}" if revision else None


# -- the ONNX export (precision int8; models/onnx.py) -------------------------------------------------------------
EMBEDDER_JSON = "embedder.json"
TOKENIZER_JSON = "tokenizer.json"


def exported(model_id: str, precision: str) -> bool:
    """True where everything to run a model at `precision` without its torch weights is cached."""
    if not onnx.onnxruntime_available():
        return False
    folder = onnx.cache_folder(model_id)
    return all((folder / name).is_file() for name in (f"vision-{precision}.onnx", "text-fp32.onnx", EMBEDDER_JSON,
                                                       TOKENIZER_JSON))


def _vision_module(model):
    import torch

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            out = self.m.get_image_features(pixel_values=pixel_values)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            return torch.nn.functional.normalize(out, dim=-1)

    return Vision(model).eval()


def _text_module(model, with_mask: bool):
    import torch

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None):
            kw = {"input_ids": input_ids}
            if with_mask:
                kw["attention_mask"] = attention_mask
            out = self.m.get_text_features(**kw)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            return torch.nn.functional.normalize(out, dim=-1)

    return Text(model).eval()


def _export(module, args: tuple, names: list[str], dynamic: dict, target: Path, quantize: bool,
            release: Callable[[], None] | None = None) -> None:
    """Export to a temporary file beside `target`, quantize if asked, then rename into place (atomic). `release`
    is called between the two (to free the torch weights before the quantizer loads the graph)."""
    import gc

    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "fp32.onnx"
        final = raw
        with torch.inference_mode(), onnx.quiet_export():
            torch.onnx.export(module, args, str(raw), input_names=names, output_names=["embedding"],
                              dynamic_axes={**dynamic, "embedding": {0: "batch"}}, opset_version=onnx.OPSET,
                              dynamo=False, external_data=False)
            if release is not None:
                del module
                release()
                gc.collect()
            if quantize:
                final = Path(tmp) / "int8.onnx"
                onnx.quantize(raw, final)
        os.replace(final, target)



def ort_towers(emb, precision: str, threads: int | None = None) -> tuple[Runner, Runner | None]:
    """(image runner, text runner or None) for an HFEmbedder, exporting from its torch model what is not cached."""
    folder = onnx.cache_folder(emb.model_id)
    vision = folder / f"vision-{precision}.onnx"
    if not vision.is_file():
        if emb.model is None:
            raise ModelError(f"the ONNX vision tower of {emb.name} is missing from {folder}")
        log.info("exporting %s's vision tower to ONNX (%s, once; cached in %s)", emb.name, precision, folder)
        import torch

        s = emb.image_spec.size
        try:
            _export(_vision_module(emb.model), (torch.zeros(1, 3, s, s),), ["pixel_values"],
                    {"pixel_values": {0: "batch"}}, vision, precision == "int8")
        except Exception as exc:  # noqa: BLE001 - an exporter failure means: run the reference path
            raise ModelError(f"cannot export {emb.name} to ONNX: {one_line(exc)}") from exc
    image = onnx.LazyTower(vision, threads)
    # The text tower runs in fp32: dynamic int8 quantizes activations per batch, so a query's vector would depend
    # on its batch-mates and padding; a single query in fp32 ONNX Runtime on one thread is fast and exact.
    text = None
    text_path = folder / "text-fp32.onnx"
    try:
        if not text_path.is_file():
            _export_text(emb, text_path)
        text = onnx.LazyTower(text_path, 1)  # one query at a time: one thread answers fastest
    except Exception as exc:  # noqa: BLE001 - the text tower then stays on torch
        log.info("text tower of %s stays on torch: %s", emb.name, exc)
    if emb.model is not None and text is not None and not (folder / EMBEDDER_JSON).is_file():
        _save_light(emb, folder)
    return image, text


def _text_names(emb) -> list[str]:
    sample = emb.tokenizer(["a photo"], padding=emb.padding, truncation=True, max_length=emb.max_length)
    with_mask = "attention_mask" in emb.text_inputs and "attention_mask" in sample
    return ["input_ids", "attention_mask"] if with_mask else ["input_ids"]


def _export_text(emb, target: Path) -> None:
    import torch

    names = _text_names(emb)
    ids = torch.ones((2, 7), dtype=torch.long)
    args = (ids, torch.ones_like(ids)) if len(names) == 2 else (ids,)
    dyn = {n: {0: "batch", 1: "tokens"} for n in names}
    _export(_text_module(emb.model, len(names) == 2), args, names, dyn, target, quantize=False)


# -- running without torch and transformers ---------------------------------------------------------------------


def _save_light(emb, folder: Path) -> None:
    """What `light_embedder` needs: the embedder's facts and the fast tokenizer (slow tokenizers: not saved, so
    such a model keeps loading through transformers)."""
    backend = getattr(emb.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    spec = emb.image_spec
    facts = {"model_id": emb.model_id, "dim": emb.dim, "padding": emb.padding, "max_length": emb.max_length,
             "text_inputs": _text_names(emb), "pad_token": emb.tokenizer.pad_token, "model_type": emb.model_type,
             "pad_id": emb.tokenizer.pad_token_id,
             "image_spec": {"size": spec.size, "resize": spec.resize, "resample": spec.resample,
                            "mean": list(spec.mean), "std": list(spec.std)}}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".light-") as tmp:
        backend.save(str(Path(tmp) / TOKENIZER_JSON))
        (Path(tmp) / EMBEDDER_JSON).write_text(json.dumps(facts, indent=1))
        os.replace(Path(tmp) / TOKENIZER_JSON, folder / TOKENIZER_JSON)
        os.replace(Path(tmp) / EMBEDDER_JSON, folder / EMBEDDER_JSON)  # last: its presence means complete


class FastTokenizer:
    """The `tokenizers` library behind a transformers-style call: texts -> {"input_ids", "attention_mask"} arrays,
    padded and truncated as the transformers tokenizer does."""

    def __init__(self, path: Path, pad_token: str | None, pad_id: int | None):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.pad_token, self.pad_id = pad_token, pad_id or 0

    def __call__(self, texts, padding: str = "longest", truncation: bool = True, max_length: int = 77,
                 return_tensors: str = "np") -> dict[str, np.ndarray]:
        if truncation:
            self.tok.enable_truncation(max_length)
        length = max_length if padding == "max_length" else None
        self.tok.enable_padding(pad_id=self.pad_id, pad_token=self.pad_token or "[PAD]", length=length)
        enc = self.tok.encode_batch(list(texts))
        return {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64)}


def light_embedder(name: str, model_id: str, precision: str, auto: bool, source: str = ""):
    """An HFEmbedder that runs cached ONNX towers only: no torch, no transformers, no weights in memory."""
    folder = onnx.cache_folder(model_id)
    facts = json.loads((folder / EMBEDDER_JSON).read_text())
    sp = facts["image_spec"]
    spec = ImageSpec(sp["size"], sp["resize"], sp["resample"], tuple(sp["mean"]), tuple(sp["std"]))
    tokenizer = FastTokenizer(folder / TOKENIZER_JSON, facts.get("pad_token"), facts.get("pad_id"))
    dim = int(facts["dim"])
    return HFEmbedder(name=name, model_id=model_id, dim=dim, image_spec=spec, spaces={MAIN: dim},
                      image_query_space=MAIN, model=None, tokenizer=tokenizer, padding=facts["padding"],
                      max_length=int(facts["max_length"]), text_inputs=tuple(facts["text_inputs"]),
                      precision=precision, precision_auto=auto, model_type=facts.get("model_type", ""),
                      source=source)


HALF = {"bf16": "bfloat16", "fp16": "float16"}  # precision -> the torch dtype of the weights and the arithmetic


def to_half(emb, dtype: str) -> None:
    import torch

    emb.model.to(getattr(torch, dtype))
    emb.compute_dtype = dtype


# -- the backend, as the registry sees it (models/base.py Backend) ---------------------------------------------------


def spec_for(source: str) -> ModelSpec:
    """`hf:SOURCE` -> its spec (SOURCE: a repo id)."""
    return ModelSpec(f"hf:{source}", "hf", source, f"Hugging Face model {source}")


def is_cached(spec: ModelSpec) -> bool:
    """A local folder, or a repo whose config.json is in the local hub cache."""
    return Path(spec.source).is_dir() or hub.cached_file(spec.source, "config.json") is not None


BACKEND = Backend("hf", load, spec=spec_for, cached=is_cached, extra=TORCH[0])

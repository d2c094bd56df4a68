"""CLIP-family models from ready ONNX towers, in the layout immich publishes (`immich-app/<MODEL>__<PRETRAINED>` on
the Hugging Face hub), with no torch and no transformers: ONNX Runtime runs the towers, `tokenizers` the tokenizer.

    config.json                   open_clip's model config: embed_dim, vision_cfg, text_cfg (context_length,
                                  tokenizer_kwargs)
    visual/model.onnx             image tower: float32 N x 3 x S x S -> unit vectors (big towers keep their weights
                                  in files beside it)
    visual/preprocess_cfg.json    open_clip's preprocessing: size, mean, std, interpolation, resize_mode
    textual/model.onnx            text tower: "text" int32 N x context_length (OpenCLIP) or "input_ids" +
                                  "attention_mask" (M-CLIP)
    textual/tokenizer.json        + tokenizer_config.json (its pad_token), special_tokens_map.json

Texts are handled as immich's machine-learning service does (immich_ml/models/clip/textual.py): whitespace collapsed,
canonicalized (punctuation dropped, lower case) where text_cfg.tokenizer_kwargs.clean says so (SigLIP), every text
padded with the tokenizer config's pad token and cut to context_length, ids fed as the graph's integer type. Newer
immich exports fix the batch at 1 (older ones and M-CLIP's differ): such a tower is run one row at a time. Images
follow preprocess_cfg.json mapped onto an ImageSpec; unlike immich, which centre-crops every model, resize_mode
"squash" (SigLIP) squashes, as open_clip trained it.

Precision: fp32 runs the downloaded graphs as they are; int8 (and `auto`) quantizes the image tower once with
onnxruntime's dynamic quantization into the cache (models/onnx.py), or under runtime openvino with NNCF, calibrated
on the first photos an index run embeds (models/openvino_tower.py); the text tower always runs in fp32.
"""
from __future__ import annotations

import hashlib
import json
import logging
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, one_line
from . import hub, onnx
from .base import MAIN, Backend, EmbedderBase, ImageSpec, ModelSpec, l2_normalize, normalize

log = logging.getLogger(__name__)

CONFIG = "config.json"
VISUAL = "visual/model.onnx"
PREPROCESS = "visual/preprocess_cfg.json"
TEXTUAL = "textual/model.onnx"
TOKENIZER = "textual/tokenizer.json"
TOKENIZER_CFG = "textual/tokenizer_config.json"
SPECIAL_TOKENS = "textual/special_tokens_map.json"
REQUIRED = (CONFIG, VISUAL, PREPROCESS, TEXTUAL, TOKENIZER)
_SMALL = (CONFIG, PREPROCESS, TOKENIZER, TOKENIZER_CFG, SPECIAL_TOKENS)  # hashed whole; the rest sampled
# What a download takes from a repository: the ONNX towers and their weight files, not the ArmNN / RKNN / fp16 copies
# immich keeps beside them for other accelerators.
HUB_FILES = [CONFIG, "visual/*", "textual/*"]
HUB_SKIP = ["*/fp16/*", "*/rknpu/*", "*/openvino/*", "*.armnn", "*.rknn"]
TEXT_BATCH = 256

_RESIZE = {"shortest": "shortest_crop", "squash": "squash"}
_RESAMPLE = ("bicubic", "bilinear", "nearest", "lanczos")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
           "tensor(int64)": np.int64}
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def is_layout(folder: Path) -> bool:
    """A folder meant to be in this layout (either tower or the preprocessing config is there, so that a half-copied
    folder gets this loader's message about what is missing)."""
    return any((folder / rel).is_file() for rel in (VISUAL, TEXTUAL, PREPROCESS))


def missing_files(folder: Path) -> list[str]:
    return [rel for rel in REQUIRED if not (folder / rel).is_file()]


def clean_text(text: str, canonicalize: bool) -> str:
    """Whitespace collapsed, as immich does; `canonicalize` as open_clip's canonicalize_text (SigLIP's training):
    underscores to spaces, punctuation dropped, lower case."""
    if canonicalize:
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


def image_spec_from_preprocess(cfg: dict) -> ImageSpec:
    """open_clip's preprocess_cfg.json -> ImageSpec. ValueError names what is wrong."""
    if not isinstance(cfg, dict):
        raise ValueError("not a JSON object")
    size = cfg.get("size")
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"size {size} is not a square")
        size = size[0]
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size {size!r} is not a positive number of pixels")
    resample = str(cfg.get("interpolation", "bicubic")).lower()
    if resample not in _RESAMPLE:
        raise ValueError(f"interpolation {resample!r} is not one of {', '.join(_RESAMPLE)}")
    mode = str(cfg.get("resize_mode", "shortest"))
    resize = _RESIZE.get(mode)
    if resize is None:  # "longest" pads to a square; immich centre-crops every model, so does picseek
        log.warning("preprocess_cfg resize_mode %r is not supported here: centre-cropping as immich does", mode)
        resize = "shortest_crop"
    mean, std = _triple(cfg.get("mean"), "mean"), _triple(cfg.get("std"), "std")
    if min(abs(s) for s in std) == 0:
        raise ValueError("std has a zero")
    return ImageSpec(size, resize, resample, mean, std)


def _triple(value, key: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{key} {value!r} is not three numbers")
    return tuple(float(v) for v in value)


def folder_revision(folder: Path) -> str:
    """A short, stable hash of a model folder: the small config files whole, every other file of the two towers
    (graphs, weight files beside them) by name, size and sampled chunks."""
    h = hashlib.sha256()
    for rel in _SMALL:
        if (folder / rel).is_file():
            h.update(rel.encode() + b"\0" + (folder / rel).read_bytes() + b"\0")
    for sub in ("visual", "textual"):
        for p in sorted((folder / sub).iterdir()) if (folder / sub).is_dir() else []:
            rel = f"{sub}/{p.name}"
            if p.is_file() and rel not in _SMALL and not p.name.endswith((".armnn", ".rknn")):
                hub.hash_sampled(h, p, rel)
    return h.hexdigest()[:12]


class _Tower:
    """One tower's ONNX Runtime session, built on first use (models/onnx.py LazyTower, its session options), and
    what its graph says about its inputs: names, element types, a batch fixed at 1."""

    def __init__(self, path: Path, threads: int | None, what: str, device: str = "cpu"):
        self.path, self.what = path, what
        self.lazy = onnx.LazyTower(path, threads, device)
        self.inputs: list[tuple[str, Any]] = []
        self.one_at_a_time = False

    def load(self):
        try:
            tower = self.lazy.load()
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types: one line that names the file
            raise ModelError(f"cannot load the {self.what} ({self.path}): {one_line(exc)}") from exc
        if not self.inputs:
            args = tower.session.get_inputs()
            self.one_at_a_time = bool(args) and bool(args[0].shape) and args[0].shape[0] == 1
            self.inputs = [(a.name, _DTYPES.get(a.type, np.float32)) for a in args]
        return tower

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Named inputs (more may be offered than the graph takes) -> float32 rows."""
        tower = self.load()
        absent = [name for name, _ in self.inputs if name not in feeds]
        if absent or not self.inputs:
            raise ModelError(f"the {self.what} ({self.path.name}) takes inputs {[n for n, _ in self.inputs]}; "
                             f"picseek feeds {sorted(feeds)}")
        feeds = {name: np.ascontiguousarray(feeds[name], dtype=dtype) for name, dtype in self.inputs}
        n = len(next(iter(feeds.values())))
        if not self.one_at_a_time or n == 1:
            return tower(**feeds)
        return np.concatenate([tower(**{k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)])


@dataclass(eq=False)
class OnnxRepoEmbedder(EmbedderBase):
    """Both towers of a ready-ONNX model. `precision` is what runs the image tower (fp32 or int8 on the CPU, fp16 or
    fp32 on a GPU); `device` where (models/onnx.py). The text tower, one query at a time, runs on the CPU."""

    folder: Path = field(default=Path("."), repr=False)
    precision: str = "fp32"
    device: str = "cpu"
    precision_auto: bool = False  # chosen by `auto`: a failed quantization falls back to fp32 instead of failing
    runtime: str = "onnxruntime"  # what runs the int8 image tower on the CPU: onnxruntime or openvino
    context_length: int = 77
    canonicalize: bool = False
    tokenizer: Any = field(default=None, repr=False)
    _image: Any = field(default=None, repr=False)  # a _Tower, or under runtime openvino a CalibratedTower
    _text: _Tower | None = field(default=None, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def _image_tower(self):
        with self._lock:
            if self._image is None:
                what = "image tower of " + self.name
                if self.runtime == "openvino" and self.precision == "int8":
                    from . import openvino_tower

                    self._image = openvino_tower.CalibratedTower(
                        lambda: _Tower(self._vision_path(), None, what, self.device), self.folder / VISUAL,
                        openvino_tower.cache_target(self.model_id), what)
                else:
                    self._image = _Tower(self._vision_path(), None, what, self.device)
            return self._image

    def _text_tower(self) -> _Tower:
        with self._lock:
            if self._text is None:  # one query at a time: one thread answers fastest (models/onnx.py)
                self._text = _Tower(self.folder / TEXTUAL, 1, "text tower of " + self.name)
            return self._text

    def _vision_path(self) -> Path:
        """The graph the image tower runs: the downloaded one (fp32), or its int8 (CPU) or fp16 (GPU) copy, made
        once into the cache (key: model id, onnx/onnxruntime versions)."""
        source = self.folder / VISUAL
        if self.precision not in onnx.CONVERTERS:
            return source
        target = onnx.cache_folder(self.model_id) / f"vision-{self.precision}.onnx"
        if target.is_file():
            return target
        verb = "quantize" if self.precision == "int8" else "convert"
        log.warning("first use of %s at %s: making that copy of its image tower (once; cached in %s)", self.name,
                    self.precision, target.parent)
        try:
            onnx.quantize_in_child(source, target, self.precision)
        except Exception as exc:  # noqa: BLE001 - the quantizer raises many types; fp32 still runs the model
            if not self.precision_auto:
                raise ModelError(f"cannot {verb} the image tower of {self.name} to {self.precision}: "
                                 f"{one_line(exc)}; use --precision fp32") from exc
            log.warning("cannot %s the image tower of %s to %s (%s): running it in fp32", verb, self.name,
                        self.precision, one_line(exc))
            self.precision = "fp32"
            return source
        return target

    def warm_up(self) -> None:
        """Load what embed_pixels needs now (the indexer calls it on a thread while the first photos decode). Under
        runtime openvino this marks an index run: its first photos calibrate the int8 graph (a query never does)."""
        tower = self._image_tower()
        if hasattr(tower, "calibrating"):
            tower.calibrating = True
        tower.load()

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.asarray(pixels)
        s = self.image_spec.size
        if pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
            raise ValueError(f"expected uint8 N x {s} x {s} x 3 pixels, got shape {pixels.shape}")
        if len(pixels) == 0:
            return {MAIN: np.zeros((0, self.dim), dtype=np.float32)}
        tower = self._image_tower()
        tower.load()
        return {MAIN: l2_normalize(tower({tower.inputs[0][0]: normalize(pixels, self.image_spec)}))}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = [clean_text(str(t), self.canonicalize) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tower = self._text_tower()
        tower.load()
        rows = []
        for i in range(0, len(texts), TEXT_BATCH):
            enc = self.tokenizer.encode_batch(texts[i:i + TEXT_BATCH])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"text": ids, "input_ids": ids, "attention_mask": mask}
            rows.append(l2_normalize(tower(feeds)))
        return np.concatenate(rows)



def _read_json(folder: Path, rel: str, name: str) -> Any:
    try:
        return json.loads((folder / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model {name}: cannot read {rel}: {one_line(exc)}") from exc


def _pad_token(folder: Path, name: str) -> str:
    """The pad token immich pads with: tokenizer_config.json's, else special_tokens_map.json's."""
    for rel in (TOKENIZER_CFG, SPECIAL_TOKENS):
        if (folder / rel).is_file():
            pad = (_read_json(folder, rel, name) or {}).get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            if isinstance(pad, str) and pad:
                return pad
    raise ModelError(f"model {name}: neither {TOKENIZER_CFG} nor {SPECIAL_TOKENS} names a pad_token")


def _tokenizer(folder: Path, name: str, context_length: int):
    """tokenizer.json, padded with the pad token and cut to context_length, as immich's OpenClipTextualEncoder."""
    from tokenizers import Tokenizer

    pad = _pad_token(folder, name)
    try:
        tok = Tokenizer.from_file(str(folder / TOKENIZER))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
        raise ModelError(f"model {name}: cannot read {TOKENIZER}: {one_line(exc)}") from exc
    pad_id = tok.token_to_id(pad)
    if pad_id is None:
        raise ModelError(f"model {name}: the pad token {pad!r} is not in {TOKENIZER}")
    tok.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad)
    tok.enable_truncation(max_length=context_length)
    return tok


def _hub_snapshot(repo: str, local_files_only: bool) -> Path:
    """The repository's snapshot folder (towers, configs, tokenizer; not the other accelerators' copies). A cache
    that lacks a file is an OSError, so that `hub.load_repo` goes on to download."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, allow_patterns=HUB_FILES, ignore_patterns=HUB_SKIP,
                                        local_files_only=local_files_only))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub errors of every kind: hub.load_repo reports OSErrors in one line
        raise OSError(one_line(exc)) from exc
    missing = missing_files(folder)
    if missing and local_files_only:
        raise FileNotFoundError(f"{repo}: {', '.join(missing)} not in the local cache")
    if missing:
        raise ModelError(f"model {repo} lacks {', '.join(missing)}: not a ready-ONNX model repository (immich layout)")
    return folder


def _locate(name: str, source: str) -> tuple[Path, str, str]:
    """(folder, label, revision): a local folder as it is, a repo id from the local cache first, then the hub where
    it answers (models/hub.py)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        missing = missing_files(folder)
        if missing:
            raise ModelError(f"model {name}: {folder} lacks {', '.join(missing)} (a ready-ONNX model folder holds "
                             f"{', '.join(REQUIRED)}, as immich publishes them)")
        return folder.resolve(), folder.resolve().name, folder_revision(folder)
    snapshot = hub.load_repo(source, _hub_snapshot)
    return snapshot, source, snapshot.name  # the snapshot folder is named by its commit


def _precision(name: str, precision: str | None, device: str) -> tuple[str, bool]:
    asked = onnx.check_precision(precision)
    if asked == "bf16":
        log.warning("precision bf16 is for torch models: %s runs its downloaded fp32 graphs", name)
        return "fp32", False
    return onnx.resolve_precision(asked, device=device), asked == "auto"


def load(spec, device: str = "cpu", precision: str | None = None, runtime: str | None = None) -> OnnxRepoEmbedder:
    """A ModelSpec with backend "onnx" (source = a repo id or a folder in the immich layout) -> OnnxRepoEmbedder.
    `precision`: auto (default: int8 image tower on the CPU, fp16 on a GPU), fp32, int8 or fp16; `device`: cpu or
    cuda[:N] (models/onnx.py); `runtime` of the int8 image tower: auto, onnxruntime or openvino
    (models/openvino_tower.py); sessions load on first use."""
    from importlib.util import find_spec

    if find_spec("onnxruntime") is None:
        raise ModelError(f"model {spec.name} needs onnxruntime: pip install onnxruntime")
    device = onnx.check_device(device)
    chosen, auto = _precision(spec.name, precision, device)
    from .openvino_tower import resolve_runtime

    runtime = resolve_runtime(runtime, chosen, device)
    if onnx.is_gpu(device):
        onnx.providers(device)  # a GPU ONNX Runtime cannot use: said now, not at the first batch
    folder, label, revision = _locate(spec.name, spec.source or spec.name)
    config = _read_json(folder, CONFIG, spec.name)
    text_cfg = config.get("text_cfg") if isinstance(config, dict) else None
    dim = config.get("embed_dim") if isinstance(config, dict) else None
    if not isinstance(dim, int) or dim <= 0 or not isinstance(text_cfg, dict):
        raise ModelError(f"model {spec.name}: {CONFIG} needs embed_dim and text_cfg (open_clip's model config)")
    context_length = text_cfg.get("context_length", 77)
    if not isinstance(context_length, int) or context_length <= 1:
        raise ModelError(f"model {spec.name}: {CONFIG} text_cfg.context_length {context_length!r} is not a length")
    try:
        image_spec = image_spec_from_preprocess(_read_json(folder, PREPROCESS, spec.name))
    except ValueError as exc:
        raise ModelError(f"model {spec.name}: bad {PREPROCESS}: {exc}") from exc
    kwargs = text_cfg.get("tokenizer_kwargs") or {}
    emb = OnnxRepoEmbedder(name=spec.name, model_id=f"onnx:{label}@{revision}", dim=dim, image_spec=image_spec,
                           spaces={MAIN: dim}, image_query_space=MAIN, folder=folder, precision=chosen, device=device,
                           precision_auto=auto, runtime=runtime, context_length=context_length,
                           canonicalize=isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize",
                           tokenizer=_tokenizer(folder, spec.name, context_length))
    log.debug("loaded %s (dim %d, %s, image tower %s, %s)", emb.model_id, dim, image_spec, chosen, runtime)
    return emb


# -- the backend, as the registry sees it (models/base.py Backend) ---------------------------------------------------


def spec_for(source: str) -> ModelSpec:
    """`onnx:SOURCE` -> its spec: SOURCE a repository id, or a folder (recorded as its absolute path, which resolves
    back from anywhere)."""
    name, source = f"onnx:{source}", source.strip()
    if not source:
        raise ModelError("onnx: needs a repository (onnx:ORG/NAME) or a folder")
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder_spec(folder)
    return ModelSpec(name, "onnx", source, f"ready ONNX model {source}")


def folder_spec(folder: Path) -> ModelSpec:
    """A folder in this layout -> its spec, named by its absolute path."""
    return ModelSpec(str(folder.resolve()), "onnx", str(folder.resolve()), f"ready ONNX model folder {folder}")


def is_cached(spec: ModelSpec) -> bool:
    """A local folder, or a repository whose required files are all in the local hub cache."""
    if Path(spec.source).expanduser().is_dir():
        return True
    return all(hub.cached_file(spec.source, rel) is not None for rel in REQUIRED)


BACKEND = Backend("onnx", load, spec=spec_for, cached=is_cached)

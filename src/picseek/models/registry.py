"""Named model specs, the one table of backends, and the one entry point that builds any model.

Model choice is data: a spec names its backend and where its weights come from; `load_embedder` looks the backend
up in one table instead of an if/elif chain. A backend (models/base.py `Backend`) says how it loads a spec, which
`NAME:SOURCE` names it answers to, whether a spec's weights are here, and which extra it needs. The built-in ones are
`builtin`, `hf` (models/hf.py) and `onnx` (models/onnx_repo.py); others come from installed packages (the
`picseek.backends` entry-point group) or from `register_backend` in this process, and override a built-in one of the
same name. This module sits on top of models/: it imports the backends (when one is first asked for), none of them
imports it.
Names a user can type: a short name from SPECS (or an older name in ALIASES), `builtin`, `auto`, `hf:org/name`,
`org/name`, `onnx:org/name` (ready ONNX towers, models/onnx_repo.py), `NAME:SOURCE` of any other backend, or a local
folder (a Hugging Face one, or ready ONNX towers in immich's layout). The CLIP short names are ready-ONNX models (no
torch); their `-hf` twins convert the Hugging Face weights through torch. A library's recorded model is reopened with
`spec_for_record`.
"""
from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec
from pathlib import Path

from ..errors import ModelError, one_line
from . import hub
from .base import Backend, ModelSpec

log = logging.getLogger(__name__)

AUTO = "auto"
BUILTIN = "builtin"


def _hf(name: str, repo: str, what: str, dim: int, rank: int, size_mb: int) -> ModelSpec:
    return ModelSpec(name, "hf", repo, f"{what}, converted through torch", dim, rank, size_mb=size_mb)


SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec(BUILTIN, "builtin", description="EfficientNet-Lite0 ImageNet classes + MiniLM text (ships with the "
              "install, no download; ~1000 ImageNet concepts)", dim=384),
    # Ready ONNX towers (models/onnx_repo.py; no torch at run time). Repository names: immich's model list
    # (immich-app/immich machine-learning/immich_ml/models/constants.py, _OPENCLIP_MODELS and _MCLIP_MODELS; the MCLIP
    # repos spell "Vit"); sizes (both model.onnx and the tokenizer) from the repositories' file listings on
    # huggingface.co, left out where not looked up. immich lists no MobileCLIP (neither that file nor its exporter's
    # model list, machine-learning/export/immich_model_exporter/run.py): such a model loads as `onnx:` from any
    # repository or folder in this layout.
    ModelSpec("clip-vit-b-32", "onnx", "immich-app/ViT-B-32__openai", "OpenAI CLIP ViT-B/32, ready ONNX", 512, 0,
              size_mb=610),
    ModelSpec("clip-vit-b-16", "onnx", "immich-app/ViT-B-16__openai", "OpenAI CLIP ViT-B/16, ready ONNX", 512, 1),
    ModelSpec("clip-vit-l-14", "onnx", "immich-app/ViT-L-14__openai", "OpenAI CLIP ViT-L/14, ready ONNX", 768, 2),
    ModelSpec("laion-vit-b-32", "onnx", "immich-app/ViT-B-32__laion2b-s34b-b79k", "LAION CLIP ViT-B/32, ready ONNX",
              512, 3),
    ModelSpec("siglip-base", "onnx", "immich-app/ViT-B-16-SigLIP__webli", "SigLIP base 224, ready ONNX", 768, 4,
              size_mb=812),
    ModelSpec("siglip2-base", "onnx", "immich-app/ViT-B-16-SigLIP2__webli", "SigLIP 2 base 224, ready ONNX", 768, 5),
    ModelSpec("mclip-vit-b-32", "onnx", "immich-app/XLM-Roberta-Large-Vit-B-32",
              "Multilingual CLIP (M-CLIP: XLM-RoBERTa large texts, OpenAI ViT-B/32 images), ready ONNX", 512, 6),
    # The same weights (where one matches) from the Hugging Face repositories, converted to ONNX through torch on first
    # use (models/hf.py): what `picseek train` fine-tunes, and what libraries made before the ready-ONNX names were the
    # default recorded (spec_for_record).
    _hf("clip-vit-b-32-hf", "openai/clip-vit-base-patch32", "OpenAI CLIP ViT-B/32", 512, 0, 600),
    _hf("clip-vit-b-16-hf", "openai/clip-vit-base-patch16", "OpenAI CLIP ViT-B/16", 512, 1, 600),
    _hf("clip-vit-l-14-hf", "openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14", 768, 2, 1700),
    _hf("laion-vit-b-32-hf", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "LAION CLIP ViT-B/32", 512, 3, 600),
    _hf("siglip-base-hf", "google/siglip-base-patch16-224", "SigLIP base 224", 768, 4, 800),
    _hf("siglip2-base-hf", "google/siglip2-base-patch16-224", "SigLIP 2 base 224", 768, 5, 1500),
    # BLIP retrieval checkpoints as search models (models/hf.py `blip_towers`: the ITC heads, 256-d, 384 px); their
    # ITM head re-ranks a library made with them (`--rerank blip`, query/rerank.py). Never picked by `auto`.
    ModelSpec("blip-itm-base-coco", "hf", "Salesforce/blip-itm-base-coco", "BLIP ViT-B retrieval (COCO), image-text "
              "contrastive heads; its ITM head re-ranks (--rerank blip); converted through torch", 256, None,
              size_mb=900),
    ModelSpec("blip-itm-large-coco", "hf", "Salesforce/blip-itm-large-coco", "BLIP ViT-L retrieval (COCO), "
              "image-text contrastive heads; its ITM head re-ranks (--rerank blip); converted through torch", 256,
              None, size_mb=1800),
]}

# Image-only models (`--image-model`): an extra space for example-image queries beside a library's search model
# (models/spaces.py); run in ONNX Runtime after a one-time export through torch (models/dinov2.py).
IMAGE_MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("dinov2-small", "dinov2", "facebook/dinov2-small", "DINOv2 ViT-S/14 image features (CLS token): "
              "same object, same scene; no text", 384, size_mb=88),
    ModelSpec("dinov2-base", "dinov2", "facebook/dinov2-base", "DINOv2 ViT-B/14 image features (CLS token): "
              "same object, same scene; no text", 768, size_mb=350),
]}

# Older names -> the names above (resolve() follows them; `picseek models` lists only SPECS). The ready-ONNX models
# were `*-onnx` while the short names meant the torch conversion.
ALIASES: dict[str, str] = {f"{name}-onnx": name for name, s in SPECS.items() if s.backend == "onnx"}

# backend name -> "module:attribute" of its Backend, imported when the backend is first asked for
BACKENDS: dict[str, str] = {
    "builtin": "picseek.models.builtin:BACKEND",
    "hf": "picseek.models.hf:BACKEND",
    "onnx": "picseek.models.onnx_repo:BACKEND",
}
ENTRY_POINTS = "picseek.backends"  # name = the backend's name, value = "package.module:BACKEND" (or a loader)
DEFAULT_DOWNLOAD = "clip-vit-b-32"

_registered: dict[str, Backend] = {}  # register_backend
_imported: dict[str, Backend] = {}  # BACKENDS and entry points, once imported


def register_backend(backend: Backend) -> Backend:
    """Add a backend to this process's table (replacing one of the same name): its `NAME:SOURCE` names resolve,
    its specs load, and `is_cached`, `extra_for` and `spec_for_record` ask it. An installed package registers its
    backend instead under the `picseek.backends` entry-point group. Returns `backend`."""
    _registered[backend.name] = backend
    return backend


@cache
def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def backend(name: str) -> Backend | None:
    """The backend called `name` (a ModelSpec's `backend`, a `NAME:` prefix): registered in this process, else an
    installed plugin's, else a built-in one; None where there is none. A plugin's entry point may name a `Backend` or,
    as older plugins do, just its loader (a backend with no names of its own)."""
    if name in _registered:
        return _registered[name]
    if name in _imported:
        return _imported[name]
    ep = _plugins().get(name)
    if ep is None and name not in BACKENDS:
        return None
    try:
        if ep is not None:
            found = ep.load()
        else:
            module, _, attr = BACKENDS[name].partition(":")
            found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"backend {name!r} cannot be loaded: {one_line(exc)}") from exc
    if not isinstance(found, Backend):
        if not callable(found):
            raise ModelError(f"backend {name!r} ({ep.value if ep else BACKENDS[name]}) is neither a Backend nor a "
                             "loader")
        found = Backend(name, found)
    _imported[name] = found
    return found


def resolve(name: str) -> ModelSpec:
    """A name the user typed -> a spec. `auto` is resolved by `resolve_auto`, not here."""
    name = (name or "").strip()
    if not name:
        raise ModelError("no model name given; run `picseek models` to see the choices")
    name = ALIASES.get(name, name)
    if name in SPECS:
        return SPECS[name]
    prefix, colon, source = name.partition(":")
    if colon and prefix and (kind := backend(prefix)) is not None and kind.spec is not None:
        return kind.spec(source)  # hf:ORG/NAME, onnx:ORG/NAME or a folder, a plugin's NAME:SOURCE
    path = Path(name).expanduser()
    if path.is_dir():
        from . import onnx_repo

        if onnx_repo.is_layout(path):
            return onnx_repo.folder_spec(path)
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; expected a Hugging Face model folder "
                             "(save_pretrained output)")
        return ModelSpec(str(path.resolve()), "hf", str(path.resolve()), f"local model folder {path}")
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return ModelSpec(name, "hf", name, f"Hugging Face model {name}")
    choices = ", ".join(SPECS)
    raise ModelError(f"unknown model {name!r}: use one of {choices}, hf:ORG/NAME, onnx:ORG/NAME, or a local model "
                     "folder")


def resolve_image_model(name: str) -> ModelSpec:
    """An `--image-model` name -> its spec: a short name (IMAGE_MODELS), `hf:ORG/NAME`, `ORG/NAME` or a local
    folder (a DINOv2 checkpoint: models/dinov2.py checks its config when it loads)."""
    name = (name or "").strip()
    if name in IMAGE_MODELS:
        return IMAGE_MODELS[name]
    source = name[3:] if name.startswith("hf:") else name
    if source and Path(source).expanduser().is_dir():
        folder = str(Path(source).expanduser().resolve())
        return ModelSpec(folder, "dinov2", folder, f"local model folder {source}")
    if source.count("/") == 1 and not source.startswith((".", "/", "~")) and all(source.split("/")):
        return ModelSpec(f"hf:{source}", "dinov2", source, f"Hugging Face model {source}")
    raise ModelError(f"unknown image model {name!r}: use one of {', '.join(IMAGE_MODELS)}, hf:ORG/NAME or a local "
                     "DINOv2 model folder")


def load_image_model(name: str | ModelSpec, precision: str | None = None):
    """The image-only model for a name or spec (models/dinov2.py: its ONNX tower)."""
    from . import dinov2

    return dinov2.load(name if isinstance(name, ModelSpec) else resolve_image_model(name), precision=precision)


def spec_for_record(name: str, model_id: str | None = None) -> ModelSpec:
    """The spec that rebuilds a library's recorded model: `name` resolved, except where the recorded `model_id`'s
    backend (the part before its first ':': hf, onnx, builtin) is not that spec's and the name has a twin for that
    backend (`NAME-hf`): a library made when `clip-vit-b-32` meant the torch conversion (model id `hf:...`) keeps it."""
    spec = resolve(name)
    prefix = (model_id or "").partition(":")[0]
    if prefix and prefix != spec.backend:
        twin = f"{spec.name}-{prefix}"
        if twin in SPECS and SPECS[twin].backend == prefix:
            return SPECS[twin]
    return spec


def name_for_record(name: str, model_id: str | None = None) -> str:
    """The name that rebuilds a library's recorded model (`spec_for_record`), or the recorded name itself where it
    does not resolve (a model object passed in from Python, a plugin no longer installed): comparing it with another
    name still says which model the library holds, and loading it fails as it did."""
    try:
        return spec_for_record(name, model_id).name
    except ModelError:
        return name


UNVERIFIED = "@unverified"  # the end of a model id recorded from a spec, before the weights were seen


def record_for(name: str) -> dict:
    """The model record of vectors a named model made elsewhere (`import-embeddings`): from the model itself where its
    weights are on this machine (nothing is downloaded), else from the spec (name, dimension) with a model id marked
    unverified (UNVERIFIED): the first time the weights load, the library checks their name and dimension and records
    their id (`is_unverified`). A model whose dimension is not known without its weights is a ModelError."""
    if (name or "").strip() == AUTO:
        raise ModelError("name the model that made the vectors (not auto): see `picseek models`")
    spec = resolve(name)
    if is_cached(spec):
        emb = load_embedder(spec)
        return {"name": emb.name, "model_id": emb.model_id, "dim": emb.dim, "spaces": dict(emb.spaces)}
    if spec.dim is None:
        raise ModelError(f"the dimension of {spec.name} is not known without its weights, which are not on this "
                         "machine: fetch them once (e.g. run a search with it) or name a model `picseek models` lists")
    return {"name": spec.name, "model_id": f"{spec.backend}:{spec.source or spec.name}{UNVERIFIED}",
            "dim": spec.dim, "spaces": {"main": spec.dim}}


def is_unverified(record: dict | None) -> bool:
    """True for a model record `record_for` made without the weights."""
    return bool(record) and str(record.get("model_id", "")).endswith(UNVERIFIED)


def verifies(record: dict, name: str, dim: int | None) -> bool:
    """True where a model called `name` with width `dim` is the one an unverified record names."""
    return is_unverified(record) and name_for_record(name) == name_for_record(record["name"]) and \
        (dim is None or int(dim) == int(record["dim"]))


def _loader(spec: ModelSpec):
    kind = backend(spec.backend)
    if kind is None:
        raise ModelError(f"model {spec.name!r} needs backend {spec.backend!r}, which is not installed")
    return kind.load


def is_cached(spec: ModelSpec) -> bool:
    """True where the model's weights are on this machine (no download needed): its backend's answer; False for a
    backend that is not installed."""
    kind = backend(spec.backend)
    if kind is None:
        return False
    return True if kind.cached is None else bool(kind.cached(spec))


def torch_installed() -> bool:
    """torch and transformers importable (checked without importing them): what the `hf` backend needs."""
    return find_spec("torch") is not None and find_spec("transformers") is not None


def resolve_auto() -> ModelSpec:
    """`auto`: a ready-ONNX CLIP-family model already cached here, else a cached Hugging Face one where torch is
    installed to run it, else download the default (ready-ONNX) one where the hub answers, else the built-in model
    (with one warning line that says how to get CLIP)."""
    ranked = sorted((s for s in SPECS.values() if s.auto_rank is not None), key=lambda s: s.auto_rank)
    for spec in (s for s in ranked if s.backend == "onnx"):
        if is_cached(spec):
            return spec
    unusable = []  # cached, but needs torch, which is not installed
    for spec in (s for s in ranked if s.backend == "hf"):
        if is_cached(spec):
            if torch_installed():
                return spec
            unusable.append(spec.name)
    skipped = (f" that runs here (cached but needing the torch extra, pip install 'picseek[torch]': "
               f"{', '.join(unusable)})" if unusable else "")
    if hub.hub_reachable():
        spec = SPECS[DEFAULT_DOWNLOAD]
        log.warning("no CLIP model in the local cache%s: downloading %s (%s) once from the model hub",
                    skipped, spec.name, spec.source)
        return spec
    log.warning("no CLIP model cached%s and the model hub is unreachable: using the built-in model "
                "(fewer concepts). For CLIP, run once with internet: picseek index --model %s ...", skipped,
                DEFAULT_DOWNLOAD)
    return SPECS[BUILTIN]


def load_embedder(name: str | ModelSpec, device: str = "cpu", precision: str | None = None,
                  runtime: str | None = None):
    """Build the model for a name or spec. `auto` picks as `resolve_auto` says. `precision` (fp32, bf16, int8,
    auto; models/onnx.py) goes to backends that take it; None leaves each backend's default. `runtime` (auto,
    onnxruntime, openvino; models/openvino_tower.py) goes to ready-ONNX models; asked of another backend, openvino
    is a warning and that model runs as it always does."""
    if isinstance(name, ModelSpec):
        spec = name
    elif name == AUTO:
        spec = resolve_auto()
    else:
        spec = resolve(name)
    kwargs = {} if precision is None else {"precision": precision}
    if runtime is not None and spec.backend == "onnx":
        kwargs["runtime"] = runtime
    elif runtime == "openvino":
        log.warning("runtime openvino applies to ready-ONNX models (onnx:, the CLIP short names): %s runs as "
                    "always", spec.name)
    return _loader(spec)(spec, device=device, **kwargs)


def list_models() -> list[dict]:
    """Every named model, whether its weights are here, and what it is (for `picseek models`)."""
    return [{"name": s.name, "backend": s.backend, "source": s.source or "(ships with picseek)",
             "dim": s.dim, "size_mb": s.size_mb, "available_offline": is_cached(s), "extra": extra_for(s),
             "description": s.description}
            for s in SPECS.values()]


def extra_for(spec: ModelSpec) -> str | None:
    """The extra of picseek a model needs (`pip install 'picseek[EXTRA]'`), None for the default install: its
    backend's."""
    kind = backend(spec.backend)
    return kind.extra if kind is not None else None

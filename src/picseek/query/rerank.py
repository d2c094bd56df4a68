"""Re-ranking: score the top N hits of a vector search with an image-text matching model and re-order them.

Rerankers are named like models (`blip-itm-base`), or given as `hf:ORG/NAME`, `ORG/NAME` or a local folder;
the table below is the data that names them, and each entry says which loader builds it. `blip` names the
library's own weights where its search model is BLIP (`blip-itm-base-coco`, ...: nothing to name twice, nothing
loaded twice), else `blip-itm-base`; a BLIP name whose repository is the library model's reuses it too. A loaded
reranker is kept (a few at most) so a server or a session pays the load once.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from ..errors import ModelError, UsageError, one_line
from .rank import VIA_RERANK

log = logging.getLogger(__name__)

H = TypeVar("H")
DEFAULT_TOP = 50
BLIP_LOADER = "picseek.models.blip:load"
LIBRARY_BLIP = "blip"  # the library's BLIP search model, else DEFAULT_BLIP
DEFAULT_BLIP = "blip-itm-base"


@dataclass(frozen=True)
class RerankerSpec:
    name: str
    loader: str  # "module:function" taking (spec, device=...) and returning an object with score(images, text)
    source: str = ""  # repo id or local folder
    description: str = ""


RERANKERS: dict[str, RerankerSpec] = {s.name: s for s in [
    RerankerSpec("blip-itm-base", BLIP_LOADER, "Salesforce/blip-itm-base-coco",
                 "BLIP ViT-B image-text matching, fine-tuned on COCO (900 MB)"),
    RerankerSpec("blip-itm-large", BLIP_LOADER, "Salesforce/blip-itm-large-coco",
                 "BLIP ViT-L image-text matching, fine-tuned on COCO (1.8 GB)"),
]}
_LOADED: dict[str, Any] = {}
_LOADED_MAX = 2
_LOCK = threading.Lock()


def resolve_reranker(name: str) -> RerankerSpec:
    """A name the user typed -> a spec: a short name, hf:ORG/NAME, ORG/NAME, or a local BLIP folder."""
    name = (name or "").strip()
    if name == LIBRARY_BLIP:
        name = DEFAULT_BLIP
    if name in RERANKERS:
        return RERANKERS[name]
    if name.startswith("hf:") and len(name) > 3:
        return RerankerSpec(name, BLIP_LOADER, name[3:], f"Hugging Face model {name[3:]}")
    folder = Path(name).expanduser()
    if name and folder.is_dir():
        return RerankerSpec(str(folder.resolve()), BLIP_LOADER, str(folder.resolve()), f"local folder {folder}")
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return RerankerSpec(name, BLIP_LOADER, name, f"Hugging Face model {name}")
    raise ModelError(f"unknown reranker {name!r}: use one of {', '.join(RERANKERS)}, hf:ORG/NAME or a local "
                     "BLIP model folder")


def _same_weights(name: str, spec: RerankerSpec, embedder) -> bool:
    """Whether reranker `name` (resolved to `spec`) means the library model's own BLIP weights."""
    from ..models.blip import is_blip_embedder

    if embedder is None or not is_blip_embedder(embedder):
        return False
    if name.strip() == LIBRARY_BLIP:
        return True
    own = str(embedder.source)
    return spec.source == own or (Path(own).expanduser().is_dir() and spec.source == str(Path(own).resolve()))


def load_reranker(name: str, device: str = "cpu", embedder=None):
    """The loaded reranker for a name (kept for later calls). `embedder`: the library's model; where it is BLIP and
    `name` is `blip` or names its repository, its weights are reused (models/blip.py `matcher_of`)."""
    spec = resolve_reranker(name)
    own = _same_weights(name, spec, embedder)
    key = f"{embedder.source if own else spec.name}@{device}"
    with _LOCK:
        if key not in _LOADED:
            if own:
                from ..models.blip import matcher_of

                loaded = matcher_of(embedder, device=device)
            else:
                module, _, func = spec.loader.partition(":")
                loaded = getattr(importlib.import_module(module), func)(spec, device=device)
            if len(_LOADED) >= _LOADED_MAX:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = loaded
        return _LOADED[key]


def rerank_hits(hits: Sequence[H], query_text: str, reranker: str | Any, top_n: int = DEFAULT_TOP,
                load_image: Callable[[H], Image.Image] | None = None, embedder=None) -> list[H]:
    """Re-order the first `top_n` hits by how well their images match `query_text` (highest first); the hits
    after them keep their order. A hit whose image cannot be loaded is logged and placed after the scored ones,
    in its old order. `reranker`: a name (see RERANKERS) or a loaded object with `score(images, text)`.
    `load_image(hit)` gives the hit's image; `embedder` the library's model (a BLIP one's weights are reused).
    Hits that are dataclasses with a `rerank_score` field get it set (and a `via` field "rerank")."""
    if top_n < 1:
        raise UsageError("the number of hits to re-rank must be at least 1")
    if not query_text or not query_text.strip():
        raise UsageError("re-ranking needs words in the query: it scores how well each image matches the text")
    hits = list(hits)
    head, tail = hits[:top_n], hits[top_n:]
    if not head:
        return hits
    if load_image is None:
        raise UsageError("re-ranking needs a way to load each hit's image")
    model = load_reranker(reranker, embedder=embedder) if isinstance(reranker, str) else reranker
    loaded, skipped = [], []
    for h in head:
        try:
            loaded.append((h, load_image(h)))
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the search
            log.warning("re-ranking skipped %s: %s", getattr(h, "path", h), one_line(exc))
            skipped.append(h)
    scores = model.score([img for _, img in loaded], query_text) if loaded else []
    order = sorted(range(len(loaded)), key=lambda i: -float(scores[i]))  # stable: ties keep their order
    ranked = [_with_score(loaded[i][0], float(scores[i])) for i in order]
    return ranked + skipped + tail


def _with_score(hit: H, score: float) -> H:
    names = {f.name for f in dataclasses.fields(hit)} if dataclasses.is_dataclass(hit) else set()
    if "rerank_score" in names:
        via = {"via": VIA_RERANK} if "via" in names else {}
        return dataclasses.replace(hit, rerank_score=round(score, 6), **via)
    return hit

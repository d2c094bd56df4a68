"""BLIP image-text matching (ITM) for re-ranking: how well does this image match this text, as a probability.

`BlipForImageTextRetrieval` runs the text through a BERT encoder that cross-attends to the image's ViT features;
its ITM head says "match" or "no match". That joint pass is far more precise than comparing two separately made
vectors, and far too slow to run over a whole library, so it re-orders the top hits of a vector search.

Weights load the way the embedding models do (`hf.load_source`): a local folder, or a repo id from the local
Hugging Face cache first, then the hub where it is reachable, else a one-line ModelError saying how to get it.
Images are preprocessed with picseek's own `prepare_image` + `normalize` from the checkpoint's saved image
processor config (BLIP: the whole image squashed to 384 x 384, bicubic, CLIP mean/std).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..extras import require
from . import hf
from .base import ImageSpec, ModelSpec, normalize, prepare_image

log = logging.getLogger(__name__)

BATCH = 16  # images per forward pass


@dataclass(eq=False)
class BlipMatcher:
    """A loaded BLIP ITM model. `score(images, text)` -> P(match) per image."""

    name: str
    model_id: str
    image_spec: ImageSpec
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: str = "cpu"
    max_length: int = 35  # BLIP was trained on captions of at most 35 tokens

    def score(self, images: Sequence[Image.Image], text: str) -> np.ndarray:
        """Probability (0..1) that each image matches `text`, from the ITM head's softmax."""
        import torch

        if not images:
            return np.zeros(0, dtype=np.float32)
        enc = self.tokenizer([text], padding=False, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        out = []
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            pixels = np.stack([prepare_image(im, self.image_spec) for im in chunk])
            x = torch.from_numpy(normalize(pixels, self.image_spec)).to(self.device)
            n = len(chunk)
            with torch.inference_mode():
                logits = self.model(input_ids=enc["input_ids"].to(self.device).expand(n, -1),
                                    attention_mask=enc["attention_mask"].to(self.device).expand(n, -1),
                                    pixel_values=x, use_itm_head=True).itm_score
            out.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def _load_itm_parts(source: str, local_files_only: bool) -> hf._Parts:
    parts = hf.load_blip_parts(source, local_files_only)
    if any(k.startswith("itm_head") for k in parts.missing):
        raise ModelError(f"{source} has no image-text matching head (itm_head): use an ITM checkpoint such as "
                         "Salesforce/blip-itm-base-coco")
    hf.warn_missing(source, parts.missing)
    return parts


def load(spec, device: str = "cpu") -> BlipMatcher:
    """A reranker spec (name, source = repo id or local folder) -> a ready BlipMatcher on `device`."""
    require(f"re-ranking with {spec.name}")
    parts, label, revision = hf.load_source(spec.name, spec.source or spec.name, _load_itm_parts)
    image_spec, patch = hf.image_spec_from_processor(parts.processor)
    if patch is not None:
        raise ModelError(f"model {spec.name}: a patch-sequence image processor is not a BLIP one")
    return _matcher(spec.name, f"hf:{label}@{revision}", image_spec, parts.model, parts.tokenizer, device)


def _matcher(name: str, model_id: str, image_spec: ImageSpec, model, tokenizer, device: str) -> BlipMatcher:
    text_cfg = model.config.text_config
    max_length = min(BlipMatcher.max_length, int(getattr(text_cfg, "max_position_embeddings", 512)))
    model.to(device).eval()
    matcher = BlipMatcher(name=name, model_id=model_id, image_spec=image_spec, model=model, tokenizer=tokenizer,
                          device=device, max_length=max_length)
    log.debug("loaded reranker %s (%s)", matcher.model_id, image_spec)
    return matcher


def is_blip_embedder(embedder) -> bool:
    """A search model whose weights are a BLIP retrieval checkpoint (models/hf.py, model_type "blip")."""
    return getattr(embedder, "model_type", "") == "blip" and bool(getattr(embedder, "source", ""))


def matcher_of(embedder, device: str = "cpu") -> BlipMatcher | None:
    """The re-ranker of a library whose search model is BLIP (models/hf.py, model_type "blip"): the embedder's own
    torch model where it holds one (nothing loaded twice), else its source's weights loaded once with the ITM head
    (the ONNX towers that index and search cannot score a pair). None for any other model."""
    if not is_blip_embedder(embedder):
        return None
    towers = getattr(embedder, "model", None)
    if towers is not None and hasattr(towers, "blip") and embedder.tokenizer is not None:
        return _matcher(embedder.name, embedder.model_id, embedder.image_spec, towers.blip, embedder.tokenizer,
                        device)
    return load(ModelSpec(embedder.name, "hf", embedder.source), device=device)

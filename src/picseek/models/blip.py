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
from .base import ImageSpec, normalize, prepare_image

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
    import torch
    from transformers import AutoConfig, AutoTokenizer, BlipForImageTextRetrieval
    from transformers.image_processing_base import ImageProcessingMixin

    kw = {"local_files_only": local_files_only}
    config = AutoConfig.from_pretrained(source, **kw)
    if getattr(config, "model_type", None) != "blip":
        raise ModelError(f"{source} is a {getattr(config, 'model_type', '?')!r} model, not BLIP: re-ranking needs "
                         "a BLIP image-text matching checkpoint (e.g. Salesforce/blip-itm-base-coco)")
    processor, _ = ImageProcessingMixin.get_image_processor_dict(source, **kw)
    tokenizer = AutoTokenizer.from_pretrained(source, **kw)
    with hf._no_weight_progress_bar(local_files_only):
        model, info = BlipForImageTextRetrieval.from_pretrained(source, config=config, dtype=torch.float32,
                                                                output_loading_info=True, **kw)
    missing = sorted(info.get("missing_keys") or [])
    if any(k.startswith("itm_head") for k in missing):
        raise ModelError(f"{source} has no image-text matching head (itm_head): use an ITM checkpoint such as "
                         "Salesforce/blip-itm-base-coco")
    if missing:
        log.warning("model %s: %d weights missing from the checkpoint and left random (%s...)", source,
                    len(missing), ", ".join(missing[:3]))
    return hf._Parts(config, model, tokenizer, processor)


def load(spec, device: str = "cpu") -> BlipMatcher:
    """A reranker spec (name, source = repo id or local folder) -> a ready BlipMatcher on `device`."""
    require(f"re-ranking with {spec.name}")
    parts, label, revision = hf.load_source(spec.name, spec.source or spec.name, _load_itm_parts)
    image_spec, patch = hf.image_spec_from_processor(parts.processor)
    if patch is not None:
        raise ModelError(f"model {spec.name}: a patch-sequence image processor is not a BLIP one")
    text_cfg = parts.config.text_config
    max_length = min(BlipMatcher.max_length, int(getattr(text_cfg, "max_position_embeddings", 512)))
    parts.model.to(device).eval()
    matcher = BlipMatcher(name=spec.name, model_id=f"hf:{label}@{revision}", image_spec=image_spec,
                          model=parts.model, tokenizer=parts.tokenizer, device=device, max_length=max_length)
    log.debug("loaded reranker %s (%s)", matcher.model_id, image_spec)
    return matcher

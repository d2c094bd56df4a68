"""Retrieval and zero-shot metrics, and the evaluation of models on a dataset (`picseek eval`).

Ranks are 1-based and ties count against the model: an item that scores the same as the right answer is ranked
above it. So a model that scores everything alike gets the worst rank, never a perfect one.

- text -> image: each caption has one right image; its rank is 1 + the number of other images scoring at least
  as high as that image.
- image -> text: an image has one or more right captions (Karpathy files have five); its rank is the rank of its
  best-scoring caption, i.e. 1 + the number of other images' captions scoring at least as high as that caption.
- recall@K: the share of queries whose rank is <= K; mean rank: the average rank.
- zero-shot accuracy (class folders): top-K is right when fewer than K other classes score at least as high as
  the right class.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import ImageError, UsageError
from ..ingest.images import DEFAULT_MAX_PIXELS, load_image
from ..models.base import MAIN, prepare_image
from . import zeroshot
from .data import Dataset

log = logging.getLogger(__name__)

KS = (1, 5, 10)
BATCH = 32


def ranks_text_to_image(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """sim: captions x images scores; caption_image[j] = caption j's image. -> the rank of each caption's image."""
    sim = np.asarray(sim, dtype=np.float64)
    rows = np.arange(len(sim))
    right = sim[rows, caption_image]
    return (sim >= right[:, None]).sum(axis=1)  # the right image itself counts once: rank 1 when none tie/beat it


def ranks_image_to_text(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """sim: captions x images scores. -> for each image, the rank of its best caption among all captions
    (an image without captions gets rank len(captions) + 1)."""
    sim = np.asarray(sim, dtype=np.float64)
    n_cap, n_img = sim.shape
    own = caption_image[:, None] == np.arange(n_img)[None, :]  # captions x images
    best = np.where(own, sim, -np.inf).max(axis=0)  # each image's best own-caption score
    others_at_least = ((sim >= best[None, :]) & ~own).sum(axis=0)
    return np.where(np.isfinite(best), others_at_least + 1, n_cap + 1)


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    out = {f"r@{k}": round(float((ranks <= k).mean()), 6) for k in ks}
    out["mean_rank"] = round(float(ranks.mean()), 6)
    out["median_rank"] = float(np.median(ranks))
    return out


def retrieval_metrics(sim: np.ndarray, caption_image: np.ndarray, ks: Sequence[int] = KS) -> dict:
    """{"text_to_image": {...}, "image_to_text": {...}} from a captions x images score matrix."""
    caption_image = np.asarray(caption_image, dtype=np.int64)
    return {"text_to_image": recall_summary(ranks_text_to_image(sim, caption_image), ks),
            "image_to_text": recall_summary(ranks_image_to_text(sim, caption_image), ks)}


def class_ranks(sim: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sim: images x classes scores -> the rank of each image's right class (ties count against)."""
    sim = np.asarray(sim, dtype=np.float64)
    right = sim[np.arange(len(sim)), labels]
    return (sim >= right[:, None]).sum(axis=1)


def accuracy_metrics(sim: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    ranks = class_ranks(sim, np.asarray(labels, dtype=np.int64))
    return {f"top{k}": round(float((ranks <= k).mean()), 6) for k in ks}


def embed_images(embedder, paths: Sequence, progress: Callable[[int, int], None] | None = None,
                 batch: int = BATCH, max_pixels: int | None = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Unit vectors of the readable images (files, or PIL images as they are) -> (vectors, indices of those
    images, one error line per bad file). `max_pixels`: load_image's limit (None: its default)."""
    vecs, ok, errors = [], [], []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            vecs.append(embedder.embed_pixels(np.stack(pending))[MAIN])
            pending.clear()

    for i, path in enumerate(paths):
        try:
            img = path if isinstance(path, Image.Image) else load_image(path, max_pixels or DEFAULT_MAX_PIXELS)
            pending.append(prepare_image(img, embedder.image_spec))
            ok.append(i)
        except ImageError as exc:
            errors.append(str(exc))
        if len(pending) >= batch:
            flush()
        if progress:
            progress(i + 1, len(paths))
    flush()
    dim = embedder.dim
    return (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)), ok, errors


def evaluate(embedder, ds: Dataset, *, templates: Sequence[str] = (zeroshot.DEFAULT_TEMPLATE,),
             ks: Sequence[int] = KS, progress: Callable[[int, int], None] | None = None) -> dict:
    """One model on one dataset: retrieval metrics (captions), plus zero-shot accuracy for class folders."""
    image_vecs, ok, errors = embed_images(embedder, ds.images, progress)
    if len(ok) < 2:
        raise UsageError(f"{ds.source}: fewer than two readable images ({len(errors)} unreadable)")
    kept = ds.subset(ok)
    out: dict = {"model": embedder.name, "model_id": embedder.model_id, "images": len(kept),
                 "captions": len(kept.captions), "unreadable": len(errors)}
    if kept.classes is not None:
        weights = zeroshot.class_weights(embedder, kept.classes, templates)
        out["classes"] = len(kept.classes)
        out["zero_shot"] = accuracy_metrics(zeroshot.label_scores(image_vecs, weights), kept.labels)
    else:
        text_vecs = embedder.embed_texts(kept.captions)
        out.update(retrieval_metrics(text_vecs @ image_vecs.T, kept.caption_image, ks))
    return out

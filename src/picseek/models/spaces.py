"""A search model with an image-only space beside it (`picseek index --image-model dinov2-small`).

Some models bring their own image-only space (the built-in model's pooled CNN features, "image"); this gives any
model one more, from an image model (models/dinov2.py): `WithImageSpace` is an Embedder whose `spaces` are the search
model's plus the image model's, whose `image_query_space` is that space (where the library has filled it for every
image: `complete`), and which answers texts with the search model alone. Its identity (name, model id, dim, image
spec) is the search model's, so a library's model check is unchanged; the image model is recorded beside it
(library.py). Each image is decoded once, for the search model; the image model takes its input from those pixels
(`embed_from`). `embed_image_space` gives that space alone (filling it for images indexed before it was added:
ingest/pipeline.py `fill_space`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import EmbedderBase, prepare_image


class WithImageSpace(EmbedderBase):
    """`image_model`: the loaded image model, or None with `load` (a function that loads it) and `dim` (its
    recorded dimension): a library loads it on the first image it embeds, so a text query never does."""

    def __init__(self, main: Any, image_model: Any, space: str, complete: bool = True, *,
                 load: Callable[[], Any] | None = None, dim: int | None = None):
        if image_model is None and (load is None or dim is None):
            raise ValueError("give the image model, or a loader and its dimension")
        super().__init__(name=main.name, model_id=main.model_id, dim=main.dim, image_spec=main.image_spec,
                         spaces={**dict(main.spaces), space: int(dim if image_model is None else image_model.dim)},
                         image_query_space=space if complete else main.image_query_space)
        self.main, self.space = main, space
        self._image_model, self._load, self._lock = image_model, load, threading.Lock()

    def __getattr__(self, name: str):  # the search model's other attributes (precision, logit scale, source, ...)
        if name in ("main", "space", "_image_model", "_load", "_lock"):
            raise AttributeError(name)
        return getattr(self.main, name)

    @property
    def image_model(self):
        with self._lock:
            if self._image_model is None:
                self._image_model = self._load()
            return self._image_model

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(self.main.embed_pixels(pixels))
        out[self.space] = self.embed_image_space(pixels)
        return out

    def embed_image_space(self, pixels: np.ndarray) -> np.ndarray:
        """The image model's vectors of pixels decoded for the search model (uint8 N x size x size x 3)."""
        return self.image_model.embed_from(np.asarray(pixels), self.main.image_spec)

    def embed_images(self, images, space: str = "main") -> np.ndarray:
        if space != self.space:
            return self.main.embed_images(images, space) if hasattr(self.main, "embed_images") else \
                super().embed_images(images, space)
        if not images:
            return np.zeros((0, self.spaces[space]), dtype=np.float32)
        return self.embed_image_space(np.stack([prepare_image(im, self.image_spec) for im in images]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.main.embed_texts(texts)

    def warm_up(self) -> None:
        for model in (self.main, self.image_model):
            if hasattr(model, "warm_up"):
                model.warm_up()

    def prepare(self) -> None:
        if hasattr(self.main, "prepare"):
            self.main.prepare()

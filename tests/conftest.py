"""Shared fixtures. Nothing here reaches the network: images are drawn here, models are tiny or built in."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# Forced, not defaulted: a user's own HF_HUB_OFFLINE=0 must not let a test reach the hub (huggingface_hub reads it at
# import, before any fixture runs).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

from picseek.models.base import MAIN, EmbedderBase, ImageSpec, l2_normalize  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20),
           "purple": (140, 40, 160), "orange": (250, 140, 20), "white": (245, 245, 245), "black": (15, 15, 15)}


@pytest.fixture(autouse=True)
def _isolate_user_dirs(tmp_path_factory, monkeypatch):
    """Tests never write to the user's real config, data or cache folders."""
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("PICSEEK_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("PICSEEK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "picseek-cache"))
    monkeypatch.delenv("PICSEEK_LIBRARY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """The hub is off and the Hugging Face cache is a private, empty folder: a slip can never download or touch the
    user's real cache. huggingface_hub reads these at import, so its constants are patched too. Returns the cache."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hf_home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def draw_photo(colour: str, shape: str = "circle", size=(320, 240), seed: int = 0) -> Image.Image:
    """A small synthetic picture: a coloured shape on a noisy grey background."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(90, 140, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    d = ImageDraw.Draw(img)
    w, h = size
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    if shape == "circle":
        d.ellipse(box, fill=COLOURS[colour])
    else:
        d.rectangle(box, fill=COLOURS[colour])
    return img


def make_folder(folder: Path, n: int = 8, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    names = list(COLOURS)
    for i in range(n):
        p = folder / f"{prefix}_{i:03d}.jpg"
        draw_photo(names[i % len(names)], "circle" if i % 2 else "square", seed=i).save(p, quality=90)
        paths.append(p)
    return paths


class ColourEmbedder(EmbedderBase):
    """A deterministic test double with no network and no weights: an image's vector is its mean colour in a
    coarse 3-d RGB space plus a small spatial signature; a text's vector is the colour it names. Enough to check
    that indexing, storage and ranking wire things together correctly (real semantics are tested with builtin)."""

    def __init__(self, name: str = "test-colour"):
        super().__init__(name=name, model_id=f"{name}@1", dim=8, image_spec=ImageSpec(size=32, resize="squash"),
                         spaces={MAIN: 8}, image_query_space=MAIN)
        self.calls = 0

    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        x = pixels.astype(np.float32) / 255.0
        centre = x[:, 8:24, 8:24].mean(axis=(1, 2))
        edge = x.mean(axis=(1, 2)) - centre
        v = np.concatenate([centre, edge, x[:, :16].mean(axis=(1, 2, 3))[:, None],
                            x[:, 16:].mean(axis=(1, 2, 3))[:, None]], axis=1)
        return {MAIN: l2_normalize(v)}

    def embed_texts(self, texts):
        out = []
        for t in texts:
            rgb = next((np.array(c, np.float32) / 255 for k, c in COLOURS.items() if k in t), np.ones(3, np.float32))
            out.append(np.concatenate([rgb, np.zeros(5, np.float32)]))
        return l2_normalize(np.stack(out))


@pytest.fixture
def colour_embedder():
    return ColourEmbedder()

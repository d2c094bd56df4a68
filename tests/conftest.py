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


# ---------------------------------------------------------------------------------- a local S3 API server (moto)


class S3Bucket:
    """A fresh bucket on the local S3 API server: `fs` (s3fs, pointed at it), `name`, `endpoint`, `url(key)`."""

    def __init__(self, fs, name: str, endpoint: str):
        self.fs, self.name, self.endpoint = fs, name, endpoint

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}" if key else f"s3://{self.name}"

    def put(self, key: str, data: bytes) -> dict:
        """Write an object; returns its metadata as S3 has it now (ETag, size, ...)."""
        self.fs.pipe(f"{self.name}/{key}", data)
        self.fs.invalidate_cache()
        return self.fs.info(f"{self.name}/{key}")

    def rm(self, key: str) -> None:
        self.fs.rm(f"{self.name}/{key}")
        self.fs.invalidate_cache()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of an S3 API served by moto's server mode on a free loopback port, for the whole session (started in
    a thread of the test process; nothing leaves the machine). Skipped (a failure under PICSEEK_TEST_STRICT) without
    moto[server] or s3fs: pip install 'picseek[dev]'."""
    from needs import need_module

    need_module("s3fs")
    moto_server = need_module("moto.server")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # (a line per request otherwise)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request):
    """A new, empty bucket on the local S3 server. AWS_ENDPOINT_URL and test credentials are set for this test, so
    every S3 client (s3fs in this process, the CLI, decode workers) talks to the local server."""
    import re
    import uuid

    import s3fs

    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing", skip_instance_cache=True)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    fs.mkdir(name)
    yield S3Bucket(fs, name, s3_endpoint)
    fs.rm(name, recursive=True)


@pytest.fixture
def colour_lib(tmp_path):
    """A library of 8 drawn photos (`make_folder`) indexed with ColourEmbedder, in-process."""
    from picseek import Library

    make_folder(tmp_path / "photos", 8)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([tmp_path / "photos"], workers=0)
    return lib

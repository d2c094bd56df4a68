"""The Hugging Face backend on tiny random-weight CLIP / SigLIP / SigLIP 2 models built offline.

No test here reaches the network: the hub is switched off and the cache is a private empty folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picseek.errors import ModelError
from picseek.models import hf
from picseek.models.base import ImageSpec, normalize, prepare_image
from picseek.models.registry import is_cached, load_embedder, resolve

import tiny_models  # tests/ is on sys.path (tests/conftest.py)

MAKERS = {"clip": tiny_models.make_tiny_clip, "siglip": tiny_models.make_tiny_siglip,
          "siglip2": tiny_models.make_tiny_siglip2}


pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {kind: make(root / kind) for kind, make in MAKERS.items()}


@pytest.fixture(scope="module")
def embedders(folders):
    """The fp32 reference path (the fast paths are tested against it in test_onnx.py)."""
    return {kind: load_embedder(str(folder), precision="fp32") for kind, folder in folders.items()}


def _images() -> list[Image.Image]:
    """Real-ish photos: two skimage samples, an odd-aspect strip, an image smaller than the model input."""
    from skimage import data

    cat, coffee = Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())
    return [cat, coffee, cat.crop((40, 10, 140, 290)), coffee.resize((23, 17), Image.Resampling.BILINEAR)]


def _square(img: Image.Image) -> Image.Image:
    s = min(img.size)
    return img.crop((0, 0, s, s))


# ----------------------------------------------------------------------------------------- the loaded model


@pytest.mark.parametrize("kind", list(MAKERS))
def test_shapes_norms_and_spaces(embedders, kind):
    emb = embedders[kind]
    assert isinstance(emb, hf.HFEmbedder)
    assert emb.spaces == {"main": emb.dim} and emb.image_query_space == "main"
    assert emb.dim == (16 if kind == "clip" else 32)
    texts = emb.embed_texts(["a photo of a cat", "a red car on the street", "zebra!"])
    assert texts.shape == (3, emb.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    s = emb.image_spec.size
    pixels = np.random.default_rng(0).integers(0, 256, (3, s, s, 3), dtype=np.uint8)
    out = emb.embed_pixels(pixels)
    assert set(out) == {"main"}
    assert out["main"].shape == (3, emb.dim) and out["main"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out["main"], axis=1), 1.0, atol=1e-5)
    assert emb.embed_texts([]).shape == (0, emb.dim)
    assert emb.embed_pixels(np.zeros((0, s, s, 3), np.uint8))["main"].shape == (0, emb.dim)
    assert emb.embed_images(_images()).shape == (4, emb.dim)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_deterministic_and_texts_differ(embedders, kind):
    emb = embedders[kind]
    texts = ["a photo of a cat", "a dog on the beach", "a photo of a cat"]
    a, b = emb.embed_texts(texts), emb.embed_texts(texts)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0], a[2], atol=1e-6)  # batch position and padding change nothing
    assert float(a[0] @ a[1]) < 0.999
    np.testing.assert_allclose(emb.embed_texts(texts[1:2])[0], a[1], atol=1e-5)  # batch-of-one == in a batch
    imgs = _images()
    np.testing.assert_array_equal(emb.embed_images(imgs), emb.embed_images(imgs))


def test_image_specs_follow_the_saved_processor(embedders):
    clip, siglip, siglip2 = embedders["clip"], embedders["siglip"], embedders["siglip2"]
    assert clip.image_spec == ImageSpec(32, "shortest_crop", "bicubic")  # OpenAI mean/std are the defaults
    assert siglip.image_spec == ImageSpec(32, "squash", "bicubic", (0.5,) * 3, (0.5,) * 3)
    assert siglip2.image_spec == ImageSpec(32, "squash", "bilinear", (0.5,) * 3, (0.5,) * 3)
    assert (clip.padding, siglip.padding, siglip2.padding) == ("longest", "max_length", "max_length")
    assert clip.max_length == siglip.max_length == 16


def test_image_spec_from_real_processor_configs():
    openai_clip = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}
    assert hf.image_spec_from_processor(openai_clip) == (ImageSpec(224, "shortest_crop", "bicubic"), None)
    google_siglip = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5] * 3,
                     "image_std": [0.5] * 3, "resample": 2, "rescale_factor": 1 / 255,
                     "size": {"height": 224, "width": 224}}
    assert hf.image_spec_from_processor(google_siglip) == (ImageSpec(224, "squash", "bilinear", (0.5,) * 3,
                                                                     (0.5,) * 3), None)
    naflex = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "max_num_patches": 256, "patch_size": 16,
              "resample": 2}
    half = (0.5,) * 3
    assert hf.image_spec_from_processor(naflex) == (ImageSpec(256, "squash", "bilinear", half, half), 16)
    with pytest.raises(ModelError, match="non-square"):
        hf.image_spec_from_processor({"size": {"height": 224, "width": 160}})


# -------------------------------------------------------------- our preprocessing == the HF image processor


def _hf_processor_vectors(folder: Path, emb: hf.HFEmbedder, images: list[Image.Image]) -> np.ndarray:
    import torch
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    rows = []
    for img in images:
        inputs = proc(images=[img], return_tensors="pt")
        with torch.inference_mode():
            rows.append(hf._to_numpy(emb.model.get_image_features(**inputs))[0])
    return np.stack(rows)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_our_preprocessing_matches_hf_processor(folders, embedders, kind):
    emb, images = embedders[kind], _images()
    ours = emb.embed_images(images)
    theirs = _hf_processor_vectors(folders[kind], emb, images)
    cos = np.sum(ours * theirs, axis=1)
    assert np.all(cos >= 0.999), cos




@pytest.mark.parametrize("kind,index", [(k, i) for k in ("clip", "siglip") for i in range(4)])
def test_our_pixels_match_hf_processor(folders, embedders, kind, index):
    """Pixel level, stricter than the vectors: the mean difference allows for prepare_image's reducing_gap
    (a faster, slightly different downscale of big photos), not for a shifted crop."""
    from transformers import AutoImageProcessor

    emb, img = embedders[kind], _images()[index]
    proc = AutoImageProcessor.from_pretrained(folders[kind], local_files_only=True)
    theirs = proc(images=[img], return_tensors="np")["pixel_values"]
    ours = normalize(prepare_image(img, emb.image_spec)[None], emb.image_spec)
    assert ours.shape == theirs.shape
    assert float(np.abs(ours - theirs).mean()) < 0.01


def test_siglip2_naflex_matches_hf_processor_on_square_images(folders, embedders):
    """NaFlex keeps the aspect ratio (a patch grid per image); picseek feeds the square grid, so the two agree
    exactly on square images (the patch order and the grid shape are what this checks)."""
    emb, images = embedders["siglip2"], [_square(im) for im in _images()]
    cos = np.sum(emb.embed_images(images) * _hf_processor_vectors(folders["siglip2"], emb, images), axis=1)
    assert np.all(cos >= 0.999), cos


@pytest.mark.parametrize("kind", list(MAKERS))
def test_text_vectors_match_hf_processor(folders, embedders, kind):
    """Our tokenizer call (padding, truncation, inputs passed) equals the model's own processor's."""
    import torch
    from transformers import AutoProcessor

    emb = embedders[kind]
    texts = ["a photo of a cat", "a dog", "the " * 40 + "long text is truncated"]
    proc = AutoProcessor.from_pretrained(folders[kind], local_files_only=True)
    padding = "max_length" if kind != "clip" else True
    enc = proc(text=texts, padding=padding, truncation=True, max_length=emb.max_length, return_tensors="pt")
    with torch.inference_mode():
        inputs = {k: v for k, v in enc.items() if k != "token_type_ids"}
        theirs = hf._to_numpy(emb.model.get_text_features(**inputs))
    np.testing.assert_allclose(emb.embed_texts(texts), theirs, atol=1e-5)


# ------------------------------------------------------------------------------------------------ identity


def test_model_id_stable_and_distinct(folders, embedders, tmp_path):
    again = load_embedder(str(folders["clip"]))
    assert again.model_id == embedders["clip"].model_id
    assert embedders["clip"].model_id.startswith("hf:clip@")
    ids = {e.model_id for e in embedders.values()}
    assert len(ids) == 3
    # same architecture, same file sizes, other weights: another id
    reseeded = tiny_models.make_tiny_clip(tmp_path / "clip", seed=1)
    other = hf.folder_revision(reseeded)
    assert other != embedders["clip"].model_id.rsplit("@", 1)[1]
    assert hf.folder_revision(reseeded) == other
    # a copy of the same folder is the same model
    copy = shutil.copytree(folders["clip"], tmp_path / "copy")
    assert hf.folder_revision(copy) == embedders["clip"].model_id.rsplit("@", 1)[1]


# ------------------------------------------------------------------------------------- the hub and its cache


def test_uncached_repo_offline_is_a_clear_model_error():
    with pytest.raises(ModelError) as err:
        load_embedder("hf:openai/clip-vit-base-patch32")
    msg = str(err.value)
    assert "openai/clip-vit-base-patch32" in msg and "not in the local cache" in msg and "internet" in msg
    assert "\n" not in msg
    with pytest.raises(ModelError, match="not in the local cache"):
        load_embedder("clip-vit-b-32-hf")  # a -hf name resolves to the same repo


def test_failed_download_is_a_model_error(monkeypatch, offline_hub):
    """Hub said to answer, download fails (here: offline mode refuses it, so still no network)."""
    from picseek.models import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
    with pytest.raises(ModelError, match="could not get model picseek-test/absent from the hub"):
        load_embedder("hf:picseek-test/absent")


def test_cached_repo_loads_offline_with_its_commit_as_revision(folders, offline_hub):
    """A repo in the hub cache layout (refs/main -> snapshots/<commit>) loads with no network; its revision
    is the snapshot's commit hash."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = offline_hub / "models--picseek-test--tiny-clip"
    shutil.copytree(folders["clip"], repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    spec = resolve("hf:picseek-test/tiny-clip")
    assert is_cached(spec)
    emb = load_embedder(spec)
    assert emb.model_id == f"hf:picseek-test/tiny-clip@{commit}"
    assert emb.embed_texts(["a cat"]).shape == (1, 16)


def test_folder_that_is_not_an_image_text_model(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(ModelError, match="cannot load model"):
        load_embedder(str(folder))


def test_pixels_of_the_wrong_size_are_refused(embedders):
    with pytest.raises(ValueError, match="pixels"):
        embedders["clip"].embed_pixels(np.zeros((1, 8, 8, 3), np.uint8))

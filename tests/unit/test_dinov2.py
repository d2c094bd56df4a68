"""DINOv2 as an image space beside a library's search model (`--image-model`), on a tiny random Dinov2 built offline
in the hub's layout: the ONNX tower equals the torch model, its input follows the processor config, and a library
stores, fills in (resumably), queries and keeps the space. No test here reaches the network."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from picseek.cli import cli
from picseek.errors import ModelError, ModelMismatchError
from picseek.library import Library
from picseek.models import dinov2
from picseek.models.base import ImageSpec, normalize, prepare_image
from picseek.models.registry import load_image_model, resolve_image_model
from picseek.models.spaces import WithImageSpace

import tiny_models
from conftest import make_folder

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache

REPO = "facebook/dinov2-small"


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory) -> Path:
    return tiny_models.make_tiny_dinov2(tmp_path_factory.mktemp("tiny") / "dinov2")


@pytest.fixture
def cached(offline_hub, dino_folder) -> str:
    """The tiny model where `dinov2-small` is looked for: the hub cache."""
    tiny_models.put_in_hub_cache(offline_hub, dino_folder, REPO)
    return "dinov2-small"


def _torch_vectors(folder: Path, pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    import torch
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        out = model(pixel_values=torch.from_numpy(normalize(pixels, spec))).pooler_output.numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_names_and_the_real_processor_config():
    assert resolve_image_model("dinov2-small").source == REPO
    assert resolve_image_model("dinov2-base").source == "facebook/dinov2-base"
    assert resolve_image_model("hf:someone/dino").source == "someone/dino"
    with pytest.raises(ModelError, match="unknown image model 'dino'"):
        resolve_image_model("dino")
    # facebook/dinov2-small's preprocessor_config.json (as published)
    cfg = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
           "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
           "image_processor_type": "BitImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 3,
           "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}
    spec, crop = dinov2.spec_from_processor(cfg)
    assert (spec.size, spec.resize, spec.resample, crop) == (224, "shortest_crop", "bicubic", 224 / 256)
    assert spec.mean == dinov2.IMAGENET_MEAN and spec.std == dinov2.IMAGENET_STD


def test_onnx_tower_equals_torch(cached, dino_folder):
    fp32 = load_image_model(cached, precision="fp32")
    assert (fp32.dim, fp32.image_spec.size, fp32.crop) == (32, 32, 32 / 36)
    assert fp32.model_id.startswith(f"hf:{REPO}@")
    px = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ref = _torch_vectors(dino_folder, px, fp32.image_spec)
    assert (np.sum(fp32.embed_pixels(px) * ref, axis=1) >= 0.999).all()
    int8 = load_image_model(cached)  # auto: int8
    assert int8.precision == "int8" and (np.sum(int8.embed_pixels(px) * ref, axis=1) >= 0.99).all()


def test_its_input_is_the_processors_crop(cached, dino_folder):
    """From pixels decoded shortest-side-to-36 (a CLIP-like search model at DINOv2's resize edge) the space takes the
    centre 32 x 32: exactly what BitImageProcessor makes of the photo."""
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    model = load_image_model(cached, precision="fp32")
    photo = Image.open(make_folder(Path(str(dino_folder) + "-photos"), 1)[0]).convert("RGB")
    main = ImageSpec(36, "shortest_crop", "bicubic")
    ours = dinov2.own_pixels(prepare_image(photo, main)[None], model.image_spec, model.crop)
    theirs = BitImageProcessorPil.from_pretrained(str(dino_folder))(photo, return_tensors="np")["pixel_values"]
    assert np.abs(normalize(ours, model.image_spec) - theirs).max() < 0.05


def test_adding_it_fills_the_space_resumably_and_queries_use_it(cached, tmp_path, monkeypatch):
    photos = make_folder(tmp_path / "photos", 6)
    Image.open(photos[0]).save(tmp_path / "photos" / "copy.jpg", quality=70)  # a near-duplicate of photos[0]
    lib = Library(tmp_path / "lib", model="builtin")
    lib.index([tmp_path / "photos"], workers=0)
    main_before = lib.store.vectors("main")
    added = Library(tmp_path / "lib", image_model=cached)
    # interrupted after the first batch: that batch is kept, and queries keep the built-in image space meanwhile
    real = WithImageSpace.embed_image_space
    calls = []

    def once(self, pixels):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, pixels)

    monkeypatch.setattr(WithImageSpace, "embed_image_space", once)
    with pytest.raises(KeyboardInterrupt):
        added.index([tmp_path / "photos"], workers=0, batch_size=2)
    assert len(added.store.vectors("dinov2")[0]) == 2 and "dinov2" not in added.recorded_model["spaces"]
    assert added.recorded_model["image_model"]["name"] == "dinov2-small"
    monkeypatch.setattr(WithImageSpace, "embed_image_space", real)
    lib = Library(tmp_path / "lib")  # later runs keep the recorded image model without naming it
    assert lib.embedder().image_query_space == "image"  # not filled yet: the built-in model's image space
    report = lib.index([tmp_path / "photos"], workers=0, batch_size=2)
    assert (report.added, report.filled, report.fill_errors) == (0, 5, 0)
    assert lib.recorded_model["spaces"]["dinov2"] == 32 and lib.embedder().image_query_space == "dinov2"
    ids, mat = lib.store.vectors("main")  # the main space was not re-embedded
    assert np.array_equal(ids, main_before[0]) and np.array_equal(mat, main_before[1])
    # an example image is answered in the DINOv2 space, words in the main one
    dino = dict(zip(*lib.store.vectors("dinov2"), strict=True))
    hits = lib.similar(str(photos[1]), limit=6)
    first = lib.store.find_path(str(photos[1]))
    assert [round(h.score, 3) for h in hits] == [round(float(dino[h.id] @ dino[first]), 3) for h in hits]
    assert lib.search(str(photos[3]), limit=1)[0].path == str(photos[3])
    main = dict(zip(*lib.store.vectors("main"), strict=True))
    q = lib.embedder().embed_texts(["a red square"])[0]
    text_hits = lib.search("a red square", limit=3, keywords=False)
    assert abs(text_hits[0].score - float(main[text_hits[0].id] @ q)) < 2e-3
    groups = lib.duplicates(1e-6)  # (almost) every pair: scores are DINOv2 cosines to the group's first image
    assert groups and all(abs(h.score - float(dino[h.id] @ dino[g[0].id])) < 2e-3 for g in groups for h in g)
    assert Library(tmp_path / "lib").index([tmp_path / "photos"], workers=0).filled == 0  # nothing left to fill


def test_a_new_library_records_it_and_another_one_is_refused(cached, dino_folder, tmp_path):
    make_folder(tmp_path / "photos", 3)
    lib = Library(tmp_path / "lib", model="builtin", image_model=cached)
    assert lib.index([tmp_path / "photos"], workers=0).filled == 0  # every image got the space as it was indexed
    assert set(lib.recorded_model["spaces"]) == {"main", "image", "dinov2"}
    assert len(lib.store.vectors("dinov2")[0]) == 3
    with pytest.raises(ModelMismatchError, match="has the image space of dinov2-small, not dinov2-base"):
        Library(tmp_path / "lib", image_model="dinov2-base").index([tmp_path / "photos"], workers=0)
    lib = Library(tmp_path / "lib")
    lib.index([tmp_path / "photos"], workers=0, rebuild=True)  # a rebuild keeps it
    assert lib.recorded_model["image_model"]["name"] == "dinov2-small"
    assert len(lib.store.vectors("dinov2")[0]) == 3


def test_cli_index_image_model_and_status(cached, tmp_path):
    make_folder(tmp_path / "photos", 2)
    lib = str(tmp_path / "lib")
    run = CliRunner().invoke(cli, ["-L", lib, "index", "--model", "builtin", "--workers", "0",
                                   str(tmp_path / "photos")])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(cli, ["-L", lib, "index", "--image-model", cached, "--workers", "0",
                                   str(tmp_path / "photos")])
    assert run.exit_code == 0, run.output
    assert "Filled in the dinov2 space (dinov2-small) for 2 images" in run.output
    status = CliRunner().invoke(cli, ["-L", lib, "status"])
    assert "images by example: dinov2-small" in status.output


def test_models_that_are_not_dinov2_are_clear_errors(offline_hub, dino_folder, tmp_path):
    clip = tiny_models.make_tiny_clip(tmp_path / "clip")
    with pytest.raises(ModelError, match="'clip' model, not DINOv2"):
        load_image_model(str(clip), precision="fp32")
    with pytest.raises(ModelError, match="DINOv2 is an image-only model: index with --image-model"):
        from picseek.models.registry import load_embedder

        load_embedder(str(dino_folder), precision="fp32")
    shutil.rmtree(clip)


def test_the_fill_keeps_tags_and_works_on_chromadb(cached, tmp_path):
    """The fill rewrites each image with its kept vectors through the Store protocol: on ChromaDB too, with the
    image's tags kept."""
    pytest.importorskip("chromadb")
    photos = make_folder(tmp_path / "photos", 3)
    store = f"chroma://{tmp_path}/chroma-db?collection=pics"
    lib = Library(tmp_path / "lib", model="builtin", store=store)
    lib.index([tmp_path / "photos"], workers=0)
    lib.tag_add(str(photos[0]), ["kept"])
    lib = Library(tmp_path / "lib", store=store, image_model=cached)
    assert lib.index([tmp_path / "photos"], workers=0).filled == 3
    assert lib.recorded_model["spaces"]["dinov2"] == 32
    assert [t["tag"] for t in lib.store.get_tags([lib.store.find_path(str(photos[0]))]).popitem()[1]] == ["kept"]
    assert lib.search(str(photos[1]), limit=1)[0].path == str(photos[1])


def test_text_queries_never_load_the_image_model(cached, tmp_path, monkeypatch):
    from picseek.models import registry

    make_folder(tmp_path / "photos", 2)
    Library(tmp_path / "lib", model="builtin", image_model=cached).index([tmp_path / "photos"], workers=0)
    monkeypatch.setattr(registry, "load_image_model", lambda *a, **k: pytest.fail("loaded for a text query"))
    lib = Library(tmp_path / "lib")
    assert len(lib.search("a red square", limit=2)) == 2
    assert lib.embedder().spaces["dinov2"] == 32


@pytest.mark.parametrize("kind", ["sqlite", "chroma"])
def test_the_fill_keeps_the_words_read_in_the_images(cached, tmp_path, kind):
    """Adding an image model rewrites each image's record: the words OCR read in it (issue 19) stay."""
    from picseek.store.base import TextRecord

    if kind == "chroma":
        pytest.importorskip("chromadb")
    store = f"chroma://{tmp_path}/chroma-db?collection=pics" if kind == "chroma" else None
    photos = make_folder(tmp_path / "photos", 2)
    lib = Library(tmp_path / "lib", model="builtin", store=store)
    lib.index([tmp_path / "photos"], workers=0)
    image_id = lib.store.find_path(str(photos[0]))
    words = TextRecord("Total due 42.50", [{"text": "Total due 42.50", "box": [[0, 0], [1, 0], [1, 1], [0, 1]],
                                             "score": 0.9}], None)
    lib.store.write_texts([(image_id, words)])
    lib = Library(tmp_path / "lib", store=store, image_model=cached)
    assert lib.index([tmp_path / "photos"], workers=0).filled == 2
    assert lib.store.get_texts([image_id])[image_id].text == "Total due 42.50"
    assert lib.search('text:"total due"', limit=2)[0].path == str(photos[0])

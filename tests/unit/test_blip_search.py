"""BLIP as a search model (blip-itm-base-coco, blip-itm-large-coco, hf: BLIP retrieval repos) on a tiny random BLIP
built offline in the hub's layout: the towers compute what BlipForImageTextRetrieval computes with use_itm_head=False,
the ONNX towers equal the torch module, a library indexes and answers text and image queries without torch, and
`--rerank blip` scores with the library's own weights. No test here reaches the network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picseek.library import Library
from picseek.models import blip, hf
from picseek.models.base import normalize
from picseek.models.registry import SPECS, load_embedder, resolve
from picseek.query import rerank

import tiny_models
from conftest import make_folder

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache

REPO = "Salesforce/blip-itm-base-coco"
TEXTS = ["a red car", "a dog on the beach", "a cup of coffee on a table"]


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory) -> Path:
    return tiny_models.make_tiny_blip_itm(tmp_path_factory.mktemp("tiny") / "blip")


@pytest.fixture(scope="module")
def reference(blip_folder):
    """The torch model (precision fp32: no export)."""
    return load_embedder(str(blip_folder), precision="fp32")


def _pixels(n: int = 4, size: int = 32) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_named_models_and_the_real_processor_config():
    for name, repo in (("blip-itm-base-coco", REPO), ("blip-itm-large-coco", "Salesforce/blip-itm-large-coco")):
        spec = resolve(name)
        assert (spec.backend, spec.source, spec.dim) == ("hf", repo, 256) and spec.auto_rank is None
    assert "blip-itm-base-coco" in SPECS
    # Salesforce/blip-itm-base-coco's preprocessor_config.json (as published): the whole image to 384 x 384
    cfg = {"do_normalize": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
           "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
           "size": {"height": 384, "width": 384}}
    spec, patch = hf.image_spec_from_processor(cfg)
    assert (spec.size, spec.resize, spec.resample, patch) == (384, "squash", "bicubic", None)


def test_towers_compute_what_the_retrieval_model_computes(reference):
    """image_feat @ text_feat.T of BlipForImageTextRetrieval(use_itm_head=False) == our vectors' cosines."""
    import torch

    assert reference.dim == 16 and reference.model_type == "blip"  # image_text_hidden_size, not projection_dim
    px = _pixels()
    img, txt = reference.embed_pixels(px)["main"], reference.embed_texts(TEXTS)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5) and np.allclose(np.linalg.norm(txt, axis=1), 1,
                                                                                  atol=1e-5)
    enc = reference.tokenizer(TEXTS, padding="longest", return_tensors="pt")
    with torch.inference_mode():
        scores = reference.model.blip(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                      pixel_values=torch.from_numpy(normalize(px, reference.image_spec)),
                                      use_itm_head=False).itm_score.numpy()
    assert np.abs(scores - img @ txt.T).max() < 1e-5
    assert len({round(float(s), 4) for s in (img @ txt.T).ravel()}) > 4  # different images, different texts


def test_onnx_towers_equal_the_torch_module(blip_folder, reference):
    px = _pixels()
    img, txt = reference.embed_pixels(px)["main"], reference.embed_texts(TEXTS)
    image32, _ = hf.ort_towers(reference, "fp32")  # the vision tower unquantized, beside the int8 one
    assert (np.sum(img * image32(pixel_values=normalize(px, reference.image_spec)), axis=1) >= 0.999).all()
    fast = load_embedder(str(blip_folder))  # auto: exported once in a child process, then run without torch
    assert fast.precision == "int8" and fast.model is None and fast.model_type == "blip"
    assert (np.sum(txt * fast.embed_texts(TEXTS), axis=1) >= 0.999).all()  # the text tower runs in fp32
    assert (np.sum(img * fast.embed_pixels(px)["main"], axis=1) >= 0.99).all()  # int8 image tower


def test_a_blip_library_from_the_hub_cache(offline_hub, blip_folder, tmp_path, monkeypatch):
    """`--model blip-itm-base-coco` on a cached copy: index, text search, image search, and `--rerank blip` with the
    library's own weights (loaded once, kept; `blip-itm-base` names the same repository: the same matcher)."""
    tiny_models.put_in_hub_cache(offline_hub, blip_folder, REPO)
    photos = make_folder(tmp_path / "photos", 6)
    lib = Library(tmp_path / "lib", model="blip-itm-base-coco")
    assert lib.index([tmp_path / "photos"], workers=0).added == 6
    rec = lib.recorded_model
    assert rec["name"] == "blip-itm-base-coco" and rec["model_id"].startswith(f"hf:{REPO}@") and rec["dim"] == 16
    emb = lib.embedder()
    assert emb.model is None and emb.source == REPO  # ONNX Runtime only
    text_hits = lib.search("a red car", limit=6)
    assert len(text_hits) == 6 and text_hits[0].via == "vector"
    assert lib.search(str(photos[2]), limit=1)[0].path == str(photos[2])
    monkeypatch.setattr(rerank, "_LOADED", {})
    loads = []
    real_load = blip.load
    monkeypatch.setattr(blip, "load", lambda spec, device="cpu": loads.append(spec.source) or real_load(spec, device))
    hits = lib.search("a red car", limit=6, rerank="blip")
    assert loads == [REPO] and all(h.rerank_score is not None for h in hits)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    again = lib.search("a red car", limit=6, rerank="blip-itm-base")  # the same repository: nothing loaded again
    assert loads == [REPO] and [h.id for h in again] == [h.id for h in hits]
    matcher = rerank.load_reranker("blip", embedder=emb)
    assert matcher.score([], "x").shape == (0,)
    imgs = [h.open() for h in hits]
    assert np.allclose(matcher.score(imgs, "a red car"), [h.rerank_score for h in hits], atol=1e-5)


def test_rerank_reuses_the_torch_model_a_library_holds(reference, monkeypatch):
    monkeypatch.setattr(rerank, "_LOADED", {})
    monkeypatch.setattr(blip, "load", lambda *a, **k: pytest.fail("the weights are here already"))
    matcher = rerank.load_reranker("blip", embedder=reference)
    assert matcher.model is reference.model.blip
    other = rerank.resolve_reranker("blip")  # no BLIP library: the default re-ranker
    assert other.source == "Salesforce/blip-itm-base-coco"


def test_hf_blip_repo_is_detected_from_its_config(offline_hub, blip_folder):
    tiny_models.put_in_hub_cache(offline_hub, blip_folder, "someone/my-blip")
    emb = load_embedder("hf:someone/my-blip", precision="fp32")
    assert emb.model_type == "blip" and emb.image_spec.resize == "squash" and emb.dim == 16

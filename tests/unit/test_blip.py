"""BLIP re-ranking on a tiny random BLIP image-text matching model built offline: loading, scores that agree with
the Hugging Face processor + model, and the mechanics of re-ordering hits. No test here reaches the network."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picseek.errors import ModelError, UsageError
from picseek.models.blip import BlipMatcher
from picseek.query import rerank
from picseek.query.rerank import load_reranker, rerank_hits, resolve_reranker

import tiny_models
from conftest import COLOURS, draw_photo

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory) -> Path:
    return tiny_models.make_tiny_blip_itm(tmp_path_factory.mktemp("tiny") / "blip")


@pytest.fixture(scope="module")
def matcher(blip_folder) -> BlipMatcher:
    return load_reranker(str(blip_folder))


@dataclass
class FakeHit:
    id: int
    path: str
    score: float
    rerank_score: float | None = None


def photos(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i, colour in enumerate(list(COLOURS)[:n]):
        p = tmp_path / f"{i}_{colour}.jpg"
        draw_photo(colour, "circle" if i % 2 else "square", seed=i).save(p)
        out.append(p)
    return out


def open_image(hit) -> Image.Image:
    with Image.open(hit.path) as im:
        return im.convert("RGB")


# ------------------------------------------------------------------------------------------------ the model


def test_loads_from_a_folder_and_scores_probabilities(matcher, blip_folder, tmp_path):
    assert isinstance(matcher, BlipMatcher) and matcher.image_spec.size == 32
    assert matcher.image_spec.resize == "squash" and matcher.model_id.startswith("hf:blip@")
    assert load_reranker(str(blip_folder)) is matcher  # loaded once, then kept
    images = [open_image(FakeHit(0, str(p), 0)) for p in photos(tmp_path, 5)]
    s = matcher.score(images, "a red car")
    assert s.shape == (5,) and s.dtype == np.float32 and ((s > 0) & (s < 1)).all()
    assert len(set(np.round(s, 7))) == 5  # different images, different scores
    np.testing.assert_allclose(matcher.score(images[::-1], "a red car"), s[::-1], atol=1e-6)
    assert not np.allclose(matcher.score(images, "a cat on the beach"), s)


def test_scores_agree_with_the_hf_processor_and_model(matcher, blip_folder):
    import torch
    from skimage import data
    from transformers import AutoTokenizer
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    images = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee()).resize((91, 37))]
    proc = BlipImageProcessorPil.from_pretrained(blip_folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(blip_folder, local_files_only=True)
    enc = tok(["a cat on a table"] * 2, return_tensors="pt")
    with torch.inference_mode():
        logits = matcher.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               pixel_values=proc(images, return_tensors="pt")["pixel_values"]).itm_score
    reference = torch.softmax(logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(matcher.score(images, "a cat on a table"), reference, atol=2e-3)


def test_loading_errors_are_one_clear_line(tmp_path):
    with pytest.raises(ModelError, match="unknown reranker 'nope'"):
        resolve_reranker("nope")
    with pytest.raises(ModelError, match="not in the local cache and the hub is unreachable"):
        load_reranker("blip-itm-base")
    clip = tiny_models.make_tiny_clip(tmp_path / "clip")
    with pytest.raises(ModelError, match="'clip' model, not BLIP"):
        load_reranker(str(clip))
    assert resolve_reranker("blip-itm-base").source == "Salesforce/blip-itm-base-coco"
    assert resolve_reranker("hf:someone/blip").source == "someone/blip"


# --------------------------------------------------------------------------------------------- re-ranking


def test_order_follows_the_scores_and_top_n_is_respected(matcher, tmp_path):
    paths = photos(tmp_path, 7)
    hits = [FakeHit(i, str(p), 1.0 - i / 10) for i, p in enumerate(paths)]
    loaded = []

    def load(hit):
        loaded.append(hit.id)
        return open_image(hit)

    out = rerank_hits(hits, "a red car", matcher, top_n=5, load_image=load)
    assert sorted(loaded) == [0, 1, 2, 3, 4]  # nothing past top_n is even opened
    expected = matcher.score([open_image(h) for h in hits[:5]], "a red car")
    assert [h.id for h in out[:5]] == [int(i) for i in np.argsort(-expected, kind="stable")]
    assert [h.id for h in out[5:]] == [5, 6] and out[5] is hits[5]
    assert [h.rerank_score for h in out[:5]] == sorted((round(float(s), 6) for s in expected), reverse=True)
    assert out[5].rerank_score is None
    assert {h.id: h.score for h in out} == {h.id: h.score for h in hits}  # the vector scores stay as they were


def test_a_broken_image_is_skipped_with_a_log(matcher, tmp_path, caplog):
    paths = photos(tmp_path, 4)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    hits = [FakeHit(i, str(p), 0.9) for i, p in enumerate(paths[:2])]
    hits += [FakeHit(9, str(tmp_path / "broken.jpg"), 0.8)]
    hits += [FakeHit(i, str(p), 0.7) for i, p in enumerate(paths[2:], 2)]
    with caplog.at_level("WARNING", logger="picseek"):
        out = rerank_hits(hits, "a blue cup", matcher, top_n=4, load_image=open_image)
    assert sorted(h.id for h in out[:3]) == [0, 1, 2] and out[3].id == 9 and out[4].id == 3
    assert out[3].rerank_score is None and "broken.jpg" in caplog.text


class ConstantScorer:
    def __init__(self, value: float = 0.5):
        self.value, self.calls = value, 0

    def score(self, images, text):
        self.calls += 1
        return np.full(len(images), self.value, dtype=np.float32)


def test_ties_keep_their_order_and_bad_arguments_are_errors(tmp_path):
    hits = [FakeHit(i, f"/x/{i}.jpg", 0.5) for i in range(4)]
    scorer = ConstantScorer()
    out = rerank_hits(hits, "anything", scorer, top_n=10, load_image=lambda h: Image.new("RGB", (8, 8)))
    assert [h.id for h in out] == [0, 1, 2, 3] and scorer.calls == 1
    assert rerank_hits([], "anything", scorer, top_n=3, load_image=lambda h: None) == []
    with pytest.raises(UsageError, match="needs words"):
        rerank_hits(hits, "  ", scorer, top_n=3, load_image=lambda h: None)
    with pytest.raises(UsageError, match="at least 1"):
        rerank_hits(hits, "x", scorer, top_n=0, load_image=lambda h: None)


def test_unknown_names_never_load(monkeypatch):
    monkeypatch.setattr(rerank, "_LOADED", {})
    with pytest.raises(ModelError):
        rerank_hits([FakeHit(0, "/x.jpg", 1.0)], "a cat", "no-such-reranker", top_n=1, load_image=open_image)

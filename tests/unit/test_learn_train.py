"""Contrastive training: a tiny CLIP from scratch learns a synthetic captioned dataset (held-out recall far above
chance), and the fine-tuning mechanics on a tiny random CLIP (loss, projection-only, resume, the saved folder)."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from picseek.errors import UsageError
from picseek.learn import clipmodel, train
from picseek.learn.data import load_dataset

from tiny_models import make_tiny_clip

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20),
           "purple": (140, 40, 160), "white": (245, 245, 245), "black": (15, 15, 15), "orange": (250, 140, 20)}
SHAPES = ("circle", "square", "triangle")


def make_shapes(folder: Path, size: int = 48, seed: int = 0, limit: int | None = None) -> Path:
    """Every (shape colour, shape, background colour) once: 'a red circle on a blue background' -> captions.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = [(c, s, b) for c, s, b in itertools.product(COLOURS, SHAPES, COLOURS) if c != b][:limit]
    lines = ["image,caption"]
    for n, (c, s, b) in enumerate(combos):
        img = Image.new("RGB", (size, size), COLOURS[b])
        d = ImageDraw.Draw(img)
        r = int(rng.integers(size // 5, size // 3))
        cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
        box = (cx - r, cy - r, cx + r, cy + r)
        if s == "circle":
            d.ellipse(box, fill=COLOURS[c])
        elif s == "square":
            d.rectangle(box, fill=COLOURS[c])
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[c])
        img.save(folder / f"{n:03d}.png")
        lines.append(f"{n:03d}.png,a {c} {s} on a {b} background")
    (folder / "captions.csv").write_text("\n".join(lines) + "\n")
    return folder / "captions.csv"


@pytest.mark.slow
def test_tiny_clip_from_scratch_learns_held_out_captions(tmp_path):
    ds = load_dataset(make_shapes(tmp_path / "shapes"))  # 168 images
    opts = train.TrainOptions(out=str(tmp_path / "model"), arch="tiny", epochs=8, image_size=32, holdout=0.2,
                              batch_size=32, lr=1e-3)
    events = []
    t0 = time.perf_counter()
    report = train.train(ds, opts, events.append)
    seconds = time.perf_counter() - t0
    n_held = report.held_out_images
    chance = 5 / n_held
    r5 = [e.held_out["t2i_r@5"] for e in report.epochs]
    print(f"\nheld-out images {n_held}, chance recall@5 {chance:.3f}, recall@5 per epoch {r5}, {seconds:.1f} s")
    assert n_held == 34 and report.train_images == 134
    assert r5[-1] >= 0.6 > 3 * chance  # far above chance (0.147)
    losses = [e.loss for e in report.epochs]
    assert losses[-1] < 0.6 * losses[0]
    steps = [e for e in events if isinstance(e, train.Step)]
    assert len(steps) == 8 * 5 and steps[-1].epoch == 8  # 134 images / 32 = 5 steps (the last one merged)
    # the folder loads through the ordinary model loader, with the same preprocessing
    from picseek.models.registry import load_embedder

    emb = load_embedder(str(tmp_path / "model"))
    assert emb.image_spec.size == 32 and emb.dim == 64
    assert (tmp_path / "model" / "checkpoint.pt").is_file() and (tmp_path / "model" / "training.json").is_file()


@pytest.fixture
def tiny_clip(tmp_path):
    return make_tiny_clip(tmp_path / "tiny-clip")


@pytest.fixture
def small_data(tmp_path):
    return load_dataset(make_shapes(tmp_path / "shapes", size=32, limit=24))


def _encoder_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "projection" not in k
            and k != "logit_scale"}


def test_loss_decreases_on_a_fixed_batch(tiny_clip):
    from transformers import CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(tiny_clip)
    tok = CLIPTokenizer.from_pretrained(tiny_clip)
    x = torch.randn(6, 3, 32, 32)
    texts = tok(["a red cat", "a blue dog", "a green car", "a white boat", "a black bird", "a yellow tree"],
                padding=True, return_tensors="pt")
    inputs = {"input_ids": texts["input_ids"], "attention_mask": texts["attention_mask"]}
    ids = torch.arange(6)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = clipmodel.clip_loss(model, x, inputs, ids)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_soft_targets_for_repeated_captions():
    """Two pairs that share a caption: images alike reach the least loss; pushing them apart is not rewarded."""
    from types import SimpleNamespace

    def loss(images, caption_ids):
        model = SimpleNamespace(get_image_features=lambda pixel_values: images,
                                get_text_features=lambda **_: torch.eye(3)[[0, 0, 1]],
                                logit_scale=torch.tensor(np.log(100.0)))
        return float(clipmodel.clip_loss(model, None, {}, torch.tensor(caption_ids)))

    alike, apart = torch.eye(3)[[0, 0, 1]], torch.eye(3)[[0, 2, 1]]
    assert loss(alike, [0, 0, 1]) == pytest.approx(2 * np.log(2) / 3, abs=1e-4)  # the least: the targets' entropy
    assert loss(apart, [0, 0, 1]) > loss(alike, [0, 0, 1])


def test_projection_only_leaves_encoders_unchanged(tiny_clip, small_data, tmp_path):
    from transformers import CLIPModel

    before = CLIPModel.from_pretrained(tiny_clip)
    enc_before = _encoder_weights(before)
    proj_before = before.visual_projection.weight.detach().clone()
    opts = train.TrainOptions(out=str(tmp_path / "proj"), from_model=str(tiny_clip), train="projection", epochs=2,
                              batch_size=8, holdout=0.25)
    train.train(small_data, opts)
    after = CLIPModel.from_pretrained(tmp_path / "proj")
    enc_after = _encoder_weights(after)
    assert enc_before.keys() == enc_after.keys()
    assert all(torch.equal(enc_before[k], enc_after[k]) for k in enc_before)
    assert not torch.equal(proj_before, after.visual_projection.weight)


def test_freeze_layers_freezes_the_lowest_layers(tiny_clip):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip)
    clipmodel.set_trainable(model, "all", 1)
    for tower in (model.vision_model, model.text_model):
        assert not any(p.requires_grad for p in tower.embeddings.parameters())
        assert not any(p.requires_grad for p in tower.encoder.layers[0].parameters())
        assert all(p.requires_grad for p in tower.encoder.layers[1].parameters())
    with pytest.raises(UsageError, match="only 2 layers"):
        clipmodel.set_trainable(model, "all", 3)


def test_resume_continues_from_the_checkpoint_epoch(tiny_clip, small_data, tmp_path):
    out = tmp_path / "ft"
    opts = dict(out=str(out), from_model=str(tiny_clip), batch_size=8, holdout=0.25, lr=1e-3)
    first = train.train(small_data, train.TrainOptions(epochs=2, **opts))
    assert [e.epoch for e in first.epochs] == [1, 2]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2
    events = []
    resumed = train.train(small_data, train.TrainOptions(epochs=4, resume=True, **opts), events.append)
    assert [e.epoch for e in resumed.epochs] == [1, 2, 3, 4]
    assert {e.epoch for e in events if isinstance(e, train.Step)} == {3, 4}  # epochs 1-2 were not run again
    assert resumed.epochs[0] == first.epochs[0]
    with pytest.raises(UsageError, match="other settings"):
        train.train(small_data, train.TrainOptions(epochs=5, resume=True, **dict(opts, batch_size=4)))


def test_bad_options_are_clear_errors(small_data, tmp_path):
    with pytest.raises(UsageError, match="--from MODEL"):
        train.train(small_data, train.TrainOptions(out=str(tmp_path / "x")))
    with pytest.raises(UsageError, match="nothing to resume"):
        train.train(small_data, train.TrainOptions(out=str(tmp_path / "y"), resume=True))
    with pytest.raises(UsageError, match="fine-tun"):
        train.train(small_data, train.TrainOptions(out=str(tmp_path / "z"), from_model="builtin"))
    with pytest.raises(UsageError, match="use --from clip-vit-b-32-hf"):  # the short name is the ready-ONNX model
        train.train(small_data, train.TrainOptions(out=str(tmp_path / "w"), from_model="clip-vit-b-32"))
    if not clipmodel.cpu_has_bf16():
        with pytest.raises(UsageError, match="bfloat16"):
            train.train(small_data, train.TrainOptions(out=str(tmp_path / "b"), arch="tiny", precision="bf16"))


def test_trained_model_indexes_and_searches_through_a_library(tiny_clip, small_data, tmp_path):
    from picseek import Library

    out = tmp_path / "mine"
    train.train(small_data, train.TrainOptions(out=str(out), from_model=str(tiny_clip), epochs=1, batch_size=8))
    lib = Library(tmp_path / "lib", model=str(out))
    report = lib.index([tmp_path / "shapes"], workers=0)
    assert report.added == 24
    hits = lib.search("a red circle", limit=3)
    assert len(hits) == 3 and lib.recorded_model["model_id"].startswith("hf:mine@")

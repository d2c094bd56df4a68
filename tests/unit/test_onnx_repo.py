"""Ready-ONNX CLIP towers in immich's layout (models/onnx_repo.py), on tiny models exported here, offline.

Each tiny Hugging Face model (tests/tiny_models.py) is exported the way immich's exporter writes a repository
(config.json; visual/model.onnx + preprocess_cfg.json; textual/model.onnx + tokenizer files), in three variants:
  clip    OpenCLIP style: text input "text" int32 with a free batch (immich's older exports), the image tower's batch
          fixed at 1 (its current exporter)
  mclip   M-CLIP style: text inputs "input_ids" + "attention_mask" fixed at batch 1, the image tower's batch free;
          the pad token only in special_tokens_map.json
  siglip  squash, mean/std 0.5, texts canonicalized and padded to the context length
The reference is the same tiny model run through transformers (models/hf.py at fp32)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picseek.errors import ModelError
from picseek.models import onnx, onnx_repo
from picseek.models.base import ImageSpec, normalize, prepare_image
from picseek.models.registry import is_cached, list_models, load_embedder, resolve

import tiny_models
from conftest import make_folder
from needs import need_module

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache

KINDS = ("clip", "mclip", "siglip")
SIDE, CONTEXT = 32, 16  # the tiny models' input size and text length
OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
TEXTS = ["a photo of a cat", "a red car on the street at night", "zebra", "the " * 40 + "long text is cut"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "picseek-test/tiny-clip"
INT8_MIN_COSINE = 0.999  # int8 image tower vs fp32 on these photos: measured minima 0.99982 (clip), 0.99985 (siglip)


def _export(hf_folder: Path, out: Path, kind: str) -> Path:
    """Write `hf_folder`'s model in immich's layout, as its exporter does (export/immich_model_exporter)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from picseek.models.hf import _text_module, _vision_module

    model = AutoModel.from_pretrained(hf_folder, dtype=torch.float32).eval()
    (out / "visual").mkdir(parents=True)
    (out / "textual").mkdir()
    mask = kind == "mclip"
    names = ["input_ids", "attention_mask"] if mask else ["text"]
    ids = torch.ones((1, CONTEXT), dtype=torch.int32)
    with torch.inference_mode(), onnx.quiet_export():
        torch.onnx.export(_vision_module(model), (torch.zeros(1, 3, SIDE, SIDE),), str(out / onnx_repo.VISUAL),
                          input_names=["image"], output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch_size"}} if kind == "mclip" else None)
        torch.onnx.export(_text_module(model, mask), (ids, torch.ones_like(ids)) if mask else (ids,),
                          str(out / onnx_repo.TEXTUAL), input_names=names,
                          output_names=["text_embedding" if kind == "clip" else "embedding"], opset_version=17,
                          dynamo=False, dynamic_axes={"text": {0: "batch_size"}} if kind == "clip" else None)
    squash = kind == "siglip"
    preprocess = {"size": SIDE if squash else [SIDE, SIDE], "mode": "RGB", "mean": [0.5] * 3 if squash else OPENAI_MEAN,
                  "std": [0.5] * 3 if squash else OPENAI_STD, "interpolation": "bicubic",
                  "resize_mode": "squash" if squash else "shortest", "fill_color": 0}
    (out / onnx_repo.PREPROCESS).write_text(json.dumps(preprocess))
    tok = AutoTokenizer.from_pretrained(hf_folder)
    tok.save_pretrained(out / "textual")
    text_cfg = {"context_length": CONTEXT, "vocab_size": len(tok), "width": 32, "heads": 4, "layers": 2}
    if squash:
        text_cfg["tokenizer_kwargs"] = {"clean": "canonicalize"}
    dim = 32 if squash else 16
    config = {"embed_dim": dim, "vision_cfg": {"image_size": SIDE, "layers": 2, "width": 32, "patch_size": 8},
              "text_cfg": text_cfg}
    (out / onnx_repo.CONFIG).write_text(json.dumps(config))
    special = {"eos_token": tok.eos_token, "unk_token": tok.unk_token, "pad_token": tok.pad_token}
    if kind == "mclip":  # transformers 4 wrote AddedToken dicts; the pad token only here
        special["pad_token"] = {"content": tok.pad_token, "lstrip": False, "normalized": True, "rstrip": False}
        cfg = json.loads((out / onnx_repo.TOKENIZER_CFG).read_text())
        cfg.pop("pad_token")
        (out / onnx_repo.TOKENIZER_CFG).write_text(json.dumps(cfg))
    (out / onnx_repo.SPECIAL_TOKENS).write_text(json.dumps(special))
    (out / "README.md").write_text("tiny test model in immich's layout\n")
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """kind -> (Hugging Face folder, immich-layout folder)."""
    need_module("onnxruntime")
    root = tmp_path_factory.mktemp("tiny-onnx-repo")
    clip = tiny_models.make_tiny_clip(root / "hf-clip")
    siglip = tiny_models.make_tiny_siglip(root / "hf-siglip")
    hf = {"clip": clip, "mclip": clip, "siglip": siglip}
    return {kind: (hf[kind], _export(hf[kind], root / kind, kind)) for kind in KINDS}


@pytest.fixture(scope="module")
def refs(tiny):
    return {kind: load_embedder(str(tiny[kind][0]), precision="fp32") for kind in KINDS}


def _photos() -> list[Image.Image]:
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.hubble_deep_field()]
    return [Image.fromarray(p) for p in photos] + [Image.fromarray(data.coffee()).crop((0, 0, 90, 300))]


def _pixels(images, spec: ImageSpec) -> np.ndarray:
    return np.stack([prepare_image(im, spec) for im in images])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def _to_hub_cache(cache: Path, repo: str, folder: Path, commit: str = COMMIT) -> Path:
    """Put `folder` into the Hugging Face cache as a download leaves it: content-addressed blobs, the snapshot's files
    relative symlinks to them, refs/main naming the commit."""
    root = cache / ("models--" + repo.replace("/", "--"))
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            blob = root / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = root / "snapshots" / commit / f.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


# ------------------------------------------------------------------------------------------------- fp32 == torch


@pytest.mark.parametrize("kind", KINDS)
def test_fp32_vectors_equal_the_torch_reference(tiny, refs, kind):
    emb, ref = load_embedder(str(tiny[kind][1]), precision="fp32"), refs[kind]
    assert isinstance(emb, onnx_repo.OnnxRepoEmbedder) and emb.precision == "fp32"
    assert emb.image_spec == ref.image_spec and emb.dim == ref.dim and emb.spaces == {"main": ref.dim}
    photos = _photos()
    ours = emb.embed_images(photos)
    theirs = ref.embed_pixels(_pixels(photos, ref.image_spec))["main"]  # transformers on the same pixels
    cos = _cosines(ours, theirs)
    print(f"{kind} fp32 image cosines: min {cos.min():.7f}")
    assert cos.min() >= 0.9999, cos
    texts = emb.embed_texts(TEXTS)
    cos = _cosines(texts, ref.embed_texts(TEXTS))
    print(f"{kind} fp32 text cosines: min {cos.min():.7f}")
    assert cos.min() >= 0.9999, cos
    assert texts.shape == (len(TEXTS), emb.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(emb.embed_texts(TEXTS[1:2])[0], texts[1], atol=1e-6)  # batch of one == in a batch
    assert emb.embed_texts([]).shape == (0, emb.dim)
    assert emb.embed_pixels(np.zeros((0, SIDE, SIDE, 3), np.uint8))["main"].shape == (0, emb.dim)
    with pytest.raises(ValueError, match="pixels"):
        emb.embed_pixels(np.zeros((1, 8, 8, 3), np.uint8))


def test_texts_are_cleaned_as_immich_does(tiny, refs):
    siglip = load_embedder(str(tiny["siglip"][1]), precision="fp32")
    assert siglip.canonicalize and not load_embedder(str(tiny["clip"][1]), precision="fp32").canonicalize
    np.testing.assert_allclose(siglip.embed_texts(["A  Photo, of a CAT!"]), siglip.embed_texts(["a photo of a cat"]),
                               atol=1e-6)
    assert onnx_repo.clean_text(" A  red_car,\tat NIGHT. ", False) == "A red_car, at NIGHT."
    assert onnx_repo.clean_text(" A  red_car,\tat NIGHT. ", True) == "a red car at night"
    ids = siglip.tokenizer.encode_batch(["a cat", "the " * 40])
    assert {len(e.ids) for e in ids} == {CONTEXT}  # every text padded, and cut, to the context length


def test_each_tower_loads_on_first_use(tiny):
    emb = load_embedder(str(tiny["clip"][1]), precision="fp32")
    emb.embed_texts(["a cat"])
    assert emb._image is None  # a search never loads the image tower
    emb.warm_up()
    assert emb._image.lazy._tower is not None
    assert emb._image.one_at_a_time and not emb._text.one_at_a_time  # batch fixed at 1 in the graph / free


# ------------------------------------------------------------------------------------------- preprocessing


_CFGS = {
    "openai": ({"size": [32, 32], "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                "resize_mode": "shortest", "fill_color": 0}, ImageSpec(32, "shortest_crop", "bicubic")),
    "imagenet-bilinear": ({"size": 48, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "interpolation": "bilinear", "resize_mode": "shortest"},
                          ImageSpec(48, "shortest_crop", "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    "siglip": ({"size": [32, 32], "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
                "resize_mode": "squash", "fill_color": 0}, ImageSpec(32, "squash", "bicubic", (0.5,) * 3, (0.5,) * 3)),
    "squash-bilinear": ({"size": 40, "mean": 0.4, "std": 0.3, "interpolation": "bilinear", "resize_mode": "squash"},
                        ImageSpec(40, "squash", "bilinear", (0.4,) * 3, (0.3,) * 3)),
}


def _reference_pixels(spec: ImageSpec, img: Image.Image) -> np.ndarray:
    """The Hugging Face image processors set up as the config says (transformers' own resize, crop, rescale)."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    codes = {"bicubic": 3, "bilinear": 2}
    kw = dict(resample=codes[spec.resample], image_mean=list(spec.mean), image_std=list(spec.std))
    s = spec.size
    if spec.resize == "squash":
        proc = SiglipImageProcessor(size={"height": s, "width": s}, **kw)
    else:
        proc = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s}, **kw)
    return proc(images=[img], return_tensors="np")["pixel_values"]


@pytest.mark.parametrize("name", list(_CFGS))
def test_preprocess_cfg_gives_the_reference_pixels(name):
    cfg, want = _CFGS[name]
    spec = onnx_repo.image_spec_from_preprocess(cfg)
    assert spec == want
    for img in _photos():
        ours = normalize(prepare_image(img, spec)[None], spec)
        theirs = _reference_pixels(spec, img)
        assert ours.shape == theirs.shape
        # the mean difference allows for prepare_image's reducing_gap (a faster downscale of big photos; measured
        # 0.002-0.007), not for a shifted crop, a squash instead of a crop or another mean/std
        assert float(np.abs(ours - theirs).mean()) < 0.01, name
    from skimage import data

    small = [Image.fromarray(data.coffee()).resize((100, 70), Image.Resampling.BILINEAR),
             Image.fromarray(data.chelsea()).crop((50, 20, 140, 150))]
    for img in small:  # below 4x the input size there is no reducing_gap: the very same pixels
        ours = normalize(prepare_image(img, spec)[None], spec)
        np.testing.assert_allclose(ours, _reference_pixels(spec, img), atol=1e-5)


def test_preprocess_cfg_that_immich_serves_maps_as_open_clip_built_it():
    longest = {"size": 224, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
               "resize_mode": "longest"}
    assert onnx_repo.image_spec_from_preprocess(longest).resize == "shortest_crop"  # immich crops every model
    for bad, why in [({**longest, "size": [224, 240]}, "not a square"), ({**longest, "interpolation": "random"},
                     "interpolation"), ({**longest, "mean": [0.5, 0.5]}, "mean"), ({**longest, "std": 0}, "zero"),
                     ({"mean": 0.5, "std": 0.5}, "size")]:
        with pytest.raises(ValueError, match=why):
            onnx_repo.image_spec_from_preprocess(bad)


# ----------------------------------------------------------------------------------------------------- int8


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_int8_image_tower_is_quantized_once_and_stays_close(tiny, kind, monkeypatch):
    folder = tiny[kind][1]
    ref = load_embedder(str(folder), precision="fp32")
    fast = load_embedder(str(folder), precision="int8", runtime="onnxruntime")  # (openvino: test_openvino.py)
    auto = load_embedder(str(folder))
    assert fast.precision == auto.precision == "int8" and fast.model_id == ref.model_id
    photos = _photos()
    pixels = _pixels(photos, fast.image_spec)
    out = fast.embed_pixels(pixels)["main"]
    cached = onnx.cache_folder(fast.model_id) / "vision-int8.onnx"
    assert cached.is_file() and fast._image.path == cached
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".export-")]  # no temporary left behind
    assert sorted(p.name for p in (folder / "visual").iterdir()) == ["model.onnx", "preprocess_cfg.json"]
    cos = _cosines(out, ref.embed_pixels(pixels)["main"])
    print(f"{kind} int8 image cosines vs fp32: min {cos.min():.6f}, median {np.median(cos):.6f}")
    assert cos.min() >= INT8_MIN_COSINE, cos
    np.testing.assert_allclose(fast.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=1e-6)  # text tower: fp32

    def refuse(*a, **k):
        raise AssertionError("quantized again")

    monkeypatch.setattr(onnx, "quantize_in_child", refuse)
    again = load_embedder(str(folder), precision="int8")
    np.testing.assert_allclose(again.embed_pixels(pixels)["main"], out, atol=1e-6)


def test_weights_beside_the_graph_load_and_quantize_from_the_hub_cache(tiny, offline_hub, tmp_path, monkeypatch):
    """immich's big towers keep their weights in a file beside model.onnx; in the hub cache both are symbolic links
    to blobs, which onnx refuses to read external weights through (the quantizer gets copies)."""
    import onnx as onnx_lib

    folder = shutil.copytree(tiny["clip"][1], tmp_path / "big")
    graph = onnx_lib.load(str(folder / onnx_repo.VISUAL))
    onnx_lib.save_model(graph, str(folder / onnx_repo.VISUAL), save_as_external_data=True, size_threshold=0,
                        location="523d3c00-47e7-11ef-bc68-00155d655292")
    assert (folder / "visual" / "523d3c00-47e7-11ef-bc68-00155d655292").stat().st_size > 50_000
    _to_hub_cache(offline_hub, "picseek-test/big", folder)
    monkeypatch.setattr(onnx, "EXTERNAL_ABOVE", 0)  # and write the int8 weights beside the graph too
    pixels = _pixels(_photos(), ImageSpec(SIDE))
    small = load_embedder(str(tiny["clip"][1]), precision="int8")
    big = load_embedder("onnx:picseek-test/big", precision="int8")
    np.testing.assert_allclose(big.embed_pixels(pixels)["main"], small.embed_pixels(pixels)["main"], atol=1e-6)
    assert (big._image.path.parent / "vision-int8.onnx.data").is_file()
    ref = load_embedder(str(tiny["clip"][1]), precision="fp32")
    fp32 = load_embedder("onnx:picseek-test/big", precision="fp32")
    np.testing.assert_allclose(fp32.embed_pixels(pixels)["main"], ref.embed_pixels(pixels)["main"], atol=1e-6)


def test_a_failed_quantization_falls_back_under_auto_and_fails_when_asked(tiny, monkeypatch, tmp_path):
    def broken(*a, **k):
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(onnx, "quantize_in_child", broken)
    monkeypatch.setattr(onnx, "cache_folder", lambda model_id: tmp_path / "empty-cache")
    folder = tiny["clip"][1]
    auto = load_embedder(str(folder))
    pixels = _pixels(_photos()[:2], auto.image_spec)
    ref = load_embedder(str(folder), precision="fp32")
    np.testing.assert_allclose(auto.embed_pixels(pixels)["main"], ref.embed_pixels(pixels)["main"], atol=1e-6)
    assert auto.precision == "fp32"
    explicit = load_embedder(str(folder), precision="int8")
    with pytest.raises(ModelError, match="cannot quantize the image tower .* quantizer exploded; use --precision fp32"):
        explicit.embed_pixels(pixels)
    assert load_embedder(str(folder), precision="bf16").precision == "fp32"  # bf16 is a torch setting


def test_the_quantizer_runs_in_a_child_and_its_failure_is_one_line(tmp_path):
    """The quantizer's peak (about three copies of the weights) stays out of the indexing process; a graph it
    cannot read is a ModelError naming why, and nothing is left in the cache."""
    bad = tmp_path / "visual" / "model.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not a graph")
    target = tmp_path / "cache" / "vision-int8.onnx"
    with pytest.raises(ModelError) as info:
        onnx.quantize_in_child(bad, target)
    assert "\n" not in str(info.value) and str(info.value)
    assert not target.exists() and not list((tmp_path / "cache").iterdir())


# ------------------------------------------------------------------------------------- hub, registry, library


def test_a_hub_repo_loads_offline_from_the_cache_as_the_folder_does(tiny, offline_hub):
    folder = tiny["clip"][1]
    assert not is_cached(resolve(f"onnx:{REPO}"))
    with pytest.raises(ModelError, match=f"{REPO} is not in the local cache and the hub is unreachable"):
        load_embedder(f"onnx:{REPO}")
    snapshot = _to_hub_cache(offline_hub, REPO, folder)
    (snapshot / "visual" / "fp16").mkdir()  # what a download would skip: another accelerator's copy
    spec = resolve(f"onnx:{REPO}")
    assert spec.backend == "onnx" and spec.source == REPO and is_cached(spec)
    hub = load_embedder(spec, precision="fp32")
    local = load_embedder(str(folder), precision="fp32")
    assert hub.model_id == f"onnx:{REPO}@{COMMIT}" and hub.name == f"onnx:{REPO}"
    assert local.model_id.startswith("onnx:clip@") and local.name == str(folder.resolve())
    photos = _photos()[:3]
    np.testing.assert_array_equal(hub.embed_images(photos), local.embed_images(photos))
    np.testing.assert_array_equal(hub.embed_texts(TEXTS), local.embed_texts(TEXTS))
    os.unlink(snapshot / onnx_repo.TEXTUAL)  # a cache that lost a file, offline: says so
    with pytest.raises(ModelError, match="not in the local cache"):
        load_embedder(spec)


def test_a_download_fetches_the_onnx_towers_only_then_loads(tiny, offline_hub, monkeypatch):
    """The hub answers (simulated: nothing leaves this machine): the cache is tried first, then one download with the
    file patterns below, and what it leaves in the cache loads."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    from picseek.models import hub

    served = ["config.json", "README.md", ".gitattributes", "visual/model.onnx", "visual/preprocess_cfg.json",
              "visual/model.armnn", "visual/fp16/model.armnn", "visual/523d3c00-47e7-11ef-bc68-00155d655292",
              "textual/model.onnx", "textual/onnx__MatMul_2679", "textual/tokenizer.json",
              "textual/tokenizer_config.json", "textual/special_tokens_map.json", "textual/vocab.json",
              "textual/rknpu/rk3588/model.rknn"]  # a large immich repository's listing, weights beside the graphs
    fetched = list(filter_repo_objects(served, allow_patterns=onnx_repo.HUB_FILES,
                                       ignore_patterns=onnx_repo.HUB_SKIP))
    assert fetched == ["config.json", "visual/model.onnx", "visual/preprocess_cfg.json",
                       "visual/523d3c00-47e7-11ef-bc68-00155d655292", "textual/model.onnx",
                       "textual/onnx__MatMul_2679", "textual/tokenizer.json", "textual/tokenizer_config.json",
                       "textual/special_tokens_map.json", "textual/vocab.json"]
    calls = []

    def download(repo, allow_patterns, ignore_patterns, local_files_only):
        calls.append(local_files_only)
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        assert (allow_patterns, ignore_patterns) == (onnx_repo.HUB_FILES, onnx_repo.HUB_SKIP)
        return str(_to_hub_cache(offline_hub, repo, tiny["clip"][1]))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
    emb = load_embedder(f"onnx:{REPO}", precision="fp32")
    assert calls == [True, False] and emb.model_id == f"onnx:{REPO}@{COMMIT}"
    assert emb.embed_texts(["a cat"]).shape == (1, 16)


def test_a_failed_download_is_one_clear_model_error(monkeypatch, offline_hub):
    """The hub said to answer; the download fails (here: offline mode refuses it, so still no network)."""
    from picseek.models import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
    with pytest.raises(ModelError, match="could not get model picseek-test/absent from the hub") as err:
        load_embedder("onnx:picseek-test/absent")
    assert "\n" not in str(err.value)


def test_folder_revision_follows_the_weights_not_the_place(tiny, tmp_path):
    folder = tiny["clip"][1]
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert onnx_repo.folder_revision(copy) == onnx_repo.folder_revision(folder)
    (copy / "visual" / "model.armnn").write_bytes(b"another accelerator's copy")
    assert onnx_repo.folder_revision(copy) == onnx_repo.folder_revision(folder)
    shutil.copy(tiny["mclip"][1] / onnx_repo.VISUAL, copy / onnx_repo.VISUAL)  # same weights, other graph
    assert onnx_repo.folder_revision(copy) != onnx_repo.folder_revision(folder)


def test_registry_names_resolve_and_list_with_sizes(tiny):
    by_name = {r["name"]: r for r in list_models()}
    assert by_name["clip-vit-b-32-hf"]["backend"] == "hf"  # the torch conversion, under its own name
    onnx_rows = {n: r for n, r in by_name.items() if r["backend"] == "onnx"}
    assert {"clip-vit-b-32", "siglip2-base", "mclip-vit-b-32"} <= set(onnx_rows)
    assert not any(n.endswith("-onnx") for n in by_name)  # the older names are aliases, not listed
    assert resolve("clip-vit-b-32-onnx") == resolve("clip-vit-b-32")
    assert onnx_rows["clip-vit-b-32"]["source"] == "immich-app/ViT-B-32__openai"
    assert onnx_rows["clip-vit-b-32"]["size_mb"] == 610 and "size_mb" in by_name["builtin"]
    assert not any(r["available_offline"] for r in onnx_rows.values())
    assert all(r["source"].startswith("immich-app/") and r["dim"] for r in onnx_rows.values())
    folder = tiny["clip"][1]
    for name in (str(folder), f"onnx:{folder}"):
        spec = resolve(name)
        assert spec.backend == "onnx" and spec.name == spec.source == str(folder.resolve())
    from click.testing import CliRunner

    from picseek.cli import cli

    table = CliRunner().invoke(cli, ["models"]).output
    assert "clip-vit-b-32 " in table and "610 MB" in table and "onnx:ORG/NAME" in table and "-onnx" in table


def test_a_library_made_with_an_onnx_model_reopens_by_name(tiny, offline_hub, tmp_path):
    from picseek.library import Library

    _to_hub_cache(offline_hub, REPO, tiny["clip"][1])
    photos = tmp_path / "photos"
    make_folder(photos, 4)
    for model in (f"onnx:{REPO}", str(tiny["siglip"][1])):
        path = tmp_path / ("lib-" + hashlib.sha256(model.encode()).hexdigest()[:8])
        lib = Library(path, model=model)
        assert lib.index([photos], workers=1).embedded == 4
        again = Library(path)  # no model named: the recorded one
        assert again.recorded_model["name"] == (model if model.startswith("onnx:") else str(Path(model).resolve()))
        assert again.embedder().model_id == lib.embedder().model_id
        hits = again.search(photos / "img_002.jpg", limit=2)
        assert hits[0].path == str(photos / "img_002.jpg") and hits[0].score > 0.99
        assert len(again.search("a red car", limit=3)) == 3


def test_index_and_search_import_neither_torch_nor_transformers(tiny, tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 5)
    code = ("import sys\n"
            "from picseek.library import Library\n"
            f"lib = Library({str(tmp_path / 'lib')!r}, model={str(tiny['clip'][1])!r})\n"
            f"report = lib.index([{str(photos)!r}], workers=1)\n"
            "hits = lib.search('a photo of a red circle', limit=3)\n"
            "print(report.embedded, len(hits), lib.embedder().precision, 'torch' in sys.modules, "
            "'transformers' in sys.modules)\n")
    env = dict(os.environ, PICSEEK_CACHE_DIR=str(tmp_path / "cache"))  # an empty cache: int8 is quantized here too
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["5", "3", "int8", "False", "False"], proc.stdout + proc.stderr
    assert list((tmp_path / "cache" / "onnx").glob("*/vision-int8.onnx"))


# ------------------------------------------------------------------------------------------- bad layouts


def _broken_copy(tiny, tmp_path, change) -> Path:
    copy = shutil.copytree(tiny["clip"][1], tmp_path / "broken")
    change(copy)
    return copy


@pytest.mark.parametrize("change, message", [
    (lambda f: os.unlink(f / onnx_repo.TEXTUAL), r"lacks textual/model\.onnx"),
    (lambda f: shutil.rmtree(f / "visual"), r"lacks visual/model\.onnx, visual/preprocess_cfg\.json"),
    (lambda f: (f / onnx_repo.PREPROCESS).write_text('{"size": 32, "mean": '), r"cannot read visual/preprocess_cfg"),
    (lambda f: (f / onnx_repo.PREPROCESS).write_text('{"size": 32, "std": [0.5, 0.5, 0.5]}'),
     r"bad visual/preprocess_cfg\.json: mean None is not three numbers"),
    (lambda f: (f / onnx_repo.CONFIG).write_text('{"text_cfg": {}}'), r"config\.json needs embed_dim"),
    (lambda f: (f / onnx_repo.TOKENIZER).write_text("not json"), r"cannot read textual/tokenizer\.json"),
    (lambda f: [(f / onnx_repo.TOKENIZER_CFG).write_text("{}"), (f / onnx_repo.SPECIAL_TOKENS).write_text("{}")],
     r"names a pad_token"),
])
def test_a_bad_layout_is_one_clear_model_error(tiny, tmp_path, change, message):
    folder = _broken_copy(tiny, tmp_path, change)
    assert resolve(str(folder)).backend == "onnx"  # still recognised as this layout, so its loader explains
    with pytest.raises(ModelError, match=message) as err:
        load_embedder(str(folder))
    assert "\n" not in str(err.value)


def test_a_broken_graph_is_one_clear_model_error_on_first_use(tiny, tmp_path):
    folder = _broken_copy(tiny, tmp_path, lambda f: (f / onnx_repo.VISUAL).write_bytes(b"not an onnx graph"))
    emb = load_embedder(str(folder), precision="fp32")
    with pytest.raises(ModelError, match=r"cannot load the image tower of .* \(.*visual/model\.onnx\): ") as err:
        emb.embed_images(_photos()[:1])
    assert "\n" not in str(err.value)
    assert emb.embed_texts(["a cat"]).shape == (1, 16)  # the text tower is unaffected


def test_a_gpu_index_asks_cuda_for_an_fp16_image_tower_in_big_batches(tiny, tmp_path, monkeypatch):
    """`--device cuda` end to end on the CPU: this onnxruntime is told it has CUDA, so every session the run makes
    is recorded with the providers it was asked for (ONNX Runtime then falls back to the CPU it really has)."""
    import onnxruntime as ort

    from picseek import library

    asked, batches = [], []
    real_session, real_run = ort.InferenceSession, library.run_index
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", lambda path, opts, providers: (
        asked.append((Path(path).name, providers)), real_session(path, opts, providers=["CPUExecutionProvider"]))[1])
    monkeypatch.setattr(library, "run_index", lambda *a, **k: (batches.append(k["batch_size"]), real_run(*a, **k))[1])
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    lib = library.Library(tmp_path / "lib", model=str(tiny["clip"][1]), device="cuda:1")
    assert lib.index([photos], workers=1).embedded == 3
    emb = lib.embedder()
    assert (emb.precision, emb.device) == ("fp16", "cuda:1") and batches == [library.GPU_BATCH_SIZE]
    assert asked == [("vision-fp16.onnx", [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"])]
    ref = load_embedder(str(tiny["clip"][1]), precision="fp32")
    pixels = _pixels(_photos(), ref.image_spec)
    cos = _cosines(emb.embed_pixels(pixels)["main"], ref.embed_pixels(pixels)["main"])
    assert cos.min() >= INT8_MIN_COSINE, cos  # fp16 stays as close to fp32 as int8 must
    assert lib.recorded_model["model_id"] == ref.model_id  # the same model: a GPU-made library searches on the CPU


def test_a_gpu_onnx_runtime_cannot_use_is_refused_when_the_model_loads(tiny, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        load_embedder(str(tiny["clip"][1]), device="cuda")  # at load, not at the first batch

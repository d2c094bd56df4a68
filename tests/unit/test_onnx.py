"""The fast inference paths (models/onnx.py) against the fp32 torch reference, on tiny random CLIP / SigLIP models.

What these tiny models can show: the exported graphs compute what torch computes (ONNX fp32 == torch fp32), the int8
path runs, exports are cached and reused, and failures are clear. How close int8 stays to fp32 on a full-size model is
printed by benchmarks/index_speed.py (tiny random towers of width 32 quantize far worse than real ones)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picseek.errors import ModelError, UsageError
from picseek.models import hf, onnx
from picseek.models.registry import load_embedder

import tiny_models
from needs import need_module

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    need_module("onnxruntime")
    root = tmp_path_factory.mktemp("tiny")
    return {"clip": tiny_models.make_tiny_clip(root / "clip"), "siglip": tiny_models.make_tiny_siglip(root / "siglip"),
            "siglip2": tiny_models.make_tiny_siglip2(root / "siglip2")}


def _pixels(emb, n: int = 5) -> np.ndarray:
    s = emb.image_spec.size
    return np.random.default_rng(1).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


TEXTS = ["a photo of a cat", "a red car on the street at night", "zebra!"]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_exported_graphs_compute_what_torch_computes(folders, kind):
    ref = load_embedder(str(folders[kind]), precision="fp32")
    image, text = hf.ort_towers(ref, "fp32")
    from picseek.models.base import normalize

    pixels = _pixels(ref)
    want = ref.embed_pixels(pixels)["main"]
    got = image(pixel_values=normalize(pixels, ref.image_spec))
    assert np.sum(want * got, axis=1).min() >= 0.99999
    assert text is not None
    fast = load_embedder(str(folders[kind]), precision="int8")
    np.testing.assert_allclose(fast.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=1e-5)  # text runs in fp32


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_int8_runs_and_is_cached(folders, kind, monkeypatch):
    fast = load_embedder(str(folders[kind]), precision="int8")
    assert fast.precision == "int8"
    out = fast.embed_pixels(_pixels(fast))["main"]
    assert out.shape == (5, fast.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out, fast.embed_pixels(_pixels(fast))["main"])  # deterministic for one batch
    folder = onnx.cache_folder(fast.model_id)
    assert (folder / "vision-int8.onnx").is_file()
    calls = []
    monkeypatch.setattr(hf, "_export", lambda *a, **k: calls.append(a))
    again = load_embedder(str(folders[kind]), precision="int8")
    assert again.model is None  # everything came from the cache: no torch weights loaded
    np.testing.assert_array_equal(again.embed_pixels(_pixels(again))["main"], out)
    ref = load_embedder(str(folders[kind]), precision="fp32")
    # the cached tokenizer (tokenizers library) pads and truncates as the transformers one does
    long = "a very long caption " * 40
    np.testing.assert_allclose(again.embed_texts(TEXTS + [long]), ref.embed_texts(TEXTS + [long]), atol=1e-5)
    assert calls == []


def test_a_process_with_cached_towers_never_imports_torch(folders, tmp_path):
    import os
    import subprocess
    import sys

    load_embedder(str(folders["clip"]), precision="int8").prepare()  # export (or find) both towers
    code = ("import sys, numpy as np\n"
            "from picseek.models.registry import load_embedder\n"
            f"e = load_embedder({str(folders['clip'])!r})\n"
            "t = e.embed_texts(['a cat'])\n"
            "p = e.embed_pixels(np.zeros((2, e.image_spec.size, e.image_spec.size, 3), np.uint8))['main']\n"
            "print(e.precision, t.shape, p.shape, 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True).stdout.split()
    assert out[0] == "int8" and out[-2:] == ["False", "False"], out


def test_each_session_loads_on_first_use(folders):
    load_embedder(str(folders["clip"]), precision="int8").prepare()  # exported and cached
    light = load_embedder(str(folders["clip"]), precision="int8")
    assert light.model is None
    image, text = light._ort()
    assert image._tower is None and text._tower is None  # nothing loaded yet
    light.embed_pixels(_pixels(light))
    assert image._tower is not None and text._tower is None  # an index run never loads the text tower
    light.embed_texts(TEXTS)
    assert text._tower is not None


def test_a_broken_cached_text_tower_is_a_clear_error_or_torch_answers(folders, tmp_path, monkeypatch):
    import shutil

    ref = load_embedder(str(folders["clip"]), precision="fp32")
    load_embedder(str(folders["clip"]), precision="int8").prepare()
    copy = tmp_path / "cache"
    shutil.copytree(onnx.cache_folder(ref.model_id), copy)
    (copy / "text-fp32.onnx").write_bytes(b"not an onnx file")
    monkeypatch.setattr(onnx, "cache_folder", lambda model_id: copy)
    light = load_embedder(str(folders["clip"]), precision="int8")
    assert light.model is None
    with pytest.raises(ModelError, match="cannot load the ONNX text tower"):
        light.embed_texts(TEXTS)
    light.embed_pixels(_pixels(light))  # the image tower is unaffected
    from picseek.models.hf import HFEmbedder

    # with the torch model in memory, the text query runs on torch instead

    emb = HFEmbedder(**{**{f: getattr(ref, f) for f in ("name", "model_id", "dim", "image_spec", "spaces",
                                                          "image_query_space", "model", "tokenizer", "padding",
                                                          "max_length", "text_inputs")}, "precision": "int8"})
    np.testing.assert_allclose(emb.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=1e-5)
    assert emb._ort()[1] is None


def test_auto_picks_int8_and_falls_back_to_fp32_when_export_fails(folders, monkeypatch):
    assert load_embedder(str(folders["clip"])).precision == "int8"
    siglip2 = load_embedder(str(folders["siglip2"]))  # NaFlex patch sequences: not exported
    assert siglip2.precision == "fp32"
    with pytest.raises(ModelError, match="int8 is not available"):
        load_embedder(str(folders["siglip2"]), precision="int8")

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(hf, "_export", broken)
    monkeypatch.setattr(onnx, "cache_folder", lambda model_id: Path("/nonexistent/picseek-onnx"))
    auto = load_embedder(str(folders["clip"]))
    ref = load_embedder(str(folders["clip"]), precision="fp32")
    np.testing.assert_allclose(auto.embed_pixels(_pixels(auto))["main"], ref.embed_pixels(_pixels(ref))["main"],
                               atol=1e-5)
    assert auto.precision == "fp32"
    explicit = load_embedder(str(folders["clip"]), precision="int8")
    with pytest.raises(ModelError, match="cannot export .* exporter exploded"):
        explicit.embed_pixels(_pixels(explicit))


def test_bf16_stays_close_to_fp32(folders):
    ref = load_embedder(str(folders["clip"]), precision="fp32")
    half = load_embedder(str(folders["clip"]), precision="bf16")
    a, b = ref.embed_pixels(_pixels(ref))["main"], half.embed_pixels(_pixels(half))["main"]
    assert half.compute_dtype == "bfloat16" and b.dtype == np.float32
    assert np.sum(a * b, axis=1).min() >= 0.99
    t = half.embed_texts(TEXTS)
    assert np.sum(t * ref.embed_texts(TEXTS), axis=1).min() >= 0.99


def test_precision_names_are_checked():
    assert onnx.check_precision(None) == "auto"
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        onnx.check_precision("fp8")


def test_a_failed_export_in_the_child_is_one_clear_error(tmp_path):
    from picseek.models.onnx import export_in_child

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelError, match=r"cannot export .*empty to ONNX: \w+"):
        export_in_child(str(not_a_model), "int8")


def test_fp32_and_int8_libraries_record_the_same_model(folders):
    fast = load_embedder(str(folders["clip"]), precision="int8")
    ref = load_embedder(str(folders["clip"]), precision="fp32")
    assert fast.model_id == ref.model_id and fast.dim == ref.dim and fast.image_spec == ref.image_spec


def test_a_spark_task_sets_the_threads_of_the_sessions_it_makes(monkeypatch):
    """Executors run a task per core: each task's ONNX Runtime sessions get spark.task.cpus threads (or --threads),
    not every core of the machine."""
    from picseek.scale import tasks

    monkeypatch.setattr(onnx, "_threads", None)
    every = onnx.default_threads()
    monkeypatch.setattr(tasks, "_task_cpus", lambda: 1)
    tasks._set_threads(tasks.TaskSpec("builtin"))
    assert onnx.default_threads() == 1
    tasks._set_threads(tasks.TaskSpec("builtin", threads=3))
    assert onnx.default_threads() == 3
    onnx.set_default_threads(None)
    assert onnx.default_threads() == every

"""The openvino runtime of a ready-ONNX model's int8 image tower (models/openvino_tower.py): calibrated on the first
photos an index run embeds, cached, used from the first batch by later processes; failures stay on ONNX Runtime.

The tiny model is built here with onnx's helper (no torch): a patch embedding, an MLP block with a residual and
layer norm, mean pooling and a projection, in immich's layout."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from picseek.errors import MissingExtraError, ModelError, UsageError
from picseek.models import onnx, onnx_repo, openvino_tower
from picseek.models.registry import load_embedder

from cli_helpers import cli_env, run
from conftest import make_folder
from needs import need_module

SIDE, PATCH, WIDTH, DIM, CONTEXT = 32, 8, 32, 16, 16
WORDS = "a photo of the red green blue cat dog car sky".split()
# OpenVINO int8 vs the fp32 graph on the tiny random model, over 12 generated photos: measured minima 0.985
# (calibrated on 4 photos) and 0.979 (on 16); calibrated on pixels 50x too large: 0.75. NNCF quantizes activations
# per tensor, which a 32-wide random network feels far more than a real tower (CLIP ViT-B/32: >= 0.9995 on photos,
# benchmarks/model_cost.py); ONNX Runtime's dynamic int8 of the same tiny tower: 0.9997.
MIN_COSINE = 0.95


def make_tiny_onnx_clip(out: Path, fixed_batch: bool = False, seed: int = 0) -> Path:
    """A small image tower and text tower in immich's layout (models/onnx_repo.py), random weights."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx import save as save_onnx
    from tokenizers import Tokenizer, models, pre_tokenizers

    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=None):
        scale = scale or 1 / np.sqrt(shape[0])
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def const(name, values, dtype=np.int64):
        return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)

    g = SIDE // PATCH
    nodes = [
        helper.make_node("Reshape", ["image", "s1"], ["p1"]),
        helper.make_node("Transpose", ["p1"], ["p2"], perm=[0, 2, 4, 1, 3, 5]),
        helper.make_node("Reshape", ["p2", "s2"], ["p3"]),
        helper.make_node("MatMul", ["p3", "w_embed"], ["e0"]),
        helper.make_node("Add", ["e0", "b_embed"], ["e1"]),
        helper.make_node("LayerNormalization", ["e1", "ln_g", "ln_b"], ["n1"], axis=-1),
        helper.make_node("MatMul", ["n1", "w_up"], ["u0"]),
        helper.make_node("Relu", ["u0"], ["u1"]),
        helper.make_node("MatMul", ["u1", "w_down"], ["d0"]),
        helper.make_node("Add", ["e1", "d0"], ["r"]),
        helper.make_node("ReduceMean", ["r"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("LayerNormalization", ["pooled", "ln_g", "ln_b"], ["post"], axis=-1),
        helper.make_node("MatMul", ["post", "w_proj"], ["embedding"]),
    ]
    batch = 1 if fixed_batch else "batch_size"
    inits = [const("s1", [-1, 3, g, PATCH, g, PATCH]), const("s2", [-1, g * g, 3 * PATCH * PATCH]),
             w("w_embed", 3 * PATCH * PATCH, WIDTH), w("b_embed", WIDTH, scale=0.1),
             numpy_helper.from_array(np.ones(WIDTH, np.float32), "ln_g"),
             numpy_helper.from_array(np.zeros(WIDTH, np.float32), "ln_b"),
             w("w_up", WIDTH, 4 * WIDTH), w("w_down", 4 * WIDTH, WIDTH), w("w_proj", WIDTH, DIM)]
    graph = helper.make_graph(nodes, "visual", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                              [batch, 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])], inits)
    (out / "visual").mkdir(parents=True)
    (out / "textual").mkdir()
    opset = [helper.make_opsetid("", 17)]
    save_onnx(helper.make_model(graph, opset_imports=opset), str(out / onnx_repo.VISUAL))
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", *WORDS])}
    text = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["ids"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "ids"], ["emb"]),
         helper.make_node("ReduceMean", ["emb"], ["mean"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["mean", "w_text"], ["text_embedding"])], "textual",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch_size", CONTEXT])],
        [helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["batch_size", DIM])],
        [w("table", len(vocab), WIDTH, scale=1.0), w("w_text", WIDTH, DIM)])
    save_onnx(helper.make_model(text, opset_imports=opset), str(out / onnx_repo.TEXTUAL))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(out / onnx_repo.TOKENIZER))
    (out / onnx_repo.TOKENIZER_CFG).write_text(json.dumps({"pad_token": "<pad>"}))
    (out / onnx_repo.PREPROCESS).write_text(json.dumps({"size": [SIDE, SIDE], "mean": [0.5] * 3, "std": [0.25] * 3,
                                                        "interpolation": "bicubic", "resize_mode": "shortest"}))
    (out / onnx_repo.CONFIG).write_text(json.dumps({"embed_dim": DIM, "vision_cfg": {"image_size": SIDE},
                                                    "text_cfg": {"context_length": CONTEXT}}))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of this test's own: what one test quantizes is never another's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PICSEEK_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def calibration(monkeypatch):
    monkeypatch.setattr(openvino_tower, "CALIBRATION", 4)
    return 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    need_module("onnxruntime")
    return make_tiny_onnx_clip(tmp_path_factory.mktemp("tiny-ov") / "clip")


def _needs_openvino():
    need_module("openvino")
    need_module("nncf")


def _pixels(n: int, seed: int = 1) -> np.ndarray:
    from PIL import Image

    from picseek.models.base import prepare_image

    from conftest import draw_photo

    spec = onnx_repo.image_spec_from_preprocess({"size": SIDE, "mean": 0.5, "std": 0.25})
    names = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    return np.stack([prepare_image(Image.fromarray(np.asarray(draw_photo(names[i % 8], "circle" if i % 2 else
                                                                         "square", seed=seed + i))), spec)
                     for i in range(n)])


def _embed_batches(emb, pixels: np.ndarray, batch: int) -> list[str]:
    """Embed `pixels` batch by batch as an index run does (warm_up first); the runtime that ran each batch."""
    emb.warm_up()
    ran = []
    for i in range(0, len(pixels), batch):
        tower = emb._image_tower()
        ran.append(tower.runtime)
        emb.embed_pixels(pixels[i:i + batch])
        if tower.thread is not None:  # the calibration started: let it finish before the next batch
            tower.thread.join(120)
    return ran


@pytest.mark.parametrize("fixed_batch", [False, True], ids=["dynamic-batch", "batch-of-1"])
def test_the_first_photos_calibrate_then_openvino_runs_and_a_later_process_starts_on_it(
        tmp_path, cache, calibration, fixed_batch):
    _needs_openvino()
    folder = make_tiny_onnx_clip(tmp_path / "model", fixed_batch=fixed_batch)
    emb = load_embedder(str(folder), precision="int8", runtime="openvino")
    assert emb.runtime == "openvino"
    target = openvino_tower.cache_target(emb.model_id)
    assert not target.exists()
    ran = _embed_batches(emb, _pixels(8), batch=2)
    # two batches of 2 photos through ONNX Runtime's int8 tower, then calibrated on them, then OpenVINO
    assert ran == ["onnxruntime", "onnxruntime", "openvino", "openvino"]
    assert target.is_file() and target.with_suffix(".bin").is_file()
    assert (onnx.cache_folder(emb.model_id) / "vision-int8.onnx").is_file()

    later = load_embedder(str(folder), precision="int8", runtime="openvino")
    assert _embed_batches(later, _pixels(4), batch=2) == ["openvino", "openvino"]
    assert later._image_tower()._ort is None
    (onnx.cache_folder(emb.model_id) / "vision-int8.onnx").unlink()
    third = load_embedder(str(folder), precision="int8", runtime="openvino")
    third.embed_pixels(_pixels(1))  # an example-image query: the cached graph, no ONNX Runtime int8 copy made
    assert third._image_tower().runtime == "openvino"
    assert not (onnx.cache_folder(emb.model_id) / "vision-int8.onnx").exists()


def test_openvino_int8_vectors_stay_close_to_fp32(tiny, cache, calibration):
    _needs_openvino()
    pixels = _pixels(12, seed=20)
    emb = load_embedder(str(tiny), precision="int8", runtime="openvino")
    _embed_batches(emb, _pixels(4), batch=4)  # calibrated on other photos than those compared
    assert emb._image_tower().runtime == "openvino"
    got = emb.embed_pixels(pixels)["main"]
    ref = load_embedder(str(tiny), precision="fp32").embed_pixels(pixels)["main"]
    cosines = np.sum(got * ref, axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    assert not np.allclose(got, ref, atol=1e-6)  # int8, not the fp32 graph


def test_a_query_never_calibrates(tiny, cache, calibration):
    _needs_openvino()
    emb = load_embedder(str(tiny), precision="int8", runtime="openvino")
    for _ in range(3):  # more photos than CALIBRATION, but no index run (no warm_up)
        emb.embed_pixels(_pixels(2))
    tower = emb._image_tower()
    assert tower.runtime == "onnxruntime" and tower.thread is None
    assert not openvino_tower.cache_target(emb.model_id).exists()


def test_a_failed_calibration_warns_once_and_the_run_stays_on_onnxruntime(tiny, cache, calibration, monkeypatch,
                                                                          caplog):
    _needs_openvino()
    calls = []

    def broken(source, target, pixels):
        calls.append(len(pixels))
        raise ModelError("nncf exploded")

    monkeypatch.setattr(openvino_tower, "quantize_in_child", broken)
    emb = load_embedder(str(tiny), precision="int8", runtime="openvino")
    fp = load_embedder(str(tiny), precision="int8", runtime="onnxruntime")
    pixels = _pixels(10)
    with caplog.at_level(logging.WARNING, logger="picseek"):
        ran = _embed_batches(emb, pixels, batch=2)
    assert ran == ["onnxruntime"] * 5 and calls == [4]
    warnings = [r for r in caplog.records if "OpenVINO" in r.getMessage()]
    assert len(warnings) == 1 and "nncf exploded" in warnings[0].getMessage()
    np.testing.assert_allclose(emb.embed_pixels(pixels)["main"], fp.embed_pixels(pixels)["main"], atol=1e-6)


def test_while_another_process_makes_the_graph_the_run_stays_on_onnxruntime_then_takes_it(tiny, cache,
                                                                                          calibration):
    _needs_openvino()
    from picseek._fs import FileLock
    from picseek.models.base import normalize

    emb = load_embedder(str(tiny), precision="int8", runtime="openvino")
    target = openvino_tower.cache_target(emb.model_id)
    target.parent.mkdir(parents=True)
    with FileLock(target.parent / ".lock"):  # the other process: it holds the lock while it calibrates
        assert _embed_batches(emb, _pixels(8), batch=2) == ["onnxruntime"] * 4
        assert not target.exists()
        assert not openvino_tower.quantize_in_child(tiny / onnx_repo.VISUAL, target, _pixels(4))  # busy: False
        openvino_tower.quantize_cached(tiny / onnx_repo.VISUAL, target, normalize(_pixels(4), emb.image_spec))
    emb.embed_pixels(_pixels(2))
    assert emb._image_tower().runtime == "openvino"


def test_the_quantizer_child_failure_is_one_line(tmp_path):
    _needs_openvino()
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError) as info:
        openvino_tower.quantize_in_child(tmp_path / "bad.onnx", tmp_path / "out" / "x.xml", _pixels(2))
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path / "out") == [".lock"]  # no graph, no pixels or messages left behind


def test_an_index_run_calibrates_and_the_next_one_starts_on_openvino(tiny, cache, calibration, tmp_path):
    _needs_openvino()
    from picseek import Library

    make_folder(tmp_path / "photos", n=12)
    lib = Library(tmp_path / "lib", model=str(tiny), precision="int8", runtime="openvino")
    report = lib.index([tmp_path / "photos"], workers=0, batch_size=2)
    assert report.added == 12 and report.errors == 0
    tower = lib.embedder()._image_tower()
    if tower.thread is not None:
        tower.thread.join(120)
    target = openvino_tower.cache_target(lib.embedder().model_id)
    assert target.is_file()
    assert len(lib.search("red", limit=3)) == 3

    make_folder(tmp_path / "more", n=4, prefix="more")
    again = Library(tmp_path / "lib", runtime="openvino", precision="int8")
    assert again.index([tmp_path / "more"], workers=0, batch_size=2).added == 4
    tower = again.embedder()._image_tower()
    assert tower.runtime == "openvino" and tower._ort is None  # ONNX Runtime's int8 tower never loaded


# -- settings and errors (no openvino needed) ---------------------------------------------------------------------


def test_runtime_values_are_checked():
    assert openvino_tower.check_runtime(None) == "auto"
    assert openvino_tower.check_runtime(" OpenVINO ") == "openvino"
    with pytest.raises(UsageError, match="unknown runtime"):
        openvino_tower.check_runtime("tensorrt")


def test_auto_is_openvino_where_it_can_run_and_never_fails(monkeypatch):
    assert openvino_tower.AUTO == "openvino"
    monkeypatch.setattr(openvino_tower, "installed", lambda: True)
    assert openvino_tower.resolve_runtime("auto", "int8", "cpu") == "openvino"
    assert openvino_tower.resolve_runtime("auto", "fp32", "cpu") == "onnxruntime"
    assert openvino_tower.resolve_runtime("auto", "fp16", "cuda") == "onnxruntime"
    monkeypatch.setattr(openvino_tower, "installed", lambda: False)  # without the extra: what ran before, no error
    assert openvino_tower.resolve_runtime("auto", "int8", "cpu") == "onnxruntime"


def test_openvino_on_a_gpu_or_at_fp32_is_a_clear_error():
    with pytest.raises(ModelError, match="on the CPU.*device cuda"):
        openvino_tower.resolve_runtime("openvino", "fp16", "cuda")
    with pytest.raises(ModelError, match="precision fp32.*--precision int8"):
        openvino_tower.resolve_runtime("openvino", "fp32", "cpu")


def test_without_the_extra_openvino_names_it_in_one_line(monkeypatch):
    from importlib import util

    from picseek import extras

    real = util.find_spec

    def find_spec(name, *a):
        return None if name in ("openvino", "nncf") else real(name, *a)

    monkeypatch.setattr(util, "find_spec", find_spec)
    monkeypatch.setattr(extras, "find_spec", find_spec)
    with pytest.raises(MissingExtraError) as info:
        openvino_tower.resolve_runtime("openvino", "int8", "cpu")
    assert str(info.value).startswith("runtime openvino needs openvino and nncf")
    assert "pip install 'picseek[openvino]'" in str(info.value) and "\n" not in str(info.value)
    assert openvino_tower.resolve_runtime("auto", "int8", "cpu") == "onnxruntime"


def test_the_cli_refuses_openvino_with_a_gpu_or_fp32_and_names_the_extra(tiny, tmp_path):
    """(Without openvino installed, also: the one-line message that names the extra.)"""
    from importlib.util import find_spec

    photos = tmp_path / "photos"
    make_folder(photos, n=2)
    env = cli_env(tmp_path)
    lib = ["--library", str(tmp_path / "lib")]
    out = run(*lib, "index", str(photos), "--model", str(tiny), "--runtime", "openvino", "--precision", "fp32",
              env=env, check=False)
    assert out.returncode != 0 and "runtime openvino" in out.stderr and "--precision int8" in out.stderr
    out = run(*lib, "index", str(photos), "--model", str(tiny), "--runtime", "openvino", "--device", "cuda", env=env,
              check=False)
    assert out.returncode != 0 and "runtime openvino runs the int8 image tower on the CPU" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    if find_spec("openvino") is None or find_spec("nncf") is None:
        out = run(*lib, "index", str(photos), "--model", str(tiny), "--runtime", "openvino", env=env, check=False)
        assert out.returncode != 0 and "pip install 'picseek[openvino]'" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = run(*lib, "index", str(photos), "--model", str(tiny), "--runtime", "tensorrt", env=env, check=False)
    assert out.returncode != 0 and "tensorrt" in out.stderr


def test_openvino_asked_of_a_model_outside_the_onnx_backend_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="picseek"):
        emb = load_embedder("builtin", runtime="openvino")
    assert emb.name == "builtin"
    assert any("runtime openvino applies to ready-ONNX models" in r.getMessage() for r in caplog.records)


def test_the_quantizer_child_sends_no_telemetry():
    """NNCF reports usage to Google Analytics unless a consent file says no; the child hides that package first."""
    need_module("nncf")
    import subprocess
    import sys

    code = ("from picseek.models.openvino_tower import no_telemetry; no_telemetry(); import nncf; "
            "from nncf.telemetry import telemetry; from nncf.telemetry.wrapper import NNCFTelemetryStub; "
            "print(type(telemetry).__name__, isinstance(telemetry, NNCFTelemetryStub))")
    env = {k: v for k, v in os.environ.items() if k not in ("NNCF_CI", "NNCF_DEV", "CI")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "True", out

